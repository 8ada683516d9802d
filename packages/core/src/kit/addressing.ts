/**
 * oslo's addressing, shared by every driver: which exchange a target uses, and the names of
 * the topic, per-server and fanout destinations derived from it.
 */
import type { Target } from '../target.js';

/** The target's exchange, or the transport's control exchange (oslo's `control_exchange`). */
export function exchangeOf(target: Target, controlExchange: string): string {
  return target.exchange ?? controlExchange;
}

/** `topic`, or `topic.server` for a target naming a server: oslo's routing key and queue name. */
export function serverKey(target: Target): string {
  return target.server !== undefined ? `${target.topic}.${target.server}` : (target.topic as string);
}

/** oslo's fanout exchange of a topic. */
export function fanoutName(target: Target): string {
  return `${target.topic}_fanout`;
}
