/**
 * Notifications: publish to `<topic>.<priority>` on the target's exchange (as oslo's notifier
 * does), and consume them, alone or in a pool, each acked or requeued when the endpoint says
 * (at least once: a copy redelivered while the first is with the endpoint waits for it, one
 * already handled is dropped).
 */
import type { Target } from '@hybridbus/core';
import {
  SeenIds,
  envelope,
  exchangeOf,
  notificationFromOslo,
  notificationToOslo,
  type IncomingNotification,
  type Notification,
  type NotificationListenOptions,
  type SendOptions,
  type Subscription,
} from '@hybridbus/core/driver';
import type { Delivery } from './consumer.js';
import { MANDATORY, NOT_MANDATORY, decodeDelivery, type PartEnv } from './parts.js';
import type { Binding } from './topology.js';

/** Notification ids a listener remembers: a redelivery after a broker restart can come thousands of messages later. */
const RECENT_NOTIFICATION_IDS = 16_384;

export class RabbitNotifications {
  constructor(private readonly env: PartEnv) {}

  async notify(target: Target, notification: Notification, options: SendOptions): Promise<void> {
    const { topology } = this.env;
    const exchange = exchangeOf(target, this.env.controlExchange);
    const key = `${target.topic}.${notification.priority}`;
    const defaultQueue = this.env.options.notificationDefaultQueue;
    await this.env.sender.publish(
      {
        exchange,
        routingKey: key,
        body: Buffer.from(envelope(notificationToOslo(notification))),
        // Like oslo's notifier: declare the queue, so nothing is lost before a listener exists.
        // Without it (notification_default_queue=false), mandatory: a notification no queue is
        // bound for fails with MessageUndeliverable instead of vanishing.
        properties: defaultQueue ? NOT_MANDATORY : MANDATORY,
        declare: defaultQueue ? (gen) => topology.notificationQueue(gen, exchange, key) : (gen) => topology.exchange(gen, exchange),
        what: `notification ${notification.eventType} to "${key}"`,
      },
      { retry: options.retry ?? -1, signal: options.signal },
    );
  }

  async listen(targets: readonly Target[], handler: (msg: IncomingNotification) => void, options: NotificationListenOptions): Promise<Subscription> {
    const bindings: Binding[] = [];
    // exchange and routing key → the target's topic: a pool's queue holds several topics.
    const topicOf = new Map<string, string>();
    for (const t of targets) {
      for (const p of options.priorities) {
        const key = `${t.topic}.${p}`;
        const exchange = exchangeOf(t, this.env.controlExchange);
        bindings.push({ exchange, key, queue: options.pool ?? key });
        topicOf.set(`${exchange}\n${key}`, t.topic as string);
      }
    }
    const handled = new SeenIds({ max: RECENT_NOTIFICATION_IDS });
    const inProgress = new Map<string, Delivery[]>();
    return this.env.subscriptions.start({
      label: options.pool !== undefined ? `notification pool ${options.pool}` : `notification listener ${[...new Set(bindings.map((b) => b.queue))].join(',')}`,
      declare: (ch) => this.env.topology.notificationListener(ch, bindings),
      deliver: (d) => this.onNotification(d, handler, handled, inProgress, topicOf),
    });
  }

  private onNotification(d: Delivery, handler: (msg: IncomingNotification) => void, handled: SeenIds, inProgress: Map<string, Delivery[]>, topicOf: ReadonlyMap<string, string>): void {
    const { logger } = this.env;
    const drop = (): void => void d.consumer.settle(d, 'ack', false);
    const notification = decodeDelivery(d, 'notification', notificationFromOslo, logger)?.message;
    if (!notification) return drop();
    // One notification goes to each of a notifier's topics with the same _unique_id, and one
    // listener may hear several topics: the same id on another exchange or routing key is
    // another copy, not a duplicate.
    const uid = notification.uniqueId === '' ? '' : `${d.msg.fields.exchange}\n${d.msg.fields.routingKey}\n${notification.uniqueId}`;
    if (uid !== '') {
      if (handled.has(uid)) {
        logger.debug({ uniqueId: notification.uniqueId, redelivered: d.msg.fields.redelivered }, 'dropping a notification already handled');
        return drop();
      }
      // The same message again while the first copy is still with the endpoint (a redelivery
      // after a reconnect, or our own resend): settle it together with the first.
      const parked = inProgress.get(uid);
      if (parked) {
        d.consumer.hold();
        parked.push(d);
        return;
      }
      inProgress.set(uid, []);
    }
    d.consumer.hold();
    let settled = false;
    const settle = async (requeue: boolean): Promise<void> => {
      if (settled) return;
      settled = true;
      const parked = uid !== '' ? (inProgress.get(uid) ?? []) : [];
      if (uid !== '') inProgress.delete(uid);
      if (!requeue) {
        if (uid !== '') handled.add(uid);
        d.consumer.settle(d, 'ack', true);
        for (const p of parked) p.consumer.settle(p, 'ack', true);
      } else {
        // If the first copy's channel is gone the broker redelivers it: keep one copy then.
        const requeued = d.consumer.settle(d, 'requeue', true);
        for (const p of parked) p.consumer.settle(p, requeued ? 'ack' : 'requeue', true);
      }
    };
    const topic = topicOf.get(`${d.msg.fields.exchange}\n${d.msg.fields.routingKey}`);
    handler({ notification, topic, redelivered: d.msg.fields.redelivered, ack: () => settle(false), requeue: () => settle(true) });
  }
}
