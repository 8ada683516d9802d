/**
 * zmq-direct's delivery promises under the shapes that broke them: a busy server answering a
 * cast and a call packed in one message, refused CURVE clients retrying, acked casts whose
 * server dies while it still holds them, and inputs chosen to exhaust a server's memory.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import * as zmq from 'zeromq';
import { Bus, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import { curveKeyPair, FRAME_VERSION } from '@hybridbus/zmq-direct';
import { freshTopic, recordingLogger, tempDir } from './util.js';
import { busesClosedAfter, cfg, driverOf, zmqUrl } from './zmq/buses.js';
import { startChild, type ChildServer } from './zmq/children.js';

const kids: ChildServer[] = [];
after(() => Promise.allSettled(kids.map((k) => k.kill())));
const { bus } = busesClosedAfter();
const url = zmqUrl;
const driver = driverOf;

/** A record as the library's client writes it: kind byte, then JSON. */
const record = (kind: 's' | 'c' | 'f' | 'n', body: Record<string, unknown>): string => kind + JSON.stringify(body);
const request = (method: string, args: Record<string, unknown>, uniqueId: string): Record<string, unknown> => ({ method, args, _unique_id: uniqueId });

describe('a busy server answers everything', () => {
  test('an acked cast and a call packed in one message, 20,000 times: every reply and every ack comes back', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    const server = await bus(url(dir));
    let casts = 0;
    await server.rpcServer({ topic, server: 's' }, [{ echo: (_c: Context, a: Record<string, unknown>) => a, note: () => void casts++ }]).start();
    const address = await driver(server).address();
    const key = `openstack/${topic}`;

    const dealer = new zmq.Dealer({ linger: 0 });
    dealer.connect(`tcp://${address}`);
    const n = 20_000;
    const replies = new Set<string>();
    const acks = new Set<string>();
    const done = (async () => {
      for await (const [version, ...frames] of dealer) {
        assert.ok(version?.equals(FRAME_VERSION));
        for (const f of frames) {
          for (const r of f.toString().split('\n')) {
            const body = JSON.parse(r.slice(1)) as { i: string };
            if (r[0] === 'r') replies.add(body.i);
            else if (r[0] === 'k') acks.add(body.i);
          }
        }
        if (replies.size === n && acks.size === n) return;
      }
    })();
    for (let i = 0; i < n; i++) {
      const cast = record('s', { i: `a${i}`, k: key, m: request('note', {}, `u-a${i}`) });
      const call = record('c', { i: `c${i}`, k: key, m: request('echo', { i }, `u-c${i}`) });
      await dealer.send([FRAME_VERSION, `${cast}\n${call}`]);
    }
    const deadline = setTimeout(() => dealer.close(), 60_000);
    await done.catch(() => undefined);
    clearTimeout(deadline);
    dealer.close();
    assert.equal(replies.size, n, `replies: ${replies.size} of ${n}`);
    assert.equal(acks.size, n, `acks: ${acks.size} of ${n}`);
    assert.equal(casts, n);
  });
});

/** Run a client in its own process: a libzmq assertion would abort it (SIGABRT). */
const retryingClient = (u: string, topic: string, attempts: number, execArgv: string[] = []): Promise<{ code: number | null; signal: string | null; errors: Record<string, number>; stderr: string }> =>
  new Promise((resolve) => {
    const script = fileURLToPath(new URL('./zmq/retrying-client.js', import.meta.url));
    const proc = fork(script, [JSON.stringify({ url: u, topic, attempts })], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv });
    let errors: Record<string, number> = {};
    // The end of what it printed, for the failure message (a crash's stack).
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    proc.on('message', (m: { errors: Record<string, number> }) => (errors = m.errors));
    proc.on('close', (code, signal) => resolve({ code, signal, errors, stderr }));
  });

