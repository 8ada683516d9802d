/**
 * One subscription's consumer: its own channel (so a broker refusal or a slow subscription
 * affects nobody else), declared and consuming again on every new connection, and again on
 * the same connection when the broker cancels it (e.g. its queue was deleted).
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from '@hybridbus/core';
import { brokerRefusal, TopologyError } from './errors.js';
import type { Generation } from './generation.js';
import type { Link, Restorable } from './link.js';
import { errorMessage } from './util.js';

export interface Delivery {
  readonly consumer: Consumer;
  readonly ch: Channel;
  readonly msg: ConsumeMessage;
  readonly queue: string;
}

/** A delivery settled later (not acksOnArrival), tracked in arrival (delivery tag) order. */
interface Tracked extends Delivery {
  /** 0: unsettled; 1: acked, its ack not sent yet (a later multiple ack covers it); 2: settled on the wire. */
  state: 0 | 1 | 2;
}

export interface ConsumerSpec {
  readonly label: string;
  /** Declare what this consumer needs on its channel; return the queues to consume. */
  declare(ch: Channel): Promise<readonly string[]>;
  /** Handle one delivery; settle it with `consumer.settle` now or later. */
  deliver(d: Delivery): void;
  /** Queues only this consumer uses (uuid-named): deleted when it stops. */
  readonly ownQueues?: readonly string[] | undefined;
  /**
   * `deliver` acks every delivery as it arrives (oslo's RPC server and reply queue): then one
   * ack with `multiple` per turn of the event loop settles them all, not one frame each.
   */
  readonly acksOnArrival?: boolean | undefined;
}

export interface ConsumerEnv {
  readonly link: Link;
  readonly logger: Logger;
  /** basic.qos prefetch per channel; 0: none. */
  readonly prefetch: number;
  /** Delay before consuming again after the broker cancelled us, ms. */
  readonly retryMs: number;
  /** Shared by the driver's consumers: deliveries dropped as not a message of ours. */
  readonly counts: { malformed: number };
}

export class Consumer implements Restorable {
  private ch: Channel | undefined;
  /** The channel being set up: its deliveries are ours too (consume() before the last one). */
  private opening: Channel | undefined;
  private gen: Generation | undefined;
  private restoring: { gen: Generation; done: Promise<void> } | undefined;
  private tags: string[] = [];
  private stopped = false;
  /** Deliveries handed out and not settled yet: the channel must stay open for their acks. */
  private unsettled = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Its channel went on a live connection (or a restore failed): consuming again is pending. */
  recovering = false;
  private readonly closedChannels = new WeakSet<Channel>();
  /** Each channel's connection, whose socket writes an ack batches with the rest (batchWrites). */
  private readonly genOf = new WeakMap<Channel, Generation>();
  /** The latest delivery acked but not sent yet: its ack, with multiple, covers the earlier ones. */
  private ackDue: { ch: Channel; msg: ConsumeMessage } | undefined;
  /** Deliveries settled later, in arrival order on one channel; `head`: the oldest unsettled. */
  private order: { ch: Channel; list: Tracked[]; head: number } | undefined;

  constructor(
    private readonly env: ConsumerEnv,
    readonly spec: ConsumerSpec,
  ) {}

  get label(): string {
    return this.spec.label;
  }

  /** Open a channel on `gen`, declare and consume. Idempotent per connection. */
  restore(gen: Generation): Promise<void> {
    if (this.stopped || !gen.alive || (this.gen === gen && this.ch)) return Promise.resolve();
    // One setup at a time: the link and a retry timer may both ask.
    if (this.restoring?.gen === gen) return this.restoring.done;
    const done = (async () => {
      // A fanout exchange can auto-delete between our declare and bind (404): try again.
      for (let attempt = 1; ; attempt++) {
        try {
          await this.open(gen);
          return;
        } catch (err) {
          if (brokerRefusal(err) === 404 && attempt < 3 && gen.alive) continue;
          throw err;
        }
      }
    })().finally(() => {
      if (this.restoring?.done === done) this.restoring = undefined;
    });
    this.restoring = { gen, done };
    return done;
  }

