/**
 * zmq:// — brokerless RPC over ZeroMQ. A server binds one ROUTER per transport and registers
 * "topic" and "topic.server" in the name service; a client looks the key up, picks a host
 * round-robin and sends over its pooled connection (outbound.ts). A message known not to have
 * left (peer never connected, server no longer serving the key) fails over to another host;
 * one in flight when its connection breaks fails with ConnectionLost, long before its timeout.
 */
import {
  ConnectionLost,
  MalformedMessage,
  MessageDeliveryFailure,
  MessageTooLarge,
  MessageUndeliverable,
  notificationFromOslo,
  notificationToOslo,
  replyFromOslo,
  replyToOslo,
  requestFromOslo,
  requestToOslo,
  TransportClosed,
  type CallOptions,
  type Driver,
  type DriverCapabilities,
  type DriverContext,
  type IncomingNotification,
  type IncomingRpc,
  type ListenOptions,
  type Logger,
  type Notification,
  type NotificationListenOptions,
  type RpcReply,
  type RpcRequest,
  type SendOptions,
  type Subscription,
  type Target,
} from '@hybridbus/core';
import { randomBytes } from 'node:crypto';
import { ACK, CALL, CAST, decode, encode, FANOUT, NACK, NOTIFY, REPLY, type Body, type Encoded, type Kind } from './frames.js';
import { Inbound } from './inbound.js';
import { createNameService, type HostRecord, type NameService } from './nameservice/index.js';
import type { ZmqOptions } from './options.js';
import { Outbound } from './outbound.js';
import { DUPLICATE, Receipts, type Finish } from './receipts.js';

export const zmqCapabilities: DriverCapabilities = {
  durable: false,
  brokerless: true,
  pools: true,
  requeue: false,
  callMonitor: true,
};

interface PendingCall {
  resolve(r: RpcReply): void;
  reject(e: Error): void;
  readonly onHeartbeat: () => void;
  /** Send again to another host: the last one answered that it does not serve the key. */
  failover(): void;
  address: string | undefined;
}

interface PendingAck {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  /** The receiver has it and is still handling it: keep waiting. */
  readonly working: () => void;
  /** The host it went to lost it or refused it: send it to another. */
  readonly elsewhere: (reason: string) => void;
  address: string | undefined;
}

type RpcHandler = (msg: IncomingRpc) => Promise<void> | void;
type NotificationHandler = (msg: IncomingNotification) => Promise<void> | void;

/** Picks handlers round-robin, and keeps the count per key. */
class Handlers<H> {
  private readonly byKey = new Map<string, H[]>();
  private turn = 0;
  add(key: string, h: H): void {
    this.byKey.set(key, [...(this.byKey.get(key) ?? []), h]);
  }
  remove(key: string, h: H): number {
    const left = (this.byKey.get(key) ?? []).filter((x) => x !== h);
    if (left.length) this.byKey.set(key, left);
    else this.byKey.delete(key);
    return left.length;
  }
  one(key: string): H | undefined {
    const hs = this.byKey.get(key);
    return hs?.[this.turn++ % hs.length];
  }
  all(key: string): readonly H[] {
    return this.byKey.get(key) ?? [];
  }
}

/**
 * A call in flight. One object with methods, not a closure per step: a busy client starts
 * ~100,000 calls a second, and garbage collection was a sixth of its CPU.
 */
class OutgoingCall implements PendingCall {
  address: string | undefined;
  /** Hosts that refused it; none until one has. */
  private tried: Set<string> | undefined;

  constructor(
    private readonly driver: ZmqDriver,
    private readonly key: string,
    readonly id: string,
    private readonly frame: Encoded,
    private readonly res: (r: RpcReply) => void,
    private readonly rej: (e: Error) => void,
    readonly onHeartbeat: () => void,
  ) {}

  resolve(r: RpcReply): void {
    this.driver.settled(this);
    this.res(r);
  }

  reject(e: Error): void {
    this.driver.settled(this);
    this.rej(e);
  }

  /** Send (again): to a host not yet tried. */
  failover(): void {
    if (this.address !== undefined) (this.tried ??= new Set()).add(this.address);
    this.driver.route(this.key, this.frame, this.tried, (err, address) => (err ? this.reject(err) : (this.address = address)), { id: this.id });
  }
}

