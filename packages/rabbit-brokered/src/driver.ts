/**
 * rabbit:// — oslo.messaging's rabbit driver on the wire (../shared/docs/oslo-wire.md part 1):
 * the same exchanges, queues, flags, bindings, properties and bodies, so TypeScript services
 * and Python oslo services can call and notify each other through one RabbitMQ.
 *
 * Beyond oslo: every send is confirmed by the broker (bounded window, backpressure), calls and
 * casts are `mandatory` so "nobody serves this topic" is an error instead of a silent loss,
 * in-flight calls fail with ConnectionLost when the connection drops, and receivers drop
 * duplicates by `_unique_id` (our own resends after a lost confirm can duplicate).
 */
import type { Channel, Options } from 'amqplib';
import {
  ConnectionLost,
  MalformedMessage,
  MessageDeliveryFailure,
  MessageUndeliverable,
  TransportClosed,
  envelope,
  notificationFromOslo,
  notificationToOslo,
  replyFromOslo,
  replyToOslo,
  requestFromOslo,
  requestToOslo,
  uniqueId,
  unenvelope,
  type CallOptions,
  type Driver,
  type DriverCapabilities,
  type DriverContext,
  type IncomingNotification,
  type IncomingRpc,
  type ListenOptions,
  type Notification,
  type NotificationListenOptions,
  type RpcReply,
  type RpcRequest,
  type SendOptions,
  type Subscription,
  type Target,
} from '@hybridbus/core';
import { Consumer, type ConsumerEnv, type Delivery } from './consumer.js';
import type { Generation } from './generation.js';
import { Link } from './link.js';
import { Sender, type Outgoing } from './publishing.js';
import type { RabbitOptions } from './options.js';
import { PendingCalls, SeenIds, exchangeOf, fanoutName, serverKey } from '@hybridbus/core/driver';
import { sleep } from './util.js';

type Dict = Record<string, unknown>;

const JSON_TYPE = 'application/json';
/** How many request / reply ids a receiver remembers (oslo keeps 16; resends can lag more). */
const RECENT_IDS = 1024;
/** Notifications: a redelivery after a broker restart can come thousands of messages later. */
const RECENT_NOTIFICATION_IDS = 16_384;
/** Give up on a heartbeat that cannot be sent within this long (the next one will try). */
const HEARTBEAT_SEND_MS = 5_000;
/** Why a call's leftover send is cancelled once the call has its answer (made once, not per call). */
const CALL_SETTLED = new TransportClosed('the call is settled; its send is no longer needed');

/** The properties oslo puts on every message (captured): the contract, headers `{}` included. */
function properties(mandatory: boolean, expirationMs?: number): Options.Publish {
  const p: Options.Publish = {
    contentType: JSON_TYPE,
    contentEncoding: 'utf-8',
    deliveryMode: 2,
    priority: 0,
    headers: {},
    mandatory,
  };
  if (expirationMs !== undefined) p.expiration = String(Math.max(1, Math.ceil(expirationMs)));
  return p;
}

// amqplib only reads these: one object each rather than one per message.
const MANDATORY = properties(true);
const NOT_MANDATORY = properties(false);
let lastExpiring: { ms: number; props: Options.Publish } | undefined;
/** A call's properties: its expiration is the call timeout, nearly always the same one. */
function expiringProperties(ms: number): Options.Publish {
  if (lastExpiring?.ms !== ms) lastExpiring = { ms, props: properties(true, ms) };
  return lastExpiring.props;
}

/** oslo's field order for a call (byte layout does not matter to receivers; humans read it). */
function callMessage(request: RpcRequest, fields: Dict): Dict {
  const out: Dict = {};
  for (const [k, v] of Object.entries(requestToOslo(request))) {
    if (k === '_unique_id') Object.assign(out, fields);
    out[k] = v;
  }
  return out;
}

/** `_timeout` on the wire is seconds (oslo writes an int; a numeric string is accepted). */
function monitorMs(v: unknown): number | undefined {
  const s = typeof v === 'number' ? v : typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
  return Number.isFinite(s) && s > 0 ? s * 1000 : undefined;
}

