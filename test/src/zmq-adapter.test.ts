/**
 * What packages/zmq-direct/src/zeromq-adapter.ts relies on in zeromq.js: if one of these fails
 * after a zeromq.js upgrade, the adapter (and the README's note on it) must change with it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import * as zmq from 'zeromq';
import { Bus } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import { curveKeyPair, DEFERRED_OPTION_WARNING } from '@hybridbus/zmq-direct';
import { freshTopic, tempDir } from './util.js';

const buses: Bus[] = [];
after(() => Promise.allSettled(buses.map((b) => b.close())));

/**
 * Warnings emitted through process.emitWarning while `fn` runs, the way the adapter sees them:
 * caught there (not printed to the test output), everything else passed on.
 */
async function warningsDuring(fn: () => Promise<void> | void): Promise<string[]> {
  const seen: string[] = [];
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error) => void seen.push(String(warning instanceof Error ? warning.message : warning))) as typeof process.emitWarning;
  try {
    await fn();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.emitWarning = emit;
  }
  return seen;
}

test('zeromq.js warns with exactly the text the adapter filters when a connected socket gets a CURVE server key', async () => {
  const keys = curveKeyPair();
  const socket = new zmq.Router({ curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey, linger: 0 });
  try {
    socket.connect('tcp://127.0.0.1:1');
    const seen = await warningsDuring(() => void (socket.curveServerKey = curveKeyPair().publicKey));
    assert.deepEqual(seen, [DEFERRED_OPTION_WARNING]);
  } finally {
    socket.close();
  }
});

test("zeromq.js warns with that text when a connected ROUTER dials again under a routing id (its own Router.connect sets it)", async () => {
  const socket = new zmq.Router({ linger: 0 });
  try {
    socket.connect('tcp://127.0.0.1:1', { routingId: 'peer-1' });
    const seen = await warningsDuring(() => socket.connect('tcp://127.0.0.1:2', { routingId: 'peer-2' }));
    assert.deepEqual(seen, [DEFERRED_OPTION_WARNING]);
  } finally {
    socket.close();
  }
});

test('a plain client dialling several servers (in other processes: other sockets) prints no warning, and reaches them', async () => {
  const dir = tempDir('hb-zmq-adapter-');
  const url = `zmq://?matchmaker=local:${dir}`;
  const topic = freshTopic();
  for (const name of ['a', 'b', 'c']) {
    const b = await Bus.create({ transports: { default: url } });
    buses.push(b);
    await b.rpcServer({ topic, server: name }, [{ whoami: () => name }]).start();
  }
  const cb = await Bus.create({ transports: { default: url } });
  buses.push(cb);
  const rpc = cb.rpcClient({ topic });
  const answers = new Set<unknown>();
  const seen = await warningsDuring(async () => {
    for (let i = 0; i < 6; i++) answers.add(await rpc.call({}, 'whoami'));
    await rpc.prepare({ fanout: true }).cast({}, 'whoami');
  });
  assert.deepEqual([...answers].sort(), ['a', 'b', 'c']);
  assert.deepEqual(seen, []);
});

test('a CURVE client dialling several servers prints no warning, and reaches them', async () => {
  const dir = tempDir('hb-zmq-adapter-');
  const server = curveKeyPair();
  const client = curveKeyPair();
  const q = (k: { publicKey: string; secretKey: string }): string =>
    `zmq://?matchmaker=local:${dir}&curve=true&curve_public_key=${encodeURIComponent(k.publicKey)}&curve_secret_key=${encodeURIComponent(k.secretKey)}`;
  const topic = freshTopic();
  for (const name of ['a', 'b', 'c']) {
    const b = await Bus.create({ transports: { default: q(server) } });
    buses.push(b);
    await b.rpcServer({ topic, server: name }, [{ whoami: () => name }]).start();
  }
  const cb = await Bus.create({ transports: { default: q(client) } });
  buses.push(cb);
  const rpc = cb.rpcClient({ topic });
  const answers = new Set<unknown>();
  const seen = await warningsDuring(async () => {
    for (let i = 0; i < 6; i++) answers.add(await rpc.call({}, 'whoami'));
  });
  assert.deepEqual([...answers].sort(), ['a', 'b', 'c']);
  assert.deepEqual(seen, []);
});

test('under a storm of signals (V8\'s sampling profiler, every µs) observe() gives every one of 3,000 sockets its event observer', { timeout: 120_000 }, async () => {
  // An interrupted observer is retried; its memory, and so its inproc monitor address, is often
  // reused at once while libzmq's reaper still holds the address (EADDRINUSE). A single retry
  // failed 10–36 times in 3,000 here.
  const prof = tempDir('hb-zmq-prof-');
  const script = fileURLToPath(new URL('./zmq/observe-storm.js', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${prof}`, '--cpu-prof-interval=1', script, '3000'], { timeout: 110_000 });
  assert.deepEqual(JSON.parse(stdout), { ok: 3000 });
  // The storm happened: the profiler that sends the signals wrote its profile.
  assert.ok(fs.readdirSync(prof).some((f) => f.endsWith('.cpuprofile')), 'no CPU profile was written');
});
