/**
 * What the driver declares, with oslo's names and flags (part of the contract: a mismatch is a
 * 406 for whoever declares second). Senders declare once per connection (Generation.declareOnce);
 * consumers declare on their own channel each time they start consuming.
 */
import type { Channel, Options } from 'amqplib';
import type { Generation } from './generation.js';
import type { RabbitOptions } from './options.js';

/** A notification listener's binding: `<topic>.<priority>` of an exchange, into a queue. */
export interface Binding {
  readonly exchange: string;
  readonly key: string;
  readonly queue: string;
}

/** An RPC server's queues: topic, topic.server, and its own queue on the topic's fanout exchange. */
export interface ServerQueues {
  readonly exchange: string;
  readonly topic: string;
  readonly serverQueue: string;
  readonly fanoutExchange: string;
  readonly fanoutQueue: string;
}

export class Topology {
  constructor(private readonly options: RabbitOptions) {}

  private exchangeOptions(): Options.AssertExchange {
    return { durable: this.options.durableQueues, autoDelete: this.options.autoDelete };
  }

  /** Topic, server, notification and pool queues. */
  private queueOptions(): Options.AssertQueue {
    const o: Options.AssertQueue = {
      durable: this.options.durableQueues || this.options.quorumQueues,
      autoDelete: this.options.autoDelete,
      exclusive: false,
    };
    if (this.options.quorumQueues) o.arguments = { 'x-queue-type': 'quorum' };
    return o;
  }

  /** Reply and fanout queues: transient, expiring when unused. */
  private transientQueueOptions(): Options.AssertQueue {
    return { durable: false, autoDelete: false, exclusive: false, arguments: { 'x-expires': this.options.transientQueuesTtlS * 1000 } };
  }

  private fanoutExchange(ch: Channel, exchange: string): Promise<unknown> {
    return ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: true });
  }

  // ---- for senders: once per connection; undefined when declared already ----------------

  /** A topic exchange (the control exchange, or a target's). */
  exchange(gen: Generation, exchange: string): Promise<void> | undefined {
    return gen.declareOnce(`x:${exchange}`, (ch) => ch.assertExchange(exchange, 'topic', this.exchangeOptions()));
  }

  /** A topic's fanout exchange (`<topic>_fanout`). */
  fanout(gen: Generation, exchange: string): Promise<void> | undefined {
    return gen.declareOnce(`f:${exchange}`, (ch) => this.fanoutExchange(ch, exchange));
  }

  /** The exchange and oslo's `<topic>.<priority>` notification queue bound to it. */
  notificationQueue(gen: Generation, exchange: string, key: string): Promise<void> | undefined {
    const queueKey = `q:${exchange}:${key}`;
    if (gen.isDeclared(queueKey)) return undefined;
    return (async () => {
      await this.exchange(gen, exchange);
      await gen.declareOnce(queueKey, async (ch) => {
        await ch.assertQueue(key, this.queueOptions());
        await ch.bindQueue(key, exchange, key);
      });
    })();
  }

  // ---- for consumers: on the consumer's channel; return the queues to consume -----------

  async replyQueue(ch: Channel, queue: string): Promise<string[]> {
    await ch.assertQueue(queue, this.transientQueueOptions());
    return [queue];
  }

  async rpcServer(ch: Channel, q: ServerQueues): Promise<string[]> {
    await ch.assertExchange(q.exchange, 'topic', this.exchangeOptions());
    for (const queue of [q.topic, q.serverQueue]) {
      await ch.assertQueue(queue, this.queueOptions());
      await ch.bindQueue(queue, q.exchange, queue);
    }
    await this.fanoutExchange(ch, q.fanoutExchange);
    await ch.assertQueue(q.fanoutQueue, this.transientQueueOptions());
    await ch.bindQueue(q.fanoutQueue, q.fanoutExchange, q.topic);
    return [q.topic, q.serverQueue, q.fanoutQueue];
  }

  async notificationListener(ch: Channel, bindings: readonly Binding[]): Promise<string[]> {
    const queues = [...new Set(bindings.map((b) => b.queue))];
    for (const ex of new Set(bindings.map((b) => b.exchange))) await ch.assertExchange(ex, 'topic', this.exchangeOptions());
    for (const q of queues) await ch.assertQueue(q, this.queueOptions());
    for (const b of bindings) await ch.bindQueue(b.queue, b.exchange, b.key);
    return queues;
  }
}
