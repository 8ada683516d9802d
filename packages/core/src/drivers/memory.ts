/**
 * memory:// — an in-process driver for unit tests of core and the no-server demo. It mimics a
 * broker's queues (competing consumers, a queue per fanout member, notification pools,
 * requeue) and JSON-encodes every message as a real wire would. It must never stand in for a
 * real backend in that backend's tests. `memory://NAME` picks a hub: drivers on the same hub
 * talk to each other, like processes on one broker.
 */
import type {
  DriverCallOptions,
  Driver,
  DriverStats,
  DriverCapabilities,
  DriverContext,
  DriverFactory,
  IncomingNotification,
  IncomingRpc,
  ListenOptions,
  NotificationListenOptions,
  SendOptions,
  Subscription,
  TransportHealth,
} from '../driver.js';
import { MessageUndeliverable, TransportClosed } from '../errors.js';
import {
  notificationFromOslo,
  notificationToOslo,
  replyFromOslo,
  replyToOslo,
  requestFromOslo,
  requestToOslo,
  uniqueId,
  type Notification,
  type RpcReply,
  type RpcRequest,
} from '../message.js';
import type { Target } from '../target.js';

/** `redelivered`: handed out before and requeued, as a broker flags it; `key`: the routing key it was published with. */
type Deliver = (body: string, requeue: () => void, redelivered: boolean, key: string) => void;

class Queue {
  readonly messages: Array<{ body: string; key: string; redelivered: boolean }> = [];
  readonly consumers: Deliver[] = [];
  private next = 0;

  push(body: string, key: string, requeued = false): void {
    // A requeued message goes back to the front, like RabbitMQ's (it keeps its place).
    if (requeued) this.messages.unshift({ body, key, redelivered: true });
    else this.messages.push({ body, key, redelivered: false });
    this.pump();
  }

  pump(): void {
    while (this.consumers.length > 0 && this.messages.length > 0) {
      const { body, key, redelivered } = this.messages.shift() as { body: string; key: string; redelivered: boolean };
      const consumer = this.consumers[this.next++ % this.consumers.length] as Deliver;
      setImmediate(() => consumer(body, () => this.push(body, key, true), redelivered, key));
    }
  }
}

class Hub {
  readonly queues = new Map<string, Queue>();
  /** routing key → queue names, per exchange (topic exchanges with exact keys). */
  readonly bindings = new Map<string, Set<string>>();
  readonly replyHandlers = new Map<string, (body: string) => void>();

  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = new Queue()));
    return q;
  }

  bind(key: string, queue: string): void {
    this.queue(queue);
    let s = this.bindings.get(key);
    if (!s) this.bindings.set(key, (s = new Set()));
    s.add(queue);
  }

  unbind(key: string, queue: string): void {
    this.bindings.get(key)?.delete(queue);
  }

  /** Route to every bound queue; false when none is bound. */
  publish(key: string, body: string): boolean {
    const bound = this.bindings.get(key);
    if (!bound || bound.size === 0) return false;
    for (const q of bound) this.queue(q).push(body, key);
    return true;
  }
}

const hubs = new Map<string, Hub>();

export const memoryCapabilities: DriverCapabilities = {
  durable: false,
  brokerless: true,
  pools: true,
  requeue: true,
  callMonitor: true,
  broadcast: true,
};

export class MemoryDriver implements Driver {
  readonly capabilities = memoryCapabilities;
  private readonly hub: Hub;
  private readonly replyQueue = `reply_${uniqueId()}`;
  private readonly pending = new Map<string, { resolve: (r: RpcReply) => void; reject: (e: Error) => void; onHeartbeat: () => void }>();
  private readonly subscriptions = new Set<() => void>();
  private closed = false;
  private crashed = false;

  constructor(
    hubName: string,
    private readonly context: DriverContext,
  ) {
    let hub = hubs.get(hubName);
    if (!hub) hubs.set(hubName, (hub = new Hub()));
    this.hub = hub;
    hub.replyHandlers.set(this.replyQueue, (body) => this.onReply(body));
  }

