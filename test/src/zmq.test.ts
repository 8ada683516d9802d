/** zmq-direct beyond the conformance suite: real sockets, servers in child processes. */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import * as zmq from 'zeromq';
import {
  AuthenticationFailed,
  Bus,
  ConfigError,
  ConnectionLost,
  MessageDeliveryFailure,
  MessageTooLarge,
  MessageUndeliverable,
  QueueFull,
  type ConfigInput,
} from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import { curveKeyPair, FRAME_VERSION, parseOptions, type ZmqDriver } from '@hybridbus/zmq-direct';
import { Collector, deferred, freshTopic, recordingLogger, tempDir } from './util.js';
import { startChild, type ChildServer } from './zmq/children.js';
import { connectionsTo, silentPeer } from './zmq/tcp.js';
import { freePort } from './harness/launcher.js';
import { createNameService } from '@hybridbus/nameservice';
import { busesClosedAfter, cfg, driverOf, zmqUrl } from './zmq/buses.js';

const kids: ChildServer[] = [];
after(() => Promise.allSettled(kids.map((k) => k.kill())));
const { bus, buses } = busesClosedAfter();

/** A fresh name-service directory: tests never see each other's servers. */
const nsDir = (): string => tempDir('hb-zmq-ns-');
const url = zmqUrl;
const driver = driverOf;
const child = async (u: string, servers: Array<{ topic: string; server: string }>, onRecord?: (r: { server: string; i: number }) => void) => {
  const c = await startChild(cfg(u), servers, onRecord);
  kids.push(c);
  return c;
};
const waitFor = async (what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('options', () => {
  test('bad options are ConfigErrors naming the option, the value and the expected form', () => {
    const bad = (q: string, ...parts: string[]) =>
      assert.throws(() => parseOptions(new URL(`zmq://?${q}`)), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        for (const p of parts) assert.ok(e.message.includes(p), `${e.message} lacks ${p}`);
        return true;
      });
    bad('heartbeat_interval=-5', 'heartbeat_interval', '"-5"', 'integer');
    bad('acks=maybe', 'acks', '"handled" (or true), "received", or "none" (or false)');
    bad('port_range=9000-8000', 'port_range', 'LOW-HIGH');
    bad('nosuch=1', '"nosuch" is unknown', 'matchmaker');
    for (const k of ['constructor', 'toString', '__proto__']) bad(`${k}=1`, `"${k}" is unknown`);
    bad('curve=true', 'curve_public_key');
    bad('curve=true&curve_public_key=short&curve_secret_key=short', 'curve_public_key', '40-character Z85');
    assert.throws(() => parseOptions(new URL('zmq://somehost:5555')), /query string/);
    const o = parseOptions(new URL('zmq://?acks=true&port_range=20000-20010&hot_topics=a,b'));
    assert.equal(o.acks, 'handled');
    assert.equal(parseOptions(new URL('zmq://')).acks, 'handled', 'acknowledged delivery is the default');
    assert.equal(parseOptions(new URL('zmq://?acks=false')).acks, 'none');
    assert.deepEqual(o.portRange, [20000, 20010]);
    assert.deepEqual([...o.hotTopics], ['a', 'b']);
  });

  test('a pool of thousands with the default heartbeats is warned of once, naming both options and the way out', async () => {
    const warnings = async (q: string): Promise<string[]> => {
      const logger = recordingLogger();
      const b = await Bus.create(cfg(url(nsDir(), q)), { logger });
      await b.close();
      return logger.records.filter((r) => r.level === 'warn' && /heartbeat_interval/.test(r.msg ?? '')).map((r) => r.msg ?? '');
    };
    const [w, ...more] = await warnings('&pool_max=20000&heartbeat_interval=1000');
    assert.equal(more.length, 0);
    assert.match(w ?? '', /pool_max=20000 with heartbeat_interval=1000 ms/);
    assert.match(w ?? '', /keep pool_max at most 4096 or set heartbeat_interval to at least 23842 ms/);
    assert.deepEqual(await warnings(''), [], 'the default pool');
    assert.deepEqual(await warnings('&pool_max=20000&heartbeat_interval=30000'), [], 'heartbeats slow enough');
    assert.deepEqual(await warnings('&pool_max=20000&heartbeat_interval=0'), [], 'heartbeats off');
  });
});

