/**
 * `raw-amqplib-oslo`: raw amqplib doing the work the rabbit-brokered driver does on the wire, so
 * that `rabbit` is compared like with like (raw-amqplib stays the minimal floor):
 * - oslo's topology (packages/rabbit-brokered/src/topology.ts, default options): a topic
 *   exchange (`openstack`, not durable, not auto-deleted); per RPC server the queues `<topic>`
 *   and `<topic>.<server>` bound to it by their names, and `<topic>_fanout` (a fanout exchange,
 *   auto-deleted) with a transient queue (`x-expires` 30 min); the client's reply queue
 *   `reply_<id>` with the same `x-expires`; notifications to `<topic>.info` on the exchange, with
 *   oslo's default queue `<topic>.info` declared and bound by the sender besides the pool's;
 * - every publish on a confirm channel with the driver's properties (application/json, utf-8,
 *   delivery mode 2, priority 0, `mandatory` except notifications, requests with the call timeout
 *   (60 s, the bus's default) as their `expiration`, as the driver's default
 *   `notification_default_queue`), requests, replies, casts and notifications alike;
 * - the same bodies: oslo 2.0 envelopes built per message with the kit's codec (`envelope`,
 *   `requestToOslo`, `replyToOslo`, `notificationToOslo` from @hybridbus/core/driver), each with
 *   its `_unique_id` (and a call's `_msg_id`, `_reply_q`, `_timeout`); servers and the reply
 *   consumer parse every body (`unenvelope`) and ack on arrival, as the driver does;
 * - casts and notifications keep 64 publishes awaiting their confirm (the hybridbus child's
 *   window); a call resolves on its reply (matched by `_msg_id`).
 * What it leaves out is the driver's own machinery: reconnection, retries, duplicate detection,
 * cancellation, handler dispatch and the Bus API. spec.data.url is the broker.
 */
import { connect, type ConfirmChannel, type ConsumeMessage, type Options } from 'amqplib';
import { envelope, notificationToOslo, osloTimestamp, replyToOslo, requestToOslo, uniqueId, unenvelope } from '@hybridbus/core/driver';
import { Payloads, readSpec, runClient, runServer, SEND_WINDOW, type ClientSide } from './child.js';
import type { ClientSpec, ServerSpec } from './contender.js';
import { connectOptions } from './amqp-connect.js';

/** The bus's default call timeout (config rpc.timeout, oslo's rpc_response_timeout). */
const CALL_TIMEOUT_MS = 60_000;
const EXCHANGE = 'openstack';
const TRANSIENT: Options.AssertQueue = { durable: false, autoDelete: false, exclusive: false, arguments: { 'x-expires': 1800 * 1000 } };
const QUEUE: Options.AssertQueue = { durable: false, autoDelete: false, exclusive: false };
const TOPIC_EXCHANGE: Options.AssertExchange = { durable: false, autoDelete: false };
const props = (mandatory: boolean): Options.Publish => ({ contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 2, priority: 0, headers: {}, mandatory });
const MANDATORY = props(true);
const NOT_MANDATORY = props(false);
/** A request carries the call's timeout as its TTL, as the driver's do (the bus's default timeout). */
const REQUEST: Options.Publish = { ...MANDATORY, expiration: String(CALL_TIMEOUT_MS) };
const ctx = {};

const open = (spec: ServerSpec | ClientSpec) => connect(connectOptions(String(spec.data['url'])), { noDelay: true });
const isCall = (s: ServerSpec | ClientSpec): boolean => s.scenario === 'latency' || s.scenario === 'throughput';
const fanoutExchange = (topic: string): string => `${topic}_fanout`;
/** The notification pool's queue (the driver's child uses pool `bench`; per topic here, so no run shares it). */
const poolQueue = (topic: string): string => `${topic}.pool`;
const notifyKey = (topic: string): string => `${topic}.info`;

/** A confirmed publish; the callback's error (a nack, a closed channel) fails the process. */
function publish(ch: ConfirmChannel, exchange: string, key: string, body: Buffer, p: Options.Publish, done?: () => void): boolean {
  return ch.publish(exchange, key, body, p, (err) => {
    if (err) throw err instanceof Error ? err : new Error(String(err));
    done?.();
  });
}

const role = readSpec<ServerSpec | ClientSpec>().role;

