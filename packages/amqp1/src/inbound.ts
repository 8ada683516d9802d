/**
 * Taking messages off a receiving link, the same for an intermediary's links and a direct
 * listener's: credit is granted by hand, `window` at a time, and comes back only as messages
 * are settled, so a busy server stops the flow instead of buffering without bound. rhea
 * re-attaches links after a reconnect; deliveries of the old connection can no longer be
 * settled and give no credit back.
 */
import { MessageDeliveryFailure } from '@hybridbus/core';
import type { Delivery, EventContext, Message, Receiver } from 'rhea';

export type Outcome =
  | { readonly kind: 'accept' }
  | { readonly kind: 'release' }
  | { readonly kind: 'undeliverable' }
  | { readonly kind: 'reject'; readonly condition: string; readonly description: string };

export const ACCEPT: Outcome = { kind: 'accept' };
export const RELEASE: Outcome = { kind: 'release' };

export interface Inbound {
  readonly message: Message;
  /** The address it was sent to, as the link names it. */
  readonly address: string;
  readonly delivery: Delivery;
  /** The connection it came on (a direct listener replies on it). */
  readonly context: EventContext;
  /** Settle once; later calls do nothing. */
  settle(outcome: Outcome): void;
}

/** Receivers opened by us start with no credit: `consume` grants it. */
export const MANUAL_CREDIT = { credit_window: 0, autoaccept: false } as const;

export function consume(receiver: Receiver, window: number, onMessage: (msg: Inbound) => void): void {
  let generation = 0;
  // Credit goes back in batches of half the window: a flow frame per message would be a frame
  // (and a wake-up of the sender) per message.
  const batch = Math.max(1, Math.floor(window / 2));
  let owed = 0;
  const grant = (): void => {
    generation++;
    owed = 0;
    receiver.add_credit(window);
  };
  if (receiver.is_open()) grant();
  receiver.on('receiver_open', grant);
  receiver.on('message', (ctx: EventContext) => {
    const delivery = ctx.delivery as Delivery;
    const g = generation;
    let settled = false;
    onMessage({
      message: ctx.message as Message,
      // As the peer attached the link: a client's sender to a listener names it as target, a broker's queue as source.
      address: receiver.target?.address ?? receiver.source?.address ?? '',
      delivery,
      context: ctx,
      settle(outcome) {
        if (settled) return;
        settled = true;
        if (g !== generation || receiver.is_closed()) return;
        if (outcome.kind === 'accept') delivery.accept();
        // A plain `released`: rhea sends `modified` when given parameters, which RabbitMQ does not requeue.
        else if (outcome.kind === 'release') delivery.release();
        else if (outcome.kind === 'undeliverable') delivery.modified({ delivery_failed: true, undeliverable_here: true });
        else delivery.reject({ condition: outcome.condition, description: outcome.description });
        if (++owed >= batch) {
          receiver.add_credit(owed);
          owed = 0;
        }
      },
    });
  });
}

/**
 * A redelivery: the header counts earlier attempts (our resends and most brokers set it) or,
 * as RabbitMQ's plugin does on a requeue, says an earlier receiver acquired it.
 */
export function wasRedelivered(m: Message): boolean {
  return (typeof m.delivery_count === 'number' && m.delivery_count > 0) || m.first_acquirer === false;
}

/**
 * Resolves once the peer has attached `receiver`: a broker that makes the queue on attach
 * drops what is sent to it before, so a subscription has started only when this resolves.
 */
export function attached(receiver: Receiver, label: string, timeoutMs: number): Promise<void> {
  if (receiver.is_open()) return Promise.resolve();
  const address = receiver.source?.address;
  return new Promise((resolve, reject) => {
    const done = (e?: Error): void => {
      clearTimeout(timer);
      receiver.removeListener('receiver_open', opened);
      receiver.removeListener('receiver_error', refused);
      receiver.removeListener('receiver_close', refused);
      if (e) reject(e);
      else resolve();
    };
    const opened = (): void => done();
    const refused = (ctx: EventContext): void => {
      const e = (ctx.receiver?.error ?? {}) as { condition?: string; description?: string };
      done(new MessageDeliveryFailure(`amqp1 ${label}: the peer refused to let us consume "${address}": ${e.condition ?? 'detached'}${e.description ? ` (${e.description})` : ''}`));
    };
    const timer = setTimeout(() => done(new MessageDeliveryFailure(`amqp1 ${label}: the peer did not attach our receiver for "${address}" within ${timeoutMs} ms`)), timeoutMs);
    receiver.once('receiver_open', opened);
    receiver.once('receiver_error', refused);
    receiver.once('receiver_close', refused);
  });
}
