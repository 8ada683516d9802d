/**
 * libzmq sizes a context's socket table when its first socket is made; zmq-direct raises the
 * limit before that, so one process can host hundreds of servers (each 3 libzmq sockets: 342
 * filled the default 1023, and raising it later was silently ignored).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));

test('one process hosts 400 zmq:// servers, and a call reaches each', { timeout: 180_000 }, async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(here, 'zmq/many-servers.js'), '400'], { timeout: 170_000 }).catch((e: { stdout?: string; message: string }) => ({ stdout: e.stdout ?? e.message }));
  assert.equal(stdout.trim(), 'ok 400');
});

test('the same under a storm of signals (V8\'s sampling profiler, every µs): no server start or dial fails with EINTR', { timeout: 180_000 }, async () => {
  // Each server's event observer (a monitor socket pair) and each dial poll libzmq's command
  // pipe, which any signal interrupts; zeromq.js throws EINTR from those calls. Before the
  // adapter retried them, this failed at the 10th to 173rd server.
  const prof = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-zmq-prof-'));
  try {
    const argv = ['--cpu-prof', `--cpu-prof-dir=${prof}`, '--cpu-prof-interval=1', path.join(here, 'zmq/many-servers.js'), '400'];
    const { stdout } = await promisify(execFile)(process.execPath, argv, { timeout: 170_000 }).catch((e: { stdout?: string; message: string }) => ({ stdout: e.stdout ?? e.message }));
    assert.equal(stdout.trim(), 'ok 400');
    // The storm happened: the profiler that sends the signals wrote its profile.
    assert.ok(fs.readdirSync(prof).some((f) => f.endsWith('.cpuprofile')), 'no CPU profile was written');
  } finally {
    fs.rmSync(prof, { recursive: true, force: true });
  }
});