if (role === 'server') {
  await runServer(async (spec, arrivals) => {
    const conns: Array<{ close(): Promise<void> }> = [];
    // The notification listener: one, on the pool's queue and oslo's default queue's binding.
    const names = spec.scenario === 'notify' ? ['pool'] : spec.servers;
    for (const server of names) {
      const conn = await open(spec);
      conns.push(conn);
      const ch = await conn.createChannel();
      const pub = await conn.createConfirmChannel();
      pub.on('return', () => {
        throw new Error('a reply was returned (no reply queue)');
      });
      await ch.assertExchange(EXCHANGE, 'topic', TOPIC_EXCHANGE);
      let queues: string[];
      if (spec.scenario === 'notify') {
        const q = poolQueue(spec.topic);
        await ch.assertQueue(q, QUEUE);
        await ch.bindQueue(q, EXCHANGE, notifyKey(spec.topic));
        queues = [q];
      } else {
        const serverQueue = `${spec.topic}.${server}`;
        const fanoutQueue = `${fanoutExchange(spec.topic)}_${uniqueId()}`;
        for (const q of [spec.topic, serverQueue]) {
          await ch.assertQueue(q, QUEUE);
          await ch.bindQueue(q, EXCHANGE, q);
        }
        await ch.assertExchange(fanoutExchange(spec.topic), 'fanout', { durable: false, autoDelete: true });
        await ch.assertQueue(fanoutQueue, TRANSIENT);
        await ch.bindQueue(fanoutQueue, fanoutExchange(spec.topic), spec.topic);
        queues = [spec.topic, serverQueue, fanoutQueue];
      }
      const onMessage = (msg: ConsumeMessage | null): void => {
        if (!msg) return;
        ch.ack(msg);
        const dict = unenvelope(msg.content.toString('utf8'));
        const replyQ = dict['_reply_q'];
        if (typeof replyQ !== 'string') return arrivals.hit();
        const reply = replyToOslo({ result: dict['args'], failure: null, ending: true });
        reply['_msg_id'] = dict['_msg_id'];
        reply['_unique_id'] = uniqueId();
        publish(pub, '', replyQ, Buffer.from(envelope(reply)), MANDATORY);
      };
      for (const q of queues) await ch.consume(q, onMessage);
    }
    return { close: async () => void (await Promise.allSettled(conns.map((c) => c.close()))) };
  });
} else {
  await runClient(async (spec): Promise<ClientSide> => {
    const conn = await open(spec);
    const payloads = new Payloads(spec.payload.sizes);
    const pub = await conn.createConfirmChannel();
    pub.on('return', () => {
      throw new Error('a mandatory publish was returned (no queue bound)');
    });
    await pub.assertExchange(EXCHANGE, 'topic', TOPIC_EXCHANGE);
    const request = (method: string) => ({ method, args: { p: payloads.nextText() }, context: ctx, uniqueId: uniqueId() });
    if (isCall(spec)) {
      const ch = await conn.createChannel();
      const replyQueue = `reply_${uniqueId()}`;
      await ch.assertQueue(replyQueue, TRANSIENT);
      const waiting = new Map<string, () => void>();
      await ch.consume(replyQueue, (msg) => {
        if (!msg) return;
        ch.ack(msg);
        const id = unenvelope(msg.content.toString('utf8'))['_msg_id'] as string;
        const done = waiting.get(id);
        waiting.delete(id);
        done?.();
      });
      return {
        call: () =>
          new Promise<void>((resolve) => {
            const msgId = uniqueId();
            const dict = requestToOslo(request('echo'));
            // The driver's field order: its correlation fields before `_unique_id`.
            const body: Record<string, unknown> = {};
            for (const [k, v] of Object.entries(dict)) {
              if (k === '_unique_id') Object.assign(body, { _msg_id: msgId, _reply_q: replyQueue, _timeout: null });
              body[k] = v;
            }
            waiting.set(msgId, resolve);
            publish(pub, EXCHANGE, spec.topic, Buffer.from(envelope(body)), REQUEST);
          }),
        sendMany: () => Promise.reject(new Error('no one-way messages in call scenarios')),
        close: () => conn.close(),
      };
    }
    let exchange = EXCHANGE;
    let key = spec.topic;
    let properties = MANDATORY;
    let body: () => Buffer = () => Buffer.from(envelope(requestToOslo(request('sink'))));
    if (spec.scenario === 'fanout') {
      exchange = fanoutExchange(spec.topic);
      key = '';
      await pub.assertExchange(exchange, 'fanout', { durable: false, autoDelete: true });
    } else if (spec.scenario === 'notify') {
      key = notifyKey(spec.topic);
      properties = NOT_MANDATORY;
      // oslo's notifier declares the `<topic>.<priority>` queue (notification_default_queue).
      await pub.assertQueue(key, QUEUE);
      await pub.bindQueue(key, EXCHANGE, key);
      const publisherId = `bench.${process.pid}`;
      body = () =>
        Buffer.from(
          envelope(
            notificationToOslo({
              messageId: crypto.randomUUID(),
              publisherId,
              eventType: 'bench.event',
              priority: 'info',
              payload: { p: payloads.nextText() },
              timestamp: osloTimestamp(),
              context: ctx,
              uniqueId: uniqueId(),
            }),
          ),
        );
    }
    let writable = true;
    let unconfirmed = 0;
    let wake: (() => void) | undefined;
    pub.on('drain', () => {
      writable = true;
      wake?.();
    });
    const waitForWake = (): Promise<void> => new Promise<void>((r) => (wake = r));
    const confirmed = (): void => {
      unconfirmed--;
      wake?.();
    };
    return {
      sendMany: async (more) => {
        let sent = 0;
        while (more()) {
          while (unconfirmed >= SEND_WINDOW || !writable) await waitForWake();
          unconfirmed++;
          writable = publish(pub, exchange, key, body(), properties, confirmed);
          sent++;
        }
        while (unconfirmed > 0) await waitForWake();
        return sent;
      },
      close: () => conn.close(),
    };
  });
}
