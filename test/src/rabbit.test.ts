/**
 * rabbit-brokered against a real RabbitMQ: the topology and bytes oslo.messaging puts on the
 * wire (checked with rabbitmqctl and a raw amqplib peer), malformed input, mandatory
 * delivery, options, confirms, and a broker restart under load (last: it restarts the broker).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { Bus, ConfigError, MessageDeliveryFailure, MessageUndeliverable, REQUEUE, RemoteError, Target, type ConfigInput, type Context } from '@hybridbus/core';
import { type IncomingRpc } from '@hybridbus/core/driver';
import { AuthenticationFailed, ConnectionLost } from '@hybridbus/core';
import { RabbitDriver, parseRabbitUrl } from '@hybridbus/rabbit-brokered';
import { WriteBatcher, handshakeRefusal, socketOf } from '@hybridbus/rabbit-brokered/amqplib-internals';
import { processTree, sharedServers, startRabbitMQ } from './harness/launcher.js';
import { Collector, deferred, freshTopic, recordingLogger, type RecordingLogger } from './util.js';

const HEX32 = /^[0-9a-f]{32}$/;
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ctx: Context = { user_id: 'u', project_id: 'p', request_id: 'req-1' };

type Row = Record<string, unknown>;
type Dict = Record<string, unknown>;

describe('rabbit-brokered on a real RabbitMQ', () => {
  const buses: Bus[] = [];
  const raws: ChannelModel[] = [];
  // Registered before sharedServers' hooks, so it runs before the broker stops.
  after(async () => {
    await Promise.allSettled(buses.map((b) => b.close()));
    await Promise.allSettled(raws.map((r) => r.close()));
  });
  const servers = sharedServers({ rabbit: () => startRabbitMQ({ plugins: [] }) });

  const url = (query = ''): string => servers.rabbit.url.replace(/^amqp:/, 'rabbit:') + query;
  const newBus = async (config: ConfigInput = {}, logger?: RecordingLogger): Promise<Bus> => {
    const bus = await Bus.create({ transports: { default: url() }, ...config }, logger ? { logger } : {});
    buses.push(bus);
    return bus;
  };
  const driverOf = (bus: Bus): RabbitDriver => bus.transport('default') as RabbitDriver;
  const ctl = async (...args: string[]): Promise<Row[]> => JSON.parse(await servers.rabbit.ctl([...args, '--formatter', 'json'])) as Row[];
  const queues = async (): Promise<Map<string, Row>> =>
    new Map((await ctl('list_queues', 'name', 'durable', 'auto_delete', 'exclusive', 'arguments')).map((r) => [String(r['name']), r]));
  const exchanges = async (): Promise<Map<string, Row>> =>
    new Map((await ctl('list_exchanges', 'name', 'type', 'durable', 'auto_delete')).map((r) => [String(r['name']), r]));
  const bindings = async (): Promise<string[]> =>
    (await ctl('list_bindings', 'source_name', 'destination_name', 'routing_key')).map((r) => `${r['source_name']} -> ${r['destination_name']} : ${r['routing_key']}`);
  /** rabbitmqctl's JSON for queue arguments: [[name, type, value], ...]. */
  const args = (row: Row | undefined): Dict => Object.fromEntries(((row?.['arguments'] as unknown[][]) ?? []).map((a) => [a[0], a[2]]));
  const flags = (row: Row | undefined) => ({ durable: row?.['durable'], auto_delete: row?.['auto_delete'], exclusive: row?.['exclusive'], args: args(row) });

  const raw = async (): Promise<Channel> => {
    const conn = await connect(servers.rabbit.url);
    raws.push(conn);
    return conn.createChannel();
  };
  const rawConfirm = async (): Promise<ConfirmChannel> => {
    const conn = await connect(servers.rabbit.url);
    raws.push(conn);
    return conn.createConfirmChannel();
  };
  /** A raw queue collecting whatever the given exchange routes to it with `key`. */
  const tap = async (ch: Channel, exchange: string, key: string, type = 'topic'): Promise<Collector<ConsumeMessage>> => {
    const got = new Collector<ConsumeMessage>();
    if (exchange !== '') await ch.assertExchange(exchange, type, { durable: false, autoDelete: type === 'fanout' });
    const { queue } = await ch.assertQueue('', { exclusive: true });
    if (exchange !== '') await ch.bindQueue(queue, exchange, key);
    await ch.consume(queue, (m) => m && got.push(m), { noAck: true });
    return got;
  };
  const inner = (m: ConsumeMessage): Dict => {
    const outer = JSON.parse(m.content.toString('utf8')) as Dict;
    assert.deepEqual(Object.keys(outer).sort(), ['oslo.message', 'oslo.version']);
    assert.equal(outer['oslo.version'], '2.0');
    assert.equal(typeof outer['oslo.message'], 'string');
    return JSON.parse(outer['oslo.message'] as string) as Dict;
  };
  const env = (d: Dict): Buffer => Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(d) }));
  const JSON_PROPS = { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 2, priority: 0, headers: {} };
  const assertCapturedProps = (m: ConsumeMessage, expiration?: string): void => {
    const p = m.properties;
    assert.equal(p.contentType, 'application/json');
    assert.equal(p.contentEncoding, 'utf-8');
    assert.equal(p.deliveryMode, 2);
    assert.equal(p.priority, 0);
    assert.deepEqual(p.headers, {});
    assert.equal(p.expiration, expiration);
    for (const k of ['correlationId', 'replyTo', 'messageId', 'timestamp', 'type'] as const) assert.equal(p[k], undefined, k);
  };

  test('topology: exchanges, queues, flags and bindings exactly as oslo declares them', async () => {
    const topic = freshTopic('topo');
    const nt = freshTopic('topo-n');
    const pool = freshTopic('topo-pool');
    const sbus = await newBus();
    const server = sbus.rpcServer({ topic, server: 's1' }, [{ ping: () => 'pong' }]);
    await server.start();
    const cbus = await newBus();
    const client = cbus.rpcClient({ topic });
    for (let i = 0; i < 10; i++) assert.equal(await client.call(ctx, 'ping'), 'pong');
    await cbus.notifier({ publisherId: 'p', topics: [nt] }).info(ctx, 'e', {});
    const listener = cbus.notificationListener([{ topic: nt }], [{ info: () => undefined, error: () => undefined }], { pool });
    await listener.start();

    const q = await queues();
    const plain = { durable: false, auto_delete: false, exclusive: false, args: {} };
    const transient = { ...plain, args: { 'x-expires': 1_800_000 } };
    assert.deepEqual(flags(q.get(topic)), plain);
    assert.deepEqual(flags(q.get(`${topic}.s1`)), plain);
    assert.deepEqual(flags(q.get(`${nt}.info`)), plain, 'the notifier declares the priority queue');
    assert.deepEqual(flags(q.get(pool)), plain);
    const fanoutQueues = [...q.keys()].filter((n) => n.startsWith(`${topic}_fanout_`));
    assert.equal(fanoutQueues.length, 1);
    assert.match(fanoutQueues[0] as string, new RegExp(`^${topic}_fanout_[0-9a-f]{32}$`));
    assert.deepEqual(flags(q.get(fanoutQueues[0] as string)), transient);
    // One reply queue per driver (process), however many calls it made.
    const replyQ = driverOf(cbus).replyQueue;
    assert.match(replyQ, /^reply_[0-9a-f]{32}$/);
    assert.deepEqual(flags(q.get(replyQ)), transient);
    assert.equal(q.has(driverOf(sbus).replyQueue), false, 'a server that never calls has no reply queue');

    const x = await exchanges();
    assert.deepEqual(x.get('openstack'), { name: 'openstack', type: 'topic', durable: false, auto_delete: false });
    assert.deepEqual(x.get(`${topic}_fanout`), { name: `${topic}_fanout`, type: 'fanout', durable: false, auto_delete: true });

    const b = await bindings();
    for (const expected of [
      `openstack -> ${topic} : ${topic}`,
      `openstack -> ${topic}.s1 : ${topic}.s1`,
      `${topic}_fanout -> ${fanoutQueues[0]} : ${topic}`,
      `openstack -> ${nt}.info : ${nt}.info`,
      `openstack -> ${pool} : ${nt}.info`,
      `openstack -> ${pool} : ${nt}.error`,
    ]) {
      assert.ok(b.includes(expected), `missing binding ${expected}`);
    }
    assert.equal(b.filter((s) => s.startsWith(`openstack -> ${pool} :`)).length, 2, 'one binding per handled priority');
    assert.equal(b.filter((s) => s.startsWith('openstack -> reply_')).length, 0, 'reply queues only via the default exchange');

    // Channels are reused: a bounded number per connection, and one confirm channel.
    const chans = (await ctl('list_channels', 'connection', 'confirm', 'consumer_count'));
    assert.ok(chans.length <= 10, `${chans.length} channels`);
    await listener.stop();
    await server.stop();
    assert.equal((await queues()).has(fanoutQueues[0] as string), false, 'a stopped server deletes its own fanout queue');
  });

  test('acks: notifications settled out of order, some requeued, are each handled once and leave nothing unacked', async () => {
    // The driver acks a run of settled deliveries with one multiple ack: one must never cover
    // a delivery still with its handler, or one that was requeued.
    const nt = freshTopic('acks');
    const pool = freshTopic('acks-pool');
    const N = 30;
    const gates = new Map<number, (r: typeof REQUEUE | undefined) => void>();
    const arrived = new Collector<number>();
    const acked = new Collector<number>();
    const seen = new Map<number, number>();
    const lbus = await newBus();
    const listener = lbus.notificationListener(
      [{ topic: nt }],
      [
        {
          info: (_c, _p, _e, payload) => {
            const i = (payload as { i: number }).i;
            const n = (seen.get(i) ?? 0) + 1;
            seen.set(i, n);
            // The first delivery of every third one is requeued, the rest acked; all of them
            // settle when the test says, in an order unlike the arrival order.
            if (n > 1) return void acked.push(i);
            return new Promise<typeof REQUEUE | undefined>((resolve) => {
              gates.set(i, (r) => (r === undefined && acked.push(i), resolve(r)));
              arrived.push(i);
            });
          },
        },
      ],
      { pool, allowRequeue: true },
    );
    await listener.start();
    const notifier = (await newBus()).notifier({ publisherId: 'p', topics: [nt] });
    for (let i = 0; i < N; i++) await notifier.info(ctx, 'e', { i });
    await arrived.until(N);
    const order = [...Array(N).keys()].sort((a, b) => (a % 4) - (b % 4) || b - a);
    for (const i of order) gates.get(i)?.(i % 3 === 0 ? REQUEUE : undefined);
    const all = await acked.until(N);
    assert.deepEqual([...all].sort((a, b) => a - b), [...Array(N).keys()]);
    await listener.stop();
    const row = (await ctl('list_queues', 'name', 'messages_ready', 'messages_unacknowledged')).find((r) => r['name'] === pool);
    assert.deepEqual([row?.['messages_ready'], row?.['messages_unacknowledged']], [0, 0], 'every notification acked once, none left');
    for (let i = 0; i < N; i++) assert.equal(seen.get(i), i % 3 === 0 ? 2 : 1, `notification ${i}`);
  });

  test('a notifier of two topics and one listener of both: the listener gets it on each topic (the same _unique_id on another topic is not a duplicate)', async () => {
    const lbus = await newBus();
    const got = new Collector<string>();
    for (const p of [freshTopic('two-pool'), undefined]) {
      const t1 = freshTopic('two-a');
      const t2 = freshTopic('two-b');
      const listener = lbus.notificationListener([{ topic: t1 }, { topic: t2 }], [{ info: (_c, _p, e) => void got.push(`${p ?? 'no pool'} ${e}`) }], p === undefined ? {} : { pool: p });
      await listener.start();
      await (await newBus()).notifier({ publisherId: 'p', topics: [t1, t2] }).info(ctx, 'e.both', {});
      const two = await got.until(2);
      assert.deepEqual(two, [`${p ?? 'no pool'} e.both`, `${p ?? 'no pool'} e.both`]);
      got.items.length = 0;
      await listener.stop();
    }
  });

  test('notification_default_queue=false: the notifier declares no <topic>.<priority> queue; a pool listener still gets every notification, and with no listener it is an error', async () => {
    const nt = freshTopic('ndq');
    const pool = freshTopic('ndq-pool');
    const nbus = await newBus({ transports: { default: url('?notification_default_queue=false') } });
    const notifier = nbus.notifier({ publisherId: 'p', topics: [nt] });
    // Nothing bound yet: not silently dropped.
    await assert.rejects(notifier.info(ctx, 'e', { i: -1 }), MessageUndeliverable);
    const lbus = await newBus();
    const got = new Collector<unknown>();
    const listener = lbus.notificationListener([{ topic: nt }], [{ info: (_c, _p, _e, payload) => void got.push(payload) }], { pool });
    await listener.start();
    for (let i = 0; i < 5; i++) await notifier.info(ctx, 'e', { i });
    assert.deepEqual((await got.until(5)).map((p) => (p as { i: number }).i).sort(), [0, 1, 2, 3, 4]);
    const q = await queues();
    assert.equal(q.has(`${nt}.info`), false, 'no default queue: nothing routed to a queue nobody consumes');
    assert.ok(q.has(pool));
    // The default (oslo's) still declares it.
    await (await newBus()).notifier({ publisherId: 'p', topics: [nt] }).info(ctx, 'e', {});
    assert.equal((await queues()).has(`${nt}.info`), true);
    await listener.stop();
  });

  test('options change the flags: durable, auto-delete, quorum, transient TTL, prefetch, heartbeat', async () => {
    const topic = freshTopic('opt');
    const durable = await newBus({
      transports: { default: url('?amqp_durable_queues=true&rabbit_transient_queues_ttl=60&rabbit_qos_prefetch_count=7&heartbeat_timeout_threshold=10') },
      controlExchange: 'hb-durable',
    });
    const server = durable.rpcServer({ topic, server: 's1' }, [{ ping: () => 'pong' }]);
    await server.start();
    const quorum = await newBus({ transports: { default: url('?rabbit_quorum_queue=true') }, controlExchange: 'hb-quorum' });
    const nt = freshTopic('opt-n');
    await quorum.notifier({ publisherId: 'p', topics: [nt] }).error(ctx, 'e', {});
    const autoDel = await newBus({ transports: { default: url('?amqp_auto_delete=true') }, controlExchange: 'hb-autodel' });
    const adTopic = freshTopic('opt-ad');
    const adServer = autoDel.rpcServer({ topic: adTopic, server: 's1' }, [{ ping: () => 'pong' }]);
    await adServer.start();

    const q = await queues();
    assert.deepEqual(flags(q.get(topic)), { durable: true, auto_delete: false, exclusive: false, args: {} });
    assert.deepEqual(flags(q.get(`${topic}.s1`)), { durable: true, auto_delete: false, exclusive: false, args: {} });
    const fq = [...q.keys()].find((n) => n.startsWith(`${topic}_fanout_`));
    assert.deepEqual(flags(q.get(fq as string)), { durable: false, auto_delete: false, exclusive: false, args: { 'x-expires': 60_000 } });
    const qq = flags(q.get(`${nt}.error`));
    assert.deepEqual({ durable: qq.durable, auto_delete: qq.auto_delete, args: qq.args }, { durable: true, auto_delete: false, args: { 'x-queue-type': 'quorum' } });
    assert.deepEqual(flags(q.get(adTopic)), { durable: false, auto_delete: true, exclusive: false, args: {} });
    const x = await exchanges();
    assert.equal(x.get('hb-durable')?.['durable'], true);
    assert.equal(x.get('hb-autodel')?.['auto_delete'], true);
    assert.equal(driverOf(durable).capabilities.durable, true);
    assert.equal(driverOf(autoDel).capabilities.durable, false);

    const conns = await ctl('list_connections', 'pid', 'timeout', 'client_properties');
    const nameOf = (r: Row): string => String(((r['client_properties'] as unknown[][]).find((p) => p[0] === 'connection_name') ?? [])[2]);
    const mine = conns.find((r) => nameOf(r) === driverOf(durable).connectionName);
    assert.ok(mine, 'our connection announces its connection_name');
    assert.equal(mine['timeout'], 10, 'heartbeat_timeout_threshold is the negotiated AMQP heartbeat');
    const other = conns.find((r) => nameOf(r) === driverOf(quorum).connectionName);
    assert.equal(other?.['timeout'], 60, 'oslo default heartbeat');
    const chans = await ctl('list_channels', 'connection', 'prefetch_count', 'consumer_count', 'confirm');
    const consuming = chans.filter((c) => c['connection'] === mine['pid'] && Number(c['consumer_count']) > 0);
    assert.ok(consuming.length > 0 && consuming.every((c) => c['prefetch_count'] === 7), 'rabbit_qos_prefetch_count on consumer channels');
    assert.ok(chans.some((c) => c['connection'] === other?.['pid'] && c['confirm'] === true), 'sends go through a confirm channel');
    await server.stop();
    await adServer.stop();
  });

  test('wire: call, cast, fanout and notification bodies and properties as captured', async () => {
    const topic = freshTopic('wire');
    const ch = await raw();
    const requests = await tap(ch, 'openstack', topic);
    const fanouts = await tap(ch, `${topic}_fanout`, '', 'fanout');
    const bus = await newBus();
    const replyQ = driverOf(bus).replyQueue;
    const client = bus.rpcClient({ topic, namespace: 'test', version: '1.2' }, { timeout: 10_000, callMonitorTimeout: 2_000 });

    // call, answered by hand with an old-style two-part reply, a duplicate and a heartbeat
    const call = client.call(ctx, 'echo', { arg: 'é' });
    const [req] = await requests.until(1);
    assert.ok(req);
    assert.equal(req.fields.exchange, 'openstack');
    assert.equal(req.fields.routingKey, topic);
    assertCapturedProps(req, '10000');
    const r = inner(req);
    assert.deepEqual(Object.keys(r), ['method', 'args', 'namespace', 'version', '_msg_id', '_reply_q', '_timeout', '_unique_id', '_context_user_id', '_context_project_id', '_context_request_id']);
    assert.equal(r['method'], 'echo');
    assert.deepEqual(r['args'], { arg: 'é' });
    assert.equal(r['namespace'], 'test');
    assert.equal(r['version'], '1.2');
    assert.match(String(r['_msg_id']), HEX32);
    assert.equal(r['_reply_q'], replyQ);
    assert.equal(r['_timeout'], 2, 'call monitor timeout in seconds on the wire');
    assert.match(String(r['_unique_id']), HEX32);
    assert.equal(r['_context_user_id'], 'u');
    const msgId = r['_msg_id'];
    const send = (d: Dict) => ch.publish('', replyQ, env({ _msg_id: msgId, ...d }), JSON_PROPS);
    send({ result: 'first', failure: null, ending: false, _unique_id: 'a'.repeat(32) });
    send({ result: 'again', failure: null, ending: false, _unique_id: 'a'.repeat(32) }); // same id: a duplicate
    send({ result: null, failure: null, ending: false, _unique_id: 'b'.repeat(32) }); // heartbeat
    send({ result: null, failure: null, ending: true, _unique_id: 'c'.repeat(32) });
    assert.equal(await call, 'first');

    // a call without call monitoring: _timeout null; expiration from the call's timeout
    const call2 = bus.rpcClient({ topic }, { timeout: 1_000 }).call(ctx, 'x').catch((e: unknown) => e);
    const [, req2] = await requests.until(2);
    assert.ok(req2);
    assertCapturedProps(req2, '1000');
    assert.equal(inner(req2)['_timeout'], null);
    ch.publish('', replyQ, env({ result: 7, failure: null, ending: true, _msg_id: inner(req2)['_msg_id'], _unique_id: 'd'.repeat(32) }), JSON_PROPS);
    assert.equal(await call2, 7);

    // cast: no expiration, no call fields
    await client.cast(ctx, 'tick', { n: 1 });
    const [, , cast] = await requests.until(3);
    assert.ok(cast);
    assertCapturedProps(cast);
    assert.deepEqual(Object.keys(inner(cast)), ['method', 'args', 'namespace', 'version', '_unique_id', '_context_user_id', '_context_project_id', '_context_request_id']);

    // fanout: the <topic>_fanout exchange, empty routing key
    await client.prepare({ fanout: true }).cast(ctx, 'refresh', {});
    const [fan] = await fanouts.until(1);
    assert.ok(fan);
    assert.equal(fan.fields.exchange, `${topic}_fanout`);
    assert.equal(fan.fields.routingKey, '');
    assertCapturedProps(fan);
    assert.equal(inner(fan)['method'], 'refresh');

    // notification: rk lower case, body upper case, dashed message id, oslo timestamp
    const nt = freshTopic('wire-n');
    await bus.notifier({ publisherId: 'compute.node-7', topics: [nt] }).warn(ctx, 'compute.instance.x', { s: 1 });
    const notes = new Collector<ConsumeMessage>();
    await ch.consume(`${nt}.warn`, (m) => m && notes.push(m), { noAck: true });
    const [note] = await notes.until(1);
    assert.ok(note);
    assert.equal(note.fields.exchange, 'openstack');
    assert.equal(note.fields.routingKey, `${nt}.warn`);
    assertCapturedProps(note);
    const n = inner(note);
    assert.deepEqual(Object.keys(n), ['message_id', 'publisher_id', 'event_type', 'priority', 'payload', 'timestamp', '_unique_id', '_context_user_id', '_context_project_id', '_context_request_id']);
    assert.match(String(n['message_id']), UUID4);
    assert.equal(n['publisher_id'], 'compute.node-7');
    assert.equal(n['priority'], 'WARN');
    assert.deepEqual(n['payload'], { s: 1 });
    assert.match(String(n['timestamp']), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
  });

  test('server side: _timeout seconds become callMonitorTimeoutMs; replies and heartbeats as captured', async () => {
    const topic = freshTopic('srv');
    const bus = await newBus({}, recordingLogger()); // core logs the endpoint's exception below
    const seen = new Collector<IncomingRpc>();
    const sub = await driverOf(bus).listen(new Target({ topic, server: 's' }), (m) => seen.push(m), { patterns: new Set(['call']) });
    const ch = await raw();
    const { queue: replyQ } = await ch.assertQueue('', { exclusive: true });
    const replies = new Collector<ConsumeMessage>();
    await ch.consume(replyQ, (m) => m && replies.push(m), { noAck: true });
    const request = (n: number, timeout: unknown) =>
      env({ method: 'm', args: { a: n }, _msg_id: String(n).repeat(32), _reply_q: replyQ, _timeout: timeout, _unique_id: String(n).repeat(32), _context_user_id: 'u' });
    ch.publish('openstack', topic, request(1, 2), { ...JSON_PROPS, expiration: '60000' });
    ch.publish('openstack', `${topic}.s`, request(2, '3'), JSON_PROPS); // oslo accepts a numeric string
    ch.publish('openstack', topic, request(3, null), JSON_PROPS);
    const all = await seen.until(3);
    const [m1, m2, m3] = [1, 2, 3].map((n) => all.find((m) => m.request.args['a'] === n));
    assert.ok(m1 && m2 && m3);
    assert.equal(m1.pattern, 'call');
    assert.equal(m1.callMonitorTimeoutMs, 2_000);
    assert.equal(m2.callMonitorTimeoutMs, 3_000);
    assert.equal(m3.callMonitorTimeoutMs, undefined);
    assert.deepEqual(m1.request.context, { user_id: 'u' });
    assert.deepEqual(m1.request.args, { a: 1 });
    assert.equal(m1.request.uniqueId, '1'.repeat(32));
    await m1.heartbeat();
    await m1.reply({ result: { ok: 1 }, failure: null });
    const [hb, final] = await replies.until(2);
    assert.ok(hb && final);
    for (const m of [hb, final]) {
      assert.equal(m.fields.exchange, '');
      assert.equal(m.fields.routingKey, replyQ);
      assertCapturedProps(m);
    }
    const h = inner(hb);
    assert.deepEqual(Object.keys(h), ['result', 'failure', 'ending', '_msg_id', '_unique_id']);
    assert.deepEqual({ ...h, _unique_id: undefined }, { result: null, failure: null, ending: false, _msg_id: '1'.repeat(32), _unique_id: undefined });
    const f = inner(final);
    assert.deepEqual({ ...f, _unique_id: undefined }, { result: { ok: 1 }, failure: null, ending: true, _msg_id: '1'.repeat(32), _unique_id: undefined });
    assert.match(String(f['_unique_id']), HEX32);
    assert.notEqual(f['_unique_id'], h['_unique_id']);
    await sub.stop();

    // A failure through core's server: a JSON string with oslo's fields.
    const server = bus.rpcServer({ topic: `${topic}-f`, server: 's' }, [{ fail: () => { throw Object.assign(new Error('boom'), { name: 'ValueError', module: 'builtins' }); } }]);
    await server.start();
    ch.publish('openstack', `${topic}-f`, env({ method: 'fail', args: {}, _msg_id: '4'.repeat(32), _reply_q: replyQ, _timeout: null, _unique_id: '4'.repeat(32) }), JSON_PROPS);
    const [, , failed] = await replies.until(3);
    assert.ok(failed);
    const fr = inner(failed);
    assert.equal(fr['result'], null);
    assert.equal(fr['ending'], true);
    assert.equal(typeof fr['failure'], 'string');
    const failure = JSON.parse(fr['failure'] as string) as Dict;
    assert.deepEqual(Object.keys(failure).sort(), ['args', 'class', 'kwargs', 'message', 'module', 'tb']);
    assert.equal(failure['class'], 'ValueError');
    assert.equal(failure['module'], 'builtins');
    assert.equal(failure['message'], 'boom');
    await server.stop();
  });

  test('call monitor: whatever _timeout a caller sends, the server heartbeats at a bounded rate and no timer overflows', async () => {
    const topic = freshTopic('cmt');
    const bus = await newBus();
    const CALL_MS = 1_000;
    const took = new Map<number, number>();
    const server = bus.rpcServer({ topic, server: 's' }, [
      {
        slow: async (_c: Context, a: { n: number }) => {
          const t0 = performance.now();
          await new Promise((r) => setTimeout(r, CALL_MS)); // the call's work: it takes this long
          took.set(a.n, performance.now() - t0);
          return a.n;
        },
      },
    ]);
    await server.start();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const ch = await raw();
      const { queue: replyQ } = await ch.assertQueue('', { exclusive: true });
      const beats = new Map<string, number>();
      const finals = new Collector<Dict>();
      await ch.consume(replyQ, (m) => {
        if (!m) return;
        const r = inner(m);
        if (r['ending'] === true) finals.push(r);
        else beats.set(String(r['_msg_id']), (beats.get(String(r['_msg_id'])) ?? 0) + 1);
      }, { noAck: true });
      // Seconds on the wire: 1e308 s is Infinity ms, 1e9 s is past setInterval's 2^31-1 ms, 0.001 s is 1 ms.
      const cases = [[1, 1e308], [2, 1e9], [3, 0.001]] as const;
      for (const [n, timeout] of cases) {
        const id = String(n).repeat(32);
        ch.publish('openstack', topic, env({ method: 'slow', args: { n }, _msg_id: id, _reply_q: replyQ, _timeout: timeout, _unique_id: id }), JSON_PROPS);
      }
      const done = await finals.until(3);
      assert.deepEqual(done.map((r) => r['result']).sort(), [1, 2, 3]);
      // Node reports an overflowing timer on the next tick: one turn of the event loop later it has.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.filter((w) => w.name === 'TimeoutOverflowWarning').map((w) => w.message), []);
      const count = (n: number): number => beats.get(String(n).repeat(32)) ?? 0;
      assert.equal(count(1), 0, 'an infinite monitor timeout is no monitor');
      assert.equal(count(2), 0, 'a monitor timeout of 31 years: no heartbeat within a 1 s call');
      // A 1 ms monitor cannot be honoured; the server still heartbeats, at most every 50 ms.
      const bound = Math.floor((took.get(3) ?? CALL_MS) / 50) + 1;
      assert.ok(count(3) >= 1 && count(3) <= bound, `${count(3)} heartbeats for 0.001 s during a ${Math.round(took.get(3) ?? 0)} ms call (at most ${bound})`);
    } finally {
      process.off('warning', onWarning);
    }
    await server.stop();
  });

  test('a cast or fanout no endpoint can take (no such method, a private one) is a warning and counted, not a silent drop', async () => {
    const topic = freshTopic('undispatchable');
    const logger = recordingLogger();
    const warned = new Collector<{ obj: object; msg: string | undefined }>();
    const warn = logger.warn;
    logger.warn = (obj, msg) => (warn(obj, msg), warned.push({ obj, msg }));
    const bus = await newBus({}, logger);
    const server = bus.rpcServer({ topic, server: 's' }, [
      {
        ping: () => 'pong',
        boom: () => {
          throw new Error('boom');
        },
        _x: () => 'private',
      },
    ]);
    await server.start();
    assert.deepEqual(server.counters, { handled: 0, failed: 0, undispatchable: 0 });
    const client = (await newBus()).rpcClient({ topic });
    await client.cast(ctx, 'nope');
    await client.cast(ctx, '_x');
    await client.prepare({ fanout: true }).cast(ctx, 'nope');
    const warnings = await warned.until(3);
    const seen = warnings.map((w) => {
      const o = w.obj as { method?: string; pattern?: string; target?: string; err?: Error };
      assert.match(w.msg ?? '', /no endpoint/);
      assert.equal(o.target, String(server.target));
      assert.match(String(o.err?.name), /NoSuchMethod/);
      return `${o.pattern}:${o.method}`;
    });
    assert.deepEqual(seen.sort(), ['cast:_x', 'cast:nope', 'fanout:nope']);
    // A call gets its NoSuchMethod back: no warning for it, but counted too.
    await assert.rejects(client.call(ctx, 'nope'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'NoSuchMethod');
    await assert.rejects(client.call(ctx, 'boom'), (e: unknown) => e instanceof RemoteError && e.remoteMessage === 'boom');
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    assert.equal(warned.items.length, 3);
    // A call counts once its reply is confirmed, which can be after the caller has it: stop()
    // waits for the requests in flight.
    await server.stop();
    assert.deepEqual(server.counters, { handled: 1, failed: 1, undispatchable: 4 });
  });

  test('a returned reply is retried for kombu_missing_consumer_retry_timeout, then dropped with a log', async () => {
    const logger = recordingLogger();
    const bus = await newBus({ transports: { default: url('?kombu_missing_consumer_retry_timeout=2') } }, logger);
    const topic = freshTopic('late');
    const server = bus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]);
    await server.start();
    const ch = await raw();
    const request = (replyQ: string, n: number) =>
      ch.publish('openstack', topic, env({ method: 'ping', args: {}, _msg_id: String(n).repeat(32), _reply_q: replyQ, _timeout: null, _unique_id: String(n).repeat(32) }), JSON_PROPS);
    // The caller's reply queue shows up only after the reply was first sent: it still arrives.
    const lateQ = `reply_${randomUUID().replaceAll('-', '')}`;
    request(lateQ, 1);
    await new Promise((r) => setTimeout(r, 500));
    await ch.assertQueue(lateQ, { exclusive: true });
    const replies = new Collector<ConsumeMessage>();
    await ch.consume(lateQ, (m) => m && replies.push(m), { noAck: true });
    const [late] = await replies.until(1, 5_000);
    assert.ok(late);
    assert.equal(inner(late)['result'], 'pong');
    // Nobody ever listens on this one: dropped after the retry timeout, with a warning.
    const t0 = Date.now();
    request(`reply_${'0'.repeat(32)}`, 2);
    const deadline = Date.now() + 10_000;
    while (!logger.records.some((r) => /reply dropped/.test(r.msg ?? '')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(logger.records.some((r) => r.level === 'warn' && /reply dropped/.test(r.msg ?? '')));
    assert.ok(Date.now() - t0 >= 1_800, 'retried for about the timeout first');
    await server.stop();
  });

  test('malformed bodies are dropped with a log and do not stop the consumer', async () => {
    const topic = freshTopic('bad');
    const logger = recordingLogger();
    const bus = await newBus({}, logger);
    const server = bus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]);
    await server.start();
    const nt = freshTopic('bad-n');
    const got = new Collector<unknown>();
    const listener = bus.notificationListener([{ topic: nt }], [{ info: (_c, _p, _e, payload) => void got.push(payload) }]);
    await listener.start();
    const cbus = await newBus({}, logger);
    const client = cbus.rpcClient({ topic }, { timeout: 5_000 });
    assert.equal(await client.call(ctx, 'ping'), 'pong'); // the client's reply queue exists now
    const ch = await rawConfirm();
    const good = env({ method: 'ping', args: {}, _unique_id: 'e'.repeat(32) });
    const bad: Array<[string, Buffer, Record<string, unknown>]> = [
      ['not JSON', Buffer.from('{nope'), JSON_PROPS],
      ['another envelope major', Buffer.from(JSON.stringify({ 'oslo.version': '3.0', 'oslo.message': '{}' })), JSON_PROPS],
      ['inner not JSON', Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{x' })), JSON_PROPS],
      ['no method', env({ args: {} }), JSON_PROPS],
      ['a JSON array', Buffer.from('[1,2]'), JSON_PROPS],
      ['no content type', good, { ...JSON_PROPS, contentType: undefined }],
      ['text/plain', good, { ...JSON_PROPS, contentType: 'text/plain' }],
      ['call without _reply_q', env({ method: 'ping', args: {}, _msg_id: 'f'.repeat(32) }), JSON_PROPS],
    ];
    for (const [, body, props] of bad) ch.publish('openstack', topic, body, props);
    for (const [, body, props] of bad) ch.publish('openstack', `${nt}.info`, body, props);
    ch.publish('openstack', `${nt}.info`, env({ message_id: 'x', payload: {} }), JSON_PROPS); // no priority
    for (const [, body, props] of bad) ch.publish('', driverOf(cbus).replyQueue, body, props);
    await ch.waitForConfirms(); // queued ahead of what follows: FIFO per queue

    assert.equal(await client.call(ctx, 'ping'), 'pong', 'the server and the reply consumer still work');
    await bus.notifier({ publisherId: 'p', topics: [nt] }).info(ctx, 'e', { ok: true });
    assert.deepEqual(await got.until(1), [{ ok: true }], 'the listener still works and got nothing else');
    const drops = logger.records.filter((r) => r.level === 'warn' && /dropping/.test(r.msg ?? ''));
    assert.equal(drops.length, 3 * bad.length + 1, `${drops.length} drops logged`);
    assert.ok(drops.some((r) => /content_type/.test(r.msg ?? '')));
    await listener.stop();
    await server.stop();
  });

  test('mandatory: a call, cast or fanout nobody can receive fails fast with MessageUndeliverable', async () => {
    const bus = await newBus();
    const client = bus.rpcClient({ topic: freshTopic('nobody') }, { timeout: 10_000 });
    const t0 = Date.now();
    await assert.rejects(client.call(ctx, 'x'), MessageUndeliverable);
    await assert.rejects(client.cast(ctx, 'x'), MessageUndeliverable);
    await assert.rejects(client.prepare({ server: 'gone' }).cast(ctx, 'x'), MessageUndeliverable);
    await assert.rejects(client.prepare({ fanout: true }).cast(ctx, 'x'), MessageUndeliverable);
    assert.ok(Date.now() - t0 < 5_000);
    // and the transport is fine afterwards
    const topic = freshTopic('somebody');
    const s = bus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]);
    await s.start();
    assert.equal(await bus.rpcClient({ topic }).call(ctx, 'ping'), 'pong');
    await s.stop();
  });

  test('confirms: a broker nack is a MessageDeliveryFailure (not "undeliverable")', async () => {
    const topic = freshTopic('nack');
    const ch = await raw();
    // A full queue that rejects new messages: RabbitMQ nacks the publish.
    await ch.assertExchange('openstack', 'topic', { durable: false, autoDelete: false });
    await ch.assertQueue(topic, { arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    await ch.bindQueue(topic, 'openstack', topic);
    const client = (await newBus()).rpcClient({ topic });
    await assert.rejects(client.cast(ctx, 'x'), (e: unknown) => {
      assert.ok(e instanceof MessageDeliveryFailure && !(e instanceof MessageUndeliverable), String(e));
      assert.match(e.message, /nack/);
      return true;
    });
    await ch.deleteQueue(topic);
  });

  test('confirms: the unconfirmed window bounds sends (backpressure), all complete', async () => {
    const bus = await newBus({ transports: { default: url('?confirm_window=4') } });
    const topic = freshTopic('window');
    const seen = new Collector<number>();
    const s = bus.rpcServer({ topic, server: 's' }, [{ tick: (_c: Context, a: { i: number }) => void seen.push(a.i) }]);
    await s.start();
    const driver = driverOf(bus);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, driver.unconfirmed)), 0);
    const client = bus.rpcClient({ topic });
    await Promise.all(Array.from({ length: 300 }, (_, i) => client.cast(ctx, 'tick', { i }).then(() => (peak = Math.max(peak, driver.unconfirmed)))));
    clearInterval(sampler);
    assert.ok(peak <= 4 && peak > 0, `peak ${peak}`);
    assert.equal((await seen.until(300)).length, 300);
    await s.stop();
  });

  test('TCP_NODELAY is set on the broker socket', async () => {
    const calls: unknown[] = [];
    const original = net.Socket.prototype.setNoDelay;
    net.Socket.prototype.setNoDelay = function (this: net.Socket, noDelay?: boolean) {
      calls.push(noDelay);
      return original.call(this, noDelay);
    };
    try {
      const bus = await newBus();
      await driverOf(bus).whenConnected();
    } finally {
      net.Socket.prototype.setNoDelay = original;
    }
    assert.ok(calls.includes(true), `setNoDelay calls: ${JSON.stringify(calls)}`);
  });

  test('amqplib internals (src/amqplib-internals.ts): the socket, the write batching and the handshake refusals are where the driver expects them', async () => {
    // If this fails after an amqplib upgrade, amqplib-internals.ts needs updating: the driver
    // would still work, but slower (unbatched writes) or with refusals found only at timeouts.
    const model = await connect(servers.rabbit.url);
    raws.push(model);
    const socket = socketOf(model);
    assert.ok(socket instanceof net.Socket, 'connection.stream is the net.Socket amqplib writes to');
    assert.equal((socket as net.Socket).remotePort, servers.rabbit.port);
    // 20 publishes in one turn, batched: one writev carries every frame.
    const ch = await model.createConfirmChannel();
    const batch = new WriteBatcher(model, recordingLogger()).batch;
    const writes: string[] = [];
    const s = socket as net.Socket & { _write: (...a: unknown[]) => unknown; _writev: (...a: unknown[]) => unknown };
    const [write, writev] = [s._write, s._writev];
    s._write = function (this: unknown, ...a: unknown[]) {
      writes.push('write');
      return write.apply(this, a);
    };
    s._writev = function (this: unknown, ...a: unknown[]) {
      writes.push(`writev:${(a[0] as unknown[]).length}`);
      return writev.apply(this, a);
    };
    try {
      for (let i = 0; i < 20; i++) {
        ch.publish('', `no-such-queue-${randomUUID()}`, Buffer.from('x'));
        batch();
      }
      await ch.waitForConfirms();
    } finally {
      [s._write, s._writev] = [write, writev];
    }
    assert.equal(writes[0], 'writev:20', `the burst went out as ${JSON.stringify(writes)}`);
    // Refusals in the handshake: recognised from amqplib's error text.
    const port = servers.rabbit.port;
    for (const [u, why] of [
      [`amqp://guest:wrong@127.0.0.1:${port}/`, /ACCESS.REFUSED/],
      [`amqp://guest:guest@127.0.0.1:${port}/no-such-vhost`, /vhost/],
    ] as const) {
      const err = await connect(u).then((m) => (raws.push(m), undefined), (e: unknown) => e);
      assert.ok(err instanceof Error, `${u} was refused`);
      assert.match(handshakeRefusal(err) ?? `not recognised: ${err.message}`, why);
    }
    const unreachable = await connect(`amqp://guest:guest@127.0.0.1:1/`).then(() => undefined, (e: unknown) => e);
    assert.equal(handshakeRefusal(unreachable), undefined, 'a broker that is not there is not a refusal');
  });

  test('options: unknown or malformed ones are a ConfigError naming the option, the value and the form', async () => {
    const problems = (u: string): string => {
      try {
        parseRabbitUrl(new URL(u));
      } catch (e) {
        assert.ok(e instanceof ConfigError, String(e));
        assert.ok(!e.message.includes('s3cret'), 'no password in errors');
        return e.problems.join('\n');
      }
      assert.fail(`${u} was accepted`);
    };
    assert.match(problems('rabbit://u:s3cret@h/?amqp_durable_queue=true'), /unknown option "amqp_durable_queue".*expected one of: amqp_durable_queues/);
    for (const k of ['constructor', 'toString', '__proto__']) assert.match(problems(`rabbit://u:s3cret@h/?${k}=1`), new RegExp(`unknown option "${k}"`));
    assert.match(problems('rabbit://h/?amqp_durable_queues=maybe'), /"amqp_durable_queues" has bad value "maybe"; expected a boolean/);
    assert.match(problems('rabbit://h/?rabbit_qos_prefetch_count=-1'), /"rabbit_qos_prefetch_count" has bad value "-1"; expected a whole number >= 0/);
    assert.match(problems('rabbit://h/?rabbit_transient_queues_ttl=0'), /"rabbit_transient_queues_ttl" has bad value "0"/);
    assert.match(problems('rabbit://h/?ssl_ca_file=/etc/hostname'), /"ssl_ca_file" needs TLS/);
    assert.match(problems('amqps://h/?ssl_ca_file=/no/such/file.pem'), /"ssl_ca_file" names "\/no\/such\/file.pem", which cannot be read/);
    assert.match(problems('rabbit://h/?rabbit_quorum_queue=1&amqp_auto_delete=1'), /exclude each other/);
    assert.match(problems('rabbit://h/?notification_default_queue=nope'), /"notification_default_queue" has bad value "nope"; expected a boolean/);
    await assert.rejects(Bus.create({ transports: { default: url('?heartbeat_timeout_threshold=soon') } }), ConfigError);

    const o = parseRabbitUrl(new URL('rabbit://u:p@h1:5673,v:q@[::1]:5674/vh%2F1?failover=amqp://h3/'));
    assert.deepEqual(o.brokers.map((e) => [e.connect.hostname, e.connect.port, e.connect.username, e.connect.password, e.connect.vhost]), [
      ['h1', 5673, 'u', 'p', 'vh/1'],
      ['::1', 5674, 'v', 'q', 'vh/1'],
      ['h3', 5672, 'u', 'p', 'vh/1'],
    ]);
    assert.ok(o.brokers.every((e) => e.socket.noDelay === true));
    const d = parseRabbitUrl(new URL('amqps://h/'));
    assert.deepEqual(
      { ...d, brokers: undefined },
      {
        scheme: 'amqps', durableQueues: false, autoDelete: false, quorumQueues: false, transientQueuesTtlS: 1800, prefetch: 0, heartbeatS: 60,
        missingConsumerRetryTimeoutS: 60, retryIntervalS: 1, retryBackoffS: 2, intervalMaxS: 30, confirmWindow: 1000, connectTimeoutS: 10,
        notificationDefaultQueue: true, brokers: undefined,
      },
    );
    assert.equal(d.brokers[0]?.connect.protocol, 'amqps');
    assert.equal(d.brokers[0]?.connect.port, 5671);
  });

  test('failover: a broker of the list that refuses is skipped', async () => {
    const port = servers.rabbit.port;
    for (const u of [
      `rabbit://guest:guest@127.0.0.1:1,guest:guest@127.0.0.1:${port}/`,
      `rabbit://guest:guest@127.0.0.1:1/?failover=${encodeURIComponent(`amqp://127.0.0.1:${port}/`)}&rabbit_retry_interval=0.1`,
    ]) {
      const bus = await Bus.create({ transports: { default: u } }, { logger: recordingLogger() });
      buses.push(bus);
      const topic = freshTopic('failover');
      const s = bus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]);
      await s.start();
      assert.equal(await bus.rpcClient({ topic }).call(ctx, 'ping'), 'pong');
      await s.stop();
    }
  });

  test('a refused login or an unknown vhost fails calls and server start-up at once with AuthenticationFailed', async () => {
    const port = servers.rabbit.port;
    for (const [u, why] of [
      [`rabbit://guest:wrong@127.0.0.1:${port}/`, /ACCESS.REFUSED/],
      [`rabbit://guest:guest@127.0.0.1:${port}/no-such-vhost`, /NOT.ALLOWED|vhost/],
    ] as const) {
      const bus = await Bus.create({ transports: { default: u }, rpc: { timeout: 60_000 } }, { logger: recordingLogger() });
      buses.push(bus);
      const topic = freshTopic('refused');
      const started = Date.now();
      const err = await bus.rpcClient({ topic }).call(ctx, 'ping').then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof AuthenticationFailed, `${u}: got ${String(err)}`);
      assert.match(err.message, why);
      assert.ok(Date.now() - started < 15_000, 'told at the first refusal, not at the 60 s call timeout');
      await assert.rejects(bus.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]).start(), AuthenticationFailed);
    }
  });

  test('connection.blocked: sends wait while the broker blocks publishing, with a log, and go on after', async () => {
    const logger = recordingLogger();
    const bus = await newBus({}, logger);
    const topic = freshTopic('blocked');
    const seen = new Collector<number>();
    const s = bus.rpcServer({ topic, server: 's' }, [{ tick: (_c: Context, a: { i: number }) => void seen.push(a.i) }]);
    await s.start();
    const client = bus.rpcClient({ topic });
    await client.cast(ctx, 'tick', { i: 0 });
    await servers.rabbit.ctl(['set_vm_memory_high_watermark', '0.000001']); // a memory alarm
    try {
      let done = false;
      const cast = client.cast(ctx, 'tick', { i: 1 }).then(() => (done = true));
      const deadline = Date.now() + 10_000;
      while (!logger.records.some((r) => /blocked publishing/.test(r.msg ?? '')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(logger.records.some((r) => r.level === 'warn' && /blocked publishing/.test(r.msg ?? '')), 'connection.blocked is logged');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(done, false, 'the send waits while blocked');
      await assert.rejects(client.prepare({ retry: 0 }).cast(ctx, 'tick', { i: 2 }), /blocks publishing/);
      await servers.rabbit.ctl(['set_vm_memory_high_watermark', '0.4']);
      await cast;
      assert.deepEqual(await seen.until(2), [0, 1]);
      assert.ok(logger.records.some((r) => /unblocked/.test(r.msg ?? '')));
    } finally {
      await servers.rabbit.ctl(['set_vm_memory_high_watermark', '0.4']);
    }
    await s.stop();
  });

  test('heartbeats: a frozen broker is noticed in seconds; the call waiting fails with ConnectionLost, the next works', async () => {
    const config: ConfigInput = {
      transports: { default: url('?heartbeat_timeout_threshold=2&rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1') },
    };
    const logger = recordingLogger();
    const [sbus, cbus] = [await newBus(config, logger), await newBus(config, logger)];
    const topic = freshTopic('frozen');
    const started = deferred();
    const release = deferred();
    const server = sbus.rpcServer({ topic, server: 's' }, [{ slow: async () => (started.resolve(), await release.promise, 'late'), ping: () => 'pong' }]);
    await server.start();
    const client = cbus.rpcClient({ topic }, { timeout: 60_000 });
    const call = client.call(ctx, 'slow');
    call.catch(() => undefined);
    await started.promise;
    // SIGSTOP the broker (our own child): its sockets stay open, it just stops talking.
    const pids = processTree(servers.rabbit.pid as number);
    const t0 = Date.now();
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    try {
      await assert.rejects(call, ConnectionLost);
      assert.ok(Date.now() - t0 < 15_000, `noticed after ${Date.now() - t0} ms`);
      assert.ok(logger.records.some((r) => /Heartbeat timeout/.test(String((r.obj as { err?: Error }).err?.message))), 'amqplib saw the heartbeats stop');
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
    release.resolve();
    await driverOf(sbus).whenConnected();
    await driverOf(cbus).whenConnected();
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    await server.stop();
  });

  test('close() while a reconnect is restoring consumers resolves, and closes that new connection', async () => {
    const bus = await newBus();
    const server = bus.rpcServer({ topic: freshTopic('closing'), server: 's' }, [{ ping: () => 'pong' }]);
    await server.start();
    const driver = driverOf(bus);
    // Slow channel opening (amqplib's own class): the reconnect's restore is under way when close() comes.
    const { ChannelModel } = createRequire(import.meta.resolve('amqplib'))('./lib/channel_model.js') as { ChannelModel: { prototype: ChannelModel } };
    const createChannel = ChannelModel.prototype.createChannel;
    ChannelModel.prototype.createChannel = function (this: ChannelModel, ...a: Parameters<ChannelModel['createChannel']>) {
      return new Promise((r) => setTimeout(r, 1_000)).then(() => createChannel.apply(this, a));
    };
    try {
      const out = await servers.rabbit.ctl(['list_connections', 'pid', 'client_properties', '--quiet', '--no-table-headers']);
      const pid = out.split('\n').find((l) => l.includes(driver.connectionName))?.split('\t')[0];
      assert.ok(pid, 'our connection is listed');
      await servers.rabbit.ctl(['close_connection', pid, 'closing test']);
      const deadline = Date.now() + 5_000;
      while (driver.connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200)); // reconnected, restoring the server's consumer
      const closed = await Promise.race([driver.close().then(() => true), new Promise((r) => setTimeout(() => r(false), 8_000))]);
      assert.equal(closed, true, 'close() resolved');
    } finally {
      ChannelModel.prototype.createChannel = createChannel;
    }
    const left = await servers.rabbit.ctl(['list_connections', 'client_properties', '--quiet', '--no-table-headers']);
    assert.ok(!left.includes(driver.connectionName), 'no connection of ours is left');
  });

  describe('broker restart (runs last: it restarts the shared broker)', () => {
    test('confirmed notifications are delivered exactly once; a call in flight fails with ConnectionLost; the next call works', async () => {
      const N = 10_000;
      // Buses of earlier tests would only log their reconnects: close them first.
      await Promise.allSettled(buses.splice(0).map((b) => b.close()));
      // Durable queues: transient ones (oslo's default) do not survive a broker restart.
      const config: ConfigInput = {
        transports: { default: url('?amqp_durable_queues=true&rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1') },
        controlExchange: 'hb-restart',
      };
      const quiet = recordingLogger();
      const [nbus, lbus, sbus, cbus] = await Promise.all([0, 1, 2, 3].map(() => Bus.create(config, { logger: quiet })));
      buses.push(nbus as Bus, lbus as Bus, sbus as Bus, cbus as Bus);
      const topic = freshTopic('restart');
      const counts = new Map<number, number>();
      const listener = (lbus as Bus).notificationListener(
        [{ topic }],
        [{ info: (_c, _p, _e, payload) => void counts.set((payload as { i: number }).i, (counts.get((payload as { i: number }).i) ?? 0) + 1) }],
        { pool: freshTopic('restart-pool') },
      );
      await listener.start();

      const callTopic = freshTopic('restart-rpc');
      const started = deferred();
      const release = deferred();
      const server = (sbus as Bus).rpcServer({ topic: callTopic, server: 's' }, [{ slow: async () => (started.resolve(), await release.promise, 'late'), ping: () => 'pong' }]);
      await server.start();
      const client = (cbus as Bus).rpcClient({ topic: callTopic }, { timeout: 60_000 });
      assert.equal(await client.call(ctx, 'ping'), 'pong');
      const inFlight = client.call(ctx, 'slow');
      inFlight.catch(() => undefined);
      await started.promise;

      const notifier = (nbus as Bus).notifier({ publisherId: 'restart', topics: [topic] });
      const confirmed = new Set<number>();
      const failures: unknown[] = [];
      let next = 0;
      let restarting: Promise<void> | undefined;
      let atRestart = 0;
      let afterRestart = 0;
      const t0 = Date.now();
      const worker = async (): Promise<void> => {
        while (next < N) {
          const i = next++;
          try {
            await notifier.info(ctx, 'seq', { i });
            confirmed.add(i);
          } catch (e) {
            failures.push(e);
          }
          if (confirmed.size >= N / 5 && !restarting) {
            atRestart = confirmed.size;
            restarting = servers.rabbit.restart().then(() => void (afterRestart = confirmed.size));
          }
        }
      };
      await Promise.all(Array.from({ length: 200 }, worker));
      await restarting;
      const sent = Date.now();

      await assert.rejects(inFlight, (e: unknown) => e instanceof ConnectionLost && e.code === 'HB_CONNECTION_LOST');
      for (const b of [sbus, cbus]) await driverOf(b as Bus).whenConnected();
      assert.equal(await client.call(ctx, 'ping'), 'pong', 'the next call works');
      release.resolve();

      const deadline = Date.now() + 30_000;
      while ([...confirmed].some((i) => !counts.has(i)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 1_000)); // late duplicates would show up by now
      const missing = [...confirmed].filter((i) => !counts.has(i));
      const dupes = [...counts].filter(([, c]) => c > 1);
      assert.deepEqual(failures, [], 'with retry -1 every notification is eventually confirmed');
      assert.equal(confirmed.size, N);
      assert.deepEqual(missing.slice(0, 10), [], `${missing.length} confirmed notifications lost`);
      assert.deepEqual(dupes.slice(0, 10), [], `${dupes.length} delivered more than once`);
      await listener.stop();
      await server.stop();
      const t = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
      console.log(
        `restart test: ${N} notifications sent in ${t(sent - t0)}, ${atRestart} confirmed when the restart began, ` +
          `${afterRestart} when the broker was back; all delivered exactly once after ${t(Date.now() - t0)} ` +
          `(${quiet.records.filter((r) => /sending again/.test(r.msg ?? '')).length} resent after a lost confirm, ` +
          `${quiet.records.filter((r) => /already handled/.test(r.msg ?? '')).length} duplicates dropped by the listener)`,
      );
      assert.ok(afterRestart < N, 'some notifications were sent after the broker came back');
    });
  });
});
