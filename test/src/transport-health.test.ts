/**
 * Driver statistics, health and connection events where the behaviour is the driver's own: a
 * broker that goes away and comes back (rabbit://, amqp:// through a broker), a zmq:// server
 * lost with a call in flight and one coming back on its port, garbage counted as dropped. The
 * contract's common part (connected after a call, pendingCalls, down after close) is in the
 * conformance table (conformance/health.ts).
 */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { after, describe, test } from 'node:test';
import * as zmq from 'zeromq';
import { Bus, ConnectionLost, type ConfigInput, type Context, type Driver, type TransportEvent } from '@hybridbus/core';
import '@hybridbus/amqp1';
import '@hybridbus/rabbit-brokered';
import '@hybridbus/zmq-direct';
import { FRAME_VERSION, type ZmqDriver } from '@hybridbus/zmq-direct';
import { freePort, startProtonBroker, startRabbitMQ, startRedis, type RunningServer } from './harness/launcher.js';
import { Collector, deferred, freshTopic, tempDir } from './util.js';

const ctx: Context = { request_id: 'req-health' };
type Kind = 'connect' | 'disconnect' | 'reconnect';

/** The `hybridbus:transport:<kind>` events about `peer` (matched by `match`), until stopped. */
function watch(kind: Kind, match: (e: TransportEvent) => boolean): { events: Collector<TransportEvent>; stop: () => void } {
  const events = new Collector<TransportEvent>();
  const name = `hybridbus:transport:${kind}`;
  const fn = (m: unknown): void => {
    if (match(m as TransportEvent)) events.push(m as TransportEvent);
  };
  diagnostics.subscribe(name, fn);
  return { events, stop: () => void diagnostics.unsubscribe(name, fn) };
}

const buses: Bus[] = [];
const servers: RunningServer[] = [];
const stops: Array<() => void> = [];
after(async () => {
  for (const s of stops) s();
  await Promise.allSettled(buses.map((b) => b.close()));
  await Promise.allSettled(servers.map((s) => s.stop()));
});
const newBus = async (config: ConfigInput): Promise<Bus> => {
  const bus = await Bus.create(config);
  buses.push(bus);
  return bus;
};
const transport = (bus: Bus): Driver => bus.transport('default');
const watching = (kind: Kind, match: (e: TransportEvent) => boolean): Collector<TransportEvent> => {
  const w = watch(kind, match);
  stops.push(w.stop);
  return w.events;
};

