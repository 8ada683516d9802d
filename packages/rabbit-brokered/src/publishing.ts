/**
 * Publishing with publisher confirms: one confirm channel per connection (Publisher), and the
 * Sender every part of the driver publishes through — a bounded window of unconfirmed
 * messages (`confirm_window`), declarations before the first send, retries across a lost
 * channel or connection, and the broker's answer turned into an outcome (confirmed, returned
 * as unroutable, nacked).
 */
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { HybridbusError, MessageDeliveryFailure, MessageUndeliverable, type Logger } from '@hybridbus/core';
import { Semaphore, type CallCancel } from '@hybridbus/core/driver';
import { brokerRefusal, TopologyError } from './errors.js';
import type { Generation } from './generation.js';
import type { Link } from './link.js';
import { deferred, errorMessage, raceSignal, sleep, type Deferred } from './util.js';

type Outcome = 'ack' | 'returned' | 'nacked';

interface Returnable {
  readonly body: Buffer;
  returned: boolean;
}

/** A confirm channel: settles each publish on the broker's ack/nack, noting basic.return. */
export class Publisher {
  open = true;
  readonly closed: Promise<void>;
  /**
   * Mandatory publishes awaiting their confirm. A basic.return is matched by body (bodies carry
   * a unique id), comparing bytes only when one comes: a latin1 string of every body as a map
   * key showed in profiles.
   */
  private readonly returnable = new Set<Returnable>();
  private drained: Deferred<void> | undefined;
  /** Set while amqplib handles a basic.nack: the confirm callbacks it runs then are nacks. */
  private nacking = false;

  constructor(
    readonly ch: ConfirmChannel,
    private readonly gen: Generation,
    logger: Logger,
  ) {
    const closed = deferred();
    this.closed = closed.promise;
    ch.on('error', (err: Error) => logger.warn({ err }, 'publish channel closed by the broker'));
    ch.on('close', () => {
      this.open = false;
      this.drained?.resolve();
      closed.resolve();
    });
    // The broker sends basic.return before the ack of the same message (same channel, in order).
    ch.on('return', (msg: Message) => {
      for (const entry of this.returnable) {
        if (!entry.returned && entry.body.equals(msg.content)) {
          entry.returned = true;
          break;
        }
      }
    });
    // Our listener first and last around amqplib's own, which runs the callbacks.
    ch.prependListener('nack', () => void (this.nacking = true));
    ch.on('nack', () => void (this.nacking = false));
    ch.on('drain', () => {
      const d = this.drained;
      this.drained = undefined;
      d?.resolve();
    });
  }

  /** False while amqplib's write buffer is above its high-water mark. */
  get isWritable(): boolean {
    return this.drained === undefined;
  }

  /** Wait while amqplib's write buffer is above its high-water mark. */
  writable(signal?: AbortSignal): Promise<void> {
    return this.drained ? raceSignal(this.drained.promise, signal) : Promise.resolve();
  }

  publish(exchange: string, routingKey: string, body: Buffer, options: Options.Publish): Promise<Outcome> {
    const entry: Returnable = { body, returned: false };
    const mandatory = options.mandatory === true;
    if (mandatory) this.returnable.add(entry);
    return new Promise<Outcome>((resolve, reject) => {
      const done = (err: unknown): void => {
        if (mandatory) this.returnable.delete(entry);
        if (!err) resolve(entry.returned ? 'returned' : 'ack');
        else if (this.nacking) resolve('nacked');
        else reject(err instanceof Error ? err : new Error(String(err)));
      };
      try {
        const ok = this.ch.publish(exchange, routingKey, body, options, done);
        this.gen.batchWrites();
        if (!ok && !this.drained) this.drained = deferred();
      } catch (err) {
        done(err);
      }
    });
  }
}

export interface Outgoing {
  readonly exchange: string;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly properties: Options.Publish;
  /**
   * Declarations this message needs, run (once per connection) before publishing; returns
   * undefined when they are done on `gen` already.
   */
  readonly declare?: ((gen: Generation) => Promise<void> | undefined) | undefined;
  /** For messages: "cast to topic x". */
  readonly what: string;
}

export interface SendControl {
  /** Retries after a lost connection/channel: -1 until the signal, 0 none, n at most n. */
  readonly retry: number;
  /** The caller's: stops the send, and the wait for its confirm, at once. */
  readonly signal?: AbortSignal | undefined;
  /**
   * A call's: once cancelled, stops the send where it waits or would send again; its confirm is
   * not waited for then.
   */
  readonly cancel?: CallCancel | undefined;
}

/** The signal a send waits under (a call's is built only if its send has to wait). */
const waitSignal = (c: SendControl): AbortSignal | undefined => c.signal ?? c.cancel?.signal;
/** Why a send must not go on, if it must not. */
const stopReason = (c: SendControl): unknown => (c.signal?.aborted ? c.signal.reason : c.cancel?.reason);

/** A nacked publish is sent again this many times, after 0.25, 0.5, ... 8 s (about 16 s in all). */
const NACK_RETRIES = 6;
const NACK_PAUSE_MS = 250;

