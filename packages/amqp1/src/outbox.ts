/**
 * Sending on one link and learning what became of each message: the peer's outcome decides
 * (oslo's rules, extended so nothing is lost silently):
 *
 *   accepted                               delivered: resolve
 *   released, modified (not undeliverable) the peer did not take it: send again
 *   modified {undeliverable-here}          MessageUndeliverable
 *   rejected                               MessageDeliveryFailure with the peer's error
 *   connection lost before an outcome      casts/notifications are sent again after the
 *                                          reconnect (receivers drop duplicates by message-id);
 *                                          calls fail with ConnectionLost
 *   no credit / no outcome by the deadline MessageUndeliverable (a router gives no credit
 *                                          while nobody consumes the address)
 *
 * Pre-settled sends resolve when written. A send waits for credit in order, so the link's
 * credit is the backpressure.
 *
 * Deadlines: no timer per send. Each pending send carries the time it is due (its credit
 * deadline until written, then its deadline); the link keeps one timer, armed for the earliest
 * due time, which fails whatever is due when it fires and re-arms for the next. The timer keeps
 * the process alive only while sends are pending.
 */
import { ConnectionLost, MessageDeliveryFailure, MessageUndeliverable } from '@hybridbus/core';
import type { Delivery, EventContext, Message, Sender } from 'rhea';

/** What LinkSender needs of its connection. */
export interface SenderOwner {
  readonly label: string;
  readonly isClosed: boolean;
  /** Totals of every link of the driver (stats()). */
  readonly counts: { resends: number };
  onDown(l: (error: Error) => void): () => void;
}

export interface SendOptions {
  /** Fail unless the message has an outcome (or, pre-settled, was written) by this time (epoch ms). */
  readonly deadline: number;
  /** Fail (MessageUndeliverable) unless it was written by this earlier time: a call waits for its reply, not for credit. */
  readonly creditDeadline?: number | undefined;
  /** Send again after a lost connection (casts, notifications); false fails with ConnectionLost (calls). */
  readonly resendOnLoss: boolean;
  /** What a deadline failure says the message was ("cast", "notification"). */
  readonly what: string;
}

class PendingSend {
  /** When it fails (epoch ms): the credit deadline until written, then the deadline. */
  due: number;
  done = false;
  delivery: Delivery | undefined;
  resends = 0;
  constructor(
    readonly message: Message,
    readonly options: SendOptions,
    readonly resolve: () => void,
    readonly reject: (e: Error) => void,
  ) {
    this.due = Math.min(options.deadline, options.creditDeadline ?? Infinity);
  }
}

export class LinkSender {
  private readonly queue: PendingSend[] = [];
  private readonly inflight = new Map<Delivery, PendingSend>();
  private dead: Error | undefined;
  private readonly offDown: () => void;
  private everSendable = false;
  /** The link's one deadline timer, and the time it is armed for. */
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  constructor(
    private readonly link: Sender,
    private readonly owner: SenderOwner,
    readonly address: string,
    /** Sent settled: done when written, no outcome comes (the link's own mode; the peer's answer may differ). */
    private readonly presettled: boolean,
    private readonly onDead: () => void,
  ) {
    link.on('sendable', () => {
      this.everSendable = true;
      this.flush();
    });
    link.on('accepted', (ctx: EventContext) => this.settle(ctx, undefined));
    link.on('released', (ctx: EventContext) => this.again(ctx));
    link.on('modified', (ctx: EventContext) => {
      const state = ctx.delivery?.remote_state as { undeliverable_here?: boolean } | undefined;
      if (state?.undeliverable_here) {
        this.settle(ctx, new MessageUndeliverable(`amqp1 ${owner.label}: "${address}" refused the message (modified: undeliverable here)`));
      } else this.again(ctx);
    });
    link.on('rejected', (ctx: EventContext) => {
      const e = (ctx.delivery?.remote_state as { error?: { condition?: string; description?: string } } | undefined)?.error;
      this.settle(ctx, new MessageDeliveryFailure(`amqp1 ${owner.label}: "${address}" rejected the message: ${e?.condition ?? 'rejected'}${e?.description ? ` (${e.description})` : ''}`));
    });
    const refused = (ctx: EventContext): void => {
      const e = (ctx.sender?.error ?? {}) as { condition?: string; description?: string };
      this.kill(new MessageUndeliverable(`amqp1 ${owner.label}: the link to "${address}" was ${this.everSendable ? 'closed' : 'refused'} by the peer: ${e.condition ?? 'detached'}${e.description ? ` (${e.description})` : ''}`));
    };
    link.on('sender_error', refused);
    link.on('sender_close', refused);
    this.offDown = owner.onDown((error) => this.connectionLost(error));
  }

  get isDead(): boolean {
    return this.dead !== undefined;
  }

  /** Messages waiting for credit or an outcome. */
  get pending(): number {
    return this.queue.length + this.inflight.size;
  }

  /** Messages waiting for credit (not written yet). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Messages written and waiting for their outcome. */
  get unsettled(): number {
    return this.inflight.size;
  }

