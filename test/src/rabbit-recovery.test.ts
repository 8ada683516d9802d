/**
 * rabbit-brokered's recovery on real RabbitMQs: calls and casts across a broker restart, the
 * failover list on reconnect (two brokers, the one in use killed), and the backoff between
 * reconnect attempts, measured where the attempts land: a proxy in front of the broker that
 * turns into a failing broker on demand. Tests that restart or kill a broker run last.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { Bus, ConnectionLost, MessageDeliveryFailure, MessagingTimeout, type ConfigInput, type Context } from '@hybridbus/core';
import type { RabbitDriver } from '@hybridbus/rabbit-brokered';
import '@hybridbus/rabbit-brokered';
import { sharedServers, startRabbitMQ, type RabbitMQServer } from './harness/launcher.js';
import { Collector, freshTopic, recordingLogger, type RecordingLogger } from './util.js';

const ctx: Context = { user_id: 'u', project_id: 'p', request_id: 'req-recovery' };
/** Reconnect quickly in tests: 0.2 s, then +0.2 s per attempt, at most 1 s (±20 % jitter). */
const FAST = 'rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1';

const driverOf = (bus: Bus): RabbitDriver => bus.transport('default') as RabbitDriver;

/** Rejects (failing the test) instead of hanging when `p` does not settle within `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A recording logger whose "connected to the broker" (logged on every reconnect) is an event. */
function reconnectLogger(): { logger: RecordingLogger; reconnects: Collector<string> } {
  const logger = recordingLogger();
  const reconnects = new Collector<string>();
  const info = logger.info;
  logger.info = (obj, msg) => {
    info(obj, msg);
    if (msg === 'connected to the broker') reconnects.push(String((obj as { broker?: unknown }).broker));
  };
  return { logger, reconnects };
}

/**
 * A TCP proxy in front of a broker. Forwarding, it is the broker; failing, it drops every open
 * connection and accepts and drops each new one, recording when each connection attempt came.
 */
class FlakyProxy {
  readonly attempts = new Collector<number>();
  private failing = false;
  private readonly open = new Set<net.Socket>();
  private readonly server: net.Server;

  constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      if (this.failing) {
        this.attempts.push(performance.now());
        client.destroy();
        return;
      }
      const upstream = net.connect(targetPort, '127.0.0.1');
      for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
        this.open.add(from);
        from.pipe(to);
        from.on('error', () => to.destroy());
        from.on('close', () => (this.open.delete(from), to.destroy()));
      }
    });
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  fail(): void {
    this.failing = true;
    for (const s of this.open) s.destroy();
  }

  heal(): void {
    this.failing = false;
  }

  close(): Promise<void> {
    for (const s of this.open) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('rabbit-brokered recovery on real RabbitMQs', () => {
  const buses: Bus[] = [];
  const proxies: FlakyProxy[] = [];
  // Registered before sharedServers' hooks, so it runs before the brokers stop.
  after(async () => {
    await Promise.allSettled(buses.map((b) => b.close()));
    await Promise.allSettled(proxies.map((p) => p.close()));
  });
  const servers = sharedServers({ a: () => startRabbitMQ({ plugins: [] }), b: () => startRabbitMQ({ plugins: [] }) });

  const urlOf = (s: RabbitMQServer, query = FAST): string => `${s.url.replace(/^amqp:/, 'rabbit:')}?${query}`;
  const newBus = async (config: ConfigInput, logger: RecordingLogger): Promise<Bus> => {
    const bus = await Bus.create(config, { logger });
    buses.push(bus);
    return bus;
  };
  /** The connection_name of every client connection of a broker. */
  const connectionNames = async (s: RabbitMQServer): Promise<string[]> => {
    const rows = JSON.parse(await s.ctl(['list_connections', 'client_properties', '--formatter', 'json'])) as Array<{ client_properties: unknown[][] }>;
    return rows.map((r) => String((r.client_properties.find((p) => p[0] === 'connection_name') ?? [])[2]));
  };

  test('backoff: reconnect attempts to a failing broker are spaced by rabbit_retry_interval + backoff × attempt, capped, ±20 %', async () => {
    const proxy = new FlakyProxy(servers.b.port);
    proxies.push(proxy);
    await proxy.listen();
    const [interval, backoff, max] = [0.2, 0.4, 1]; // 0.2, 0.6, 1.0 s, then capped at 1 s
    const query = `rabbit_retry_interval=${interval}&rabbit_retry_backoff=${backoff}&rabbit_interval_max=${max}`;
    const via = `rabbit://guest:guest@127.0.0.1:${proxy.port}/?${query}`;
    const topic = freshTopic('backoff');
    const sbus = await newBus({ transports: { default: urlOf(servers.b) } }, recordingLogger());
    const server = sbus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]);
    await server.start();
    const { logger, reconnects } = reconnectLogger();
    const client = (await newBus({ transports: { default: via } }, logger)).rpcClient({ topic }, { timeout: 10_000 });
    assert.equal(await client.call(ctx, 'ping'), 'pong');

    proxy.fail();
    const attempts = await proxy.attempts.until(7, 20_000);
    const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] as number));
    // The first attempt after a loss goes at once (the broker is likely just restarting); after
    // the k-th failed one the driver waits min(interval + backoff × k, max) s, ±20 % jitter.
    const expected = gaps.map((_, k) => Math.round(Math.min(interval + backoff * k, max) * 1000));
    const shown = gaps.map((g, k) => `${Math.round(g)} ms (${expected[k]} ± 20 %)`).join(', ');
    gaps.forEach((gap, k) => {
      const base = expected[k] as number;
      // Below: jitter only (timers never fire early). Above: jitter, plus a failed connect and a busy machine.
      assert.ok(gap >= base * 0.8 - 5 && gap <= base * 1.2 + 500, `attempt spacing: ${shown}`);
    });

    proxy.heal();
    assert.deepEqual(await reconnects.until(1, 10_000), [`amqp://127.0.0.1:${proxy.port}/`]);
    assert.equal(await client.call(ctx, 'ping'), 'pong', 'calls work again once the broker answers');
    await server.stop();
  });

  test('broker restart under traffic: every call succeeds or fails with a typed error, nothing hangs, casts sent after the reconnect arrive', async () => {
    const CALL_TIMEOUT = 10_000;
    const config: ConfigInput = { transports: { default: urlOf(servers.a) } };
    const s = reconnectLogger();
    const c = reconnectLogger();
    const [sbus, cbus] = [await newBus(config, s.logger), await newBus(config, c.logger)];
    const topic = freshTopic('restart');
    const earlier = new Collector<number>();
    const handling = new Collector<number>();
    const afterwards = new Collector<number>();
    const server = sbus.rpcServer({ topic, server: 's' }, [
      {
        // Each call takes a while, so some are waiting for their reply when the broker goes.
        echo: async (_c: Context, a: { i: number }) => (handling.push(a.i), await delay(100), a.i),
        tick: (_c: Context, a: { i: number; after: boolean }) => void (a.after ? afterwards : earlier).push(a.i),
      },
    ]);
    await server.start();
    const client = cbus.rpcClient({ topic }, { timeout: CALL_TIMEOUT });
    assert.equal(await client.call(ctx, 'echo', { i: -1 }), -1);

    // Calls and casts go on, paced, while the broker restarts and both sides reconnect.
    type Outcome = { kind: 'call' | 'cast'; ms: number; phase: 'before' | 'restarting' | 'after'; err?: unknown };
    const outcomes: Outcome[] = [];
    let phase: Outcome['phase'] = 'before';
    let stop = false;
    let seq = 0;
    const answered = new Collector<number>();
    const send = async (kind: 'call' | 'cast'): Promise<void> => {
      const i = seq++;
      const t0 = Date.now();
      const started = phase;
      try {
        if (kind === 'call') {
          const r = await client.call<number>(ctx, 'echo', { i });
          assert.equal(r, i, 'a call gets its own answer');
          answered.push(r);
        } else await client.cast(ctx, 'tick', { i, after: false });
        outcomes.push({ kind, ms: Date.now() - t0, phase: started });
      } catch (err) {
        outcomes.push({ kind, ms: Date.now() - t0, phase: started, err });
      }
    };
    const worker = async (kind: 'call' | 'cast'): Promise<void> => {
      while (!stop) {
        await send(kind);
        await delay(20); // pacing, so the traffic does not starve the restarting broker of CPU
      }
    };
    const workers = [worker('call'), worker('call'), worker('cast'), worker('cast')];
    await answered.until(10);
    // Restart while a call is with the server: its caller must hear ConnectionLost, not wait.
    await handling.until(handling.items.length + 1);
    phase = 'restarting';
    await servers.a.restart();
    // Both sides say they are back (an event), then report consuming again.
    await Promise.all([s.reconnects.until(1, 30_000), c.reconnects.until(1, 30_000)]);
    await within(Promise.all([driverOf(sbus).whenConnected(), driverOf(cbus).whenConnected()]), 10_000, 'consumers restored');
    phase = 'after';
    for (let k = 0; k < 5; k++) await send('call');
    stop = true;
    await within(Promise.all(workers), CALL_TIMEOUT + 5_000, 'the traffic in flight across the restart');

    const lost = outcomes.filter((o) => o.kind === 'call' && o.phase === 'before' && o.err instanceof ConnectionLost);
    assert.ok(lost.length > 0, 'a call in flight when the connection dropped failed with ConnectionLost');
    const untyped = outcomes.filter((o) => o.err !== undefined && !(o.err instanceof MessagingTimeout || o.err instanceof MessageDeliveryFailure));
    assert.deepEqual(untyped.map((o) => `${o.kind}: ${String(o.err)}`), [], 'every failure is a typed error');
    const slow = outcomes.filter((o) => o.kind === 'call' && o.ms > CALL_TIMEOUT + 2_000);
    assert.deepEqual(slow.map((o) => `${o.ms} ms`), [], 'no call outlives its timeout');
    assert.ok(outcomes.some((o) => o.phase === 'restarting'), 'traffic ran during the restart');
    const afterBack = outcomes.filter((o) => o.phase === 'after');
    assert.ok(afterBack.length >= 5 && afterBack.every((o) => o.err === undefined), 'nothing fails once both sides are back');

    for (let i = 0; i < 20; i++) await client.cast(ctx, 'tick', { i, after: true });
    assert.deepEqual([...(await afterwards.until(20))].sort((x, y) => x - y), [...Array(20).keys()]);
    const failed = outcomes.filter((o) => o.err !== undefined);
    console.log(
      `restart under traffic: ${outcomes.length} sends, ${failed.length} failed with typed errors ` +
        `(${[...new Set(failed.map((o) => (o.err as Error).name))].join(', ') || 'none'}), ${earlier.items.length} casts received before and across it`,
    );
    await within(server.stop(), 10_000, 'server stop');
    // Closed now: they would only retry broker a after the next test kills it.
    await Promise.allSettled(buses.splice(0).map((bus) => bus.close()));
  });

  test('failover on reconnect: when the broker in use is killed, server and client move to the next broker of the list', async () => {
    const [a, b] = [servers.a, servers.b];
    const list = `rabbit://guest:guest@127.0.0.1:${a.port},guest:guest@127.0.0.1:${b.port}/?${FAST}`;
    const s = reconnectLogger();
    const c = reconnectLogger();
    const [sbus, cbus] = [await newBus({ transports: { default: list } }, s.logger), await newBus({ transports: { default: list } }, c.logger)];
    const topic = freshTopic('failover');
    const got = new Collector<string>();
    const server = sbus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong', tick: (_c: Context, x: { via: string }) => void got.push(x.via) }]);
    await server.start();
    const client = cbus.rpcClient({ topic }, { timeout: 10_000 });
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    const names = [driverOf(sbus).connectionName, driverOf(cbus).connectionName];
    const onA = await connectionNames(a);
    assert.ok(names.every((n) => onA.includes(n)), 'both start on the first broker of the list');

    await a.kill();
    const moved = await Promise.all([s.reconnects.until(1, 30_000), c.reconnects.until(1, 30_000)]);
    assert.deepEqual(moved.map((m) => m[0]), [`amqp://127.0.0.1:${b.port}/`, `amqp://127.0.0.1:${b.port}/`]);
    const onB = await connectionNames(b);
    assert.ok(names.every((n) => onB.includes(n)), 'both are connected to the second broker');
    await driverOf(sbus).whenConnected();
    await driverOf(cbus).whenConnected();
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    await client.cast(ctx, 'tick', { via: 'cast' });
    await client.prepare({ fanout: true }).cast(ctx, 'tick', { via: 'fanout' });
    assert.deepEqual([...(await got.until(2))].sort(), ['cast', 'fanout']);
    await server.stop();
  });
});
