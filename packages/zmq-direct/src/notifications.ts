/**
 * Notifications on zmq-direct: a listener registers `notify:<exchange>/<topic>` with its pool
 * in the name service; a notifier sends one copy to one member of each pool (client.ts).
 * Brokerless: a notification nobody listens to is an error (or, by choice, dropped and counted).
 */
import { MessageUndeliverable, type Target } from '@hybridbus/core';
import { notificationToCompact, type Notification, type NotificationListenOptions, type Subscription } from '@hybridbus/core/driver';
import type { HostRecord, NameService } from '@hybridbus/nameservice';
import { CompactMessage, type ZmqClient } from './client.js';
import { NOTIFY, WIRE } from './frames.js';
import type { Keys } from './keys.js';
import type { ZmqOptions } from './options.js';
import type { NotificationHandler, ZmqServer } from './server.js';

export class ZmqNotifications {
  readonly stats = { unroutedNotifications: 0 };

  constructor(
    private readonly options: ZmqOptions,
    private readonly nameService: NameService,
    private readonly keys: Keys,
    private readonly client: ZmqClient,
    private readonly server: ZmqServer,
  ) {}

  /** Not an async function: returning oneWay's promise from one cost two more microtask turns. */
  notify(target: Target, notification: Notification): Promise<void> {
    const key = this.keys.of(target).notify;
    const hit = this.nameService.cached(key);
    if (!hit) return this.nameService.lookup(key).then((all) => this.toPools(key, all, notification));
    try {
      return this.toPools(key, hit, notification);
    } catch (e) {
      return Promise.reject(e as Error); // e.g. MessageTooLarge from the encoding
    }
  }

  /** One copy to one member of each pool among `all`, the topic's listeners. */
  private toPools(key: string, all: readonly HostRecord[], notification: Notification): Promise<void> {
    const pools = this.keys.pools(all);
    if (pools.size === 0) {
      this.stats.unroutedNotifications++;
      if (this.options.notifyUnrouted === 'drop') return Promise.resolve();
      throw new MessageUndeliverable(`no listener for notifications on "${key}" (brokerless: nothing stores them; set notify_unrouted=drop to drop them)`);
    }
    const m = new CompactMessage({ n: notificationToCompact(notification) });
    // Routed by the answer just looked up (`all`), not by a second lookup per copy.
    if (pools.size === 1) for (const pool of pools.keys()) return this.client.oneWay(NOTIFY, key, m, { pool, records: all });
    return Promise.all([...pools.keys()].map((pool) => this.client.oneWay(NOTIFY, key, m, { pool, records: all }))).then(() => undefined);
  }

  async listen(targets: readonly Target[], handler: NotificationHandler, options: NotificationListenOptions): Promise<Subscription> {
    const ib = await this.server.socket();
    const pool = options.pool ?? '';
    const topics = new Map(targets.map((t) => [this.keys.of(t).notify, t.topic as string]));
    const keys = [...topics.keys()];
    this.server.addListener(topics, pool, handler);
    const record: HostRecord = { address: ib.address, publicKey: this.options.curve?.publicKey, pool, wire: WIRE };
    await this.nameService.register(keys, record);
    return {
      stop: async () => {
        const gone = this.server.removeListener(keys, pool, handler);
        if (gone.length && !this.server.isClosed) await this.nameService.unregister(gone, record);
      },
    };
  }
}
