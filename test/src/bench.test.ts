/** `hybridbus bench` as a user runs it: bad input, a quick run on the embedded default, and one with RabbitMQ. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { BenchReport } from '@hybridbus/benchmarks';
import { sharedServers, startRabbitMQ } from './harness/launcher.js';

const bin = join(createRequire(import.meta.url).resolve('@hybridbus/cli/package.json'), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'hb-bench-test-'));
/** Tiny settings: this checks the plumbing, not the figures. */
const TINY = ['--quick', '--duration-ms', '150', '--warmup-ms', '50', '--warmup-calls', '100', '--latency-calls', '200', '--fanout-servers', '1,3', '--fanout-probes', '2', '--inflight', '4'];

function bench(args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  // Without HYBRIDBUS_* from the caller's environment, so the embedded default is what runs.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HYBRIDBUS_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, 'bench', ...args], { env, timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const noStack = (s: string): void => assert.doesNotMatch(s, /^\s+at /m, 'no stack trace');

describe('hybridbus bench', () => {
  test('bad input: non-zero exit and one line naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--rounds', '0'], /--rounds.*integer ≥ 1/],
      [['--rounds', 'three'], /--rounds.*integer ≥ 1/],
      [['--scenarios', 'latency,speed'], /--scenarios.*"speed".*latency,throughput,cast,fanout,notify/],
      [['--payload', 'big'], /--payload.*oslo/],
      [['--contenders', 'zmq,nope', '--scenarios', 'latency'], /--contenders: unknown "nope"; expected some of .*raw-zeromq/],
    ];
    const runs = await Promise.all(cases.map(([args]) => bench(args)));
    runs.forEach((r, i) => {
      const [args, want] = cases[i] as [string[], RegExp];
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, want);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      noStack(r.stderr);
    });
  });

  test('an unreachable --rabbit-url skips rabbit with one line and exits 0', async () => {
    const json = join(dir, 'skip.json');
    const r = await bench(['--rabbit-url', 'rabbit://guest:guest@127.0.0.1:1/', '--contenders', 'rabbit,hybrid', '--scenarios', 'latency', '--json', json]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^skipped rabbit — rabbit: ECONNREFUSED 127\.0\.0\.1:1$/m);
    assert.match(r.stderr, /^skipped hybrid — /m);
    noStack(r.stderr);
    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    assert.equal(report.contenders.find((c) => c.id === 'rabbit')?.skipped, 'rabbit: ECONNREFUSED 127.0.0.1:1');
  });

  test('--quick on the embedded default: every scenario for zmq and raw-zeromq, with ratios', async () => {
    const json = join(dir, 'quick.json');
    const r = await bench([...TINY, '--contenders', 'zmq,raw-zeromq', '--json', json, '--html', join(dir, 'quick.html')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /latency\.p50\s+zmq\s+[\d,.]+\s+µs\s+[\d.]+× raw-zeromq/);
    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    assert.equal(report.errors, undefined);
    const metrics = ['latency.p50', 'latency.p99', 'throughput.4', 'cast', 'fanout.1.rate', 'fanout.3.rate', 'fanout.3.complete', 'notify'];
    for (const m of metrics) {
      const zmq = report.summaries.find((s) => s.metric === m && s.contender === 'zmq');
      const raw = report.summaries.find((s) => s.metric === m && s.contender === 'raw-zeromq');
      assert.ok(raw && Number.isFinite(raw.median) && raw.median > 0, `raw-zeromq ${m}`);
      assert.ok(zmq && Number.isFinite(zmq.median) && zmq.median > 0, `zmq ${m}`);
      assert.equal(zmq.baseline, 'raw-zeromq');
      assert.ok(Number.isFinite(zmq.ratio), `zmq ${m} ratio`);
    }
    assert.ok(report.summaries.find((s) => s.metric === 'cast' && s.contender === 'zmq')?.cpuUsPerMsg?.server);
    assert.deepEqual(report.metrics.find((m) => m.id === 'latency.p50')?.targets?.['zmq'], { op: '<=', ratio: 1.05 });
    assert.deepEqual(new Set(report.latency?.map((l) => l.contender)), new Set(['zmq', 'raw-zeromq']));
  });

  describe('with RabbitMQ', () => {
    const servers = sharedServers({ rabbit: () => startRabbitMQ({ plugins: [] }) });

    test('rabbit and hybrid figures, hybrid compared per pattern', async () => {
      const json = join(dir, 'rabbit.json');
      const url = servers.rabbit.url.replace(/^amqp:/, 'rabbit:');
      const r = await bench([...TINY, '--rabbit-url', url, '--contenders', 'rabbit,hybrid,raw-zeromq', '--scenarios', 'latency,fanout,notify', '--fanout-servers', '3', '--json', json]);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
      assert.equal(report.errors, undefined);
      for (const c of ['rabbit', 'hybrid']) {
        for (const m of ['latency.p50', 'fanout.3.rate', 'fanout.3.complete', 'notify']) {
          const s = report.summaries.find((x) => x.metric === m && x.contender === c);
          assert.ok(s && Number.isFinite(s.median) && s.median > 0, `${c} ${m}`);
        }
      }
      // The router carries calls on zmq: compared with raw zeromq; fanout rides rabbit: raw amqplib.
      assert.equal(report.summaries.find((s) => s.metric === 'latency.p50' && s.contender === 'hybrid')?.baseline, 'raw-zeromq');
      assert.ok(Number.isFinite(report.summaries.find((s) => s.metric === 'latency.p50' && s.contender === 'hybrid')?.ratio));
      assert.equal(report.summaries.find((s) => s.metric === 'fanout.3.rate' && s.contender === 'hybrid')?.baseline, 'raw-amqplib');
      assert.equal(report.summaries.find((s) => s.metric === 'notify' && s.contender === 'rabbit')?.baseline, 'raw-amqplib');
    });
  });
});