export class RabbitDriver implements Driver {
  readonly capabilities: DriverCapabilities;
  /** `reply_<uuid hex>`: one per driver instance (oslo: per process and transport). */
  readonly replyQueue = `reply_${uniqueId()}`;
  /** The broker connection (protected: a test double in test/ reaches its socket). */
  protected readonly link: Link;
  private readonly sender: Sender;
  private readonly consumerEnv: ConsumerEnv;
  private readonly pending = new PendingCalls();
  private readonly seenReplies = new SeenIds({ max: RECENT_IDS });
  private replyConsumer: Promise<void> | undefined;
  /** The reply queue is consumed (restored by the link after a reconnect). */
  private replyReady = false;
  private readonly consumers = new Set<Consumer>();
  private closed = false;

  constructor(
    readonly options: RabbitOptions,
    private readonly context: DriverContext,
  ) {
    this.capabilities = {
      durable: options.durableQueues || options.quorumQueues,
      brokerless: false,
      pools: true,
      requeue: true,
      callMonitor: true,
    };
    this.link = new Link(options, context.logger, context.name);
    this.sender = new Sender(this.link, context.logger, options.confirmWindow);
    this.consumerEnv = { link: this.link, logger: context.logger, prefetch: options.prefetch, retryMs: options.retryIntervalS * 1000 };
    this.link.onDown((err) => {
      this.pending.rejectAll((p) => new ConnectionLost(`the broker connection was lost while ${p.what} waited for its reply`, { cause: err }));
    });
  }

  /** Resolves after the first connection (or after every broker failed once; it keeps trying). */
  started(): Promise<void> {
    return this.link.started();
  }

  /** Connected, with every consumer of this driver declared and consuming. */
  async whenConnected(signal?: AbortSignal): Promise<void> {
    await this.link.whenUp({ left: Infinity }, signal);
  }

  get connected(): boolean {
    return this.link.isUp;
  }

  /** The `connection_name` this driver's connection announces (find it in `list_connections`). */
  get connectionName(): string {
    return this.link.connectionName;
  }

  /** Publishes waiting for the broker's confirm (bounded by `confirm_window`). */
  get unconfirmed(): number {
    return this.sender.window.inUse;
  }

  private get logger() {
    return this.context.logger;
  }

  private checkOpen(): void {
    if (this.closed || this.link.isClosed) throw new TransportClosed(`rabbit transport "${this.context.name}" is closed`);
  }

  // ---- topology (flags are part of the contract: a mismatch is a 406 for whoever declares second)

  private exchangeOf(target: Target): string {
    return exchangeOf(target, this.context.controlExchange);
  }

  private exchangeOptions(): Options.AssertExchange {
    return { durable: this.options.durableQueues, autoDelete: this.options.autoDelete };
  }

  /** Topic, server, notification and pool queues. */
  private queueOptions(): Options.AssertQueue {
    const o: Options.AssertQueue = {
      durable: this.options.durableQueues || this.options.quorumQueues,
      autoDelete: this.options.autoDelete,
      exclusive: false,
    };
    if (this.options.quorumQueues) o.arguments = { 'x-queue-type': 'quorum' };
    return o;
  }

  /** Reply and fanout queues: transient, expiring when unused. */
  private transientQueueOptions(): Options.AssertQueue {
    return { durable: false, autoDelete: false, exclusive: false, arguments: { 'x-expires': this.options.transientQueuesTtlS * 1000 } };
  }

  private declareExchange(gen: Generation, exchange: string): Promise<void> | undefined {
    return gen.declareOnce(`x:${exchange}`, (ch) => ch.assertExchange(exchange, 'topic', this.exchangeOptions()));
  }