describe('a pool smaller than the servers in use', () => {
  test('pool_max=1 over two servers: each call evicts the other connection and dials again, 400 times, no abort', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    for (const name of ['a', 'b']) {
      const b = await bus(url(dir));
      await b.rpcServer({ topic, server: name }, [{ echo: () => name }]).start();
    }
    const r = await retryingClient(url(dir, '&pool_max=1'), topic, 400);
    assert.equal(r.signal, null, `the client died with ${r.signal}`);
    assert.deepEqual(r.errors, { ok: 400 });
  });

  test('the same under a storm of signals (V8\'s sampling profiler, every µs): no dial or socket set-up fails with EINTR, 3,000 calls and casts', { timeout: 120_000 }, async () => {
    // A signal interrupts libzmq's poll of its command pipe inside zmq_connect, zmq_disconnect
    // and zmq_socket_monitor, and zeromq.js throws EINTR from those (it retries only sends,
    // receives and binds). In a service that is any signal: a profiler's SIGPROF, SIGCHLD.
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    for (const name of ['a', 'b']) {
      const b = await bus(url(dir));
      await b.rpcServer({ topic, server: name }, [{ echo: () => name }]).start();
    }
    const attempts = 3000;
    const prof = tempDir('hb-zmq-prof-');
    const r = await retryingClient(url(dir, '&pool_max=1'), topic, attempts, ['--cpu-prof', `--cpu-prof-dir=${prof}`, '--cpu-prof-interval=1']);
    assert.equal(r.signal, null, `the client died with ${r.signal}`);
    assert.deepEqual({ code: r.code, errors: r.errors }, { code: 0, errors: { ok: attempts } }, r.stderr);
    // The storm happened: the profiler that sends the signals wrote its profile.
    assert.ok(fs.readdirSync(prof).some((f) => f.endsWith('.cpuprofile')), 'no CPU profile was written');
  });
});

describe('refused CURVE clients', () => {
  const serverKeys = curveKeyPair();
  const allowed = curveKeyPair();
  const curveQuery = (keys: { publicKey: string; secretKey: string }, extra = ''): string =>
    `&curve=true&curve_public_key=${encodeURIComponent(keys.publicKey)}&curve_secret_key=${encodeURIComponent(keys.secretKey)}${extra}`;

  test('a client with a key not on the allowlist, and one without CURVE, retrying 200 times: AuthenticationFailed every time, no abort', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    let reached = 0;
    const server = await bus(url(dir, curveQuery(serverKeys, `&curve_allowed_clients=${encodeURIComponent(allowed.publicKey)}`)));
    await server.rpcServer({ topic, server: 's' }, [{ echo: () => void reached++ }]).start();
    const attempts = 200;
    const results = await Promise.all([
      retryingClient(url(dir, curveQuery(curveKeyPair(), '&connect_timeout=3000')), topic, attempts),
      retryingClient(url(dir, curveQuery(curveKeyPair(), '&connect_timeout=3000')), topic, attempts),
      // A client without CURVE dials the server in plain text, and the server refuses that handshake.
      retryingClient(url(dir, '&connect_timeout=3000'), topic, attempts),
    ]);
    for (const r of results) {
      assert.equal(r.signal, null, `a refused client died with ${r.signal}`);
      assert.equal(r.code, 0);
      assert.deepEqual(r.errors, { AuthenticationFailed: attempts });
    }
    assert.equal(reached, 0);
  });
});