  retryLater(gen: Generation): void {
    this.scheduleRestore(gen);
  }

  private async open(gen: Generation): Promise<void> {
    const ch = await gen.model.createChannel();
    this.genOf.set(ch, gen);
    ch.on('error', (err: Error) => this.env.logger.warn({ err, consumer: this.label }, 'consumer channel closed by the broker'));
    ch.on('close', () => {
      this.closedChannels.add(ch);
      this.channelClosed(gen, ch);
    });
    this.opening = ch;
    try {
      if (this.env.prefetch > 0) await ch.prefetch(this.env.prefetch);
      const queues = await this.spec.declare(ch);
      const tags: string[] = [];
      for (const queue of queues) {
        const { consumerTag } = await ch.consume(queue, (msg) => (msg ? this.onMessage(ch, msg, queue) : this.onCancelled(ch)), {
          noAck: false,
        });
        tags.push(consumerTag);
      }
      this.gen = gen;
      this.ch = ch;
      this.opening = undefined;
      this.tags = tags;
      this.recovering = false;
    } catch (err) {
      this.opening = undefined;
      await ch.close().catch(() => undefined);
      if (brokerRefusal(err) !== undefined && gen.alive) {
        throw new TopologyError(`${this.label}: the broker refused a declaration: ${errorMessage(err)}`, { cause: err });
      }
      throw err;
    }
    if (this.stopped) await this.closeChannel(ch);
  }

  private onMessage(ch: Channel, msg: ConsumeMessage, queue: string): void {
    if (this.stopped || (ch !== this.ch && ch !== this.opening)) {
      // Arrived between basic.cancel and its ok: hand it back for another consumer.
      this.settleOn(ch, msg, 'requeue');
      return;
    }
    try {
      if (this.spec.acksOnArrival) this.spec.deliver({ consumer: this, ch, msg, queue });
      else {
        const d: Tracked = { consumer: this, ch, msg, queue, state: 0 };
        if (this.order?.ch !== ch) this.order = { ch, list: [], head: 0 };
        this.order.list.push(d);
        this.spec.deliver(d);
      }
    } catch (err) {
      this.env.logger.error({ err, consumer: this.label }, 'delivery handler failed');
    }
  }

  /** The broker cancelled our consumer (queue deleted, node down): consume again shortly. */
  private onCancelled(ch: Channel): void {
    if (this.stopped || ch !== this.ch) return;
    this.env.logger.warn({ consumer: this.label }, 'the broker cancelled the consumer; declaring and consuming again');
    void this.closeChannel(ch);
  }

  private channelClosed(gen: Generation, ch: Channel): void {
    if (this.ch !== ch) return;
    this.ch = undefined;
    this.tags = [];
    if (!this.stopped && gen.alive) this.scheduleRestore(gen);
  }

  private scheduleRestore(gen: Generation): void {
    clearTimeout(this.retryTimer);
    this.recovering = true;
    this.retryTimer = setTimeout(() => {
      if (this.stopped || !gen.alive || this.ch) return;
      this.restore(gen).catch((err: unknown) => {
        this.env.logger.error({ err, consumer: this.label }, 'could not consume again; retrying');
        this.scheduleRestore(gen);
      });
    }, this.env.retryMs);
  }

  /** A delivery of this consumer was dropped as malformed (counted for the driver's stats). */
  malformed(): void {
    this.env.counts.malformed++;
  }

  /** Count a delivery whose settlement comes later (keeps the channel open for it). */
  hold(): void {
    this.unsettled++;
  }

