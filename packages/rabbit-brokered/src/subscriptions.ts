/**
 * The consumers of one driver instance: each started on the link (so every new connection
 * restores it), each stopped by its subscription or when the driver closes.
 */
import type { Subscription } from '@hybridbus/core/driver';
import { Consumer, type ConsumerEnv, type ConsumerSpec } from './consumer.js';

export class Subscriptions {
  private readonly consumers = new Set<Consumer>();

  constructor(private readonly env: ConsumerEnv) {}

  /** Consume as `spec` says: now if connected, else once connected (and again on every reconnect). */
  async start(spec: ConsumerSpec): Promise<Subscription> {
    const { link } = this.env;
    // A server may start during an outage (it is restored on reconnect), but not with a login
    // the broker refuses: that needs fixing, not waiting.
    const refused = link.refusal;
    if (refused) throw refused;
    const consumer = new Consumer(this.env, spec);
    link.consumers.add(consumer);
    this.consumers.add(consumer);
    const subscription: Subscription = {
      stop: async () => {
        this.consumers.delete(consumer);
        await consumer.stop();
      },
    };
    const gen = link.current;
    if (!gen) return subscription; // restored with everything else once connected
    try {
      await consumer.restore(gen);
    } catch (err) {
      if (!gen.alive) return subscription; // the connection went; the next one restores it
      await subscription.stop();
      throw err;
    }
    return subscription;
  }

  /** Stop every consumer (cancel, delete our own queues). */
  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.consumers].map((c) => c.stop()));
    this.consumers.clear();
  }
}