export class Sender {
  /** Publishes awaiting the broker's confirm: at most `confirm_window`, then sends wait. */
  readonly window: Semaphore;
  /**
   * nackRetries: publishes sent again after a nack; resends: after their channel or connection
   * was lost before the confirm; replyRetries: replies sent again after being returned.
   */
  readonly stats = { nackRetries: 0, resends: 0, replyRetries: 0 };
  /** Publishes waiting to be written: for the connection, an unblock, a confirm-window slot, a declaration. */
  queued = 0;
  /** Publishes written and waiting for the broker's confirm. */
  unconfirmed = 0;

  constructor(
    private readonly link: Link,
    private readonly logger: Logger,
    confirmWindow: number,
  ) {
    this.window = new Semaphore(confirmWindow);
  }

  /**
   * Publish with a broker confirm. Resolves once the broker has taken responsibility for the
   * message; rejects with MessageUndeliverable when a mandatory message was returned,
   * MessageDeliveryFailure on a nack or when the retries for a lost connection ran out.
   */
  async publish(msg: Outgoing, control: SendControl): Promise<void> {
    const { link } = this;
    const budget = { left: control.retry < 0 ? Infinity : control.retry };
    let nacks = 0;
    // Connected, unblocked, a free slot, declared, an open channel (the usual case): nothing
    // is awaited before the confirm. Each wait below is skipped unless it has to wait.
    for (;;) {
      // Counted as queued until written (a counter, not a closure: this runs per message).
      this.queued++;
      let queued = true;
      try {
        const gen = link.current ?? (await link.whenUp(budget, waitSignal(control)));
        if (link.blocked !== undefined) {
          if (budget.left <= 0) throw new MessageDeliveryFailure(`the broker blocks publishing (${link.blocked}); ${msg.what} not sent`);
          await link.whenUnblocked(waitSignal(control));
        }
        if (!this.window.tryAcquire()) await this.window.acquire(waitSignal(control));
        let confirmed: Promise<Outcome> | undefined;
        let outcome: Outcome;
        let pub: Publisher | undefined;
        try {
          const declaring = msg.declare?.(gen);
          if (declaring) {
            try {
              await declaring;
            } catch (err) {
              const refusal = brokerRefusal(err);
              if (refusal !== undefined && gen.alive) {
                throw new TopologyError(`declaring what ${msg.what} needs failed: ${errorMessage(err)}`, { cause: err });
              }
              throw err;
            }
          }
          pub = gen.readyPublisher ?? (await gen.confirmChannel());
          if (!pub.isWritable) await pub.writable(waitSignal(control));
          // Stopped while waiting without a signal to wake us (e.g. for a declaration).
          const why = stopReason(control);
          if (why !== undefined) throw why;
          confirmed = pub.publish(msg.exchange, msg.routingKey, msg.body, msg.properties);
          this.queued--;
          queued = false;
          this.unconfirmed++;
          // The slot is held until the broker answers, even if the caller stops waiting.
          confirmed.then(this.confirmedSlot, this.confirmedSlot);
          outcome = await (control.signal ? raceSignal(confirmed, control.signal) : confirmed);
        } catch (err) {
          if (!confirmed) this.window.release();
          const why = stopReason(control);
          if (why !== undefined) throw why;
          if (link.isClosed) throw link.closedError();
          if (err instanceof HybridbusError) throw err;
          if (budget.left <= 0) throw new MessageDeliveryFailure(`${msg.what} was not confirmed by the broker: ${errorMessage(err)}`, { cause: err });
          budget.left--;
          this.stats.resends++;
          this.logger.debug({ err, what: msg.what }, 'publish not confirmed (channel or connection lost); sending again');
          if (gen.alive) await sleep(50, waitSignal(control)); // a channel error: let the next channel open
          continue;
        }
        if (outcome === 'nacked') {
          // A nack means the broker did not take it: safe to send again (receivers drop
          // duplicates), on a new channel, after a pause; a broker that keeps refusing is an error.
          if (nacks >= NACK_RETRIES || budget.left <= 0) throw new MessageDeliveryFailure(`the broker refused (nack) ${msg.what}${nacks ? ` ${nacks + 1} times, on ${nacks + 1} channels` : ''}`);
          if (pub && gen.alive) gen.retire(pub);
          this.stats.nackRetries++;
          if (nacks === 0) this.logger.warn({ what: msg.what }, 'the broker refused a publish (nack); sending it again on a new channel');
          await sleep(NACK_PAUSE_MS * 2 ** nacks++, waitSignal(control));
          continue;
        }
        if (outcome === 'returned') {
          throw new MessageUndeliverable(`nobody can receive ${msg.what}: no queue is bound to exchange "${msg.exchange}" with routing key "${msg.routingKey}"`);
        }
        return;
      } finally {
        if (queued) this.queued--;
      }
    }
  }

  /** The broker answered a publish (or its channel went): its slot is free. */
  private readonly confirmedSlot = (): void => {
    this.unconfirmed--;
    this.window.release();
  };

  /** Wait until no publish awaits a confirm, at most `ms`. */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.window.inUse > 0 && Date.now() < deadline) await sleep(10);
  }
}