describe('failover and liveness', () => {
  test('a server killed mid-stream (kill -9): in-flight calls fail fast with ConnectionLost, the rest go to the survivor', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const a = await child(url(dir), [{ topic, server: 'a' }]);
    await child(url(dir), [{ topic, server: 'b' }]);
    const client = (await bus(url(dir))).rpcClient({ topic }, { timeout: 30_000 });
    const results: string[] = [];
    const failures: unknown[] = [];
    const t0 = Date.now();
    let killed = false;
    // 8 callers in parallel; server a dies after 100 answers.
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (results.length + failures.length < 400) {
          try {
            results.push(await client.call<string>({}, 'whoami'));
          } catch (e) {
            failures.push(e);
          }
          if (!killed && results.length >= 100) {
            killed = true;
            await a.kill('SIGKILL');
          }
        }
      }),
    );
    assert.ok(Date.now() - t0 < 15_000, 'nobody waited for the 30 s timeout');
    assert.ok(failures.length <= 8, `${failures.length} failures, at most the 8 in flight`);
    for (const f of failures) assert.ok(f instanceof ConnectionLost || f instanceof MessageUndeliverable, String(f));
    const afterKill = results.slice(120);
    assert.ok(afterKill.length > 200);
    assert.deepEqual(new Set(afterKill), new Set(['b']));
  });

  test("a dead server's record expires from the name service after its TTL", async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const a = await child(url(dir, '&ns_ttl=600'), [{ topic, server: 'a' }]);
    const ns = driver(await bus(url(dir, '&ns_ttl=600'))).nameService;
    const key = `openstack/${topic}`;
    assert.deepEqual((await ns.lookup(key)).map((r) => r.address), [a.address]);
    await a.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor('the record to expire', async () => (await ns.lookup(key)).length === 0, 5_000);
    assert.ok(Date.now() - killedAt >= 300, 'not before its TTL ran out');
  });
});

