/**
 * libzmq sizes a context's socket table when its first socket is made; zmq-direct raises the
 * limit before that, so one process can host hundreds of servers (each 3 libzmq sockets: 342
 * filled the default 1023, and raising it later was silently ignored).
 */
import { execFile } from 'node:child_process';
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
