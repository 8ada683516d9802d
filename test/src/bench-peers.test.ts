/**
 * `hybridbus bench`'s like-for-like and peer contenders, each quick (tiny settings):
 * - `raw-amqplib-oslo` (raw amqplib doing the rabbit driver's wire work) runs every scenario on a
 *   private RabbitMQ; `rabbit` is compared with it, it with `raw-amqplib`, and every figure of
 *   the three carries the broker's CPU per message (the test's RabbitMQ runs as our user);
 * - `moleculer-tcp` (Moleculer 0.15, TCP transporter) runs calls and casts with no server, and
 *   declares fanout and notify unsupported;
 * - `moleculer-amqp` (its AMQP transporter) runs them on the RabbitMQ.
 * The RabbitMQ ones are skipped, saying why, when no rabbitmq-server is installed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULTS, TINY, runBench, type BenchOptions, type BenchReport } from '@hybridbus/benchmarks';
import { sharedServers, startRabbitMQ } from './harness/launcher.js';
import { tempDir } from './util.js';

const dir = tempDir('hb-bench-peers-');
const RABBIT_BINS = [process.env['RABBITMQ_SERVER_BIN'], '/usr/lib/rabbitmq/bin/rabbitmq-server', '/usr/lib/rabbitmq/sbin/rabbitmq-server'];
const noRabbit = RABBIT_BINS.some((b) => b && fs.existsSync(b)) ? false : 'no rabbitmq-server installed (Debian package rabbitmq-server)';

async function run(name: string, contenders: string[], scenarios: BenchOptions['scenarios'], rabbitUrl?: string): Promise<{ report: BenchReport; output: string }> {
  const lines: string[] = [];
  const json = path.join(dir, `${name}.json`);
  const report = await runBench({
    ...DEFAULTS,
    ...TINY,
    rabbitUrl: rabbitUrl ?? 'rabbit://guest:guest@127.0.0.1:1/',
    contenders,
    scenarios,
    json,
    html: path.join(dir, `${name}.html`),
    command: 'bench-peers.test',
    out: (l: string) => lines.push(l),
    note: (l: string) => lines.push(l),
  });
  const output = lines.join('\n');
  assert.deepEqual(report.errors ?? [], [], output);
  return { report, output };
}

function figure(report: BenchReport, output: string, contender: string, metric: string): BenchReport['summaries'][number] {
  const s = report.summaries.find((x) => x.metric === metric && x.contender === contender);
  assert.ok(s && Number.isFinite(s.median) && s.median > 0, `${contender} ${metric}\n${output}`);
  return s;
}

const MOLECULER_METRICS = ['latency.p50', 'latency.p99', 'throughput.16', 'cast'];

function checkMoleculer(report: BenchReport, output: string, id: string): void {
  for (const m of MOLECULER_METRICS) assert.equal(figure(report, output, id, m).baseline, undefined, `${id} is a peer, not compared with a baseline`);
  for (const s of ['fanout', 'notify']) assert.match(output, new RegExp(`^not run: ${id} ${s} — `, 'm'));
}

describe('hybridbus bench: like-for-like and peer contenders', { concurrency: false }, () => {
  test('moleculer-tcp: calls and casts, no server needed', { timeout: 120_000 }, async () => {
    const { report, output } = await run('moleculer-tcp', ['moleculer-tcp'], ['latency', 'throughput', 'cast', 'fanout', 'notify']);
    checkMoleculer(report, output, 'moleculer-tcp');
  });

  describe('on RabbitMQ', { skip: noRabbit }, () => {
    const servers = noRabbit ? undefined : sharedServers({ rabbit: () => startRabbitMQ({ plugins: [] }) });
    const url = (): string => (servers?.rabbit.url ?? '').replace(/^amqp:/, 'rabbit:');

    test('raw-amqplib-oslo: every scenario; rabbit is compared with it, it with raw-amqplib; broker CPU on every figure', { timeout: 180_000 }, async () => {
      const { report, output } = await run('oslo-wire', ['rabbit', 'raw-amqplib-oslo', 'raw-amqplib'], ['latency', 'throughput', 'cast', 'fanout', 'notify'], url());
      for (const m of ['latency.p50', 'throughput.16', 'cast', 'fanout.2.rate', 'notify']) {
        const rabbit = figure(report, output, 'rabbit', m);
        const wire = figure(report, output, 'raw-amqplib-oslo', m);
        const raw = figure(report, output, 'raw-amqplib', m);
        assert.equal(rabbit.baseline, 'raw-amqplib-oslo', m);
        assert.equal(wire.baseline, 'raw-amqplib', m);
        assert.ok(rabbit.ratio !== undefined && rabbit.ratio > 0 && wire.ratio !== undefined && wire.ratio > 0, `${m}\n${output}`);
        // Counted in clock ticks (10 ms): a tiny window may round to 0, never to nothing.
        for (const s of [rabbit, wire, raw]) assert.ok((s.cpuUsPerMsg?.broker ?? -1) >= 0, `${s.contender} ${m}: broker CPU ${s.cpuUsPerMsg?.broker}\n${output}`);
      }
      assert.match(output, /cpu µs\/msg c\/s\/b/);
    });

    test('moleculer-amqp: calls and casts through RabbitMQ', { timeout: 120_000 }, async () => {
      const { report, output } = await run('moleculer-amqp', ['moleculer-amqp'], ['latency', 'throughput', 'cast', 'fanout', 'notify'], url());
      checkMoleculer(report, output, 'moleculer-amqp');
    });
  });
});