describe('static name service', () => {
  test('servers at fixed ports, hosts from config: calls, targeting and fanout work', async () => {
    const topic = freshTopic();
    const [p1, p2] = [await freePort(), await freePort()];
    const hosts = {
      [`openstack/${topic}`]: [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`],
      [`openstack/${topic}.s1`]: [`127.0.0.1:${p1}`],
      [`openstack/${topic}.s2`]: [`127.0.0.1:${p2}`],
    };
    const u = (port: number) => `zmq://?matchmaker=${encodeURIComponent(`static:${JSON.stringify(hosts)}`)}&port=${port}&heartbeat_interval=200`;
    const got = new Collector<string>();
    for (const [name, port] of [['s1', p1], ['s2', p2]] as const) {
      const s = (await bus(u(port))).rpcServer({ topic, server: name }, [{ who: () => name, hit: () => void got.push(name) }]);
      await s.start();
      assert.equal(await driver(buses.at(-1) as Bus).address(), `127.0.0.1:${port}`);
    }
    const client = (await bus(u(0))).rpcClient({ topic });
    assert.deepEqual(new Set(await Promise.all([1, 2, 3, 4].map(() => client.call({}, 'who')))), new Set(['s1', 's2']));
    assert.equal(await client.prepare({ server: 's2' }).call({}, 'who'), 's2');
    await client.prepare({ fanout: true }).cast({}, 'hit');
    assert.deepEqual([...(await got.until(2))].sort(), ['s1', 's2']);
  });
});

describe('connection pool', () => {
  test('the pool is capped with LRU eviction, idle connections close, hot topics keep theirs', async () => {
    const dir = nsDir();
    const topics = Array.from({ length: 6 }, (_, i) => `pool${i}-${freshTopic()}`);
    const servers = await child(url(dir), topics.map((topic) => ({ topic, server: 's' })));
    // One child hosts all six servers on one port; use six children for six ports.
    void servers;
    const hosts = [servers];
    for (let i = 1; i < 6; i++) hosts.push(await child(url(dir), [{ topic: topics[i] as string, server: `s${i}` }]));
    const ports = new Set(hosts.map((h) => h.port));
    const hot = topics[0] as string;
    const b = await bus(url(dir, `&pool_max=4&idle_ttl=400&hot_topics=${hot}`));
    // topic i is served by host i only: route each call to that host's server name
    const call = (i: number) => b.rpcClient({ topic: topics[i] as string, server: i === 0 ? 's' : `s${i}` }).call({}, 'whoami');
    for (let i = 0; i < 6; i++) {
      await call(i);
      assert.ok(connectionsTo(ports) <= 4, `${connectionsTo(ports)} connections with pool_max=4`);
    }
    const counters = await driver(b).counters();
    assert.ok((counters['evictions'] ?? 0) >= 2, `evictions: ${counters['evictions']}`);
    // Reused, not reopened: the three most recent peers and the hot one are still pooled.
    const connects = counters['connects'];
    for (let i = 3; i < 6; i++) await call(i);
    assert.equal((await driver(b).counters())['connects'], connects);
    await call(0); // the hot topic's host, evicting one idle peer
    await waitFor('idle connections to close', () => connectionsTo(ports) === 1, 5_000);
    assert.equal(connectionsTo(new Set([hosts[0]?.port as number])), 1, 'the hot topic keeps its connection');
  });

  test('a fanout to N servers opens N connections once and reuses them', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const got = new Collector<string>();
    const hosts = [];
    for (let i = 0; i < 5; i++) hosts.push(await child(url(dir), [{ topic, server: `s${i}` }], (r) => got.push(`${r.server}:${r.i}`)));
    const b = await bus(url(dir));
    const fan = b.rpcClient({ topic, fanout: true });
    for (let i = 0; i < 20; i++) await fan.cast({}, 'record', { i });
    await got.until(100);
    assert.equal(connectionsTo(new Set(hosts.map((h) => h.port))), 5);
    assert.equal((await driver(b).counters())['connects'], 5);
  });
});

describe('fanout to several servers of one process', () => {
  // One socket per process delivers a fanout record to every local server of its topic; an
  // endpoint may change the args and context it is given, and no other server may see that.
  test('each server gets args and a context of its own: what one changes, the others do not see', async () => {
    const topic = freshTopic();
    const b = await bus(url(nsDir()));
    const seen: Array<{ server: string; args: unknown; ctx: unknown }> = [];
    const all = deferred<void>();
    const servers = ['a', 'b', 'c'].map((server) =>
      b.rpcServer({ topic, server }, [
        {
          tick: (c: Record<string, unknown>, a: Record<string, unknown>) => {
            seen.push({ server, args: structuredClone(a), ctx: structuredClone(c) });
            a['n'] = server;
            (a['nested'] as { list: unknown[] }).list.push(server);
            (c as Record<string, unknown>)['user'] = server;
            if (seen.length === 3) all.resolve();
          },
        },
      ]),
    );
    for (const s of servers) await s.start();
    await b.rpcClient({ topic, fanout: true }).cast({ user: 'u' }, 'tick', { n: 1, nested: { list: [1, 2] } });
    await all.promise;
    assert.deepEqual(seen.map((s) => s.server).sort(), ['a', 'b', 'c']);
    for (const s of seen) {
      assert.deepEqual(s.args, { n: 1, nested: { list: [1, 2] } }, `${s.server} saw the args as sent`);
      assert.equal((s.ctx as Record<string, unknown>)['user'], 'u', `${s.server} saw the context as sent`);
    }
  });
});

describe('no silent loss', () => {
  test('acked casts survive a server kill: zero loss, no duplicate dispatch', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const opts = '&acks=true&ack_timeout=150&connect_timeout=500';
    const seen = new Collector<string>();
    const a = await child(url(dir, opts), [{ topic, server: 'a' }], (r) => seen.push(`${r.i}`));
    const bChild = await child(url(dir, opts), [{ topic, server: 'b' }], (r) => seen.push(`${r.i}`));
    const client = (await bus(url(dir, opts))).rpcClient({ topic });
    await Promise.all(Array.from({ length: 200 }, (_, i) => client.cast({}, 'record', { i })));
    await seen.until(200); // every acked cast so far was handled and reported
    assert.ok(a.records.length > 0 && bChild.records.length > 0, 'both servers took casts');
    a.proc.kill('SIGSTOP'); // frozen: whatever reaches it now is never handled
    const more = Promise.all(Array.from({ length: 200 }, (_, k) => client.cast({}, 'record', { i: 200 + k })));
    await new Promise((r) => setTimeout(r, 300)); // let some casts reach the frozen server
    await a.kill('SIGKILL');
    await more; // every one acked, by b
    await seen.until(400);
    await client.prepare({ server: 'b' }).call({}, 'whoami'); // anything still on its way has arrived
    const ids = seen.items.map(Number).sort((x, y) => x - y);
    assert.deepEqual(ids, Array.from({ length: 400 }, (_, i) => i), 'each cast handled exactly once');
  });

  test('bounded send queue: past max_queued a send fails with QueueFull, the queued ones fail over or fail clearly', async () => {
    // A peer that accepts TCP but never speaks ZMTP: messages wait for its handshake.
    const silent = await silentPeer();
    const { port } = silent;
    const dir = nsDir();
    const topic = freshTopic();
    const b = await bus(url(dir, '&max_queued=10&connect_timeout=400'));
    await driver(b).nameService.register([`openstack/${topic}`], { address: `127.0.0.1:${port}` });
    const client = b.rpcClient({ topic });
    const casts = Array.from({ length: 12 }, (_, i) => client.cast({}, 'x', { i }).then(() => 'ok', (e: unknown) => e));
    const outcomes = await Promise.all(casts);
    assert.equal(outcomes.filter((o) => o instanceof QueueFull).length, 2);
    const undeliverable = outcomes.filter((o) => o instanceof MessageUndeliverable);
    assert.equal(undeliverable.length, 10, 'the queued ten fail once the peer misses its connect deadline');
    assert.match(String((outcomes[11] as Error).message), /max_queued=10/);
    silent.close();
  });

  test('a notification pool with a dead member: every notification fails over to the live one, each handled once', async () => {
    // A member that accepts TCP but never speaks ZMTP (a stale record): copies routed to it miss
    // their connect deadline and go to the pool's other member, looked up again.
    const silent = await silentPeer();
    const { port } = silent;
    const dir = nsDir();
    const topic = freshTopic();
    const lb = await bus(url(dir));
    const got = new Collector<number>();
    await lb.notificationListener([{ topic }], [{ info: (_c: unknown, _p: string, _e: string, payload: unknown) => void got.push((payload as { i: number }).i) }], { pool: 'p' }).start();
    const nb = await bus(url(dir, '&connect_timeout=400'));
    await driver(nb).nameService.register([`notify:openstack/${topic}`], { address: `127.0.0.1:${port}`, pool: 'p', wire: 3 });
    const notifier = nb.notifier({ publisherId: 'p', topics: [topic] });
    await Promise.all(Array.from({ length: 6 }, (_, i) => notifier.info({}, 'e', { i })));
    assert.deepEqual([...got.items].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5], 'each notification handled once, by the live member');
    assert.ok(((await driver(nb).counters())['failovers'] ?? 0) >= 1, 'some copies were first routed to the dead member');
    silent.close();
  });

  test('a busy server stops reading at server_backlog unfinished requests, and loses none of them', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const sb = await bus(url(dir, '&server_backlog=200'));
    const gate = deferred();
    const got = new Collector<number>();
    // One at a time, each waiting for the gate: requests pile up unless the server stops reading.
    const srv = sb.rpcServer({ topic, server: 's' }, [{ sink: async (_c: unknown, a: { i: number }) => (await gate.promise, got.push(a.i)) }], { maxConcurrency: 1 });
    await srv.start();
    // Fire-and-forget, so the casts pile up: acked ones would each wait for the gate.
    const client = (await bus(url(dir, '&acks=none'))).rpcClient({ topic });
    const n = 5000;
    for (let i = 0; i < n; i++) await client.cast({}, 'sink', { i });
    await waitFor('the server to pause reading', async () => ((await driver(sb).counters())['paused'] ?? 0) >= 1);
    // Taken off the socket: what was unfinished when it paused (≤ the backlog plus one batch).
    const taken = (await driver(sb).counters())['received'] ?? 0;
    assert.ok(srv.inFlight <= 200 + 512, `server holds ${srv.inFlight} requests; server_backlog=200 plus one batch at most`);
    assert.ok(taken < n, `the server read ${taken} of ${n} while blocked: the rest waits in ZeroMQ/TCP buffers`);
    gate.resolve();
    const all = await got.until(n, 30_000);
    assert.deepEqual([...all].sort((x, y) => x - y), Array.from({ length: n }, (_, i) => i), 'every cast handled once');
    await srv.stop();
  });

  test('an acked cast whose resend mark would take it over max_message_size fails typed; the process stays up', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    // A server that takes records and never acks, saying it reads format 3.
    const router = new zmq.Router({ linger: 0 });
    await router.bind('tcp://127.0.0.1:*');
    const ns = createNameService(`local:${dir}`);
    await ns.register([`openstack/${topic}`], { address: (router.lastEndpoint as string).replace('tcp://', ''), wire: 3 });
    const sizes: number[] = [];
    void (async () => {
      for await (const [, , frame] of router) sizes.push((frame as Buffer).length);
    })().catch(() => undefined);
    const args = { p: 'x'.repeat(2000) };
    // The size of that record, from a first client; then a client whose limit it meets within 3 bytes.
    void (await bus(url(dir, '&ack_timeout=60000'))).rpcClient({ topic }).cast({}, 'sink', args).catch(() => undefined);
    await waitFor('the first record', () => sizes.length >= 1);
    const limit = (sizes[0] as number) + 3;
    const tight = (await bus(url(dir, `&max_message_size=${limit}&ack_timeout=100`))).rpcClient({ topic });
    await assert.rejects(tight.cast({}, 'sink', args), (e: unknown) => e instanceof MessageDeliveryFailure && /could not be sent again/.test(e.message) && /marked as a resend/.test(e.message));
    assert.equal(sizes[1], sizes[0], 'the tight client sent the record once, of the same size');
    await ns.close();
    router.close();
  });

  test('a notification to two pools of one topic in one process reaches both (one copy per pool is not a duplicate)', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const lb = await bus(url(dir));
    const got: string[] = [];
    for (const pool of ['a', 'b']) {
      await lb.notificationListener([{ topic }], [{ info: (_c: unknown, _p: string, e: string) => void got.push(`${pool}:${e}`) }], { pool }).start();
    }
    await (await bus(url(dir))).notifier({ publisherId: 'p', topics: [topic] }).info({}, 'e.one', {});
    assert.deepEqual(got.sort(), ['a:e.one', 'b:e.one']);
    assert.equal((await driver(lb).counters())['duplicatesDropped'] ?? 0, 0);
  });

  test('a message over max_message_size is refused locally with MessageTooLarge', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const srv = (await bus(url(dir))).rpcServer({ topic, server: 's' }, [{ echo: (_c: unknown, a: unknown) => a }]);
    await srv.start();
    const client = (await bus(url(dir, '&max_message_size=1000'))).rpcClient({ topic });
    await assert.rejects(client.call({}, 'echo', { blob: 'x'.repeat(2000) }), MessageTooLarge);
    assert.deepEqual(await client.call({}, 'echo', { blob: 'small' }), { blob: 'small' });
    await srv.stop();
  });

  test('a notification over max_message_size is a rejection (MessageTooLarge), not a throw', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const lb = await bus(url(dir));
    const got: string[] = [];
    await lb.notificationListener([{ topic }], [{ info: (_c: unknown, _p: string, e: string) => void got.push(e) }], { pool: 'p' }).start();
    const notifier = (await bus(url(dir, '&max_message_size=1000'))).notifier({ publisherId: 'p', topics: [topic] });
    await notifier.info({}, 'warm', {}); // the listener's record is cached: the send path that does not wait for a lookup
    let sent: Promise<void> | undefined;
    assert.doesNotThrow(() => void (sent = notifier.info({}, 'big', { blob: 'x'.repeat(2000) })));
    await assert.rejects(sent as Promise<void>, MessageTooLarge);
    await notifier.info({}, 'small', {});
    assert.deepEqual(got, ['warm', 'small']);
  });
});

