/**
 * The client side of zmq-direct: calls, casts and fanouts leave through Routing; replies, acks
 * and refusals come back here by id. A call in flight when its connection breaks fails at once
 * with ConnectionLost; an acked one-way message goes to another host (acked-send.ts).
 */
import { ConnectionLost, MessageUndeliverable, type Logger, type Target } from '@hybridbus/core';
import { errorFromCode, PendingCalls, type DriverCallOptions, type PendingCall, replyFromOslo, requestToCompact, requestToOslo, type RpcReply, type RpcRequest } from '@hybridbus/core/driver';
import { AckedSend, type AckedSendEnv } from './acked-send.js';
import { ACK, CALL, CAST, decode, encodeChecked, encodeCompact, FANOUT, NACK, REPLY, withId, type Body, type Encoded, type Kind } from './frames.js';
import { EVERY_SERVER, everyCopy, FanoutIncomplete, type Missed } from './fanout.js';
import type { Keys } from './keys.js';
import type { Multicast } from './multicast/index.js';
import type { ZmqOptions } from './options.js';
import type { Routing } from './routing.js';
import type { HostRecord } from '@hybridbus/nameservice';

/**
 * A call in flight. One object with methods, not a closure per step: a busy client starts
 * ~100,000 calls a second, and garbage collection was a sixth of its CPU.
 */
class OutgoingCall implements PendingCall {
  address: string | undefined;
  /** Hosts that refused it; none until one has. */
  private tried: Set<string> | undefined;
  /** Answered, failed or cancelled. */
  private over = false;

  constructor(
    private readonly routing: Routing,
    private readonly calls: PendingCalls<OutgoingCall>,
    readonly what: string,
    private readonly key: string,
    readonly id: string,
    private readonly frame: Encoded,
    private readonly res: (r: RpcReply) => void,
    private readonly rej: (e: Error) => void,
    readonly onHeartbeat: () => void,
  ) {}

  resolve(r: RpcReply): void {
    this.settled();
    this.res(r);
  }

  reject(e: Error): void {
    this.settled();
    this.rej(e);
  }

  /** Send (again): to a host not yet tried. */
  send(): void {
    if (this.address !== undefined) (this.tried ??= new Set()).add(this.address);
    this.routing.route(this.key, this.frame, this.tried, (err, address) => (err ? this.reject(err) : this.left(address)), { id: this.id });
  }

  /**
   * It left for `address`. Its answer may have been handled already: a send can resolve a
   * pending receive (zeromq.js checks the socket after every send), whose continuation then
   * runs before the send's. Then the host is told at once that nothing is in flight.
   */
  private left(address: string | undefined): void {
    this.address = address;
    if (this.over && address !== undefined) this.routing.untrack(address, this.id);
  }

  /** Over: forget it here and at the host it went to. */
  private settled(): void {
    this.over = true;
    this.calls.delete(this.id);
    if (this.address !== undefined) this.routing.untrack(this.address, this.id);
  }
}

const SENT: Promise<void> = Promise.resolve();

/**
 * A request or notification in compact form (format 3, frames.ts): its record field. A host that
 * does not read that form gets the record's oslo-dict form, made from the encoded record.
 */
export class CompactMessage {
  constructor(readonly fields: { readonly q: readonly unknown[] } | { readonly n: readonly unknown[] }) {}
}

export class ZmqClient {
  private readonly calls = new PendingCalls<OutgoingCall>();
  private readonly acked: AckedSendEnv;
  private nextId = 0;
  /** Answers that did not decode, dropped. */
  private malformed = 0;

  constructor(
    private readonly options: ZmqOptions,
    private readonly routing: Routing,
    private readonly keys: Keys,
    /** Unique per process and transport: ids are `<prefix><counter>`. */
    private readonly idPrefix: string,
    private readonly logger: Logger,
    /** Set when fanouts may go out once, by multicast (multicast/). */
    private readonly multicast?: Multicast,
  ) {
    this.acked = { options, routing, inFlight: new Map(), stats: { retries: 0 } };
  }

  get stats(): { retries: number; pendingCalls: number; pendingAcks: number; malformedAnswers: number } {
    return { retries: this.acked.stats.retries, pendingCalls: this.calls.size, pendingAcks: this.acked.inFlight.size, malformedAnswers: this.malformed };
  }

  private id(): string {
    return `${this.idPrefix}${(this.nextId++).toString(36)}`;
  }