describe('zmq:// statistics and health', () => {
  const dir = tempDir('hb-health-zmq-');
  const url = (extra = ''): ConfigInput => ({ transports: { default: `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0${extra}` } });

  test('dropped counts garbage a server socket was sent', async () => {
    const topic = freshTopic();
    const sbus = await newBus(url('&max_message_size=4096'));
    await sbus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]).start();
    const server = transport(sbus) as ZmqDriver;
    const raw = new zmq.Dealer({ linger: 0 });
    raw.connect(`tcp://${(await server.address()) as string}`);
    try {
      const garbage: Buffer[][] = [
        [Buffer.from('HB9'), Buffer.from('c{}')], // unknown version
        [FRAME_VERSION, Buffer.from('Z{}')], // unknown kind
        [FRAME_VERSION, Buffer.from('c{not json')],
        [FRAME_VERSION, Buffer.concat([Buffer.from('s'), Buffer.alloc(4500, 0x61)])], // oversize
        // No method: refused with a nack, the last of these, so every drop before it is counted when it comes.
        [FRAME_VERSION, Buffer.from(`c${JSON.stringify({ i: 'x1', k: `openstack/${topic}`, m: { args: {} } })}`)],
      ];
      for (const g of garbage) await raw.send(g);
      await raw.receive();
      assert.equal(server.stats().dropped, garbage.length);
      assert.equal(server.stats().extra?.['oversize'], 1);
      assert.equal(server.health().state, 'connected', 'garbage is no fault of the transport');
    } finally {
      raw.close();
    }
  });

  test('a server lost with a call in flight: disconnect event, ConnectionLost, degraded naming the peer; back on its port: reconnect event, reconnects 1, connected', async () => {
    const topic = freshTopic();
    const port = await freePort();
    const at = `&port_range=${port}-${port}`;
    const peer = `127.0.0.1:${port}`;
    const ofPeer = (e: TransportEvent): boolean => e.scheme === 'zmq' && e.peer === peer;
    const connects = watching('connect', ofPeer);
    const disconnects = watching('disconnect', ofPeer);
    const reconnects = watching('reconnect', ofPeer);

    const started = deferred();
    const first = await newBus(url(at));
    await first.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong', hang: () => (started.resolve(), new Promise(() => undefined)) }]).start();
    // Long enough for the second server to bind before the client gives the peer up.
    const cbus = await newBus(url('&connect_timeout=60000'));
    const client = cbus.rpcClient({ topic }, { timeout: 60_000 });
    const driver = transport(cbus);
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    assert.equal((await connects.until(1)).length, 1);
    assert.equal(driver.stats().connections, 1);

    const call = client.call(ctx, 'hang');
    await started.promise;
    const failed = assert.rejects(call, ConnectionLost); // handled before it can reject
    await transport(first).close(); // the server process "dies"
    await failed;
    const [gone] = await disconnects.until(1);
    assert.ok(gone?.reason, 'a disconnect says why');
    const h = driver.health();
    assert.equal(h.state, 'degraded');
    assert.match(h.reason ?? '', new RegExp(peer.replace(/\./g, '\\.')));

    const second = await newBus(url(at));
    await second.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong again' }]).start();
    await reconnects.until(1, 30_000);
    assert.equal(driver.stats().reconnects, 1);
    assert.equal(driver.health().state, 'connected');
    assert.equal(await client.call(ctx, 'ping'), 'pong again');
    assert.equal(connects.items.length, 1, 'the reconnect is not a new connect');
  });
});

describe('zmq:// health while its name service is away', () => {
  test('Redis down: degraded, saying the name service is unreachable, calls answered from the cache; Redis back: connected', async () => {
    const redis = await startRedis();
    servers.push(redis);
    const config: ConfigInput = { transports: { default: `zmq://?matchmaker=${encodeURIComponent(redis.url)}&heartbeat_interval=200&ns_cache=0` } };
    const topic = freshTopic();
    await (await newBus(config)).rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]).start();
    const cbus = await newBus(config);
    const client = cbus.rpcClient({ topic }, { timeout: 10_000 });
    const driver = transport(cbus);
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    assert.equal(driver.health().state, 'connected');

    await redis.kill();
    // Without a lookup cache every call asks Redis: this one fails to, and is answered from the stale cache.
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    const h = driver.health();
    assert.equal(h.state, 'degraded');
    assert.match(h.reason ?? '', /name service \(redis\) unreachable/);
    assert.equal(cbus.health().state, 'degraded');

    await redis.restart();
    // The name service is reachable again once a lookup (or the reconnect) succeeds: no event says when.
    const deadline = Date.now() + 30_000;
    while (driver.health().state !== 'connected') {
      assert.ok(Date.now() < deadline, `still ${JSON.stringify(driver.health())}`);
      assert.equal(await client.call(ctx, 'ping'), 'pong');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
});

describe('rabbit:// statistics and health', () => {
  test('while RabbitMQ is down: down with the loss as reason and a disconnect event; after its restart: a reconnect event, reconnects 1, connected', async () => {
    const rabbit = await startRabbitMQ({ plugins: [] });
    servers.push(rabbit);
    const ofBroker = (e: TransportEvent): boolean => e.scheme === 'rabbit' && (e.peer ?? '').includes(`:${rabbit.port}/`);
    const connects = watching('connect', ofBroker);
    const disconnects = watching('disconnect', ofBroker);
    const reconnects = watching('reconnect', ofBroker);
    const config: ConfigInput = { transports: { default: `${rabbit.url.replace(/^amqp:/, 'rabbit:')}?rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1` } };
    const topic = freshTopic();
    const sbus = await newBus(config);
    await sbus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]).start();
    const cbus = await newBus(config);
    const client = cbus.rpcClient({ topic }, { timeout: 30_000 });
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    const driver = transport(cbus);
    assert.equal(driver.health().state, 'connected');
    assert.ok((await connects.until(2)).every((e) => e.transport === 'default'));
    assert.equal(driver.stats().reconnects, 0);

    await rabbit.kill();
    await disconnects.until(2);
    const down = driver.health();
    assert.equal(down.state, 'down');
    assert.match(down.reason ?? '', /connection lost: .*reconnecting/);
    assert.doesNotMatch(down.reason ?? '', /guest/, 'no credentials in a reason');
    assert.equal(driver.stats().connections, 0);
    assert.equal(cbus.health().state, 'down');

    await rabbit.restart();
    await reconnects.until(2, 60_000);
    // Up means its consumers are back too: the reply queue is consumed again.
    assert.equal(driver.health().state, 'connected');
    assert.equal(driver.stats().reconnects, 1);
    assert.equal(driver.stats().connections, 1);
    assert.equal(await client.call(ctx, 'ping'), 'pong');
  });
});