describe('robust framing', () => {
  test('garbage from a raw socket is dropped and counted; the server keeps serving', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const sb = await bus(url(dir, '&max_message_size=4096'));
    const srv = sb.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]);
    await srv.start();
    const address = (await driver(sb).address()) as string;
    const raw = new zmq.Dealer({ linger: 0 });
    raw.connect(`tcp://${address}`);
    const garbage: Buffer[][] = [
      [Buffer.from('HB9'), Buffer.from('c{}')], // unknown version
      [FRAME_VERSION, Buffer.from('Z{}')], // unknown kind
      [FRAME_VERSION, Buffer.from('c{not json')],
      [FRAME_VERSION, Buffer.from('c[1,2]')],
      [FRAME_VERSION, Buffer.from(`c${JSON.stringify({ i: 'x1', k: `openstack/${topic}`, m: { args: {} } })}`)], // no method: told why
      [FRAME_VERSION, Buffer.concat([Buffer.from('s'), Buffer.alloc(4500, 0x61)])], // oversize record
      [Buffer.alloc(0)],
      [FRAME_VERSION, Buffer.from('r{"i":"nobody"}')], // a reply sent to a server
    ];
    for (const g of garbage) await raw.send(g);
    const [version, nack] = await raw.receive();
    assert.ok(version?.equals(FRAME_VERSION));
    assert.equal(nack?.[0], 'x'.charCodeAt(0));
    const body = JSON.parse(nack?.subarray(1).toString() ?? '{}') as { i: string; code: string; error: string };
    assert.equal(body.i, 'x1');
    assert.equal(body.code, 'HB_MALFORMED');
    assert.match(body.error, /method/);
    const client = (await bus(url(dir))).rpcClient({ topic });
    assert.equal(await client.call({}, 'ping'), 'pong');
    await waitFor('drops to be counted', async () => ((await driver(sb).counters())['dropped'] ?? 0) >= 7);
    const c = await driver(sb).counters();
    assert.equal(c['oversize'], 1);
    raw.close();
    await srv.stop();
  });
  test('records queued together are packed into frames that each fit max_message_size, both ways', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    // Each call and each reply is ~3 kB: 40 of them only fit the 4 kB frame limit one by one.
    // A frame over the limit would make ZeroMQ drop the connection, and the calls would fail.
    const u = url(dir, '&max_message_size=4096');
    const srv = (await bus(u)).rpcServer({ topic, server: 's' }, [{ echo: (_c: unknown, a: { p: string }) => a.p }]);
    await srv.start();
    const client = (await bus(u)).rpcClient({ topic }, { timeout: 10_000 });
    const p = 'é'.repeat(1400); // 2 bytes each in UTF-8: sized by bytes, not characters
    const replies = await Promise.all(Array.from({ length: 40 }, () => client.call<string>({}, 'echo', { p })));
    assert.equal(replies.length, 40);
    assert.ok(replies.every((r) => r === p));
    await srv.stop();
  });
});