/** How long close() lets messages already handed over reach the wire (ms). */
const CLOSE_LINGER_MS = 2000;

/** reply/heartbeat of a one-way message, ack/requeue of a notification: nothing to do. */
const nothing = async (): Promise<void> => undefined;
const SENT: Promise<void> = Promise.resolve();
const HEARTBEAT: RpcReply = { result: null, failure: null, ending: false };

/** Tell the sender of a message with an id why it was not taken. */
function refuse(ib: Inbound, client: Buffer, body: Body, code: string, error: string): void {
  if (code === 'HB_MALFORMED') ib.dropped(new MalformedMessage(error));
  if (body.i !== undefined) ib.send(client, NACK, { i: body.i, code, error });
}

export class ZmqDriver implements Driver {
  readonly capabilities = zmqCapabilities;
  readonly nameService: NameService;
  private outbound: Outbound | undefined;
  private inbound: Promise<Inbound> | undefined;
  private readonly idPrefix = randomBytes(4).toString('hex');
  private nextId = 0;
  private readonly calls = new Map<string, PendingCall>();
  private readonly acks = new Map<string, PendingAck>();
  private readonly turns = new Map<string, number>();
  private readonly rpc = new Handlers<RpcHandler>();
  private readonly fanouts = new Handlers<RpcHandler>();
  private readonly notifications = new Handlers<NotificationHandler>();
  private closed = false;
  private readonly logger: Logger;
  readonly stats = { unroutedNotifications: 0, failovers: 0, retries: 0 };
  private readonly receipts: Receipts;

  constructor(
    readonly options: ZmqOptions,
    private readonly context: DriverContext,
  ) {
    this.logger = context.logger;
    this.receipts = new Receipts(options.dedupTtl, options.dedupMax);
    this.nameService = createNameService(options.matchmaker, { ttlMs: options.nsTtl, cacheMs: options.nsCache, logger: context.logger });
  }

  // ---- keys and ids ----------------------------------------------------------------------

  private exchange(t: Target): string {
    return t.exchange ?? this.context.controlExchange;
  }
  /** Keys by target object: clients reuse their targets, and building the strings per message showed. */
  private readonly keys = new WeakMap<Target, { topic: string; rpc: string; notify: string }>();
  private keysOf(t: Target): { topic: string; rpc: string; notify: string } {
    let k = this.keys.get(t);
    if (!k) {
      const topic = `${this.exchange(t)}/${t.topic}`;
      k = { topic, rpc: t.server !== undefined ? `${topic}.${t.server}` : topic, notify: `notify:${topic}` };
      this.keys.set(t, k);
    }
    return k;
  }
  private topicKey(t: Target): string {
    return this.keysOf(t).topic;
  }
  private rpcKey(t: Target): string {
    return this.keysOf(t).rpc;
  }
  private notifyKey(t: Target): string {
    return this.keysOf(t).notify;
  }
  /** The records of a pool, and the distinct pools, per lookup answer (answers are reused until records change). */
  private readonly byPool = new WeakMap<readonly HostRecord[], Map<string, readonly HostRecord[]>>();
  private poolsOf(all: readonly HostRecord[]): Map<string, readonly HostRecord[]> {
    let pools = this.byPool.get(all);
    if (!pools) {
      const m = new Map<string, HostRecord[]>();
      for (const r of all) {
        const pool = r.pool ?? '';
        const members = m.get(pool);
        if (members) members.push(r);
        else m.set(pool, [r]);
      }
      pools = m;
      this.byPool.set(all, pools);
    }
    return pools;
  }
  private id(): string {
    return `${this.idPrefix}${(this.nextId++).toString(36)}`;
  }

  private frame(kind: Kind, body: Body): Encoded {
    const f = encode(kind, body, this.options.maxMessageSize);
    if (f.bytes > this.options.maxMessageSize) {
      throw new MessageTooLarge(`message of ${f.bytes} bytes exceeds max_message_size=${this.options.maxMessageSize}`);
    }
    return f;
  }

  private out(): Outbound {
    if (this.closed) throw new TransportClosed(`zmq transport "${this.context.name}" is closed`);
    this.outbound ??= new Outbound(this.options, { onFrames: (a, r) => this.onFrames(a, r), onPeerLost: (a, ids, e) => this.onPeerLost(a, ids, e) }, this.logger);
    return this.outbound;
  }