  send(message: Message, options: SendOptions): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    // A closed connection never comes back: waiting out the deadline would only hold a timer.
    if (this.owner.isClosed) return Promise.reject(new ConnectionLost(`amqp1 ${this.owner.label}: the connection is closed`));
    return new Promise((resolve, reject) => {
      const p = new PendingSend(message, options, resolve, reject);
      this.queue.push(p);
      this.flush();
      // A pre-settled send written at once needs no timer.
      if (!p.done) this.arm(p.due);
    });
  }

  /** Have the timer fire by `due`, and keep the process alive while sends are pending. */
  private arm(due: number): void {
    if (this.timer && due >= this.timerAt) {
      this.timer.ref();
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = due;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, due - Date.now()));
  }

  /** Nothing pending: an armed timer no longer holds the process (it fires into an empty sweep). */
  private idle(): void {
    if (this.timer && this.queue.length === 0 && this.inflight.size === 0) this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  /** The timer fired: fail every send that is due, then re-arm for the earliest left. */
  private sweep(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    const expired: PendingSend[] = [];
    let next = Infinity;
    for (const p of this.queue) {
      if (p.due <= now) expired.push(p);
      else if (p.due < next) next = p.due;
    }
    for (const p of this.inflight.values()) {
      if (p.due <= now) expired.push(p);
      else if (p.due < next) next = p.due;
    }
    for (const p of expired) this.expire(p);
    if (next !== Infinity) this.arm(next);
  }

  private flush(): void {
    const presettled = this.presettled;
    while (this.queue.length > 0 && this.link.sendable()) {
      const p = this.queue.shift() as PendingSend;
      let d: Delivery;
      try {
        d = this.link.send(p.message);
      } catch (err) {
        // A message rhea cannot encode (a property out of its type's range, say one echoed from
        // a peer): it fails alone. This runs from rhea's 'sendable' event too, where a throw
        // would take the connection down, or the process.
        this.finish(p, new MessageDeliveryFailure(`amqp1 ${this.owner.label}: a message to "${this.address}" could not be encoded: ${(err as Error).message}`, { cause: err }));
        continue;
      }
      if (presettled) {
        this.finish(p, undefined);
      } else {
        p.delivery = d;
        this.inflight.set(d, p);
        // Written: from now on only the deadline counts. It is later than the credit deadline,
        // so the armed timer fires no later than it, and its sweep re-arms.
        p.due = p.options.deadline;
      }
    }
  }

  private take(ctx: EventContext): PendingSend | undefined {
    const d = ctx.delivery;
    if (!d) return undefined;
    const p = this.inflight.get(d);
    if (p) this.inflight.delete(d);
    return p;
  }

  private settle(ctx: EventContext, error: Error | undefined): void {
    const p = this.take(ctx);
    if (p) this.finish(p, error);
  }

  private again(ctx: EventContext): void {
    const p = this.take(ctx);
    if (!p) return;
    p.resends++;
    this.owner.counts.resends++;
    p.delivery = undefined;
    p.message.delivery_count = p.resends;
    this.queue.push(p);
    // A peer that keeps releasing gets the message again at once, bounded by its deadline.
    this.flush();
  }

  private finish(p: PendingSend, error: Error | undefined): void {
    if (p.done) return;
    p.done = true;
    this.idle();
    if (error) p.reject(error);
    else p.resolve();
  }

  private expire(p: PendingSend): void {
    if (p.done) return;
    p.done = true;
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    if (p.delivery) this.inflight.delete(p.delivery);
    const waited = `${p.options.what} to "${this.address}"`;
    p.reject(
      p.delivery
        ? new MessageDeliveryFailure(`amqp1 ${this.owner.label}: ${waited} got no outcome in time`)
        : new MessageUndeliverable(
            `amqp1 ${this.owner.label}: ${waited} could not be sent in time: ${this.everSendable ? 'no credit left' : 'the peer gave no credit'} (nobody consumes the address, or the connection is down)`,
          ),
    );
    this.idle();
  }

  /** The connection dropped: unsettled sends go again after the reconnect, or fail. */
  private connectionLost(error: Error): void {
    const back: PendingSend[] = [];
    for (const p of this.inflight.values()) {
      p.delivery = undefined;
      if (p.options.resendOnLoss && !this.owner.isClosed) {
        p.resends++;
        this.owner.counts.resends++;
        p.message.delivery_count = p.resends;
        back.push(p);
      }
      else this.finish(p, error instanceof ConnectionLost ? error : new ConnectionLost(error.message, { cause: error }));
    }
    this.inflight.clear();
    this.queue.unshift(...back);
    if (this.owner.isClosed) this.failAll(error);
    this.idle();
  }

  /** Withdraw a send that is no longer wanted (a cancelled call): only if not yet written. */
  withdraw(message: Message): void {
    const i = this.queue.findIndex((p) => p.message === message);
    if (i < 0) return;
    const [p] = this.queue.splice(i, 1);
    // Withdrawn: it neither resolves nor fails from here (the caller has settled it).
    if (p) p.done = true;
    this.idle();
  }

  private kill(error: Error): void {
    if (this.dead) return;
    this.dead = error;
    this.offDown();
    this.onDead();
    this.failAll(error);
    if (!this.link.is_closed()) this.link.close();
  }

  /** Detach an idle link (its owner no longer needs it). */
  detach(): void {
    this.dead = new MessageUndeliverable(`amqp1 ${this.owner.label}: the link to "${this.address}" was closed`);
    this.offDown();
    if (!this.link.is_closed()) this.link.close();
  }

  failAll(error: Error): void {
    for (const p of this.queue.splice(0)) this.finish(p, error);
    for (const p of this.inflight.values()) this.finish(p, error);
    this.inflight.clear();
    this.stopTimer();
  }
}
