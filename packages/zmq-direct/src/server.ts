/**
 * The server side of zmq-direct: one Inbound socket per transport, shared by every RPC server
 * and notification listener of the process on it. A record is dispatched to a handler of its
 * key; one-way records are acked as their sender asked (receipts.ts), calls answered.
 */
import { MalformedMessage, TransportClosed, type Logger, type Target } from '@hybridbus/core';
import {
  notificationFromCompact,
  notificationFromOslo,
  replyToOslo,
  requestFromCompact,
  requestFromOslo,
  setOwn,
  type IncomingNotification,
  type IncomingRpc,
  type Notification,
  type RpcReply,
  type RpcRequest,
  type Subscription,
} from '@hybridbus/core/driver';
import type { HostRecord, NameService } from '@hybridbus/nameservice';
import { ACK, CALL, CAST, decode, FANOUT, NACK, NOTIFY, REPLY, WIRE, type Body, type Kind } from './frames.js';
import { Inbound, type InboundStats } from './inbound.js';
import type { Keys } from './keys.js';
import type { Multicast } from './multicast/index.js';
import type { GroupRecord } from './multicast/receiver.js';
import type { ZmqOptions } from './options.js';
import { DUPLICATE, Receipts, type Answer, type Finish } from './receipts.js';

export type RpcHandler = (msg: IncomingRpc) => Promise<void> | void;
export type NotificationHandler = (msg: IncomingNotification) => Promise<void> | void;

/** Picks handlers round-robin, and keeps the count per key. */
class Handlers<H> {
  private readonly byKey = new Map<string, H[]>();
  private turn = 0;
  add(key: string, h: H): void {
    this.byKey.set(key, [...(this.byKey.get(key) ?? []), h]);
  }
  /** Remove one; returns how many are left for `key`. */
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

/** reply/heartbeat of a one-way message: nothing to do. */
const nothing = async (): Promise<void> => undefined;
const SENT: Promise<void> = Promise.resolve();
const HEARTBEAT: RpcReply = { result: null, failure: null, ending: false };
const NO_INBOUND: InboundStats = { received: 0, dropped: 0, oversize: 0, paused: 0, repliesDropped: 0, handshakeFailures: 0 };

/** What the local servers handed one multicast record worked out of it (fromGroup); an Error if it did not decode. */
interface GroupShared {
  body?: Body | Error;
  request?: RpcRequest | Error;
}

function sharedOf(record: GroupRecord): GroupShared {
  return (record.decoded ??= {}) as GroupShared;
}

function groupBody(text: string): Body | Error {
  try {
    const d = decode(text);
    if (d.kind !== FANOUT) return new MalformedMessage(`record kind ${d.kind} by multicast`);
    return d.body;
  } catch (err) {
    return err as Error;
  }
}

/** The request of a record, in either form (frames.ts WIRE). */
function requestOf(body: Body): RpcRequest {
  return body.q !== undefined ? requestFromCompact(body.q) : requestFromOslo(body.m);
}

function groupRequest(body: Body): RpcRequest | Error {
  try {
    return requestOf(body);
  } catch (err) {
    return err as Error;
  }
}

/**
 * A copy of JSON data (what JSON.parse makes: plain objects, arrays, primitives). Several
 * times cheaper than decoding the record again (strings are shared: they are immutable).
 */
function copyJson(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) {
    const a: unknown[] = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) a[i] = copyJson(v[i]);
    return a;
  }
  const o: Record<string, unknown> = {};
  const from = v as Record<string, unknown>;
  // A "__proto__" key from JSON.parse stays an own property of the copy.
  for (const k in from) setOwn(o, k, copyJson(from[k]));
  return o;
}

/**
 * The request for one handler: its own args and context, as a record decoded for it alone would
 * give it (an endpoint may change what it is given; the default serializer passes args and
 * context through as they are, rpc/server.ts in core), so no server sees another's changes.
 * Nesting too deep to copy on the stack: the record's text is decoded again instead.
 */
function ownCopy(r: RpcRequest, text: string): RpcRequest {
  let args: unknown;
  let context: unknown;
  try {
    args = copyJson(r.args);
    context = copyJson(r.context);
  } catch {
    return requestOf(decode(text).body);
  }
  const c: { -readonly [K in keyof RpcRequest]: RpcRequest[K] } = {
    method: r.method,
    args: args as RpcRequest['args'],
    namespace: r.namespace,
    version: r.version,
    context: context as RpcRequest['context'],
    uniqueId: r.uniqueId,
  };
  if (r.trace !== undefined) c.trace = { ...r.trace };
  return c;
}

/**
 * A fanout to every local server of its key. The process's one socket (or multicast receiver)
 * delivers the record once, so each server gets its own copy of the request, except that the
 * first may keep `request` when nothing else holds it (`shared` false: a record this socket
 * decoded for this delivery alone). The copies are made before any handler runs: an endpoint
 * may run, and change its args, within its handler's call. `text` is the record, decoded again
 * if a copy cannot be made.
 */
