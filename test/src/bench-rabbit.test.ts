/**
 * `hybridbus bench` against a real RabbitMQ: the hybridbus rabbit contender, its raw amqplib
 * baseline and Python oslo.messaging run every scenario (quick, tiny durations); every
 * (contender, metric) gets a finite positive median and the non-raw ones a finite ratio to
 * raw-amqplib. No child process of the run may be left behind.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DEFAULTS, QUICK, runBench } from '@hybridbus/benchmarks';
import { startRabbitMQ, type RabbitMQServer } from './harness/launcher.js';

const PYTHON = '/usr/bin/python3';
const haveOslo = fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import oslo_messaging'], { stdio: 'ignore' }).status === 0;

/** Processes whose command line carries a spec of this run (its topics name our pid). */
function leftovers(): string[] {
  const mark = `"topic":"bench${process.pid}x`;
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(mark)) found.push(`${pid}: ${cmd.split('\0').slice(0, 3).join(' ')}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

let rabbit: RabbitMQServer;
let dir: string;
before(async () => {
  rabbit = await startRabbitMQ({ plugins: [] });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-rabbit-'));
});
after(async () => {
  await rabbit?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('bench: rabbit, raw-amqplib and oslo side by side, every scenario', { timeout: 300_000 }, async () => {
  const lines: string[] = [];
  const json = path.join(dir, 'bench.json');
  const contenders = ['rabbit', 'raw-amqplib', 'oslo'];
  const report = await runBench({
    ...DEFAULTS,
    ...QUICK,
    rabbitUrl: rabbit.url.replace(/^amqp:/, 'rabbit:'),
    contenders,
    scenarios: ['latency', 'throughput', 'cast', 'fanout', 'notify'],
    payload: 100,
    durationMs: 250,
    warmupMs: 150,
    warmupCalls: 200,
    latencyCalls: 300,
    inflight: [16, 256],
    fanoutServers: [1, 10],
    fanoutProbes: 3,
    pin: false,
    json,
    html: path.join(dir, 'bench.html'),
    command: 'bench-rabbit.test',
    out: (l: string) => lines.push(l),
    note: (l: string) => lines.push(l),
  });
  const output = lines.join('\n');
  assert.deepEqual(report.errors ?? [], [], output);
  assert.deepEqual(JSON.parse(fs.readFileSync(json, 'utf8')).summaries, report.summaries);

  const skipped = report.contenders.filter((c) => c.skipped);
  assert.deepEqual(
    skipped.map((c) => c.id),
    haveOslo ? [] : ['oslo'],
    output,
  );
  const ran = contenders.filter((id) => !skipped.some((c) => c.id === id));
  assert.equal(report.metrics.length, 4 + 2 + 1 + 4 + 1, 'latency p50/p90/p99/max, 2 throughputs, cast, 2 × fanout rate/complete, notify');
  for (const m of report.metrics) {
    for (const id of ran) {
      const s = report.summaries.find((x) => x.metric === m.id && x.contender === id);
      assert.ok(s, `no summary for ${id} ${m.id}\n${output}`);
      assert.ok(Number.isFinite(s.median) && s.median > 0, `${id} ${m.id}: median ${s.median}\n${output}`);
      if (id === 'raw-amqplib') {
        assert.equal(s.baseline, undefined);
      } else {
        assert.equal(s.baseline, 'raw-amqplib', `${id} ${m.id}`);
        assert.ok(s.ratio !== undefined && Number.isFinite(s.ratio) && s.ratio > 0, `${id} ${m.id}: ratio ${s.ratio}\n${output}`);
      }
    }
  }
  assert.match(output, /raw-amqplib/);
  assert.deepEqual(leftovers(), [], 'child processes of the bench outlived it');
});
