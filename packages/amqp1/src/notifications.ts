/**
 * Notifications: sent unsettled to `<group prefix>.<exchange>.<topic>.<priority>` (or its
 * routable form) and resolved on `accepted` — by a broker when it has stored it, by the
 * listener itself through a router or directly. A router gives no credit to an address
 * nobody consumes, and direct mode finds no listener in the name service: either way the
 * notifier gets MessageUndeliverable instead of the notification vanishing.
 *
 * Listener pools need each pool to get its own copy: in direct mode the notifier sends one
 * per pool (the name service records each listener's pool); an intermediary would need the
 * notifier to know the pools, so there a pool is refused rather than pretended.
 */
import { UnsupportedFeature, type Target } from '@hybridbus/core';
import { SeenIds, type IncomingNotification, type Notification, type NotificationListenOptions, type Priority, type SendOptions, type Subscription } from '@hybridbus/core/driver';
import type { Addresser } from './addressing.js';
import type { Env } from './env.js';
import { ACCEPT, attached, consume, MANUAL_CREDIT, RELEASE, wasRedelivered, type Inbound } from './inbound.js';
import { poolOf, POOL_PROPERTY } from './listener.js';
import type { Peer } from './peer.js';
import { decodeNotification, encodeNotification } from './wire.js';

export type NotificationHandler = (msg: IncomingNotification) => Promise<void> | void;

export class Amqp1Notifications {
  malformed = 0;
  private readonly seen: SeenIds;

  constructor(private readonly env: Env) {
    this.seen = new SeenIds({ max: env.options.dedupMax });
  }

  async notify(target: Target, n: Notification, _options: SendOptions): Promise<void> {
    const o = this.env.options;
    const deadline = Date.now() + o.notifyTimeoutMs;
    const body = encodeNotification(n);
    // Each pool's copy says its pool (direct mode: pools are ours; a broker's queues have none):
    // listeners of several pools in one process share addresses.
    const direct = this.env.direct;
    const send = async ({ pool, peer }: { readonly pool: string; readonly peer: Peer }): Promise<void> => {
      await peer.whenUp(Math.max(1, deadline - Date.now()));
      const to = this.env.addresser(peer).notify(target, n.priority);
      const message = direct ? { message_id: n.uniqueId, to, body, application_properties: { [POOL_PROPERTY]: pool } } : { message_id: n.uniqueId, to, body };
      return peer.sender(to, o.preSettled.has('notify')).send(message, { deadline, resendOnLoss: true, what: 'notification' });
    };
    const copies = await this.env.carrier.perPool(this.env.notifyKey(target));
    await Promise.all(copies.map(send));
  }

  async listen(targets: readonly Target[], handler: NotificationHandler, options: NotificationListenOptions): Promise<Subscription> {
    const window = this.env.options.notifyServerCredit;
    // address → the target's topic: the addresses are made from targets and priorities here.
    const topicOf = new Map<string, string>();
    const addressOf = (a: Addresser, t: Target, p: Priority): string => {
      const address = a.notify(t, p);
      topicOf.set(address, t.topic as string);
      return address;
    };
    const onMessage = (m: Inbound): void => this.onNotification(m, handler, topicOf);
    if (!this.env.direct) {
      if (options.pool !== undefined) {
        throw new UnsupportedFeature(
          `amqp1 "${this.env.name}": listener pools need mode=direct (through a ${this.env.kind()} every pool would compete for one queue); ` +
            'listen without a pool, or route notifications to a transport with pools',
        );
      }
      const peer = await this.env.carrier.one('');
      await peer.whenUp(this.env.options.sendTimeoutMs);
      const a = this.env.addresser(peer);
      const receivers = targets.flatMap((t) =>
        options.priorities.map((p) => {
          const address = addressOf(a, t, p);
          const r = peer.receiver({ source: { address }, target: { address }, ...MANUAL_CREDIT });
          consume(r, window, onMessage);
          return r;
        }),
      );
      const stop = async (): Promise<void> => receivers.forEach((r) => r.close());
      await Promise.all(receivers.map((r) => attached(r, peer.label, this.env.options.sendTimeoutMs))).catch(async (e: unknown) => {
        await stop();
        throw e;
      });
      return { stop };
    }
    const listener = await this.env.listener();
    const addresses = this.env.addressers().flatMap((a) => targets.flatMap((t) => options.priorities.map((p) => addressOf(a, t, p))));
    const off = listener.addRoute(addresses, { window, onMessage, pool: options.pool ?? '' });
    const keys = targets.map((t) => this.env.notifyKey(t));
    const record = options.pool !== undefined ? { ...listener.record, pool: options.pool } : listener.record;
    const { registrations } = this.env;
    await registrations.register(keys, record);
    return {
      stop: async () => {
        await registrations.unregister(keys, record).catch(() => undefined);
        off();
      },
    };
  }

  private onNotification(m: Inbound, handler: NotificationHandler, topicOf: ReadonlyMap<string, string>): void {
    const id = typeof m.message.message_id === 'string' ? m.message.message_id : undefined;
    let notification: Notification;
    try {
      notification = decodeNotification(m.message.body, id);
    } catch (e) {
      this.malformed++;
      if (this.malformed === 1 || this.malformed % 1000 === 0) {
        this.env.logger.warn({}, `amqp1 "${this.env.name}": dropped a malformed notification (${this.malformed} so far): ${(e as Error).message}`);
      }
      m.settle({ kind: 'reject', condition: 'amqp:decode-error', description: (e as Error).message.slice(0, 512) });
      return;
    }
    // Our notifiers resend what a lost connection left unsettled: one already acknowledged
    // here is a duplicate (ids are remembered on ack, so a requeued one still comes back).
    // By address too: a notifier of several topics sends each the same message-id; and by pool:
    // each pool gets its own copy, and listeners of several pools here share one filter.
    const key = id !== undefined ? `${m.address}\n${poolOf(m.message) ?? ''}\n${id}` : undefined;
    if (key !== undefined && this.seen.has(key)) {
      m.settle(ACCEPT);
      return;
    }
    const incoming: IncomingNotification = {
      notification,
      topic: topicOf.get(m.address),
      redelivered: wasRedelivered(m.message),
      ack: async () => {
        if (key !== undefined) this.seen.add(key);
        m.settle(ACCEPT);
      },
      requeue: async () => m.settle(RELEASE),
    };
    Promise.resolve()
      .then(() => handler(incoming))
      .catch(() => undefined);
  }
}