describe('CURVE', () => {
  const serverKeys = curveKeyPair();
  const good = curveKeyPair();
  const intruder = curveKeyPair();
  const curveUrl = (dir: string, keys: { publicKey: string; secretKey: string }, allowed?: string) =>
    url(dir, `&curve=true&curve_public_key=${encodeURIComponent(keys.publicKey)}&curve_secret_key=${encodeURIComponent(keys.secretKey)}&connect_timeout=3000${allowed ? `&curve_allowed_clients=${encodeURIComponent(allowed)}` : ''}`);

  test('an allowed client gets through; a wrong key or no CURVE is refused quickly and told why', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const srv = (await bus(curveUrl(dir, serverKeys, good.publicKey))).rpcServer({ topic, server: 's' }, [{ secret: () => 'classified' }]);
    await srv.start();
    const ok = (await bus(curveUrl(dir, good))).rpcClient({ topic }, { timeout: 10_000 });
    assert.equal(await ok.call({}, 'secret'), 'classified');
    assert.equal(driver(buses.at(-1) as Bus).options.curve?.publicKey, good.publicKey);

    const t0 = Date.now();
    const intruderBus = await bus(curveUrl(dir, intruder));
    const bad = intruderBus.rpcClient({ topic }, { timeout: 10_000 });
    await assert.rejects(bad.call({}, 'secret'), (e: unknown) => e instanceof AuthenticationFailed && /CURVE handshake/.test(e.message));
    // Counted, and the transport says why it is degraded (never with a key in it).
    assert.equal(driver(intruderBus).stats().extra?.['authFailures'], 1);
    const health = driver(intruderBus).health();
    assert.equal(health.state, 'degraded');
    assert.match(health.reason ?? '', /CURVE handshake/);
    assert.ok(!(health.reason ?? '').includes(intruder.secretKey));
    const plain = (await bus(url(dir))).rpcClient({ topic }, { timeout: 10_000 });
    await assert.rejects(plain.call({}, 'secret'), AuthenticationFailed);
    assert.ok(Date.now() - t0 < 8_000, 'refused well before the timeout');
    await srv.stop();
  });

  test('traffic is encrypted: the payload does not appear on the wire', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const srv = (await bus(curveUrl(dir, serverKeys))).rpcServer({ topic, server: 's' }, [{ echo: (_c: unknown, a: unknown) => a }]);
    await srv.start();
    const address = (await driver(buses.at(-1) as Bus).address()) as string;
    // A TCP proxy in the middle records every byte both ways.
    const captured: Buffer[] = [];
    const { createConnection } = await import('node:net');
    const proxy = createServer((down) => {
      const up = createConnection(Number(address.split(':')[1]), '127.0.0.1');
      down.on('data', (d) => (captured.push(d), up.write(d)));
      up.on('data', (d) => (captured.push(d), down.write(d)));
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxyPort = (proxy.address() as { port: number }).port;
    const client = await bus(curveUrl(nsDir(), good));
    await driver(client).nameService.register([`openstack/${topic}`], { address: `127.0.0.1:${proxyPort}`, publicKey: serverKeys.publicKey });
    const secret = 'TOP-SECRET-PAYLOAD-0123456789';
    assert.deepEqual(await client.rpcClient({ topic }).call({}, 'echo', { secret }), { secret });
    const wire = Buffer.concat(captured);
    assert.ok(wire.length > 100);
    assert.equal(wire.includes(secret), false, 'plaintext found on the wire');
    proxy.close();
    await srv.stop();
  });
});

