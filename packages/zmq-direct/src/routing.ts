/**
 * Where a message goes: a host of its key from the name service, round-robin, skipping hosts
 * already tried. A host the message never reached (no handshake in connect_timeout) is
 * forgotten and the next one tried, so a message known not to have left fails over.
 */
import { MessageUndeliverable, TransportClosed } from '@hybridbus/core';
import type { HostRecord, NameService } from '@hybridbus/nameservice';
import { WIRE, type Encoded } from './frames.js';
import type { Keys } from './keys.js';
import type { ZmqOptions } from './options.js';
import type { Outbound, Settle } from './outbound.js';

/**
 * Told the host a message left for, or why it could not leave; `older`: it left in oslo's dict
 * form (Encoded.older), the host's record not saying it reads the newer one.
 */
export type Routed = (err: Error | undefined, address?: string, older?: boolean) => void;

export interface RouteOptions {
  /** Tracked as in flight at the host it leaves for (an answer is expected). */
  readonly id?: string | undefined;
  /** Only members of this notification pool. */
  readonly pool?: string | undefined;
  /** The key's lookup answer, when the caller has just had it (a notification's pools). */
  readonly records?: readonly HostRecord[] | undefined;
}

export class Routing {
  private readonly turns = new Map<string, number>();
  readonly stats = { failovers: 0 };

  constructor(
    private readonly options: ZmqOptions,
    readonly nameService: NameService,
    private readonly keys: Keys,
    /** The client socket: `open()` makes it on first use (throws TransportClosed once closed). */
    private readonly socket: { open(): Outbound; current(): Outbound | undefined },
  ) {}

  /** Hand `frame` to a host of `key` not in `tried`; `done` gets the host, or why it could not leave. */
  route(key: string, frame: Encoded, tried: Set<string> | undefined, done: Routed, opts: RouteOptions = {}): void {
    // A cached answer is used at once: waiting a turn for it per message was measurable.
    const hit = opts.records ?? this.nameService.cached(key);
    if (hit) return this.routeTo(key, hit, frame, tried, done, opts);
    this.nameService.lookup(key).then(
      (all) => this.routeTo(key, all, frame, tried, done, opts),
      (err: Error) => done(err),
    );
  }

  /** Hand `frame` to one host, whatever serves it. */
  sendTo(address: string, frame: Encoded, settle: Settle, id?: string): void {
    let out: Outbound;
    try {
      out = this.socket.open();
    } catch (e) {
      return settle(e as TransportClosed);
    }
    out.send(address, frame, settle, id);
  }

  /** The host no longer expects an answer for `id` from this sender. */
  untrack(address: string, id: string): void {
    this.socket.current()?.untrack(address, id);
  }

  private routeTo(key: string, all: readonly HostRecord[], frame: Encoded, tried: Set<string> | undefined, done: Routed, opts: RouteOptions): void {
    const record = this.pick(key, all, tried, opts.pool);
    if (!record) {
      const where = tried?.size ? ` (tried ${[...tried].join(', ')})` : '';
      return done(new MessageUndeliverable(`no live server for "${key}"${opts.pool !== undefined ? ` in pool "${opts.pool}"` : ''}${where}`));
    }
    tried?.add(record.address);
    let out: Outbound;
    let f = frame;
    try {
      out = this.socket.open();
      // A host whose record does not say it reads the record's format gets oslo's dict form.
      if (frame.older !== undefined && this.keys.olderAt(all, WIRE).has(record.address)) f = frame.older();
    } catch (e) {
      return done(e as Error);
    }
    const hot = this.options.hotTopics.size > 0 && this.options.hotTopics.has(key.split('/')[1]?.split('.')[0] ?? '');
    out.send(
      record.address,
      f,
      (err) => {
        if (!err) return done(undefined, record.address, f !== frame);
        if (err instanceof MessageUndeliverable) {
          this.nameService.forget(record.address);
          this.stats.failovers++;
          // Looked up again: the answer given (opts.records) still has the host just forgotten.
          return this.route(key, frame, (tried ?? new Set()).add(record.address), done, { ...opts, records: undefined });
        }
        done(err);
      },
      opts.id,
      record.publicKey,
      hot,
    );
  }

  /** The next live host among `all` (round-robin), skipping those already tried. */
  private pick(key: string, all: readonly HostRecord[], tried: ReadonlySet<string> | undefined, pool?: string): HostRecord | undefined {
    const members = pool === undefined ? all : (this.keys.pools(all).get(pool) ?? []);
    const candidates = !tried?.size ? members : members.filter((r) => !tried.has(r.address));
    if (candidates.length === 0) return undefined;
    const turnKey = pool === undefined ? key : `${key}#${pool}`;
    const turn = this.turns.get(turnKey) ?? 0;
    this.turns.set(turnKey, turn + 1);
    return candidates[turn % candidates.length];
  }
}
