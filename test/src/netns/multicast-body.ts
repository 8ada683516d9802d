/**
 * Multicast test bodies, run by zmq-multicast.test.ts inside a network namespace of its own
 * (never on the host's network): `node multicast-body.js <scenario>`. Each scenario does real
 * RADIO/DISH multicast over the namespace's loopback, asserts, and prints one line
 * `RESULT {json}` with its figures; a failed assertion exits non-zero with the error.
 */
import { Bus, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import { FanoutIncomplete, type ZmqDriver } from '@hybridbus/zmq-direct';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { udpSockets } from './udp-sockets.js';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Collector, tempDir } from '../util.js';

const GROUP_ADDRESS = '239.192.0.1';
const PORT = 5555;
const dir = tempDir('hb-mcast-');
const url = (extra = ''): string =>
  `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0&multicast=udp://${GROUP_ADDRESS}:${PORT}&multicast_interface=lo${extra}`;
const ctx = {};
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** A receiver process (multicast-receiver.ts) and a way to ask it things. */
async function receiver(u: string, topic: string, servers = 1): Promise<{ proc: ChildProcess; ask: <T>(m: object) => Promise<T>; close: () => Promise<void> }> {
  const script = fileURLToPath(new URL('./multicast-receiver.js', import.meta.url));
  const proc = fork(script, [u, topic, String(servers)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(proc);
  const [first] = (await once(proc, 'message')) as [{ ready?: boolean }];
  assert.equal(first.ready, true);
  const ask = async <T>(m: object): Promise<T> => {
    const answer = once(proc, 'message');
    proc.send(m);
    return ((await answer) as [T])[0];
  };
  const close = async (): Promise<void> => {
    const exited = once(proc, 'exit');
    proc.send({ ask: 'close' });
    await exited;
  };
  return { proc, ask, close };
}

interface Stats {
  distinct: number;
  twice: number;
  counters: Record<string, number>;
  stats: { dropped: number; extra?: Record<string, number> };
  lostLogs: number;
}


const payload = (n: number, size = 0): { n: number; pad: string } => ({ n, pad: 'x'.repeat(size) });

async function client(u: string): Promise<{ bus: Bus; driver: ZmqDriver }> {
  const bus = await Bus.create({ transports: { default: u } });
  return { bus, driver: bus.transport('default') as ZmqDriver };
}

const scenarios: Record<string, () => Promise<object>> = {
  /** Three server processes; 1,000 acked fanouts go out once each and arrive once at each. */
  async fanout3() {
    const topic = 'mc3';
    const rs = await Promise.all([0, 1, 2].map(() => receiver(url(), topic)));
    const { bus, driver } = await client(url());
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    const N = 1000;
    for (let i = 0; i < N; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => fan.cast(ctx, 'tick', payload(i + k))));
    const per = await Promise.all(rs.map((r) => r.ask<{ until: number }>({ ask: 'until', n: N }).then(() => r.ask<Stats>({ ask: 'stats' }))));
    const c = await driver.counters();
    for (const s of per) assert.deepEqual([s.distinct, s.twice], [N, 0]);
    assert.equal(c['mcastFanouts'], N, 'every fanout went out once by multicast');
    assert.equal(c['mcastUnicastCopies'], 0);
    if (!c['mcastAckFallbacks']) assert.equal(c['connects'] ?? 0, 0, 'no unicast connection was made (no ack was late)');
    await bus.close();
    await Promise.all(rs.map((r) => r.close()));
    return { fanouts: N, servers: 3, sent: c['mcastSent'], ackFallbacks: c['mcastAckFallbacks'], perServer: per.map((s) => s.distinct) };
  },

  /**
   * Servers that cannot take the multicast copy get unicast ones: one without multicast, one
   * sealed with another key (its record names another key id); every server has each fanout once.
   */
  async mixed() {
    const topic = 'mcm';
    const key = (): string => encodeURIComponent(randomBytes(32).toString('base64'));
    const k1 = key();
    const plain = `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0`;
    const urls = { same: url(`&multicast_key=${k1}`), none: plain, otherKey: url(`&multicast_key=${key()}`) };
    const got = { same: new Collector<number>(), none: new Collector<number>(), otherKey: new Collector<number>() };
    const servers: Bus[] = [];
    for (const name of ['same', 'none', 'otherKey'] as const) {
      const b = await Bus.create({ transports: { default: urls[name] } });
      servers.push(b);
      await b.rpcServer({ topic, server: name }, [{ tick: (_c: Context, a: { n: number }) => got[name].push(a.n) }]).start();
    }
    const { bus, driver } = await client(urls.same);
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    const N = 200;
    await Promise.all(Array.from({ length: N }, (_, i) => fan.cast(ctx, 'tick', payload(i))));
    // Over the datagram limit (8,000 bytes): unicast to all, transparently.
    await fan.cast(ctx, 'tick', payload(N, 12_000));
    for (const c of Object.values(got)) await c.until(N + 1);
    const c = await driver.counters();
    for (const [name, col] of Object.entries(got)) assert.deepEqual([...col.items].sort((a, b) => a - b), Array.from({ length: N + 1 }, (_, i) => i), `${name} got each fanout once`);
    assert.equal(c['mcastFanouts'], N);
    assert.equal(c['mcastUnicastCopies'], 2 * N, 'two servers got unicast copies');
    assert.equal(c['mcastTooLarge'], 1, 'the large one went by unicast');
    await Promise.all([bus.close(), ...servers.map((b) => b.close())]);
    return { fanouts: N, multicast: c['mcastFanouts'], unicastCopies: c['mcastUnicastCopies'], tooLarge: c['mcastTooLarge'], perServer: Object.values(got).map((x) => x.items.length) };
  },

  /** A receiver frozen (SIGSTOP) with a small socket buffer while 5,000 fanouts go: repair brings every one. */
  async repair() {
    const topic = 'mcr';
    const r = await receiver(url('&multicast_rcvbuf=32768&multicast_window=8192'), topic);
    const { bus, driver } = await client(url('&acks=none&multicast_window=8192'));
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    await fan.cast(ctx, 'tick', payload(0));
    await r.ask({ ask: 'until', n: 1 });
    const N = 5000;
    r.proc.kill('SIGSTOP');
    for (let i = 1; i < N; i++) await fan.cast(ctx, 'tick', payload(i, 500));
    r.proc.kill('SIGCONT');
    await r.ask({ ask: 'until', n: N });
    const s = await r.ask<Stats>({ ask: 'stats' });
    const c = await driver.counters();
    assert.equal(s.distinct, N);
    assert.equal(s.twice, 0);
    assert.equal(s.counters['mcastLost'], 0, 'nothing lost');
    assert.ok((s.counters['mcastRecovered'] ?? 0) > 0, `datagrams were really lost and repaired (recovered=${s.counters['mcastRecovered']})`);
    await bus.close();
    await r.close();
    return { fanouts: N, received: s.counters['mcastReceived'], recovered: s.counters['mcastRecovered'], repairRequests: s.counters['mcastRepairRequests'], gaps: s.counters['mcastGaps'], lost: s.counters['mcastLost'], senderRepaired: c['mcastRepaired'] };
  },

  /**
   * Three servers in one process share one socket (receiver.ts): the process has one socket on the
   * group's port, each server has every fanout once and acks it itself (sealed, none late, so no
   * unicast fallback), and a gap (the process frozen while 2,000 more go) is repaired once for all
   * three, nothing lost.
   */
  async shared() {
    const topic = 'mcsh';
    const key = `&multicast_key=${encodeURIComponent(randomBytes(32).toString('base64'))}`;
    const r = await receiver(url(`${key}&multicast_rcvbuf=32768&multicast_window=8192`), topic, 3);
    const acked = await client(url(`${key}&ack_timeout=10000`));
    const fan = acked.bus.rpcClient({ topic }).prepare({ fanout: true });
    const A = 200;
    for (let i = 0; i < A; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => fan.cast(ctx, 'tick', payload(i + k))));
    const { sockets } = await r.ask<{ sockets: number }>({ ask: 'udp', port: PORT });
    const ca = await acked.driver.counters();
    assert.equal(sockets, 1, 'one socket on the port for the three servers');
    assert.equal(ca['mcastFanouts'], A);
    assert.equal(ca['mcastAckFallbacks'] ?? 0, 0, 'every server acked every fanout by itself');
    const plain = await client(url(`${key}&acks=none&multicast_window=8192`));
    const fan2 = plain.bus.rpcClient({ topic }).prepare({ fanout: true });
    const N = 2000;
    r.proc.kill('SIGSTOP');
    for (let i = A; i < A + N; i++) await fan2.cast(ctx, 'tick', payload(i, 500));
    r.proc.kill('SIGCONT');
    await r.ask({ ask: 'until', n: A + N });
    const s = await r.ask<Stats & { perServer: number[] }>({ ask: 'stats' });
    assert.deepEqual(s.perServer, [A + N, A + N, A + N], 'each server has every fanout');
    assert.equal(s.twice, 0);
    assert.equal(s.counters['mcastLost'], 0, 'nothing lost');
    assert.ok((s.counters['mcastRecovered'] ?? 0) > 0, `datagrams were really lost and repaired (recovered=${s.counters['mcastRecovered']})`);
    assert.equal(s.counters['mcastDelivered'], 3 * (A + N), 'each datagram handed to the three servers');
    assert.ok((s.counters['mcastReceived'] ?? 0) + (s.counters['mcastRecovered'] ?? 0) <= A + N + 100, 'each datagram received once, not once per server');
    await Promise.all([acked.bus.close(), plain.bus.close()]);
    await r.close();
    return { servers: 3, sockets, fanouts: A + N, received: s.counters['mcastReceived'], recovered: s.counters['mcastRecovered'], delivered: s.counters['mcastDelivered'], ackFallbacks: ca['mcastAckFallbacks'] ?? 0 };
  },

  /**
   * A server with multicast on, idle, costs its process next to nothing: its socket is read by
   * the event loop only when a datagram comes (a ZeroMQ DISH with a receive pending spun it:
   * 0.4–0.9 of a core). Idle CPU has no event to wait for: it is taken over a second.
   */
  async idle() {
    const server = await Bus.create({ transports: { default: url('&acks=none') } });
    const got = new Collector<number>();
    await server.rpcServer({ topic: 'mcidle', server: 's' }, [{ tick: (_c: Context, a: { n: number }) => got.push(a.n) }]).start();
    const { bus } = await client(url('&acks=none'));
    await bus.rpcClient({ topic: 'mcidle' }).prepare({ fanout: true }).cast(ctx, 'tick', payload(1));
    await got.until(1);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const cpu = process.cpuUsage(cpu0);
    const msPerS = (cpu.user + cpu.system) / (performance.now() - t0);
    assert.ok(msPerS < 50, `idle at ${msPerS.toFixed(1)} ms of CPU per second`);
    await Promise.all([bus.close(), server.close()]);
    return { idleCpuMsPerS: Math.round(msPerS * 10) / 10 };
  },

  /**
   * The shared socket outlives any one of its transports: two servers in this process, the first
   * closed, the second still gets fanouts on the same socket; the last one closed closes it, and
   * a server started after that opens a new one.
   */
  async sharedClose() {
    const topic = 'mcsc';
    const got = [new Collector<number>(), new Collector<number>(), new Collector<number>()];
    const serve = async (i: number): Promise<Bus> => {
      const b = await Bus.create({ transports: { default: url() } });
      await b.rpcServer({ topic, server: `s${i}` }, [{ tick: (_c: Context, a: { n: number }) => got[i]?.push(a.n) }]).start();
      return b;
    };
    const [a, b] = [await serve(0), await serve(1)];
    const { bus, driver } = await client(url());
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    await fan.cast(ctx, 'tick', payload(1));
    const both = udpSockets(PORT);
    await a.close();
    await fan.cast(ctx, 'tick', payload(2));
    await got[1]?.until(2);
    const afterFirst = udpSockets(PORT);
    await b.close();
    const afterLast = udpSockets(PORT);
    const c = await serve(2);
    await fan.cast(ctx, 'tick', payload(3));
    await got[2]?.until(1);
    const again = udpSockets(PORT);
    const counters = await driver.counters();
    assert.deepEqual([both, afterFirst, afterLast, again], [1, 1, 0, 1], 'one socket while any server is up');
    assert.deepEqual([got[0]?.items, got[1]?.items, got[2]?.items], [[1], [1, 2], [3]]);
    assert.equal(counters['mcastAckFallbacks'] ?? 0, 0, 'every fanout acked by multicast');
    await Promise.all([bus.close(), c.close()]);
    return { sockets: [both, afterFirst, afterLast, again] };
  },

  /**
   * The servers of one process are handed the same record, decoded once (receiver.ts, server.ts
   * fromGroup): each handler still gets args and a context of its own, so what one changes (at
   * the top or nested) no other sees. Three Buses, and a second RpcServer on the last one (two
   * handlers of one transport).
   */
  async ownCopies() {
    const topic = 'mcown';
    const seen: Array<{ server: string; args: unknown; ctx: unknown }> = [];
    const got = new Collector<string>();
    const endpoint = (server: string): object[] => [
      {
        tick: (c: Record<string, unknown>, a: Record<string, unknown>) => {
          seen.push({ server, args: structuredClone(a), ctx: structuredClone(c) });
          a['n'] = -1;
          delete a['pad'];
          (a['nested'] as { list: number[] }).list.push(99);
          c['user'] = 'changed';
          (c['roles'] as string[]).push('x');
          got.push(server);
        },
      },
    ];
    const servers: Bus[] = [];
    for (const name of ['a', 'b', 'c']) {
      const b = await Bus.create({ transports: { default: url() } });
      servers.push(b);
      await b.rpcServer({ topic, server: name }, endpoint(name)).start();
    }
    await servers[2]?.rpcServer({ topic, server: 'd' }, endpoint('d')).start();
    const { bus, driver } = await client(url());
    await bus.rpcClient({ topic }).prepare({ fanout: true }).cast({ user: 'u', roles: ['r'] }, 'tick', { n: 1, pad: 'p', nested: { list: [1, 2] } });
    await got.until(4);
    const c = await driver.counters();
    assert.equal(c['mcastFanouts'], 1, 'it went by multicast');
    assert.equal(c['mcastUnicastCopies'] ?? 0, 0);
    assert.deepEqual(seen.map((s) => s.server).sort(), ['a', 'b', 'c', 'd']);
    for (const s of seen) {
      assert.deepEqual(s.args, { n: 1, pad: 'p', nested: { list: [1, 2] } }, `${s.server} saw the args as sent`);
      assert.deepEqual(s.ctx, { user: 'u', roles: ['r'] }, `${s.server} saw the context as sent`);
    }
    await Promise.all([bus.close(), ...servers.map((b) => b.close())]);
    return { servers: seen.length };
  },

  /** The same with a window of 16: the gap cannot be repaired, and that is counted and logged. */
  async unrepairable() {
    const topic = 'mcu';
    const r = await receiver(url('&multicast_rcvbuf=32768&multicast_window=16'), topic);
    const { bus, driver } = await client(url('&acks=none&multicast_window=16'));
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    await fan.cast(ctx, 'tick', payload(0));
    await r.ask({ ask: 'until', n: 1 });
    const N = 3000;
    r.proc.kill('SIGSTOP');
    for (let i = 1; i < N; i++) await fan.cast(ctx, 'tick', payload(i, 500));
    r.proc.kill('SIGCONT');
    await r.ask({ ask: 'settled', n: N });
    const s = await r.ask<Stats>({ ask: 'stats' });
    const c = await driver.counters();
    assert.ok((s.counters['mcastLost'] ?? 0) > 0, 'a loss was reported');
    assert.ok(s.lostLogs > 0, 'and logged');
    assert.equal(s.distinct + (s.counters['mcastLost'] ?? 0), N, 'every fanout arrived or was reported lost');
    assert.equal(s.twice, 0);
    await bus.close();
    await r.close();
    return { fanouts: N, delivered: s.distinct, reportedLost: s.counters['mcastLost'], lostLogLines: s.lostLogs, senderGone: c['mcastRepairGone'] };
  },

  /** Acked fanouts and a window too small: the receiver reports the loss, and the sender's unicast fallback still delivers all. */
  async acked() {
    const topic = 'mca';
    const r = await receiver(url('&multicast_rcvbuf=32768&multicast_window=16'), topic);
    const { bus, driver } = await client(url('&multicast_window=16&ack_timeout=300'));
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    await fan.cast(ctx, 'tick', payload(0));
    const N = 500;
    r.proc.kill('SIGSTOP');
    const sent = Array.from({ length: N - 1 }, (_, i) => fan.cast(ctx, 'tick', payload(i + 1, 500)));
    // The freeze must outlast ack_timeout (300 ms): that is what is under test, so a timer it is.
    const overdue = setTimeout(() => r.proc.kill('SIGCONT'), 600);
    await Promise.all(sent);
    clearTimeout(overdue);
    r.proc.kill('SIGCONT');
    await r.ask({ ask: 'until', n: N });
    const s = await r.ask<Stats>({ ask: 'stats' });
    const c = await driver.counters();
    assert.equal(s.distinct, N);
    assert.equal(s.twice, 0);
    assert.ok((c['mcastAckFallbacks'] ?? 0) > 0, 'late acks fell back to unicast');
    await bus.close();
    await r.close();
    return { fanouts: N, delivered: s.distinct, ackFallbacks: c['mcastAckFallbacks'], reportedLost: s.counters['mcastLost'], duplicatesDropped: s.counters['duplicatesDropped'] };
  },

  /**
   * Copies that cannot be delivered fail the fanout with FanoutIncomplete and its counts, as a
   * unicast fanout does (fanout.ts): of three servers, one alive, one dead that joined the group
   * (no ack comes; its unicast fallback fails) and one dead without multicast (its unicast copy
   * fails); and the same for a fanout over the datagram limit (unicast to all three).
   */
  async incomplete() {
    const topic = 'mci';
    const plain = `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0`;
    const alive = await receiver(url(), topic);
    const dead = await Promise.all([receiver(url(), topic), receiver(plain, topic)]);
    // Killed: their records stay (until ns_ttl), nothing listens at their addresses.
    await Promise.all(dead.map(async (d) => {
      const exited = once(d.proc, 'exit');
      d.proc.kill('SIGKILL');
      await exited;
    }));
    const { bus, driver } = await client(url('&ack_timeout=300&connect_timeout=300'));
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    const failure = (p: Promise<void>): Promise<unknown> => p.then(() => assert.fail('the fanout succeeded'), (e: unknown) => e);
    const small = await failure(fan.cast(ctx, 'tick', payload(1)));
    const large = await failure(fan.cast(ctx, 'tick', payload(2, 12_000)));
    for (const e of [small, large]) {
      assert.ok(e instanceof FanoutIncomplete, `FanoutIncomplete expected, got ${String(e)}`);
      assert.deepEqual([e.notReached, e.servers, e.reasons.length], [2, 3, 2], e.message);
    }
    await alive.ask({ ask: 'until', n: 2 });
    const c = await driver.counters();
    assert.equal(c['mcastFanouts'], 1);
    assert.equal(c['mcastTooLarge'], 1);
    await bus.close();
    await alive.close();
    return { notReached: (small as FanoutIncomplete).notReached, servers: (small as FanoutIncomplete).servers, message: (large as FanoutIncomplete).message.length };
  },

  /**
   * Unsealed (nothing authenticates datagrams): 3,000 mutations of real data datagrams and
   * heartbeats (bytes flipped, truncated, extended, header fields set to extremes) and random
   * junk reach the receiver's parser; the process survives, stays bounded, and serves calls.
   */
  async fuzz() {
    const topic = 'mcf';
    const u = url('&acks=none');
    const server = await Bus.create({ transports: { default: u } });
    const got = new Collector<number>();
    await server.rpcServer({ topic, server: 's' }, [{ tick: (_c: Context, a: { n: number }) => got.push(a.n), ping: () => 'pong' }]).start();
    const { bus } = await client(u);
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    const tap = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve) => tap.bind(PORT, resolve));
    tap.addMembership(GROUP_ADDRESS, '127.0.0.1');
    const seeds: Buffer[] = [];
    const collect = (m: Buffer): void => void (seeds.length < 16 && seeds.push(m));
    tap.on('message', collect);
    for (let i = 0; i < 3; i++) await fan.cast(ctx, 'tick', payload(i, i * 100));
    await got.until(3);
    // A heartbeat comes a heartbeat (100 ms) after the data stops: wait for one to mutate too.
    await new Promise<void>((resolve) => tap.on('message', (m: Buffer) => (m[1 + (m[0] as number) + 4] === 2 ? resolve() : undefined)));
    tap.off('message', collect);
    tap.setMulticastInterface('127.0.0.1');
    const rnd = (n: number): number => randomBytes(4).readUInt32BE(0) % n;
    let sent = 0;
    for (let i = 0; i < 3000; i++) {
      const seed = seeds[i % seeds.length] as Buffer;
      const groupEnd = 1 + (seed[0] as number);
      let body = Buffer.from(seed.subarray(groupEnd));
      switch (i % 6) {
        case 0: for (let k = 0; k < 1 + rnd(4); k++) body[rnd(body.length)] = rnd(256); break;
        case 1: body = body.subarray(0, rnd(body.length)); break;
        case 2: body = Buffer.concat([body, randomBytes(rnd(64))]); break;
        case 3: body.writeUInt32BE([0, 1, 0x7fffffff, 0xffffffff][rnd(4)] as number, 14); break; // seq
        case 4: body.writeUInt32BE(rnd(2) ? 0xffffffff : rnd(body.length + 8), 18); break; // body length
        default: body = randomBytes(rnd(300));
      }
      await new Promise<void>((resolve, reject) => tap.send(Buffer.concat([seed.subarray(0, groupEnd), body]), PORT, GROUP_ADDRESS, (e) => (e ? reject(e) : resolve())));
      sent++;
      // The receiver reads its socket on this event loop, which a send's callback (a nextTick)
      // never reaches: let it read, so the mutations reach the parser rather than overflow the socket.
      await new Promise((resolve) => setImmediate(resolve));
    }
    tap.close();
    // Still serving: a call over TCP, and the counters.
    const pong = await bus.rpcClient({ topic, server: 's' }).call<string>(ctx, 'ping');
    const d = server.transport('default') as ZmqDriver;
    const c = await d.counters();
    assert.equal(pong, 'pong');
    assert.ok((c['mcastForged'] ?? 0) > 0, 'malformed ones were counted');
    await Promise.all([bus.close(), server.close()]);
    return { mutationsSent: sent, forged: c['mcastForged'], delivered: c['mcastDelivered'], duplicates: c['mcastDuplicates'], lost: c['mcastLost'], gaps: c['mcastGaps'] };
  },

  /** A sealed group: forged, garbled, unsealed and junk datagrams (raw UDP) are dropped and counted; real ones arrive once. */
  async sealed() {
    const topic = 'mcs';
    const key = randomBytes(32).toString('base64');
    const u = url(`&acks=none&multicast_key=${encodeURIComponent(key)}`);
    const server = await Bus.create({ transports: { default: u } });
    const got = new Collector<number>();
    await server.rpcServer({ topic, server: 's' }, [{ tick: (_c: Context, a: { n: number }) => got.push(a.n) }]).start();
    const { bus } = await client(u);
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    // Capture real datagrams off the group (ZeroMQ's UDP framing: group length, group, body).
    const tap = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve) => tap.bind(PORT, resolve));
    tap.addMembership(GROUP_ADDRESS, '127.0.0.1');
    const captured = once(tap, 'message') as Promise<[Buffer]>;
    await fan.cast(ctx, 'tick', payload(1));
    const [real] = await captured;
    tap.removeAllListeners('message');
    await got.until(1);
    const groupLen = real[0] as number;
    const group = real.subarray(0, 1 + groupLen);
    const body = real.subarray(1 + groupLen);
    const send = (dg: Buffer): Promise<void> =>
      new Promise((resolve, reject) => tap.send(Buffer.concat([group, dg]), PORT, GROUP_ADDRESS, (e) => (e ? reject(e) : resolve())));
    tap.setMulticastInterface('127.0.0.1');
    tap.setMulticastLoopback(true);
    const bad: Buffer[] = [];
    for (let i = 0; i < 10; i++) {
      // Garbled: one bit flipped in the ciphertext, the tag or the header of a real datagram.
      const g = Buffer.from(body);
      const at = (i * 37) % g.length;
      g[at] = (g[at] as number) ^ 0x01;
      bad.push(g);
    }
    for (let i = 0; i < 10; i++) {
      // Forged: a well-formed sealed header with a fresh seq and random "ciphertext".
      const f = Buffer.from(body);
      f.writeUInt32BE(1000 + i, 14);
      randomBytes(f.length - 23 - (f[22] as number)).copy(f, 23 + (f[22] as number));
      bad.push(f);
    }
    for (let i = 0; i < 5; i++) {
      // Unsealed: the flag cleared, a plaintext record in place of the ciphertext.
      const record = Buffer.from(`f${JSON.stringify({ k: `openstack/${topic}`, m: {} })}`);
      const head = Buffer.from(body.subarray(0, 23 + (body[22] as number)));
      head[5] = 0;
      head.writeUInt32BE(2000 + i, 14);
      head.writeUInt32BE(record.length, 18);
      bad.push(Buffer.concat([head, record]));
    }
    for (let i = 0; i < 5; i++) bad.push(randomBytes(10 + i * 50));
    for (const b of bad) await send(b);
    // A replay of the real datagram is a duplicate, not a forgery: dropped, not delivered again.
    await send(body);
    // The receiver reads its socket in order: once this arrives, the bad ones were read too.
    await fan.cast(ctx, 'tick', payload(2));
    await got.until(2);
    tap.close();
    const d = server.transport('default') as ZmqDriver;
    const c = await d.counters();
    const st = d.stats();
    assert.deepEqual(got.items, [1, 2], 'real fanouts arrive once, nothing forged is delivered');
    assert.equal(c['mcastForged'], bad.length, 'every bad datagram counted');
    assert.equal(st.dropped, bad.length, 'stats().dropped counts them');
    assert.equal(st.extra?.['mcastForged'], bad.length);
    assert.equal(c['mcastDuplicates'], 1, 'the replay was dropped as a duplicate');
    await Promise.all([bus.close(), server.close()]);
    return { badSent: bad.length, forgedCounted: c['mcastForged'], dropped: st.dropped, duplicates: c['mcastDuplicates'], delivered: got.items.length };
  },
};

const name = process.argv[2] ?? '';
const run = scenarios[name];
if (!run) {
  console.error(`unknown scenario ${JSON.stringify(name)}; one of ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
try {
  const result = await run();
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(0);
} catch (err) {
  console.error(err);
  process.exit(1);
}
