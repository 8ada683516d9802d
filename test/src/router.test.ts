/** The pattern router on memory:// hubs: each pattern travels on the transport it maps to. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { Bus, ConfigError, InvalidTarget, TransportClosed, type Context } from '@hybridbus/core';
import { Collector, freshTopic } from './util.js';

const hubA = `memory://a-${randomUUID().slice(0, 8)}`;
const hubB = `memory://b-${randomUUID().slice(0, 8)}`;
const buses: Bus[] = [];
after(() => Promise.allSettled(buses.map((b) => b.close())));
const bus = async (config: Parameters<typeof Bus.create>[0]) => {
  const b = await Bus.create(config);
  buses.push(b);
  return b;
};
const hybrid = {
  transports: { direct: hubA, broker: hubB },
  patterns: { call: 'direct', cast: 'direct', fanout: 'broker', notify: 'broker' },
  topics: { scheduler: { cast: 'broker' } },
};
const onlyB = { transports: { default: hubB } };
const ctx: Context = {};

test('route(): patterns map, with per-topic overrides', async () => {
  const b = await bus(hybrid);
  assert.equal(b.route('compute', 'call'), 'direct');
  assert.equal(b.route('compute', 'cast'), 'direct');
  assert.equal(b.route('scheduler', 'cast'), 'broker');
  assert.equal(b.route('scheduler', 'call'), 'direct');
  assert.equal(b.route('x', 'fanout'), 'broker');
  assert.equal(b.route('x', 'notify'), 'broker');
});

test('a server listens on every transport its topic can arrive on; each pattern uses its own', async () => {
  const topic = freshTopic();
  const hybridSeen = new Collector<string>();
  const probeSeen = new Collector<string>();
  const endpoint = (seen: Collector<string>) => ({ hit: (_c: Context, a: { via: string }) => (seen.push(a.via), a.via) });
  const server = (await bus(hybrid)).rpcServer({ topic, server: 'h' }, [endpoint(hybridSeen)]);
  await server.start();
  // A probe that sits only on hub B: it must see the fanout, never the call or cast.
  const probe = (await bus(onlyB)).rpcServer({ topic, server: 'probe' }, [endpoint(probeSeen)]);
  await probe.start();
  const client = (await bus(hybrid)).rpcClient({ topic });
  for (let i = 0; i < 6; i++) assert.equal(await client.call(ctx, 'hit', { via: 'call' }), 'call');
  await client.cast(ctx, 'hit', { via: 'cast' });
  await client.prepare({ fanout: true }).cast(ctx, 'hit', { via: 'fanout' });
  await hybridSeen.until(8);
  await probeSeen.until(1);
  // fence on hub B: a call from a B-only client reaches probe or the hybrid server, both after the fanout
  await (await bus(onlyB)).rpcClient({ topic, server: 'probe' }).call(ctx, 'hit', { via: 'fence' });
  assert.deepEqual(probeSeen.items, ['fanout', 'fence']);
  assert.deepEqual([...hybridSeen.items].sort(), ['call', 'call', 'call', 'call', 'call', 'call', 'cast', 'fanout']);
  await server.stop();
  await probe.stop();
});

test('per-topic override: casts to "scheduler" go over the broker transport', async () => {
  const got = new Collector<string>();
  const probe = (await bus(onlyB)).rpcServer({ topic: 'scheduler', server: 'p' }, [{ update: () => void got.push('broker') }]);
  await probe.start();
  await (await bus(hybrid)).rpcClient({ topic: 'scheduler' }).cast(ctx, 'update');
  assert.deepEqual(await got.until(1), ['broker']);
  await probe.stop();
});

test('notifications travel on the notify transport', async () => {
  const topic = freshTopic('n');
  const got = new Collector<string>();
  const listener = (await bus(onlyB)).notificationListener([{ topic }], [{ info: (_c, _p, e) => void got.push(e) }]);
  await listener.start();
  await (await bus(hybrid)).notifier({ publisherId: 'p', topics: [topic] }).info(ctx, 'via.broker', {});
  assert.deepEqual(await got.until(1), ['via.broker']);
  await listener.stop();
});

test('only transports some pattern uses are opened; a closed bus refuses work', async () => {
  const b = await bus({ transports: { default: hubA, unused: hubB } });
  assert.throws(() => b.transport('unused'), /not in use by any pattern/);
  const before = b.rpcClient({ topic: 't' });
  await b.close();
  await assert.rejects(before.cast(ctx, 'x'), /closed/);
  // Made after close(): refused at once, not at the first send.
  const closed = (e: unknown): boolean => e instanceof TransportClosed && e.code === 'HB_CLOSED' && /the bus is closed/.test(e.message);
  assert.throws(() => b.rpcClient({ topic: 't' }), closed);
  assert.throws(() => b.rpcServer({ topic: 't', server: 's' }, [{}]), closed);
  assert.throws(() => b.notifier({ publisherId: 'p' }), closed);
  assert.throws(() => b.notificationListener([{ topic: 't' }], [{}]), closed);
  assert.throws(() => b.batchNotificationListener([{ topic: 't' }], [{}], { batchSize: 1, batchTimeout: 10 }), closed);
});

test('RpcClient options: a bad timeout is a ConfigError naming the option and the expected form', async () => {
  const b = await bus(onlyB);
  const config = (option: string, expected: RegExp) => (e: unknown): boolean => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.code, 'HB_CONFIG');
    assert.match(e.message, new RegExp(`${option}: `));
    assert.match(e.message, expected);
    return true;
  };
  for (const timeout of [-1, 0, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => b.rpcClient({ topic: 't' }, { timeout }), config('timeout', /must be a positive number of ms .*value was/));
    assert.throws(() => b.rpcClient({ topic: 't' }).prepare({ timeout }), config('timeout', /positive number of ms/));
  }
  await assert.rejects(b.rpcClient({ topic: 't' }).call(ctx, 'x', {}, { timeout: 0 }), config('timeout', /0 would time out at once/));
  assert.throws(() => b.rpcClient({ topic: 't' }, { callMonitorTimeout: -1 }), config('callMonitorTimeout', /non-negative number of ms \(0: no call monitoring\)/));
  assert.equal(b.rpcClient({ topic: 't' }, { callMonitorTimeout: 0, timeout: 1 }).options.callMonitorTimeout, 0);
});

test('a cast that cannot be sent is a rejection, not a throw: a fanout naming a server, an empty method', async () => {
  const b = await bus(onlyB);
  const attempt = (send: () => Promise<void>): Promise<void> => {
    let sent: Promise<void> | undefined;
    assert.doesNotThrow(() => void (sent = send()));
    return sent as Promise<void>;
  };
  const fanoutToOne = b.rpcClient({ topic: 't', server: 's' }).prepare({ fanout: true });
  await assert.rejects(attempt(() => fanoutToOne.cast(ctx, 'm')), (e: unknown) => e instanceof InvalidTarget && /a fanout cast cannot name a server/.test(e.message));
  await assert.rejects(attempt(() => b.rpcClient({ topic: 't' }).cast(ctx, '')), /method must be a non-empty string/);
});
