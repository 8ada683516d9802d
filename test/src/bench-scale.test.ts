/** `hybridbus bench --scenario scale` as a user runs it: a small run's figures, its cleanup, and the Redis skip. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BenchReport } from '@hybridbus/benchmarks';
import { tempDir } from './util.js';

const bin = join(createRequire(import.meta.url).resolve('@hybridbus/cli/package.json'), '..', 'dist', 'main.js');
const dir = tempDir('hb-bench-scale-test-');
/** In the environment of the CLI and so of every child it starts: how leftovers are found. */
const MARK = `HB_SCALE_TEST_MARK=${process.pid}x${Date.now()}`;

function bench(args: string[], timeoutMs = 90_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HYBRIDBUS_'))), HB_SCALE_TEST_MARK: MARK.split('=')[1] as string };
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, 'bench', ...args], { env, timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Pids of live processes carrying MARK in their environment. */
function marked(): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(MARK)) out.push(Number(pid));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

test('a small scale run: every figure finite and sane, the raw baseline there, no process left', { timeout: 120_000 }, async () => {
  const json = join(dir, 'scale.json');
  const r = await bench(['--scenario', 'scale', '--scale-steps', '5,20', '--scale-procs', '2', '--scale-probes', '2', '--json', json, '--html', join(dir, 'scale.html')]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
  const scale = report.scale;
  assert.ok(scale, 'report.scale is filled');
  assert.equal(scale.contender, 'zmq');
  assert.deepEqual(scale.points.map((p) => p.n), [5, 20]);
  for (const p of scale.points) {
    const at = `n=${p.n}: ${JSON.stringify(p)}`;
    for (const [k, v] of Object.entries(p)) assert.ok(typeof v === 'number' && Number.isFinite(v), `${k} finite at ${at}`);
    assert.equal(p.procs, 2, at);
    assert.ok(p.startupMs > 0 && p.registerMs > 0, at);
    assert.ok(p.fanoutCompleteMs > 0, at);
    // One TCP connection per peer, plus the client ROUTER's own few fds spread over n.
    assert.ok(p.clientFdsPerPeer >= 0.9 && p.clientFdsPerPeer <= (p.n >= 20 ? 1.3 : 2), at);
    assert.ok(p.clientFds > p.n && p.clientRssKiB > 0, at);
    assert.ok(p.nsRecords >= p.n, at);
    // One lookup per fanout (warm-up + 2 probes), each answered from the backend or the cache.
    assert.equal(p.nsLookups, 3, at);
    const x = p as unknown as Record<string, number>;
    assert.ok((x['rawClientFdsPerPeer'] ?? NaN) >= 0.9 && (x['rawClientFdsPerPeer'] ?? NaN) <= 1.1, `raw comparison at ${at}`);
    assert.ok((x['fdRatio'] ?? NaN) > 0, at);
  }
  assert.ok(scale.notes.length >= 5 && scale.notes.some((l) => l.includes('10,000')), scale.notes.join('\n'));
  assert.match(r.stdout, /fds\/peer/);
  assert.deepEqual(report.settings['scaleSteps'], [5, 20]);
  // Every child has been stopped before the CLI exits.
  assert.deepEqual(marked(), []);
});

test('300 servers over 3 processes, a client pool of 64: every fanout reaches every server', { timeout: 120_000 }, async () => {
  // pool_max far below n: each fanout cycles the pool (issue 15); the scenario fails a step
  // unless every server process reports all of its servers reached.
  const config = join(dir, 'pool.json');
  writeFileSync(config, JSON.stringify({ transports: { zmq: `zmq://?matchmaker=local:${tempDir('hb-scale-ns-')}&pool_max=64` }, patterns: { call: 'zmq', cast: 'zmq', fanout: 'zmq', notify: 'zmq' } }));
  const json = join(dir, 'pool-out.json');
  const r = await bench(['--config', config, '--scenario', 'scale', '--scale-steps', '300', '--scale-procs', '3', '--scale-probes', '2', '--json', json, '--html', join(dir, 'pool.html')], 110_000);
  assert.equal(r.code, 0, r.stderr);
  const scale = (JSON.parse(readFileSync(json, 'utf8')) as BenchReport).scale;
  assert.deepEqual(scale?.points.map((p) => p.n), [300], r.stderr);
  const p = scale?.points[0] as unknown as Record<string, number>;
  assert.ok((p['fanoutCompleteMs'] ?? NaN) > 0, JSON.stringify(p));
  // The pool held at most 64 connections while 300 servers were reached.
  assert.ok((p['clientFds'] ?? Infinity) < 64 + 100, JSON.stringify(p));
  assert.deepEqual(marked(), []);
});

test('scale on a Redis name service that does not answer: skipped with one line', { timeout: 60_000 }, async () => {
  const config = join(dir, 'redis.json');
  writeFileSync(config, JSON.stringify({ transports: { zmq: 'zmq://?matchmaker=redis://127.0.0.1:1' }, patterns: { call: 'zmq', cast: 'zmq', fanout: 'zmq', notify: 'zmq' } }));
  const json = join(dir, 'redis-out.json');
  const r = await bench(['--config', config, '--scenario', 'scale', '--scale-steps', '3', '--json', json, '--html', join(dir, 'redis.html')]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.includes('skipped scale'));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0] as string, /redis name service: .*127\.0\.0\.1:1/);
  assert.equal((JSON.parse(readFileSync(json, 'utf8')) as BenchReport).scale, undefined);
  assert.deepEqual(marked(), []);
});