function fanoutTo(handlers: readonly RpcHandler[], request: RpcRequest, text: string, shared: boolean): Promise<unknown> | void {
  const requests = handlers.map((_, i) => (i === 0 && !shared ? request : ownCopy(request, text)));
  const give = (h: RpcHandler, i: number): Promise<void> | void => h({ pattern: 'fanout', request: requests[i] as RpcRequest, reply: nothing, heartbeat: nothing });
  return handlers.length === 1 ? give(handlers[0] as RpcHandler, 0) : Promise.all(handlers.map(give));
}

/** Tell the sender of a message with an id why it was not taken. */
function refuse(ib: Inbound, client: Buffer, body: Body, code: string, error: string): void {
  if (code === 'HB_MALFORMED') ib.dropped(new MalformedMessage(error));
  // The reason may quote what the sender sent: bounded, so answers stay small.
  if (body.i !== undefined) ib.send(client, NACK, { i: body.i, code, error: error.length > 512 ? `${error.slice(0, 509)}...` : error });
}

export class ZmqServer {
  private inbound: Promise<Inbound> | undefined;
  /** The socket once bound: its stats read without a promise (stats() is synchronous). */
  private bound: Inbound | undefined;
  private readonly rpc = new Handlers<RpcHandler>();
  private readonly fanouts = new Handlers<RpcHandler>();
  private readonly notifications = new Handlers<NotificationHandler>();
  /** A listener's name-service key → its target's topic (the key is derived from the topic). */
  private readonly notifyTopics = new Map<string, string>();
  private readonly receipts: Receipts;
  private closed = false;
  /** Multicast records not for a topic served here (a group shared by hashing) or unusable. */
  private readonly mcast = { mcastForeign: 0, mcastMalformed: 0 };