  call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
    const key = this.keys.of(target).rpc;
    const id = this.id();
    const t = options.callMonitorTimeoutMs;
    const frame = encodeCompact(CALL, { i: id, k: key, q: requestToCompact(request), t }, this.options.maxMessageSize);
    return new Promise<RpcReply>((resolve, reject) => {
      const call = new OutgoingCall(this.routing, this.calls, `call ${request.method} to "${key}"`, key, id, frame, resolve, reject, options.onHeartbeat);
      options.cancel.onCancel((reason) => call.reject(reason));
      if (options.cancel.reason) return;
      this.calls.add(id, call);
      call.send();
    });
  }

  cast(target: Target, request: RpcRequest): Promise<void> {
    return this.oneWay(CAST, this.keys.of(target).rpc, new CompactMessage({ q: requestToCompact(request) }));
  }

  async fanout(target: Target, request: RpcRequest): Promise<void> {
    const key = this.keys.of(target).topic;
    const ns = this.routing.nameService;
    // Every registered server, also those forget() hid after a lost connection (fanout.ts).
    const records = ns.cached(key, EVERY_SERVER) ?? (await ns.lookup(key, EVERY_SERVER));
    const m = requestToOslo(request);
    const multicast = this.multicast?.fanout(key, records, m, this);
    if (multicast) return multicast;
    const hosts = [...new Set(records.map((r) => r.address))];
    if (hosts.length === 0) throw new MessageUndeliverable(`no live server for fanout to "${key}"`);
    if (hosts.length === 1) return this.oneWay(FANOUT, key, m, { address: hosts[0] });
    const shared = this.shared(FANOUT, key, m);
    if (this.options.acks === 'none') return this.unackedCopies(key, hosts, shared);
    await everyCopy(key, hosts, (address) => this.oneWay(FANOUT, key, m, { address }, shared));
  }

  /**
   * A fanout's copies without acks: settled by a count, not a promise per copy (promises and
   * their collection were a third of a client's CPU fanning out to 100 servers).
   */
  private unackedCopies(key: string, hosts: readonly string[], frame: Encoded): Promise<void> {
    return new Promise((resolve, reject) => {
      let left = hosts.length;
      let missed: Missed | undefined;
      for (const address of hosts) {
        this.routing.sendTo(address, frame, (err) => {
          if (err) {
            missed ??= { addresses: [], reasons: [] };
            missed.addresses.push(address);
            missed.reasons.push(err);
          }
          if (--left > 0) return;
          if (missed) reject(new FanoutIncomplete(key, hosts.length, missed.addresses, missed.reasons));
          else resolve();
        });
      }
    });
  }

  /**
   * The record every copy of a fanout shares (without an ack id): the message is encoded once,
   * not once per host.
   */
  shared(kind: Kind, key: string, m: Record<string, unknown>, pool?: string): Encoded {
    const a = this.options.acks === 'received' ? 1 : undefined;
    return encodeChecked(kind, this.options.acks === 'none' ? { k: key, m, pool } : { k: key, m, pool, a }, this.options.maxMessageSize);
  }

  /**
   * A one-way record to one host of `key` (or to `opts.address`), acked as `acks` says. `shared`
   * is its record without an ack id, from shared(), when several copies are sent.
   */
  oneWay(kind: Kind, key: string, msg: Record<string, unknown> | CompactMessage, opts: { pool?: string; address?: string; records?: readonly HostRecord[] } = {}, shared?: Encoded): Promise<void> {
    const max = this.options.maxMessageSize;
    // The compact form goes where the host is picked from its record (routing.ts); a copy for a
    // given address (a fanout's) is a dict, as the multicast and fanout paths send.
    const fields = msg instanceof CompactMessage ? msg.fields : { m: msg };
    const encode = (body: Body): Encoded => {
      if (!(msg instanceof CompactMessage)) return encodeChecked(kind, body, max);
      const compact = encodeCompact(kind, body, max);
      return opts.address === undefined ? compact : (compact.older?.() ?? compact);
    };
    if (this.options.acks === 'none') {
      const frame = shared ?? encode({ k: key, ...fields, pool: opts.pool });
      return new Promise((resolve, reject) => {
        const done = (err: Error | undefined): void => (err ? reject(err) : resolve());
        if (opts.address !== undefined) this.routing.sendTo(opts.address, frame, done);
        else this.routing.route(key, frame, undefined, done, { pool: opts.pool, records: opts.records });
      });
    }
    const i = this.id();
    const first = shared ? withId(shared, i, max) : encode({ i, k: key, ...fields, pool: opts.pool, a: this.options.acks === 'received' ? 1 : undefined });
    return new Promise((resolve, reject) => void new AckedSend(this.acked, key, i, first, opts.address, opts.pool, resolve, reject, opts.records));
  }

  /** Replies, acks and refusals from a server. */
  onFrames(address: string, records: string[]): void {
    for (const record of records) {
      let kind: Kind;
      let body: Body;
      try {
        ({ kind, body } = decode(record));
      } catch (err) {
        this.malformed++;
        this.logger.warn({ err, address }, 'zmq-direct: dropping a malformed reply');
        continue;
      }
      const id = body.i ?? '';
      if (kind === REPLY) {
        let reply: RpcReply;
        try {
          reply = replyFromOslo(body.m);
        } catch (err) {
          this.calls.get(id)?.reject(err as Error);
          continue;
        }
        this.calls.reply(id, reply);
      } else if (kind === ACK) {
        const send = this.acked.inFlight.get(id);
        if (body.w === 1) send?.working();
        else send?.acked();
      } else if (kind === NACK) {
        this.refused(address, id, body);
      }
    }
  }

  private refused(address: string, id: string, body: Body): void {
    const call = this.calls.get(id);
    const send = this.acked.inFlight.get(id);
    if (body.code === 'HB_UNDELIVERABLE') {
      // That server no longer serves the key (a stale record): it did not run it, try another.
      this.routing.untrack(address, id);
      this.routing.stats.failovers++;
      call?.send();
      send?.refusedHere(body.error ?? 'refused');
      return;
    }
    const err = errorFromCode(body.code, body.code === 'HB_TOO_LARGE' || body.code === 'HB_MALFORMED' ? (body.error ?? '') : `${address} refused the message: ${body.error}`);
    call?.reject(err);
    send?.fail(err);
  }

  /** The connection to `address` broke with these ids in flight there. */
  onPeerLost(address: string, ids: ReadonlySet<string>, error: Error): void {
    this.routing.nameService.forget(address);
    for (const id of ids) {
      this.calls.get(id)?.reject(error instanceof ConnectionLost ? error : new ConnectionLost(error.message, { cause: error }));
      // Acked one-way messages go to another host: the lost one may have handled them
      // (at-least-once across servers), never silently dropped.
      this.acked.inFlight.get(id)?.elsewhere(error.message);
    }
  }

  /** Everything in flight fails with `err` (the transport closes). */
  close(err: Error): Promise<void> {
    this.calls.rejectAll(() => err);
    for (const send of [...this.acked.inFlight.values()]) send.fail(err);
    return SENT;
  }
}
