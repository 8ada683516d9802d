/**
 * `hybridbus bench` for the amqp1 driver: each intermediary's pair (amqp1-<via> beside
 * raw-rhea-<via>) runs every scenario it can with tiny settings — directly (no server), through
 * Proton's C++ broker, RabbitMQ's AMQP 1.0 plugin and, when QDROUTERD_BIN names one, qdrouterd.
 * Every (contender, metric) gets a finite positive median and each amqp1 one a finite ratio to
 * its own raw rhea; fanout on the Proton broker is declared unsupported, not attempted.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULTS, TINY, runBench, type BenchReport } from '@hybridbus/benchmarks';
import { qdrouterdAvailable, sharedServers, startProtonBroker, startQdrouterd, startRabbitMQ } from './harness/launcher.js';
import { tempDir } from './util.js';

const dir = tempDir('hb-bench-amqp1-');
const router = qdrouterdAvailable();

async function run(name: string, contenders: string[], urls: { rabbitUrl?: string; protonUrl?: string; routerUrl?: string }): Promise<{ report: BenchReport; output: string }> {
  const lines: string[] = [];
  const json = path.join(dir, `${name}.json`);
  const report = await runBench({
    ...DEFAULTS,
    rabbitUrl: urls.rabbitUrl ?? 'rabbit://guest:guest@127.0.0.1:1/',
    protonUrl: urls.protonUrl,
    routerUrl: urls.routerUrl,
    contenders,
    scenarios: ['latency', 'throughput', 'cast', 'fanout', 'notify'],
    ...TINY,
    json,
    html: path.join(dir, `${name}.html`),
    command: 'bench-amqp1.test',
    out: (l: string) => lines.push(l),
    note: (l: string) => lines.push(l),
  });
  const output = lines.join('\n');
  assert.deepEqual(report.errors ?? [], [], output);
  assert.deepEqual(JSON.parse(fs.readFileSync(json, 'utf8')).summaries, report.summaries);
  return { report, output };
}

/** Every metric of the scenarios the pair runs has figures, and amqp1's a ratio to its raw rhea. */
function checkPair(report: BenchReport, output: string, via: string, fanout: boolean): void {
  const metrics = ['latency.p50', 'latency.p99', 'throughput.16', 'cast', 'notify', ...(fanout ? ['fanout.2.rate', 'fanout.2.complete'] : [])];
  for (const m of metrics) {
    const raw = report.summaries.find((s) => s.metric === m && s.contender === `raw-rhea-${via}`);
    const ours = report.summaries.find((s) => s.metric === m && s.contender === `amqp1-${via}`);
    assert.ok(raw && Number.isFinite(raw.median) && raw.median > 0, `raw-rhea-${via} ${m}\n${output}`);
    assert.ok(ours && Number.isFinite(ours.median) && ours.median > 0, `amqp1-${via} ${m}\n${output}`);
    assert.equal(ours.baseline, `raw-rhea-${via}`);
    assert.ok(ours.ratio !== undefined && Number.isFinite(ours.ratio) && ours.ratio > 0, `amqp1-${via} ${m}: ratio ${ours.ratio}\n${output}`);
  }
  assert.deepEqual(report.metrics.find((m) => m.id === 'latency.p50')?.targets?.[`amqp1-${via}`], { op: '<=', ratio: 1.2 });
  if (!fanout) {
    assert.ok(!report.summaries.some((s) => s.metric.startsWith('fanout.') && s.contender.endsWith(`-${via}`)), 'no fanout figures');
    for (const id of [`amqp1-${via}`, `raw-rhea-${via}`]) {
      assert.match(report.contenders.find((c) => c.id === id)?.unsupported?.['fanout'] ?? '', /no multicast/, id);
      assert.match(output, new RegExp(`^not run: ${id} fanout — `, 'm'));
    }
  }
}

describe('hybridbus bench: amqp1 beside raw rhea', { concurrency: true }, () => {
  const servers = sharedServers({ proton: () => startProtonBroker({ flavour: 'cpp' }), rabbit: () => startRabbitMQ() });

  test('direct: no server needed', { timeout: 120_000 }, async () => {
    const { report, output } = await run('direct', ['amqp1-direct', 'raw-rhea-direct'], {});
    checkPair(report, output, 'direct', true);
  });

  test('through the Proton C++ broker (no fanout: a queue broker has no multicast)', { timeout: 120_000 }, async () => {
    const { report, output } = await run('proton', ['amqp1-proton', 'raw-rhea-proton'], { protonUrl: servers.proton.url });
    checkPair(report, output, 'proton', false);
  });

  test("through RabbitMQ's AMQP 1.0 plugin", { timeout: 120_000 }, async () => {
    const { report, output } = await run('rabbit', ['amqp1-rabbit', 'raw-rhea-rabbit'], { rabbitUrl: servers.rabbit.url.replace(/^amqp:/, 'rabbit:') });
    checkPair(report, output, 'rabbit', true);
  });

  test('through qdrouterd', { timeout: 120_000, skip: 'reason' in router ? router.reason : false }, async () => {
    const r = await startQdrouterd();
    try {
      const { report, output } = await run('router', ['amqp1-router', 'raw-rhea-router'], { routerUrl: r.url });
      checkPair(report, output, 'router', true);
    } finally {
      await r.stop();
    }
  });

  test('without their servers the pairs are skipped with one line each', async () => {
    const { report } = await run('none', ['amqp1-proton', 'raw-rhea-proton', 'amqp1-router', 'raw-rhea-router'], {});
    for (const c of report.contenders) assert.match(c.skipped ?? '', /^(amqp1|raw-rhea)-(proton|router): no (Proton broker|qdrouterd) configured \(--(proton|router)-url/, c.id);
  });
});