  constructor(
    private readonly options: ZmqOptions,
    private readonly nameService: NameService,
    private readonly keys: Keys,
    private readonly transportName: string,
    private readonly logger: Logger,
    private readonly multicast?: Multicast,
  ) {
    this.receipts = new Receipts(options.dedupTtl, options.dedupMax);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The bound socket ("host:port" clients reach), bound on first use. */
  socket(): Promise<Inbound> {
    if (this.closed) throw new TransportClosed(`zmq transport "${this.transportName}" is closed`);
    this.inbound ??= Inbound.bind(this.options, (ib, c, k, b, r) => this.dispatch(ib, c, k, b, r), this.logger).then((ib) => (this.bound = ib));
    return this.inbound;
  }

  /** Serve the target's topic (calls, casts, fanouts) and `topic.server` (calls and casts). */
  async listen(target: Target, handler: RpcHandler): Promise<Subscription> {
    const ib = await this.socket();
    const { topic, rpc } = this.keys.of(target);
    const keys = [topic, rpc];
    for (const k of keys) this.rpc.add(k, handler);
    this.fanouts.add(topic, handler);
    const record: HostRecord = { address: ib.address, publicKey: this.options.curve?.publicKey, wire: WIRE };
    // With multicast on, the topic's record says which group this server joined (multicast/).
    const topicRecord = this.multicast ? { ...record, multicast: await this.multicast.join(topic, ib.address, this.fromGroup) } : record;
    const recordOf = (k: string): HostRecord => (k === topic ? topicRecord : record);
    if (topicRecord === record) await this.nameService.register(keys, record);
    else for (const k of new Set(keys)) await this.nameService.register([k], recordOf(k));
    return {
      stop: async () => {
        // Leave the name service first, so new requests go elsewhere while these finish.
        const gone = keys.filter((k) => this.rpc.remove(k, handler) === 0);
        this.fanouts.remove(topic, handler);
        this.multicast?.leave(topic);
        if (!gone.length || this.closed) return;
        if (topicRecord === record) await this.nameService.unregister(gone, record);
        else for (const k of new Set(gone)) await this.nameService.unregister([k], recordOf(k));
      },
    };
  }

  addListener(topics: ReadonlyMap<string, string>, pool: string, handler: NotificationHandler): void {
    for (const [k, topic] of topics) {
      this.notifications.add(`${k}#${pool}`, handler);
      this.notifyTopics.set(k, topic);
    }
  }

  removeListener(keys: readonly string[], pool: string, handler: NotificationHandler): string[] {
    return keys.filter((k) => this.notifications.remove(`${k}#${pool}`, handler) === 0);
  }

  private dispatch(ib: Inbound, client: Buffer, kind: Kind, body: Body, record: string): Promise<unknown> | void {
    const key = body.k ?? '';
    if (kind === NOTIFY) return this.notification(ib, client, key, body);
    if (kind !== CALL && kind !== CAST && kind !== FANOUT) return refuse(ib, client, body, 'HB_MALFORMED', `unexpected record kind ${kind}`);
    const handlers = kind === FANOUT ? this.fanouts.all(key) : [];
    const handler = kind === FANOUT ? handlers[0] : this.rpc.one(key);
    if (!handler) return refuse(ib, client, body, 'HB_UNDELIVERABLE', `no server for "${key}" here`);
    let request: RpcRequest;
    try {
      request = requestOf(body);
    } catch (e) {
      return refuse(ib, client, body, 'HB_MALFORMED', (e as Error).message);
    }
    if (kind === CALL) return handler(this.incomingCall(ib, client, body, request));
    const finish = this.receipt(ib, client, kind, key, body);
    if (!finish) return;
    let work: Promise<unknown> | void;
    try {
      if (kind === CAST) work = handler({ pattern: 'cast', request, reply: nothing, heartbeat: nothing });
      else work = fanoutTo(handlers, request, record, false);
    } catch (e) {
      finish();
      throw e;
    }
    if (!work) return finish();
    return work.then(finish, finish);
  }

  /**
   * A fanout record that came by multicast; acks go back by `answer` (to the sender's repair
   * socket). The process's receiver hands the same record to each of its local servers: it is
   * decoded by the first (groupBody, groupRequest) and each handler gets a copy of the request
   * (fanoutTo).
   */
  private readonly fromGroup = (record: GroupRecord, answer: Answer): void => {
    const shared = sharedOf(record);
    const body = (shared.body ??= groupBody(record.text));
    if (body instanceof Error) {
      this.mcast.mcastMalformed++;
      return this.logger.debug({ err: body }, 'zmq-direct: dropped a malformed multicast record');
    }
    const key = body.k ?? '';
    const handlers = this.fanouts.all(key);
    if (handlers.length === 0) return void this.mcast.mcastForeign++;
    const request = (shared.request ??= groupRequest(body));
    if (request instanceof Error) {
      this.mcast.mcastMalformed++;
      return this.logger.debug({ err: request }, 'zmq-direct: dropped a malformed multicast request');
    }
    const finish = this.receipts.begin(FANOUT, key, body, answer);
    if (finish === DUPLICATE) return;
    if (finish instanceof MalformedMessage) return void this.mcast.mcastMalformed++;
    let work: Promise<unknown> | void;
    try {
      work = fanoutTo(handlers, request, record.text, true);
    } catch (err) {
      finish();
      return this.logger.warn({ err }, 'zmq-direct: a fanout handler threw');
    }
    if (!work) return finish();
    work.then(finish, finish);
  };

  private incomingCall(ib: Inbound, client: Buffer, body: Body, request: RpcRequest): IncomingRpc {
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
    return {
      pattern: 'call',
      request,
      callMonitorTimeoutMs: typeof body.t === 'number' && body.t > 0 ? body.t : undefined,
      reply: (r) => send({ result: r.result, failure: r.failure, ending: true }),
      heartbeat: () => send(HEARTBEAT),
    };
  }

  private notification(ib: Inbound, client: Buffer, key: string, body: Body): Promise<unknown> | void {
    const handler = this.notifications.one(`${key}#${body.pool ?? ''}`);
    if (!handler) return refuse(ib, client, body, 'HB_UNDELIVERABLE', `no listener for "${key}" pool "${body.pool ?? ''}" here`);
    let notification: Notification;
    try {
      notification = body.n !== undefined ? notificationFromCompact(body.n) : notificationFromOslo(body.m);
    } catch (e) {
      return refuse(ib, client, body, 'HB_MALFORMED', (e as Error).message);
    }
    const finish = this.receipt(ib, client, NOTIFY, key, body);
    if (!finish) return;
    // The listener settles (acks) once its endpoints are done: that is when it counts as handled.
    const settle = (): Promise<void> => (finish(), SENT);
    return handler({ notification, topic: this.notifyTopics.get(key), redelivered: body.r === 1, ack: settle, requeue: settle });
  }

  /** Ack bookkeeping of a one-way record; undefined when it must not be dispatched (a duplicate, or refused). */
  private receipt(ib: Inbound, client: Buffer, kind: Kind, key: string, body: Body): Finish | undefined {
    const finish = this.receipts.begin(kind, key, body, (answer) => ib.send(client, ACK, answer));
    if (finish === DUPLICATE) return undefined;
    if (finish instanceof MalformedMessage) return void refuse(ib, client, body, 'HB_MALFORMED', finish.message);
    return finish;
  }

  /** The bound socket's stats; undefined before it is bound. */
  get inboundStats(): Readonly<InboundStats> | undefined {
    return this.bound?.stats;
  }

  async counters(): Promise<Record<string, number>> {
    const ib = this.inbound ? await this.inbound.catch(() => undefined) : undefined;
    return { ...(ib?.stats ?? NO_INBOUND), ...this.receipts.stats, dedupIds: this.receipts.size, ...(this.multicast ? this.mcast : {}) };
  }

  /** The bound address, once a server or listener started ("host:port"). */
  async address(): Promise<string | undefined> {
    return this.inbound ? (await this.inbound).address : undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.inbound) (await this.inbound.catch(() => undefined))?.close();
  }
}