  // ---- client side -----------------------------------------------------------------------

  /** The next live host among `all` (round-robin), skipping those already tried. */
  private pick(key: string, all: readonly HostRecord[], tried: ReadonlySet<string> | undefined, pool?: string): HostRecord | undefined {
    const members = pool === undefined ? all : (this.poolsOf(all).get(pool) ?? []);
    const candidates = !tried?.size ? members : members.filter((r) => !tried.has(r.address));
    if (candidates.length === 0) return undefined;
    const turnKey = pool === undefined ? key : `${key}#${pool}`;
    const turn = this.turns.get(turnKey) ?? 0;
    this.turns.set(turnKey, turn + 1);
    return candidates[turn % candidates.length];
  }

  /**
   * Hand `frame` to a host of `key`. A host that the message never reached is skipped and the
   * next one tried; `done` gets the host it left for, or why it could not leave.
   * @internal (OutgoingCall routes itself)
   */
  route(key: string, frame: Encoded, tried: Set<string> | undefined, done: (err: Error | undefined, address?: string) => void, opts: { id?: string; pool?: string } = {}): void {
    // A cached answer is used at once: waiting a turn for it per message was measurable.
    const hit = this.nameService.cached(key);
    if (hit) return this.routeTo(key, hit, frame, tried, done, opts);
    this.nameService.lookup(key).then(
      (all) => this.routeTo(key, all, frame, tried, done, opts),
      (err: Error) => done(err),
    );
  }

  private routeTo(key: string, all: readonly HostRecord[], frame: Encoded, tried: Set<string> | undefined, done: (err: Error | undefined, address?: string) => void, opts: { id?: string; pool?: string }): void {
    const record = this.pick(key, all, tried, opts.pool);
    if (!record) {
      const where = tried?.size ? ` (tried ${[...tried].join(', ')})` : '';
      return done(new MessageUndeliverable(`no live server for "${key}"${opts.pool !== undefined ? ` in pool "${opts.pool}"` : ''}${where}`));
    }
    tried?.add(record.address);
    this.out().send(
      record.address,
      frame,
      (err) => {
        if (!err) return done(undefined, record.address);
        if (err instanceof MessageUndeliverable) {
          this.nameService.forget(record.address);
          this.stats.failovers++;
          return this.route(key, frame, (tried ?? new Set()).add(record.address), done, opts);
        }
        done(err);
      },
      opts.id,
      record.publicKey,
      this.options.hotTopics.size > 0 && this.options.hotTopics.has(key.split('/')[1]?.split('.')[0] ?? ''),
    );
  }

  async call(target: Target, request: RpcRequest, options: CallOptions): Promise<RpcReply> {
    const key = this.rpcKey(target);
    const id = this.id();
    const frame = this.frame(CALL, { i: id, k: key, m: requestToOslo(request), t: options.callMonitorTimeoutMs });
    return new Promise<RpcReply>((resolve, reject) => {
      const call = new OutgoingCall(this, key, id, frame, resolve, reject, options.onHeartbeat);
      options.cancel.onCancel((reason) => call.reject(reason));
      if (options.cancel.reason) return;
      this.calls.set(id, call);
      call.failover();
    });
  }

  /** @internal The call is over: forget it here and at the peer it went to. */
  settled(call: OutgoingCall): void {
    this.calls.delete(call.id);
    if (call.address) this.outbound?.untrack(call.address, call.id);
  }

