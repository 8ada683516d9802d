/**
 * One connection's lifetime: its channels, what was declared on it, and the publisher's confirm
 * channel belong to it; a new connection (after a loss) starts from nothing.
 */
import type { Channel, ChannelModel } from 'amqplib';
import type { Logger } from '@hybridbus/core';
import { WriteBatcher } from './amqplib-internals.js';
import type { BrokerAddress } from './options.js';
import { Publisher } from './publishing.js';
import { deferred } from './util.js';

export class Generation {
  alive = true;
  private readonly lostSignal = deferred<Error>();
  private declareCh: Promise<Channel> | undefined;
  private publisher: Promise<Publisher> | undefined;
  /** The publisher once its channel is open: publishing needs no await then. */
  private openPublisher: Publisher | undefined;
  /** Entities declared on this connection (a broker restart forgets transient ones). */
  private readonly declared = new Map<string, Promise<void>>();
  /** Those of `declared` the broker has confirmed. */
  private readonly done = new Set<string>();
  /** Call after handing amqplib a frame: the frames of one event-loop turn leave in one write. */
  readonly batchWrites: () => void;

  constructor(
    readonly id: number,
    readonly model: ChannelModel,
    readonly broker: BrokerAddress,
    private readonly logger: Logger,
  ) {
    this.batchWrites = new WriteBatcher(model, logger).batch;
  }

  /** Resolves with the reason once this connection is gone. */
  get lost(): Promise<Error> {
    return this.lostSignal.promise;
  }

  markLost(err: Error): void {
    if (!this.alive) return;
    this.alive = false;
    this.lostSignal.resolve(err);
  }

  /**
   * Declare something once per connection, on a channel of its own (a 406 closes only that).
   * Undefined when it is declared already (nothing to wait for).
   */
  declareOnce(key: string, declare: (ch: Channel) => Promise<unknown>): Promise<void> | undefined {
    if (this.done.has(key)) return undefined;
    let p = this.declared.get(key);
    if (!p) {
      const mine: Promise<void> = this.declareChannel()
        .then((ch) => declare(ch))
        .then(
          () => {
            if (this.declared.get(key) === mine) this.done.add(key);
          },
          (err: unknown) => {
            if (this.declared.get(key) === mine) this.declared.delete(key);
            throw err;
          },
        );
      p = mine;
      this.declared.set(key, p);
    }
    return p;
  }

  isDeclared(key: string): boolean {
    return this.done.has(key);
  }

  private declareChannel(): Promise<Channel> {
    if (!this.declareCh) {
      const p = this.model.createChannel();
      this.declareCh = p;
      p.then(
        (ch) => {
          ch.on('error', (err: Error) => this.logger.warn({ err }, 'declaration channel closed by the broker'));
          ch.on('close', () => {
            if (this.declareCh === p) this.declareCh = undefined;
          });
        },
        () => {
          if (this.declareCh === p) this.declareCh = undefined;
        },
      );
    }
    return this.declareCh;
  }

  /** The publisher if its channel is open now, else undefined (then use confirmChannel()). */
  get readyPublisher(): Publisher | undefined {
    return this.openPublisher;
  }

  /**
   * Stop publishing on `pub`'s channel: the next publish opens a new one. A channel the broker
   * nacks everything on (RabbitMQ 3.10 does so for a quorum queue whose leader was being
   * elected when the channel opened) is not fixed by waiting; a new channel is.
   */
  retire(pub: Publisher): void {
    if (this.openPublisher === pub) this.openPublisher = undefined;
    this.publisher = undefined;
    pub.ch.close().catch(() => undefined);
  }

  confirmChannel(): Promise<Publisher> {
    if (!this.publisher) {
      const p = this.model.createConfirmChannel().then((ch) => new Publisher(ch, this, this.logger));
      this.publisher = p;
      p.then(
        (pub) => {
          if (this.publisher === p && pub.open) this.openPublisher = pub;
          return pub.closed.then(() => {
            if (this.openPublisher === pub) this.openPublisher = undefined;
            if (this.publisher !== p) return;
            this.publisher = undefined;
            // A channel error (e.g. 404 on an exchange that auto-deleted) may mean that what
            // we declared is gone: declare again before the next publish.
            this.declared.clear();
            this.done.clear();
          });
        },
        () => {
          if (this.publisher === p) this.publisher = undefined;
        },
      );
    }
    return this.publisher;
  }
}