  private key(target: Target, name: string): string {
    return `${target.exchange ?? this.context.controlExchange}/${name}`;
  }

  private checkOpen(): void {
    if (this.closed) throw new TransportClosed(`memory transport "${this.context.name}" is closed`);
  }

  private route(target: Target, body: string): void {
    const name = target.server !== undefined ? `${target.topic}.${target.server}` : (target.topic as string);
    if (!this.hub.publish(this.key(target, name), body)) {
      throw new MessageUndeliverable(`no server listens on ${target}`);
    }
  }

  async call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
    this.checkOpen();
    const msgId = uniqueId();
    const body = JSON.stringify({
      ...requestToOslo(request),
      _msg_id: msgId,
      _reply_q: this.replyQueue,
      _timeout: options.callMonitorTimeoutMs ?? null,
    });
    return new Promise<RpcReply>((resolve, reject) => {
      options.cancel.onCancel((reason) => {
        this.pending.delete(msgId);
        reject(reason);
      });
      if (options.cancel.reason) return;
      this.pending.set(msgId, {
        resolve,
        reject,
        onHeartbeat: options.onHeartbeat,
      });
      try {
        this.route(target, body);
      } catch (e) {
        this.pending.delete(msgId);
        reject(e);
      }
    });
  }

  async cast(target: Target, request: RpcRequest, _options: SendOptions): Promise<void> {
    this.checkOpen();
    this.route(target, JSON.stringify(requestToOslo(request)));
  }

  async fanout(target: Target, request: RpcRequest, _options: SendOptions): Promise<void> {
    this.checkOpen();
    if (!this.hub.publish(this.key(target, `${target.topic}_fanout`), JSON.stringify(requestToOslo(request)))) {
      throw new MessageUndeliverable(`no server listens for fanout on ${target}`);
    }
  }

  async notify(target: Target, notification: Notification, _options: SendOptions): Promise<void> {
    this.checkOpen();
    // Like oslo's notifier, declare the priority queue so nothing is lost before a listener exists.
    const key = this.key(target, `${target.topic}.${notification.priority}`);
    this.hub.bind(key, key);
    this.hub.publish(key, JSON.stringify(notificationToOslo(notification)));
  }

  private onReply(body: string): void {
    const d = JSON.parse(body) as Record<string, unknown>;
    const waiter = this.pending.get(String(d['_msg_id']));
    if (!waiter) return;
    const reply = replyFromOslo(d);
    if (!reply.ending) return waiter.onHeartbeat();
    this.pending.delete(String(d['_msg_id']));
    waiter.resolve(reply);
  }

  private sendReply(replyQ: unknown, msgId: unknown, reply: RpcReply): void {
    if (this.crashed) return;
    const handler = this.hub.replyHandlers.get(String(replyQ));
    const body = JSON.stringify({ ...replyToOslo(reply), _msg_id: msgId, _unique_id: uniqueId() });
    if (handler) setImmediate(() => handler(body));
  }

  private consume(queues: ReadonlyArray<[key: string, queue: string]>, deliver: Deliver): Subscription {
    for (const [key, queue] of queues) this.hub.bind(key, queue);
    const consumer: Deliver = (body, requeue, redelivered, key) => (this.crashed ? requeue() : deliver(body, requeue, redelivered, key));
    const attached = queues.map(([, queue]) => this.hub.queue(queue));
    for (const q of attached) {
      q.consumers.push(consumer);
      q.pump();
    }
    const detach = (): void => {
      for (const q of attached) q.consumers.splice(q.consumers.indexOf(consumer), 1);
      this.subscriptions.delete(detach);
    };
    this.subscriptions.add(detach);
    return { stop: async () => detach() };
  }

  async listen(target: Target, handler: (msg: IncomingRpc) => void, _options: ListenOptions): Promise<Subscription> {
    this.checkOpen();
    const topicKey = this.key(target, target.topic as string);
    const serverKey = this.key(target, `${target.topic}.${target.server}`);
    const fanoutKey = this.key(target, `${target.topic}_fanout`);
    const fanoutQueue = `${fanoutKey}_${uniqueId()}`;
    const make = (body: string, fanout: boolean): void => {
      let d: Record<string, unknown>;
      let request: RpcRequest;
      try {
        d = JSON.parse(body) as Record<string, unknown>;
        request = requestFromOslo(d);
      } catch (err) {
        this.context.logger.warn({ err }, 'dropping a malformed request');
        return;
      }
      const msgId = d['_msg_id'];
      const isCall = typeof msgId === 'string';
      const cmt = d['_timeout'];
      handler({
        pattern: isCall ? 'call' : fanout ? 'fanout' : 'cast',
        request,
        callMonitorTimeoutMs: typeof cmt === 'number' && cmt > 0 ? cmt : undefined,
        reply: async (r) => (isCall ? this.sendReply(d['_reply_q'], msgId, { ...r, ending: true }) : undefined),
        heartbeat: async () => (isCall ? this.sendReply(d['_reply_q'], msgId, { result: null, failure: null, ending: false }) : undefined),
      });
    };
    const direct = this.consume([[topicKey, topicKey], [serverKey, serverKey]], (body) => make(body, false));
    const fan = this.consume([[fanoutKey, fanoutQueue]], (body) => make(body, true));
    return {
      stop: async () => {
        await direct.stop();
        await fan.stop();
        this.hub.unbind(fanoutKey, fanoutQueue);
        this.hub.queues.delete(fanoutQueue);
      },
    };
  }

  async listenForNotifications(
    targets: readonly Target[],
    handler: (msg: IncomingNotification) => void,
    options: NotificationListenOptions,
  ): Promise<Subscription> {
    this.checkOpen();
    const bindings: Array<[string, string]> = [];
    const topicOf = new Map<string, string>();
    for (const t of targets) {
      for (const p of options.priorities) {
        const key = this.key(t, `${t.topic}.${p}`);
        bindings.push([key, options.pool !== undefined ? this.key(t, `pool:${options.pool}`) : key]);
        topicOf.set(key, t.topic as string);
      }
    }
    return this.consume(bindings, (body, requeue, redelivered, key) => {
      let notification: Notification;
      try {
        notification = notificationFromOslo(JSON.parse(body));
      } catch (err) {
        this.context.logger.warn({ err }, 'dropping a malformed notification');
        return;
      }
      let settled = false;
      const settle = (fn?: () => void): Promise<void> => {
        if (!settled && fn) fn();
        settled = true;
        return Promise.resolve();
      };
      handler({ notification, topic: topicOf.get(key), redelivered, ack: () => settle(), requeue: () => settle(requeue) });
    });
  }

  /** For tests of peer death: stop consuming and drop every reply or heartbeat from now on. */
  crash(): void {
    this.crashed = true;
    for (const detach of [...this.subscriptions]) detach();
  }

  stats(): DriverStats {
    return { connections: this.closed ? 0 : 1, pendingCalls: this.pending.size, queued: 0, unacked: 0, retried: 0, reconnects: 0, dropped: 0 };
  }

  health(): TransportHealth {
    return this.closed ? { state: 'down', reason: 'closed' } : { state: 'connected' };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const detach of [...this.subscriptions]) detach();
    this.hub.replyHandlers.delete(this.replyQueue);
    for (const [id, waiter] of this.pending) {
      this.pending.delete(id);
      waiter.reject(new TransportClosed(`memory transport "${this.context.name}" closed while a call was waiting`));
    }
  }
}

export const memoryDriverFactory: DriverFactory = {
  schemes: ['memory'],
  create: (url, context) => new MemoryDriver(url.host + url.pathname, context),
};