describe('acked casts are acked once handled', () => {
  test('3 servers with a 20 ms endpoint, kill -9 of one halfway through 600 acked casts: every resolved cast was handled', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    const u = url(dir, '&acks=true&ack_timeout=500');
    const handled = new Map<number, number>();
    let recorded: (() => void) | undefined;
    const onRecord = (r: { i: number }): void => {
      handled.set(r.i, (handled.get(r.i) ?? 0) + 1);
      recorded?.();
    };
    const servers: ChildServer[] = [];
    for (const name of ['a', 'b', 'c']) {
      const c = await startChild(cfg(u), [{ topic, server: name }], onRecord);
      kids.push(c);
      servers.push(c);
    }
    const client = (await bus(u)).rpcClient({ topic });
    const n = 600;
    const resolved = new Set<number>();
    const failed: string[] = [];
    let next = 0;
    let killed: Promise<void> | undefined;
    // 30 in flight, so the victim holds work (started and queued) when it dies.
    const worker = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        if (i === n / 2) killed = servers[0]?.kill('SIGKILL');
        try {
          await client.cast({}, 'slowRecord', { i });
          resolved.add(i);
        } catch (e) {
          failed.push((e as Error).name);
        }
      }
    };
    await Promise.all(Array.from({ length: 30 }, worker));
    await killed;
    // A survivor's report travels over IPC and may come after its ack: wait for it, bounded.
    const unreported = (): number[] => [...resolved].filter((i) => !handled.has(i));
    const deadline = Date.now() + 10_000;
    while (unreported().length > 0 && Date.now() < deadline) {
      await new Promise<void>((r) => {
        recorded = r;
        setTimeout(r, 100);
      });
    }
    const lost = unreported();
    assert.deepEqual(lost, [], `${lost.length} casts resolved at the client were never handled by any endpoint`);
    assert.deepEqual(failed, [], 'the survivors take over: no cast fails');
    const duplicates = [...handled.values()].filter((k) => k > 1).length;
    // At-least-once across servers: only what the victim finished and could not ack may run twice.
    assert.ok(duplicates <= 60, `${duplicates} casts handled twice`);
  });
});

describe('memory a sender cannot grow', () => {
  /** A raw DEALER to `address` that collects the records it gets back. */
  const rawClient = (address: string): { dealer: zmq.Dealer; records: Array<{ kind: string; body: Record<string, unknown> }>; until(n: number): Promise<void> } => {
    const dealer = new zmq.Dealer({ linger: 0 });
    dealer.connect(`tcp://${address}`);
    const records: Array<{ kind: string; body: Record<string, unknown> }> = [];
    let wake: (() => void) | undefined;
    void (async () => {
      for await (const [, ...frames] of dealer) {
        for (const f of frames) for (const r of f.toString().split('\n')) records.push({ kind: r[0] ?? '', body: JSON.parse(r.slice(1)) as Record<string, unknown> });
        wake?.();
      }
    })().catch(() => undefined);
    return {
      dealer,
      records,
      until: async (n) => {
        while (records.length < n) await new Promise<void>((r) => (wake = r));
      },
    };
  };

  test('de-duplication ids are bounded by length and by count (dedup_max)', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    const server = await bus(url(dir, '&dedup_max=100'));
    let casts = 0;
    await server.rpcServer({ topic, server: 's' }, [{ note: () => void casts++ }]).start();
    const raw = rawClient((await driver(server).address()) as string);
    const key = `openstack/${topic}`;
    // 400 casts with 256 KiB ids took a server from 12 to 110 MB of heap when ids were kept whole.
    const huge = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 400; i++) await raw.dealer.send([FRAME_VERSION, record('s', { i: `h${i}`, k: key, m: request('note', {}, `${huge}${i}`) })]);
    await raw.until(400);
    assert.ok(raw.records.every((r) => r.kind === 'x' && r.body['code'] === 'HB_MALFORMED'), 'an over-long _unique_id is refused as malformed');
    assert.equal(casts, 0);
    // A correlation id or a key too long to be ours is dropped unanswered (answers echo ids).
    const dropped = (await driver(server).counters())['dropped'] ?? 0;
    await raw.dealer.send([FRAME_VERSION, record('s', { i: 'x'.repeat(10_000), k: key, m: request('note', {}, 'long-i') })]);
    await raw.dealer.send([FRAME_VERSION, record('s', { i: 'long-k', k: 'k'.repeat(10_000), m: request('note', {}, 'long-k') })]);
    while (((await driver(server).counters())['dropped'] ?? 0) < dropped + 2) await new Promise((r) => setImmediate(r));
    assert.equal(raw.records.length, 400, 'neither got an answer');
    // Ordinary ids: remembered up to dedup_max, the oldest forgotten first.
    for (let i = 0; i < 1000; i++) await raw.dealer.send([FRAME_VERSION, record('s', { i: `c${i}`, k: key, m: request('note', {}, `u${i}`) })]);
    await raw.until(1400);
    const counters = await driver(server).counters();
    assert.equal(casts, 1000);
    assert.ok((counters['dedupIds'] ?? Infinity) <= 100, `remembers ${counters['dedupIds']} ids (dedup_max=100)`);
    assert.ok((counters['dedupEvicted'] ?? 0) >= 900);
    // A recent one is still recognised: answered, not run again.
    await raw.dealer.send([FRAME_VERSION, record('s', { i: 'again', k: key, m: request('note', {}, 'u999'), r: 1 })]);
    await raw.until(1401);
    assert.deepEqual(raw.records.at(-1), { kind: 'k', body: { i: 'again' } });
    assert.equal(casts, 1000);
    assert.equal((await driver(server).counters())['duplicatesDropped'], 1);
    raw.dealer.close();
  });
});

