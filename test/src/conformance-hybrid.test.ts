/**
 * The hybrid router end to end, the default shape of a deployment: call and cast over
 * zmq-direct, fanout and notifications over RabbitMQ — the whole conformance suite, then a
 * probe proving each pattern took its own transport.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Bus, type ConfigInput, type Context } from '@hybridbus/core';
import '@hybridbus/rabbit-brokered';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { conformance } from './conformance/suite.js';
import { startRabbitMQ, type RabbitMQServer } from './harness/launcher.js';
import { Collector, freshTopic, tempDir } from './util.js';

let rabbit: RabbitMQServer | undefined;
const nsDir = tempDir('hb-hybrid-ns-');
const broker = (): string => (rabbit as RabbitMQServer).url.replace(/^amqp:/, 'rabbit:');
const hybrid = (): ConfigInput => ({
  transports: { direct: `zmq://?matchmaker=local:${nsDir}&heartbeat_interval=200`, broker: broker() },
  patterns: { call: 'direct', cast: 'direct', fanout: 'broker', notify: 'broker' },
});

before(async () => {
  rabbit = await startRabbitMQ({ plugins: [] });
});
after(async () => rabbit?.stop());

conformance({
  name: 'hybrid router (call/cast: zmq://, fanout/notify: rabbit://)',
  config: hybrid,
  crash: (bus: Bus) => (bus.transport('direct') as ZmqDriver).close(),
  noServerTimeout: 2_000,
});

describe('hybrid routing on real transports', () => {
  const buses: Bus[] = [];
  after(() => Promise.allSettled(buses.map((b) => b.close())));
  const bus = async (c: ConfigInput) => {
    const b = await Bus.create(c);
    buses.push(b);
    return b;
  };

  test('a server gets calls over ZeroMQ and fanouts over RabbitMQ; a broker-only probe sees only the fanout', async () => {
    const topic = freshTopic();
    const ctx: Context = {};
    const seen = new Collector<string>();
    const probeSeen = new Collector<string>();
    const endpoint = (c: Collector<string>) => ({ hit: (_x: Context, a: { via: string }) => (c.push(a.via), a.via) });
    const server = (await bus(hybrid())).rpcServer({ topic, server: 'h' }, [endpoint(seen)]);
    await server.start();
    const probe = (await bus({ transports: { default: broker() } })).rpcServer({ topic, server: 'probe' }, [endpoint(probeSeen)]);
    await probe.start();
    const client = (await bus(hybrid())).rpcClient({ topic });
    for (let i = 0; i < 5; i++) assert.equal(await client.call(ctx, 'hit', { via: 'call' }), 'call');
    await client.prepare({ fanout: true }).cast(ctx, 'hit', { via: 'fanout' });
    await seen.until(6);
    await probeSeen.until(1);
    // A call straight to the probe over the broker: anything else for it would have arrived first.
    await (await bus({ transports: { default: broker() } })).rpcClient({ topic, server: 'probe' }).call(ctx, 'hit', { via: 'fence' });
    assert.deepEqual(probeSeen.items, ['fanout', 'fence']);
    assert.deepEqual([...seen.items].sort(), ['call', 'call', 'call', 'call', 'call', 'fanout']);
    await server.stop();
    await probe.stop();
  });
});