  /**
   * Ack, requeue or drop a delivery. False when its channel is gone (the broker will deliver it
   * again, so the caller knows its ack did not land).
   */
  settle(d: Delivery, how: 'ack' | 'requeue', held: boolean): boolean {
    if (how === 'ack' && !held && this.spec.acksOnArrival) return this.ackLater(d.ch, d.msg);
    const tracked = this.order?.ch === d.ch && 'state' in d ? (d as Tracked) : undefined;
    let ok: boolean;
    if (tracked && how === 'ack' && tracked === this.order?.list[this.order.head]) ok = this.ackOldest(tracked);
    else {
      // Out of order, or a requeue: on its own, now (a multiple ack would cover the earlier ones).
      ok = this.settleOn(d.ch, d.msg, how);
      if (tracked) tracked.state = 2;
    }
    if (held) {
      this.unsettled--;
      if (this.stopped && this.unsettled === 0 && this.ch) void this.closeChannel(this.ch);
    }
    return ok;
  }

  /** The oldest unsettled delivery is acked: one multiple ack, this turn, for the settled run from it. */
  private ackOldest(d: Tracked): boolean {
    const o = this.order as { ch: Channel; list: Tracked[]; head: number };
    if (this.closedChannels.has(d.ch)) return false;
    d.state = 1;
    // The multiple ack must name a delivery still unacked on the broker (state 1, not 2).
    let last: Tracked | undefined;
    while (o.head < o.list.length) {
      const next = o.list[o.head] as Tracked;
      if (next.state === 0) break;
      if (next.state === 1) last = next;
      o.head++;
    }
    if (o.head > 1024 && o.head * 2 > o.list.length) {
      o.list = o.list.slice(o.head);
      o.head = 0;
    }
    return last ? this.ackLater(last.ch, last.msg) : true;
  }

  private ackLater(ch: Channel, msg: ConsumeMessage): boolean {
    if (this.closedChannels.has(ch)) return false;
    const due = this.ackDue;
    if (due && due.ch !== ch) this.sendDueAck();
    this.ackDue = { ch, msg };
    // Before amqplib's muxer writes (a setImmediate), so the ack leaves when it would have.
    if (!due) process.nextTick(this.sendDueAck);
    return true;
  }

  private readonly sendDueAck = (): void => {
    const due = this.ackDue;
    this.ackDue = undefined;
    if (!due || this.closedChannels.has(due.ch)) return;
    try {
      due.ch.ack(due.msg, true);
      this.genOf.get(due.ch)?.batchWrites();
    } catch {
      // the channel is gone: the broker redelivers what it did not see acked
    }
  };

  private settleOn(ch: Channel, msg: ConsumeMessage, how: 'ack' | 'requeue'): boolean {
    if (this.closedChannels.has(ch)) return false;
    if (this.ackDue) this.sendDueAck(); // a multiple ack must not cover a delivery settled otherwise
    try {
      if (how === 'ack') ch.ack(msg);
      else ch.nack(msg, false, true);
      this.genOf.get(ch)?.batchWrites();
      return true;
    } catch {
      return false;
    }
  }

  private async closeChannel(ch: Channel): Promise<void> {
    if (this.closedChannels.has(ch)) return;
    if (this.ackDue?.ch === ch) this.sendDueAck(); // before channel.close, or the broker redelivers
    await ch.close().catch(() => undefined);
  }

  /**
   * Stop consuming. Deliveries already handed out can still be settled: the channel closes
   * once they are. Queues only we use are deleted rather than left to x-expires.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.recovering = false;
    clearTimeout(this.retryTimer);
    this.env.link.consumers.delete(this);
    this.sendDueAck();
    const ch = this.ch;
    if (!ch || this.closedChannels.has(ch)) return;
    for (const tag of this.tags) await ch.cancel(tag).catch(() => undefined);
    for (const q of this.spec.ownQueues ?? []) {
      await ch.deleteQueue(q).catch((err: unknown) => this.env.logger.debug({ err, queue: q }, 'could not delete our queue'));
    }
    if (this.unsettled === 0) await this.closeChannel(ch);
  }
}