  /**
   * Send a one-way record to one host of `key` (or to `opts.address`). With acks it resolves
   * on the receiver's ack; without an answer in ack_timeout (doubling) it is sent again to the
   * same host, which answers a duplicate from its memory ("working", or the ack); a host that
   * lost or refused it hands it to another. ack_retries unanswered sends in a row fail it.
   */
  private oneWay(kind: Kind, key: string, m: Record<string, unknown>, opts: { pool?: string; address?: string } = {}): Promise<void> {
    if (this.options.acks === 'none') {
      const frame = this.frame(kind, { k: key, m, pool: opts.pool });
      return new Promise((resolve, reject) => {
        const done = (err: Error | undefined): void => (err ? reject(err) : resolve());
        if (opts.address !== undefined) this.out().send(opts.address, frame, done);
        else this.route(key, frame, undefined, done, { pool: opts.pool });
      });
    }
    const id = this.id();
    const body: Body = { i: id, k: key, m, pool: opts.pool, a: this.options.acks === 'received' ? 1 : undefined };
    const first = this.frame(kind, body);
    let again: Encoded | undefined;
    return new Promise((resolve, reject) => {
      /** Sends in a row that got no answer; an answer (or a move to another host) resets it. */
      let silent = 0;
      /** Grows with every resend: how long the next wait is. */
      let backoff = 0;
      let timer: NodeJS.Timeout | undefined;
      let tried: Set<string> | undefined;
      const untrack = (): void => {
        if (pending.address !== undefined) this.outbound?.untrack(pending.address, id);
      };
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        this.acks.delete(id);
        untrack();
        if (err) reject(err);
        else resolve();
      };
      const wait = (): number => this.options.ackTimeout * 2 ** Math.min(backoff, 6);
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(unanswered, wait());
      };
      const send = (address: string | undefined): void => {
        const frame = silent + backoff === 0 ? first : (again ??= this.frame(kind, { ...body, r: 1 }));
        if (address !== undefined) this.out().send(address, frame, (err) => sent(err, address), id);
        else this.route(key, frame, tried, sent, { id, pool: opts.pool });
      };
      const sent = (err: Error | undefined, address?: string): void => {
        if (!err) {
          pending.address = address;
          return arm();
        }
        // A resend straight to the host that had it found it gone: another host gets it.
        if (err instanceof MessageUndeliverable && address !== undefined && opts.address === undefined) {
          pending.address = address;
          return pending.elsewhere(err.message);
        }
        // Nothing took it now: fail at once rather than wait (no host, refused, queue full).
        if (silent + backoff === 0) return finish(err);
        finish(new MessageDeliveryFailure(`a message to "${key}" could not be sent again (${err.message}); it may or may not have been handled`, { cause: err }));
      };
      const unanswered = (): void => {
        untrack();
        if (++silent > this.options.ackRetries) {
          return finish(new MessageDeliveryFailure(`no ack for a message to "${key}" after ${silent} attempts`));
        }
        backoff++;
        this.stats.retries++;
        send(opts.address ?? pending.address);
      };
      const pending: PendingAck = {
        resolve: () => finish(),
        reject: finish,
        working: () => {
          silent = 0;
          arm();
        },
        elsewhere: (reason) => {
          clearTimeout(timer);
          untrack();
          if (++silent > this.options.ackRetries) {
            return finish(new MessageDeliveryFailure(`a message to "${key}" was not delivered after ${silent} attempts (last: ${reason})`));
          }
          backoff++;
          this.stats.retries++;
          if (opts.address === undefined && pending.address !== undefined) (tried ??= new Set()).add(pending.address);
          send(opts.address);
        },
        address: undefined,
      };
      this.acks.set(id, pending);
      send(opts.address);
    });
  }

  async cast(target: Target, request: RpcRequest, _options: SendOptions): Promise<void> {
    await this.oneWay(CAST, this.rpcKey(target), requestToOslo(request));
  }

  async fanout(target: Target, request: RpcRequest, _options: SendOptions): Promise<void> {
    const key = this.topicKey(target);
    const hosts = [...new Set((await this.nameService.lookup(key)).map((r) => r.address))];
    if (hosts.length === 0) throw new MessageUndeliverable(`no live server for fanout to "${key}"`);
    const m = requestToOslo(request);
    await Promise.all(hosts.map((address) => this.oneWay(FANOUT, key, m, { address })));
  }

  async notify(target: Target, notification: Notification, _options: SendOptions): Promise<void> {
    const key = this.notifyKey(target);
    const pools = [...this.poolsOf(this.nameService.cached(key) ?? (await this.nameService.lookup(key))).keys()];
    if (pools.length === 0) {
      this.stats.unroutedNotifications++;
      if (this.options.notifyUnrouted === 'drop') return;
      throw new MessageUndeliverable(`no listener for notifications on "${key}" (brokerless: nothing stores them; set notify_unrouted=drop to drop them)`);
    }
    const m = notificationToOslo(notification);
    if (pools.length === 1) return this.oneWay(NOTIFY, key, m, { pool: pools[0] });
    await Promise.all(pools.map((pool) => this.oneWay(NOTIFY, key, m, { pool })));
  }

  /** Replies, acks and refusals from servers. */
  private onFrames(address: string, records: string[]): void {
    for (const record of records) {
      let kind: Kind;
      let body: Body;
      try {
        ({ kind, body } = decode(record));
      } catch (err) {
        this.logger.warn({ err, address }, 'zmq-direct: dropping a malformed reply');
        continue;
      }
      const id = body.i ?? '';
      if (kind === REPLY) {
        const call = this.calls.get(id);
        if (!call) continue;
        let reply: RpcReply;
        try {
          reply = replyFromOslo(body.m);
        } catch (err) {
          call.reject(err as Error);
          continue;
        }
        if (reply.ending) call.resolve(reply);
        else call.onHeartbeat();
      } else if (kind === ACK) {
        if (body.w === 1) this.acks.get(id)?.working();
        else this.acks.get(id)?.resolve();
      } else if (kind === NACK) {
        this.refused(address, id, body);
      }
    }
  }

  private refused(address: string, id: string, body: Body): void {
    const call = this.calls.get(id);
    const ack = this.acks.get(id);
    if (body.code === 'HB_UNDELIVERABLE') {
      // That server no longer serves the key (a stale record): it did not run it, try another.
      this.outbound?.untrack(address, id);
      this.stats.failovers++;
      call?.failover();
      ack?.elsewhere(body.error ?? 'refused');
      return;
    }
    const err =
      body.code === 'HB_TOO_LARGE' ? new MessageTooLarge(body.error ?? '') : body.code === 'HB_MALFORMED' ? new MalformedMessage(body.error ?? '') : new MessageDeliveryFailure(`${address} refused the message: ${body.error}`);
    call?.reject(err);
    ack?.reject(err);
  }

  private onPeerLost(address: string, ids: ReadonlySet<string>, error: Error): void {
    this.nameService.forget(address);
    for (const id of ids) {
      this.calls.get(id)?.reject(error instanceof ConnectionLost ? error : new ConnectionLost(error.message, { cause: error }));
      // Acked one-way messages are sent again elsewhere: the lost host may have handled them
      // (at-least-once across servers), never silently dropped.
      this.acks.get(id)?.elsewhere(error.message);
    }
  }

  // ---- server side -----------------------------------------------------------------------

  private server(): Promise<Inbound> {
    if (this.closed) throw new TransportClosed(`zmq transport "${this.context.name}" is closed`);
    this.inbound ??= Inbound.bind(this.options, (ib, c, k, b) => this.dispatch(ib, c, k, b), this.logger);
    return this.inbound;
  }

  private dispatch(ib: Inbound, client: Buffer, kind: Kind, body: Body): Promise<unknown> | void {
    const key = body.k ?? '';
    if (kind === NOTIFY) {
      const handler = this.notifications.one(`${key}#${body.pool ?? ''}`);
      if (!handler) return refuse(ib, client, body, 'HB_UNDELIVERABLE', `no listener for "${key}" pool "${body.pool ?? ''}" here`);
      let notification: Notification;
      try {
        notification = notificationFromOslo(body.m);
      } catch (e) {
        return refuse(ib, client, body, 'HB_MALFORMED', (e as Error).message);
      }
      const finish = this.receipt(ib, client, key, body);
      if (!finish) return;
      // The listener settles (acks) once its endpoints are done: that is when it counts as handled.
      const settle = (): Promise<void> => (finish(), SENT);
      return handler({ notification, redelivered: body.r === 1, ack: settle, requeue: settle });
    }
    if (kind !== CALL && kind !== CAST && kind !== FANOUT) return refuse(ib, client, body, 'HB_MALFORMED', `unexpected record kind ${kind}`);
    const handlers = kind === FANOUT ? this.fanouts.all(key) : [];
    const handler = kind === FANOUT ? handlers[0] : this.rpc.one(key);
    if (!handler) return refuse(ib, client, body, 'HB_UNDELIVERABLE', `no server for "${key}" here`);
    let request: RpcRequest;
    try {
      request = requestFromOslo(body.m);
    } catch (e) {
      return refuse(ib, client, body, 'HB_MALFORMED', (e as Error).message);
    }
    if (kind === CALL) {
      const i = body.i ?? '';
      // Replies are queued, not awaited: a settled promise rather than an async function per reply.
      const send = (r: RpcReply): Promise<void> => {
        try {
          ib.send(client, REPLY, { i, m: replyToOslo(r) });
          return SENT;
        } catch (e) {
          return Promise.reject(e as Error); // e.g. a result JSON cannot encode
        }
      };
      return handler({
        pattern: 'call',
        request,
        callMonitorTimeoutMs: typeof body.t === 'number' && body.t > 0 ? body.t : undefined,
        reply: (r) => send({ result: r.result, failure: r.failure, ending: true }),
        heartbeat: () => send(HEARTBEAT),
      });
    }
    const finish = this.receipt(ib, client, key, body);
    if (!finish) return;
    let work: Promise<unknown> | void;
    try {
      if (kind === CAST) work = handler({ pattern: 'cast', request, reply: nothing, heartbeat: nothing });
      else work = Promise.all(handlers.map((h) => h({ pattern: 'fanout', request, reply: nothing, heartbeat: nothing })));
    } catch (e) {
      finish();
      throw e;
    }
    if (!work) return finish();
    return work.then(finish, finish);
  }

  /** Ack bookkeeping of a one-way record; undefined when it must not be dispatched (a duplicate, or refused). */
  private receipt(ib: Inbound, client: Buffer, key: string, body: Body): Finish | undefined {
    const finish = this.receipts.begin(key, body, (answer) => ib.send(client, ACK, answer));
    if (finish === DUPLICATE) return undefined;
    if (finish instanceof MalformedMessage) return void refuse(ib, client, body, 'HB_MALFORMED', finish.message);
    return finish;
  }

  async listen(target: Target, handler: RpcHandler, _options: ListenOptions): Promise<Subscription> {
    const ib = await this.server();
    const keys = [this.topicKey(target), this.rpcKey(target)];
    for (const k of keys) this.rpc.add(k, handler);
    this.fanouts.add(keys[0] as string, handler);
    const record: HostRecord = { address: ib.address, publicKey: this.options.curve?.publicKey };
    await this.nameService.register(keys, record);
    return {
      stop: async () => {
        // Leave the name service first, so new requests go elsewhere while these finish.
        const gone = keys.filter((k) => this.rpc.remove(k, handler) === 0);
        this.fanouts.remove(keys[0] as string, handler);
        if (gone.length && !this.closed) await this.nameService.unregister(gone, record);
      },
    };
  }

  async listenForNotifications(targets: readonly Target[], handler: NotificationHandler, options: NotificationListenOptions): Promise<Subscription> {
    const ib = await this.server();
    const pool = options.pool ?? '';
    const keys = [...new Set(targets.map((t) => this.notifyKey(t)))];
    for (const k of keys) this.notifications.add(`${k}#${pool}`, handler);
    const record: HostRecord = { address: ib.address, publicKey: this.options.curve?.publicKey, pool };
    await this.nameService.register(keys, record);
    return {
      stop: async () => {
        const gone = keys.filter((k) => this.notifications.remove(`${k}#${pool}`, handler) === 0);
        if (gone.length && !this.closed) await this.nameService.unregister(gone, record);
      },
    };
  }

  /** The bound address, once a server or listener started ("host:port"). */
  async address(): Promise<string | undefined> {
    return this.inbound ? (await this.inbound).address : undefined;
  }

  /** Counters for tests, benchmarks and `hybridbus` status. */
  async counters(): Promise<Record<string, number>> {
    const ib = this.inbound ? await this.inbound : undefined;
    return {
      ...this.stats,
      ...this.receipts.stats,
      dedupIds: this.receipts.size,
      ...(this.outbound?.stats ?? {}),
      peers: this.outbound?.size ?? 0,
      received: ib?.stats.received ?? 0,
      dropped: ib?.stats.dropped ?? 0,
      oversize: ib?.stats.oversize ?? 0,
      paused: ib?.stats.paused ?? 0,
      repliesDropped: ib?.stats.repliesDropped ?? 0,
      pendingCalls: this.calls.size,
      pendingAcks: this.acks.size,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.nameService.close().catch((err: unknown) => this.logger.warn({ err }, 'zmq-direct: name service close failed'));
    const err = new TransportClosed(`zmq transport "${this.context.name}" closed`);
    for (const c of [...this.calls.values()]) c.reject(err);
    for (const a of [...this.acks.values()]) a.reject(err);
    await this.outbound?.close(CLOSE_LINGER_MS);
    if (this.inbound) (await this.inbound.catch(() => undefined))?.close();
  }
}