describe('amqp:// statistics and health', () => {
  test('through a broker: down with why while it is away, a reconnect event and reconnects 1 after it returns', async () => {
    const broker = await startProtonBroker({ flavour: 'cpp' });
    servers.push(broker);
    const ofBroker = (e: TransportEvent): boolean => e.scheme === 'amqp' && (e.peer ?? '').includes(`:${broker.port}`);
    const disconnects = watching('disconnect', ofBroker);
    const reconnects = watching('reconnect', ofBroker);
    const config: ConfigInput = { transports: { default: `${broker.url.replace(/\/?$/, '/')}?connection_retry_interval=0.1&connection_retry_interval_max=0.5` } };
    const topic = freshTopic();
    const sbus = await newBus(config);
    await sbus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]).start();
    const cbus = await newBus(config);
    const client = cbus.rpcClient({ topic }, { timeout: 30_000 });
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    const driver = transport(cbus);
    assert.equal(driver.health().state, 'connected');

    await broker.kill();
    await disconnects.until(2);
    const down = driver.health();
    assert.equal(down.state, 'down');
    assert.match(down.reason ?? '', /connection lost/);
    assert.equal(driver.stats().connections, 0);

    await broker.restart();
    await reconnects.until(2, 60_000);
    assert.equal(driver.health().state, 'connected');
    assert.equal(driver.stats().reconnects, 1);
    assert.equal(await client.call(ctx, 'ping'), 'pong');
  });

  test('direct: a connect event when a client reaches a server; the server lost with a call in flight: a disconnect event, ConnectionLost, degraded naming it', async () => {
    const dir = tempDir('hb-health-amqp1-');
    const config: ConfigInput = { transports: { default: `amqp://?mode=direct&matchmaker=local:${dir}&ns_cache=0` } };
    const topic = freshTopic();
    const started = deferred();
    const sbus = await newBus(config);
    await sbus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong', hang: () => (started.resolve(), new Promise(() => undefined)) }]).start();
    const connects = watching('connect', (e) => e.scheme === 'amqp' && e.transport === 'default');
    const cbus = await newBus(config);
    const client = cbus.rpcClient({ topic }, { timeout: 60_000 });
    const driver = transport(cbus);
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    const [open] = await connects.until(1);
    const disconnects = watching('disconnect', (e) => e.peer === open?.peer);
    assert.equal(driver.stats().connections, 1);
    assert.equal(driver.health().state, 'connected');

    const call = client.call(ctx, 'hang');
    await started.promise;
    assert.equal(driver.stats().pendingCalls, 1);
    const failed = assert.rejects(call, ConnectionLost); // handled before it can reject
    await transport(sbus).close(); // the server process goes
    await failed;
    const [gone] = await disconnects.until(1);
    assert.ok(gone?.reason);
    assert.equal(driver.stats().connections, 0);
    assert.equal(driver.stats().pendingCalls, 0);
    const h = driver.health();
    assert.equal(h.state, 'degraded');
    assert.ok((h.reason ?? '').includes(open?.peer as string), h.reason);
  });
});