describe('record formats (rolling upgrades)', () => {
  /** A server of an older release, played by a raw ROUTER: it records what arrives and answers as told. */
  async function olderServer(): Promise<{ address: string; records: Array<{ kind: string; body: Record<string, unknown> }>; next: () => Promise<{ id: Buffer; kind: string; body: Record<string, unknown> }>; answer: (id: Buffer, kind: string, body: unknown) => Promise<void>; close: () => void }> {
    const router = new zmq.Router({ linger: 0 });
    await router.bind('tcp://127.0.0.1:*');
    const records: Array<{ kind: string; body: Record<string, unknown> }> = [];
    return {
      address: (router.lastEndpoint as string).replace('tcp://', ''),
      records,
      next: async () => {
        const [id, version, frame] = await router.receive();
        assert.ok(version?.equals(FRAME_VERSION));
        const text = (frame as Buffer).toString();
        const r = { kind: text[0] as string, body: JSON.parse(text.slice(1)) as Record<string, unknown> };
        records.push(r);
        return { id: id as Buffer, ...r };
      },
      answer: (id, kind, body) => router.send([id, FRAME_VERSION, `${kind}${JSON.stringify(body)}`]),
      close: () => router.close(),
    };
  }

  test("a client sends the compact form only to servers whose records say they read it; resends to an older one stay in oslo's dict", async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const context = { user_id: 'u', roles: ['member'], is_admin: false };
    // An older server: its records have no `wire` field.
    const old = await olderServer();
    const ns = createNameService(`local:${dir}`);
    await ns.register([`openstack/${topic}`, `openstack/${topic}.old`, `notify:openstack/${topic}`], { address: old.address });
    const cb = await bus(url(dir, '&ack_timeout=200'));
    const client = cb.rpcClient({ topic });

    const called = client.call<string>(context, 'ping', { a: 1 });
    const call = await old.next();
    assert.equal(call.kind, 'c');
    assert.equal(call.body['q'], undefined);
    assert.deepEqual(call.body['m'], { method: 'ping', args: { a: 1 }, _unique_id: (call.body['m'] as Record<string, unknown>)['_unique_id'], _context_user_id: 'u', _context_roles: ['member'], _context_is_admin: false });
    await old.answer(call.id, 'r', { i: call.body['i'], m: { result: 'old', failure: null, ending: true } });
    assert.equal(await called, 'old');

    // What it gets is what was sent, even if the application changes its objects afterwards
    // (the key is looked up first, so the older form is made after this line).
    const args = { b: 2 };
    const cast = client.cast(context, 'sink', args);
    args.b = 3;
    const first = await old.next();
    const again = await old.next();
    for (const r of [first, again]) {
      assert.equal(r.kind, 's');
      assert.equal(r.body['q'], undefined);
      assert.equal((r.body['m'] as Record<string, unknown>)['method'], 'sink');
      assert.deepEqual((r.body['m'] as Record<string, unknown>)['args'], { b: 2 });
    }
    assert.equal(again.body['r'], 1);
    await old.answer(again.id, 'k', { i: again.body['i'] });
    await cast;

    const notified = cb.notifier({ publisherId: 'p', topics: [topic] }).info(context, 'e.t', { c: 3 });
    const n = await old.next();
    assert.equal(n.kind, 'n');
    assert.equal(n.body['n'], undefined);
    assert.equal((n.body['m'] as Record<string, unknown>)['_context_user_id'], 'u');
    await old.answer(n.id, 'k', { i: n.body['i'] });
    await notified;

    // A record saying it reads format 3: the same client sends the compact form there.
    const newer = await olderServer();
    const topic2 = freshTopic();
    await ns.register([`openstack/${topic2}`], { address: newer.address, wire: 3 });
    const called2 = cb.rpcClient({ topic: topic2 }).call<string>(context, 'ping', { a: 1 });
    const call2 = await newer.next();
    assert.equal(call2.body['m'], undefined);
    assert.deepEqual(call2.body['q'], ['ping', { a: 1 }, null, null, (call2.body['q'] as unknown[])[4], context]);
    await newer.answer(call2.id, 'r', { i: call2.body['i'], m: { result: 'new', failure: null, ending: true } });
    assert.equal(await called2, 'new');

    // A stale record saying wire 3 beside the older server's own record for the same address
    // (a newer server killed, an older one restarted there): the lowest format counts.
    const topicStale = freshTopic();
    await ns.register([`openstack/${topicStale}`], { address: old.address, wire: 3 });
    await ns.register([`openstack/${topicStale}`], { address: old.address });
    const called3 = cb.rpcClient({ topic: topicStale }).call<string>(context, 'ping', {});
    const call3 = await old.next();
    assert.equal(call3.body['q'], undefined);
    assert.equal((call3.body['m'] as Record<string, unknown>)['method'], 'ping');
    await old.answer(call3.id, 'r', { i: call3.body['i'], m: { result: 'stale', failure: null, ending: true } });
    assert.equal(await called3, 'stale');

    // A server of this release registers wire 3, and its endpoint gets what was sent.
    const topic3 = freshTopic();
    const srv = (await bus(url(dir))).rpcServer({ topic: topic3, server: 's' }, [{ ctx: (c: unknown, a: unknown) => ({ c, a }) }]);
    await srv.start();
    assert.deepEqual((await ns.lookup(`openstack/${topic3}`)).map((r) => r.wire), [3]);
    assert.deepEqual(await cb.rpcClient({ topic: topic3 }).call(context, 'ctx', { a: [1, { b: null }] }), { c: context, a: { a: [1, { b: null }] } });
    await srv.stop();
    await ns.close();
    old.close();
    newer.close();
  });

  test('a duplicate is dropped in either form: a notification sent twice is handled once and acked twice', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const lb = await bus(url(dir));
    const got: unknown[] = [];
    const listener = lb.notificationListener([{ topic }], [{ info: (_c: unknown, _p: string, e: string, payload: unknown) => void got.push([e, payload]) }], { pool: 'p' });
    await listener.start();
    const raw = new zmq.Dealer({ linger: 0 });
    raw.connect(`tcp://${(await driver(lb).address()) as string}`);
    const k = `notify:openstack/${topic}`;
    const send = async (record: unknown): Promise<Record<string, unknown>> => {
      await raw.send([FRAME_VERSION, `n${JSON.stringify(record)}`]);
      const [, answer] = await raw.receive();
      return { kind: String.fromCharCode(answer?.[0] ?? 0), ...(JSON.parse(answer?.subarray(1).toString() ?? '{}') as Record<string, unknown>) };
    };
    const compact = ['m-1', 'pub', 'e.compact', 'info', { x: 1 }, '2026-11-27 04:00:00.000000', 'uid-c', {}];
    const dict = { message_id: 'm-2', publisher_id: 'pub', event_type: 'e.dict', priority: 'INFO', payload: { x: 2 }, timestamp: '2026-11-27 04:00:00.000000', _unique_id: 'uid-d' };
    for (const [i, form] of [['a', { n: compact }], ['b', { n: compact }], ['c', { m: dict }], ['d', { m: dict }]] as const) {
      assert.deepEqual(await send({ i, k, pool: 'p', ...form, ...(i === 'b' || i === 'd' ? { r: 1 } : {}) }), { kind: 'k', i });
    }
    assert.deepEqual(got, [['e.compact', { x: 1 }], ['e.dict', { x: 2 }]]);
    assert.equal((await driver(lb).counters())['duplicatesDropped'], 2);
    raw.close();
    await listener.stop();
  });

  test("a server reads both forms: oslo's dict from an older client, the compact form, and says what is wrong with a bad one", async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const sb = await bus(url(dir));
    const srv = sb.rpcServer({ topic, server: 's' }, [{ echo: (c: unknown, a: unknown) => ({ c, a }) }]);
    await srv.start();
    const raw = new zmq.Dealer({ linger: 0 });
    raw.connect(`tcp://${(await driver(sb).address()) as string}`);
    const k = `openstack/${topic}`;
    const ask = async (record: unknown): Promise<Record<string, unknown>> => {
      await raw.send([FRAME_VERSION, `c${JSON.stringify(record)}`]);
      const [, answer] = await raw.receive();
      return { kind: String.fromCharCode(answer?.[0] ?? 0), ...(JSON.parse(answer?.subarray(1).toString() ?? '{}') as Record<string, unknown>) };
    };
    const dict = await ask({ i: 'd1', k, m: { method: 'echo', args: { x: 1 }, _unique_id: 'u1', _context_user_id: 'u' } });
    assert.deepEqual(dict, { kind: 'r', i: 'd1', m: { result: { c: { user_id: 'u' }, a: { x: 1 } }, failure: null, ending: true } });
    const compact = await ask({ i: 'c1', k, q: ['echo', { x: 1 }, null, null, 'u2', { user_id: 'u' }] });
    assert.deepEqual(compact, { ...dict, i: 'c1' });
    const bad = await ask({ i: 'b1', k, q: [7, {}, null, null, 'u3', {}] });
    assert.equal(bad['kind'], 'x');
    assert.equal(bad['code'], 'HB_MALFORMED');
    assert.match(String(bad['error']), /compact method must be a string, got 7/);
    raw.close();
    await srv.stop();
  });
});
