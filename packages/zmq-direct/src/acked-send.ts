/**
 * One acked one-way message (cast, fanout to one host, notification to one pool) until it is
 * acked or fails. Without an answer in ack_timeout (doubling) it goes again to the same host,
 * which answers a duplicate from memory ("working", or the ack); a host that lost or refused
 * it hands it to another; ack_retries unanswered sends in a row fail it.
 */
import { MessageDeliveryFailure, MessageUndeliverable } from '@hybridbus/core';
import { resent, type Encoded } from './frames.js';
import type { ZmqOptions } from './options.js';
import type { Routing } from './routing.js';
import type { HostRecord } from '@hybridbus/nameservice';

export interface AckedSendEnv {
  readonly options: ZmqOptions;
  readonly routing: Routing;
  /** Where answers find their message by id; the message removes itself when it ends. */
  readonly inFlight: Map<string, AckedSend>;
  readonly stats: { retries: number };
}

export class AckedSend {
  /** Sends in a row that got no answer; an answer (or a move to another host) resets it. */
  private silent = 0;
  /** Grows with every resend: how long the next wait is. */
  private backoff = 0;
  private timer: NodeJS.Timeout | undefined;
  private tried: Set<string> | undefined;
  /** The host that has it (or had it last). */
  private address: string | undefined;
  private again: Encoded | undefined;
  /** The host it went to reads only oslo's dict form (told by routing): resends to it use that. */
  private older = false;
  /** Acked or failed. */
  private over = false;

  constructor(
    private readonly env: AckedSendEnv,
    private readonly key: string,
    /** Its ack id (the record's `i`). */
    private readonly id: string,
    /** The record as first sent; resends add `"r":1` to it (frames.ts resent()). */
    private readonly first: Encoded,
    /** Only this host (a fanout's copy for it): never another. */
    private readonly only: string | undefined,
    private readonly pool: string | undefined,
    private readonly resolve: () => void,
    private readonly reject: (e: Error) => void,
    /** The key's lookup answer the caller just had: the first send routes by it (later ones look again). */
    private records?: readonly HostRecord[],
  ) {
    env.inFlight.set(id, this);
    this.send(only);
  }

  /** The receiver acked it. */
  acked(): void {
    this.finish();
  }

  /** The receiver has it and is still handling it: keep waiting. */
  working(): void {
    this.silent = 0;
    this.arm();
  }

  /** The host it went to lost it (connection broken) or refused it: another host gets it. */
  elsewhere(reason: string): void {
    clearTimeout(this.timer);
    this.untrack();
    if (++this.silent > this.env.options.ackRetries) {
      return this.finish(new MessageDeliveryFailure(`a message to "${this.key}" was not delivered after ${this.silent} attempts (last: ${reason})`));
    }
    this.backoff++;
    this.env.stats.retries++;
    if (this.only === undefined && this.address !== undefined) (this.tried ??= new Set()).add(this.address);
    this.send(this.only);
  }

  /** The host says it does not serve the key (a stale record): another host gets it, but a copy meant for that host alone fails. */
  refusedHere(reason: string): void {
    if (this.only === undefined) return this.elsewhere(reason);
    this.finish(new MessageUndeliverable(`${this.only} does not serve "${this.key}": ${reason}`));
  }

  /** It cannot be delivered (refused for good, transport closed). */
  fail(err: Error): void {
    this.finish(err);
  }

  private send(address: string | undefined): void {
    const { routing } = this.env;
    let frame: Encoded;
    try {
      frame = this.silent + this.backoff === 0 ? this.first : (this.again ??= resent(this.first, this.env.options.maxMessageSize));
    } catch (err) {
      // The resend mark took it over max_message_size: fail it, typed, rather than throw from a timer.
      return this.finish(new MessageDeliveryFailure(`a message to "${this.key}" could not be sent again: ${(err as Error).message}`, { cause: err }));
    }
    if (address !== undefined) {
      let f = frame;
      try {
        if (this.older && frame.older) f = frame.older();
      } catch (err) {
        return this.sent(err as Error, address);
      }
      routing.sendTo(address, f, (err) => this.sent(err, address, this.older), this.id);
    } else {
      const records = this.records;
      this.records = undefined;
      routing.route(this.key, frame, this.tried, (err, to, older) => this.sent(err, to, older), { id: this.id, pool: this.pool, records });
    }
  }

  private sent(err: Error | undefined, address: string | undefined, older = false): void {
    this.older = older;
    // Answered before its send's continuation ran (see OutgoingCall.left in client.ts).
    if (this.over) {
      if (!err && address !== undefined) this.env.routing.untrack(address, this.id);
      return;
    }
    if (!err) {
      this.address = address;
      return this.arm();
    }
    // A resend straight to the host that had it found it gone: another host gets it.
    if (err instanceof MessageUndeliverable && address !== undefined && this.only === undefined) {
      this.address = address;
      return this.elsewhere(err.message);
    }
    // Nothing took it now: fail at once rather than wait (no host, refused, queue full).
    if (this.silent + this.backoff === 0) return this.finish(err);
    this.finish(new MessageDeliveryFailure(`a message to "${this.key}" could not be sent again (${err.message}); it may or may not have been handled`, { cause: err }));
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.unanswered(), this.env.options.ackTimeout * 2 ** Math.min(this.backoff, 6));
  }

  private unanswered(): void {
    this.untrack();
    if (++this.silent > this.env.options.ackRetries) {
      return this.finish(new MessageDeliveryFailure(`no ack for a message to "${this.key}" after ${this.silent} attempts`));
    }
    this.backoff++;
    this.env.stats.retries++;
    this.send(this.only ?? this.address);
  }

  private untrack(): void {
    if (this.address !== undefined) this.env.routing.untrack(this.address, this.id);
  }

  private finish(err?: Error): void {
    this.over = true;
    clearTimeout(this.timer);
    this.env.inFlight.delete(this.id);
    this.untrack();
    if (err) this.reject(err);
    else this.resolve();
  }
}