  private declareFanoutExchange(ch: Channel, exchange: string): Promise<unknown> {
    return ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: true });
  }

  private async attach(consumer: Consumer): Promise<void> {
    // A server may start during an outage (it is restored on reconnect), but not with a login
    // the broker refuses: that needs fixing, not waiting.
    const refused = this.link.refusal;
    if (refused) throw refused;
    this.link.consumers.add(consumer);
    this.consumers.add(consumer);
    const gen = this.link.current;
    if (!gen) return; // restored with everything else once connected
    try {
      await consumer.restore(gen);
    } catch (err) {
      if (!gen.alive) return; // the connection went; the next one restores it
      this.consumers.delete(consumer);
      await consumer.stop();
      throw err;
    }
  }

  private subscription(consumer: Consumer): Subscription {
    return {
      stop: async () => {
        this.consumers.delete(consumer);
        await consumer.stop();
      },
    };
  }

  // ---- receiving --------------------------------------------------------------------------

  /** The oslo dict of a delivery, or undefined (logged) when it is not one of ours. */
  private parse(d: Delivery, kind: string): Dict | undefined {
    const { msg } = d;
    const log = { queue: d.queue, kind, routingKey: msg.fields.routingKey, exchange: msg.fields.exchange };
    if (msg.properties.contentType !== JSON_TYPE) {
      // oslo drops these too ("Failed to process message ... skipping it").
      this.logger.warn({ ...log, contentType: msg.properties.contentType ?? null }, `dropping a message without content_type ${JSON_TYPE}`);
      return undefined;
    }
    try {
      // A string: core copies a Uint8Array into a new Buffer before decoding it.
      return unenvelope(msg.content.toString('utf8'));
    } catch (err) {
      this.logger.warn({ ...log, err }, 'dropping a malformed message');
      return undefined;
    }
  }

  private malformed(d: Delivery, kind: string, err: unknown): void {
    this.logger.warn({ queue: d.queue, kind, err }, 'dropping a malformed message');
  }

  // ---- RPC client -------------------------------------------------------------------------

  private ensureReplyConsumer(): Promise<void> {
    if (!this.replyConsumer) {
      const queue = this.replyQueue;
      const consumer = new Consumer(this.consumerEnv, {
        label: `reply queue ${queue}`,
        declare: async (ch) => {
          await ch.assertQueue(queue, this.transientQueueOptions());
          return [queue];
        },
        deliver: (d) => {
          d.consumer.settle(d, 'ack', false);
          this.onReply(d);
        },
        ownQueues: [queue],
        acksOnArrival: true,
      });
      this.replyConsumer = this.attach(consumer).then(
        () => void (this.replyReady = true),
        (err: unknown) => {
          this.replyConsumer = undefined;
          throw err;
        },
      );
    }
    return this.replyConsumer;
  }

  private onReply(d: Delivery): void {
    const parsed = this.parse(d, 'reply');
    if (!parsed) return;
    const msgId = parsed['_msg_id'];
    if (typeof msgId !== 'string') return this.malformed(d, 'reply', new MalformedMessage('reply without a string "_msg_id"'));
    const uid = parsed['_unique_id'];
    if (typeof uid === 'string') {
      if (this.seenReplies.has(uid)) return this.logger.debug({ msgId, uniqueId: uid }, 'dropping a duplicate reply');
      this.seenReplies.add(uid);
    }
    let reply: RpcReply;
    try {
      reply = replyFromOslo(parsed);
    } catch (err) {
      return this.malformed(d, 'reply', err);
    }
    if (!this.pending.reply(msgId, reply)) this.logger.debug({ msgId }, 'reply for a call nobody waits for (timed out or aborted)');
  }

  async call(target: Target, request: RpcRequest, options: CallOptions): Promise<RpcReply> {
    this.checkOpen();
    if (!this.replyReady) {
      await new Promise<void>((resolve, reject) => {
        options.cancel.onCancel(reject); // replaced below once the call is under way
        this.ensureReplyConsumer().then(resolve, reject);
      });
    }
    const msgId = uniqueId();
    const exchange = this.exchangeOf(target);
    const routingKey = serverKey(target);
    const body = envelope(
      callMessage(request, {
        _msg_id: msgId,
        _reply_q: this.replyQueue,
        _timeout: options.callMonitorTimeoutMs ? options.callMonitorTimeoutMs / 1000 : null,
      }),
    );
    // One token for the whole call: core cancels it (timeout, monitor, abort), a failure of the
    // call cancels it with its error, and an answer with CALL_SETTLED. Cancelled, the call
    // rejects and its send stops where it waits (connection, window, ...); most sends wait for
    // nothing but their confirm, and that is not waited for after a reply.
    const { cancel } = options;
    return new Promise<RpcReply>((resolve, reject) => {
      cancel.onCancel((reason) => {
        this.pending.delete(msgId);
        reject(reason);
      });
      if (cancel.reason) return;
      const what = `call ${request.method} to "${routingKey}"`;
      let sending = true;
      this.pending.add(msgId, {
        what,
        onHeartbeat: options.onHeartbeat,
        resolve: (r) => {
          resolve(r);
          if (sending) cancel.cancel(CALL_SETTLED);
        },
        reject: (e) => cancel.cancel(e),
      });
      const out: Outgoing = {
        exchange,
        routingKey,
        body: Buffer.from(body),
        properties: options.timeoutMs !== undefined ? expiringProperties(options.timeoutMs) : MANDATORY,
        declare: (gen) => this.declareExchange(gen, exchange),
        what,
      };
      this.sender.publish(out, { retry: options.retry ?? -1, cancel }).then(
        () => void (sending = false),
        (err: unknown) => {
          sending = false;
          this.pending.get(msgId)?.reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  private async send(target: Target, request: RpcRequest, options: SendOptions, fanout: boolean): Promise<void> {
    this.checkOpen();
    const exchange = fanout ? fanoutName(target) : this.exchangeOf(target);
    const routingKey = fanout ? '' : serverKey(target);
    const out: Outgoing = {
      exchange,
      routingKey,
      body: Buffer.from(envelope(requestToOslo(request))),
      properties: MANDATORY,
      declare: fanout
        ? (gen) => gen.declareOnce(`f:${exchange}`, (ch) => this.declareFanoutExchange(ch, exchange))
        : (gen) => this.declareExchange(gen, exchange),
      what: `${fanout ? 'fanout' : 'cast'} ${request.method} to "${fanout ? exchange : routingKey}"`,
    };
    await this.sender.publish(out, { retry: options.retry ?? -1, signal: options.signal });
  }

  cast(target: Target, request: RpcRequest, options: SendOptions): Promise<void> {
    return this.send(target, request, options, false);
  }

  fanout(target: Target, request: RpcRequest, options: SendOptions): Promise<void> {
    return this.send(target, request, options, true);
  }

  // ---- RPC server -------------------------------------------------------------------------

  async listen(target: Target, handler: (msg: IncomingRpc) => void, _options: ListenOptions): Promise<Subscription> {
    this.checkOpen();
    // All three queues regardless of the router's hint: Python peers may send any pattern here.
    const exchange = this.exchangeOf(target);
    const topic = target.topic as string;
    const serverQueue = serverKey(target);
    const fanoutExchange = fanoutName(target);
    const fanoutQueue = `${fanoutExchange}_${uniqueId()}`;
    const seen = new SeenIds({ max: RECENT_IDS });
    const consumer = new Consumer(this.consumerEnv, {
      label: `rpc server ${serverQueue}`,
      declare: async (ch) => {
        await ch.assertExchange(exchange, 'topic', this.exchangeOptions());
        for (const q of [topic, serverQueue]) {
          await ch.assertQueue(q, this.queueOptions());
          await ch.bindQueue(q, exchange, q);
        }
        await this.declareFanoutExchange(ch, fanoutExchange);
        await ch.assertQueue(fanoutQueue, this.transientQueueOptions());
        await ch.bindQueue(fanoutQueue, fanoutExchange, topic);
        return [topic, serverQueue, fanoutQueue];
      },
      deliver: (d) => {
        d.consumer.settle(d, 'ack', false); // oslo acks before dispatching: at most once
        this.onRequest(d, d.queue === fanoutQueue, handler, seen);
      },
      ownQueues: [fanoutQueue],
      acksOnArrival: true,
    });
    await this.attach(consumer);
    return this.subscription(consumer);
  }

  private onRequest(d: Delivery, fanout: boolean, handler: (msg: IncomingRpc) => void, seen: SeenIds): void {
    const parsed = this.parse(d, 'request');
    if (!parsed) return;
    let request: RpcRequest;
    try {
      request = requestFromOslo(parsed);
    } catch (err) {
      return this.malformed(d, 'request', err);
    }
    const msgId = parsed['_msg_id'];
    const replyQ = parsed['_reply_q'];
    const isCall = msgId !== undefined && msgId !== null;
    if (isCall && (typeof msgId !== 'string' || typeof replyQ !== 'string')) {
      return this.malformed(d, 'request', new MalformedMessage('a call needs string "_msg_id" and "_reply_q"'));
    }
    if (request.uniqueId !== '') {
      if (seen.has(request.uniqueId)) return this.logger.debug({ uniqueId: request.uniqueId }, 'dropping a duplicate request');
      seen.add(request.uniqueId);
    }
    handler({
      pattern: isCall ? 'call' : fanout ? 'fanout' : 'cast',
      request,
      callMonitorTimeoutMs: isCall ? monitorMs(parsed['_timeout']) : undefined,
      reply: async (r) => (isCall ? this.sendReply(replyQ as string, msgId as string, r.result, r.failure, true) : undefined),
      heartbeat: async () => (isCall ? this.sendReply(replyQ as string, msgId as string, null, null, false) : undefined),
    });
  }

  /**
   * To the default exchange, mandatory. A returned reply (its queue not there yet, e.g. the
   * caller is reconnecting) is retried for kombu_missing_consumer_retry_timeout, then dropped.
   */
  private async sendReply(replyQ: string, msgId: string, result: unknown, failure: string | null, ending: boolean): Promise<void> {
    const heartbeat = !ending;
    const what = heartbeat ? `a heartbeat for call ${msgId}` : `the reply to call ${msgId}`;
    // The driver's fields added to core's dict, not spread into a copy (spreads showed per reply).
    const reply = replyToOslo({ result, failure, ending });
    reply['_msg_id'] = msgId;
    reply['_unique_id'] = uniqueId();
    const body = Buffer.from(envelope(reply));
    const limitMs = heartbeat ? HEARTBEAT_SEND_MS : this.options.missingConsumerRetryTimeoutS * 1000;
    const out: Outgoing = { exchange: '', routingKey: replyQ, body, properties: MANDATORY, what };
    // Nearly every reply goes out at the first try, connected: no timer for those (a timeout
    // signal per reply showed in profiles). Otherwise, retry within the time limit below.
    if (this.link.isUp) {
      try {
        return await this.sender.publish(out, { retry: 0 });
      } catch (err) {
        if (!(err instanceof MessageDeliveryFailure)) throw err;
      }
    }
    const signal = AbortSignal.timeout(Math.max(limitMs, 1));
    for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
      try {
        await this.sender.publish(out, { retry: -1, signal });
        return;
      } catch (err) {
        if (err instanceof MessageUndeliverable) {
          if (heartbeat) return this.logger.debug({ msgId, replyQ }, 'heartbeat returned: nobody waits for it any more');
          if (!signal.aborted) {
            await sleep(wait, signal).catch(() => undefined);
            if (!signal.aborted) continue;
          }
          return this.logger.warn({ msgId, replyQ, seconds: limitMs / 1000 }, 'reply dropped: its reply queue had no consumer within the retry timeout');
        }
        if (signal.aborted) {
          if (heartbeat) throw new MessageDeliveryFailure(`${what} could not be sent in ${limitMs} ms`, { cause: err });
          return this.logger.warn({ msgId, replyQ, err }, 'reply dropped: not sent within the retry timeout');
        }
        throw err;
      }
    }
  }

  // ---- notifications ----------------------------------------------------------------------

  async notify(target: Target, notification: Notification, options: SendOptions): Promise<void> {
    this.checkOpen();
    const exchange = this.exchangeOf(target);
    const key = `${target.topic}.${notification.priority}`;
    const queueKey = `q:${exchange}:${key}`;
    const out: Outgoing = {
      exchange,
      routingKey: key,
      body: Buffer.from(envelope(notificationToOslo(notification))),
      // Like oslo's notifier: declare the queue, so nothing is lost before a listener exists.
      // Without it (notification_default_queue=false), mandatory: a notification no queue is
      // bound for fails with MessageUndeliverable instead of vanishing.
      properties: this.options.notificationDefaultQueue ? NOT_MANDATORY : MANDATORY,
      declare: (gen) =>
        !this.options.notificationDefaultQueue
          ? this.declareExchange(gen, exchange)
          : gen.isDeclared(queueKey)
            ? undefined
            : (async () => {
                await this.declareExchange(gen, exchange);
                await gen.declareOnce(queueKey, async (ch) => {
                  await ch.assertQueue(key, this.queueOptions());
                  await ch.bindQueue(key, exchange, key);
                });
              })(),
      what: `notification ${notification.eventType} to "${key}"`,
    };
    await this.sender.publish(out, { retry: options.retry ?? -1, signal: options.signal });
  }

  async listenForNotifications(
    targets: readonly Target[],
    handler: (msg: IncomingNotification) => void,
    options: NotificationListenOptions,
  ): Promise<Subscription> {
    this.checkOpen();
    const bindings: Array<{ exchange: string; key: string; queue: string }> = [];
    for (const t of targets) {
      for (const p of options.priorities) {
        const key = `${t.topic}.${p}`;
        bindings.push({ exchange: this.exchangeOf(t), key, queue: options.pool ?? key });
      }
    }
    const queues = [...new Set(bindings.map((b) => b.queue))];
    const exchanges = [...new Set(bindings.map((b) => b.exchange))];
    const handled = new SeenIds({ max: RECENT_NOTIFICATION_IDS });
    const inProgress = new Map<string, Delivery[]>();
    const consumer = new Consumer(this.consumerEnv, {
      label: options.pool !== undefined ? `notification pool ${options.pool}` : `notification listener ${queues.join(',')}`,
      declare: async (ch) => {
        for (const ex of exchanges) await ch.assertExchange(ex, 'topic', this.exchangeOptions());
        for (const q of queues) await ch.assertQueue(q, this.queueOptions());
        for (const b of bindings) await ch.bindQueue(b.queue, b.exchange, b.key);
        return queues;
      },
      deliver: (d) => this.onNotification(d, handler, handled, inProgress),
    });
    await this.attach(consumer);
    return this.subscription(consumer);
  }

  private onNotification(
    d: Delivery,
    handler: (msg: IncomingNotification) => void,
    handled: SeenIds,
    inProgress: Map<string, Delivery[]>,
  ): void {
    const drop = (): void => void d.consumer.settle(d, 'ack', false);
    const parsed = this.parse(d, 'notification');
    if (!parsed) return drop();
    let notification: Notification;
    try {
      notification = notificationFromOslo(parsed);
    } catch (err) {
      this.malformed(d, 'notification', err);
      return drop();
    }
    const uid = notification.uniqueId;
    if (uid !== '') {
      if (handled.has(uid)) {
        this.logger.debug({ uniqueId: uid, redelivered: d.msg.fields.redelivered }, 'dropping a notification already handled');
        return drop();
      }
      // The same message again while the first copy is still with the endpoint (a redelivery
      // after a reconnect, or our own resend): settle it together with the first.
      const parked = inProgress.get(uid);
      if (parked) {
        d.consumer.hold();
        parked.push(d);
        return;
      }
      inProgress.set(uid, []);
    }
    d.consumer.hold();
    let settled = false;
    const settle = async (requeue: boolean): Promise<void> => {
      if (settled) return;
      settled = true;
      const parked = uid !== '' ? (inProgress.get(uid) ?? []) : [];
      if (uid !== '') inProgress.delete(uid);
      if (!requeue) {
        if (uid !== '') handled.add(uid);
        d.consumer.settle(d, 'ack', true);
        for (const p of parked) p.consumer.settle(p, 'ack', true);
      } else {
        // If the first copy's channel is gone the broker redelivers it: keep one copy then.
        const requeued = d.consumer.settle(d, 'requeue', true);
        for (const p of parked) p.consumer.settle(p, requeued ? 'ack' : 'requeue', true);
      }
    };
    handler({ notification, redelivered: d.msg.fields.redelivered, ack: () => settle(false), requeue: () => settle(true) });
  }

  // ---- lifecycle --------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pending.rejectAll((p) => new TransportClosed(`rabbit transport "${this.context.name}" closed while ${p.what} waited for its reply`));
    await this.link.close(async () => {
      await this.sender.drain(2_000);
      // Cancel consumers and delete our uuid-named queues instead of leaving them to x-expires.
      const stops = Promise.allSettled([...this.consumers].map((c) => c.stop()));
      await Promise.race([stops, sleep(2_000)]);
    });
    this.consumers.clear();
  }
}