describe('a client that does not read its replies', () => {
  test('its replies are bounded by max_queued and dropped with one warning, counted; the server keeps serving others', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    const logger = recordingLogger();
    const server = await Bus.create(cfg(url(dir, '&max_queued=50')), { logger });
    try {
      await server.rpcServer({ topic, server: 's' }, [{ echo: (_c: Context, a: Record<string, unknown>) => a }]).start();
      const dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 100_000 });
      dealer.connect(`tcp://${(await driver(server).address()) as string}`);
      const key = `openstack/${topic}`;
      const pad = 'p'.repeat(2000);
      const deadline = Date.now() + 30_000;
      // Calls whose replies it never reads: ZeroMQ's pipe and TCP fill, then the server's queue.
      for (let i = 0; ((await driver(server).counters())['repliesDropped'] ?? 0) === 0; i++) {
        assert.ok(Date.now() < deadline, 'the server never had to drop a reply');
        for (let k = 0; k < 500; k++) await dealer.send([FRAME_VERSION, record('c', { i: `c${i}.${k}`, k: key, m: request('echo', { pad }, `u${i}.${k}`) })]);
      }
      for (let k = 0; k < 500; k++) await dealer.send([FRAME_VERSION, record('c', { i: `more${k}`, k: key, m: request('echo', { pad }, `m${k}`) })]);
      while (((await driver(server).counters())['repliesDropped'] ?? 0) < 500) await new Promise((r) => setTimeout(r, 10));
      const warnings = logger.records.filter((r) => r.level === 'warn' && /replies it does not read/.test(r.msg ?? ''));
      assert.equal(warnings.length, 1, 'one warning for a client that stays full, however many replies it drops');
      // Another client is answered meanwhile.
      const other = (await bus(url(dir))).rpcClient({ topic }, { timeout: 10_000 });
      assert.deepEqual(await other.call({}, 'echo', { ok: 1 }), { ok: 1 });
      dealer.close();
    } finally {
      await server.close();
    }
  });
});

describe('backpressure', () => {
  test('a notification listener counts towards server_backlog: a blocked listener makes the server stop reading, and loses nothing', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    const server = await bus(url(dir, '&server_backlog=100'));
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const got: number[] = [];
    const listener = server.notificationListener([{ topic }], [{ info: async (_c: unknown, _p: string, _e: string, payload: unknown) => (await gate, void got.push((payload as { i: number }).i)) }], { maxConcurrency: 1 });
    await listener.start();
    // Fire-and-forget, so the notifications pile up at the listener instead of waiting for it.
    const notifier = (await bus(url(dir, '&acks=none'))).notifier({ publisherId: 'p', topics: [topic] });
    const n = 3000;
    for (let i = 0; i < n; i++) await notifier.info({}, 'e', { i });
    const deadline = Date.now() + 10_000;
    while (((await driver(server).counters())['paused'] ?? 0) < 1) {
      assert.ok(Date.now() < deadline, 'the server never paused reading for the blocked listener');
      await new Promise((r) => setImmediate(r));
    }
    const taken = (await driver(server).counters())['received'] ?? 0;
    assert.ok(taken < n, `the server read ${taken} of ${n} while its listener was blocked`);
    open();
    while (got.length < n) {
      assert.ok(Date.now() < deadline + 30_000, `only ${got.length} of ${n} notifications handled`);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual([...got].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
    await listener.stop();
  });
});
