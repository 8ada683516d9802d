/**
 * The broker connection of one driver instance ("process"): connects to the failover list with
 * backoff and jitter, restores every consumer on each new connection before it is used, and
 * publishes through one confirm channel with a bounded window of unconfirmed messages.
 *
 * amqplib 2.x has a recovering connection of its own, but it is bound to a single URL; oslo's
 * failover list (and re-running our topology per connection) needs the loop to be ours.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type Message, type Options } from 'amqplib';
import {
  AuthenticationFailed,
  HybridbusError,
  MessageDeliveryFailure,
  MessageUndeliverable,
  TransportClosed,
  type Logger,
} from '@hybridbus/core';
import type { Endpoint, RabbitOptions } from './options.js';
import { handshakeRefusal, WriteBatcher } from './amqplib-internals.js';
import { TopologyError } from './errors.js';
import { Semaphore, type CallCancel } from '@hybridbus/core/driver';
import { deferred, errorMessage, raceSignal, sleep, type Deferred } from './util.js';

/** One connection's lifetime: channels, declared entities and consumers belong to it. */
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
    readonly endpoint: Endpoint,
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

type Outcome = 'ack' | 'returned' | 'nacked';

interface Returnable {
  readonly body: Buffer;
  returned: boolean;
}

/** A confirm channel: settles each publish on the broker's ack/nack, noting basic.return. */
class Publisher {
  open = true;
  readonly closed: Promise<void>;
  /**
   * Mandatory publishes awaiting their confirm. A basic.return is matched by body (bodies carry
   * a unique id), comparing bytes only when one comes: a latin1 string of every body as a map
   * key showed in profiles.
   */
  private readonly returnable = new Set<Returnable>();
  private drained: Deferred<void> | undefined;
  /** Set while amqplib handles a basic.nack: the confirm callbacks it runs then are nacks. */
  private nacking = false;

  constructor(
    readonly ch: ConfirmChannel,
    private readonly gen: Generation,
    logger: Logger,
  ) {
    const closed = deferred();
    this.closed = closed.promise;
    ch.on('error', (err: Error) => logger.warn({ err }, 'publish channel closed by the broker'));
    ch.on('close', () => {
      this.open = false;
      this.drained?.resolve();
      closed.resolve();
    });
    // The broker sends basic.return before the ack of the same message (same channel, in order).
    ch.on('return', (msg: Message) => {
      for (const entry of this.returnable) {
        if (!entry.returned && entry.body.equals(msg.content)) {
          entry.returned = true;
          break;
        }
      }
    });
    // Our listener first and last around amqplib's own, which runs the callbacks.
    ch.prependListener('nack', () => void (this.nacking = true));
    ch.on('nack', () => void (this.nacking = false));
    ch.on('drain', () => {
      const d = this.drained;
      this.drained = undefined;
      d?.resolve();
    });
  }

  /** False while amqplib's write buffer is above its high-water mark. */
  get isWritable(): boolean {
    return this.drained === undefined;
  }

  /** Wait while amqplib's write buffer is above its high-water mark. */
  writable(signal?: AbortSignal): Promise<void> {
    return this.drained ? raceSignal(this.drained.promise, signal) : Promise.resolve();
  }

  publish(exchange: string, routingKey: string, body: Buffer, options: Options.Publish): Promise<Outcome> {
    const entry: Returnable = { body, returned: false };
    const mandatory = options.mandatory === true;
    if (mandatory) this.returnable.add(entry);
    return new Promise<Outcome>((resolve, reject) => {
      const done = (err: unknown): void => {
        if (mandatory) this.returnable.delete(entry);
        if (!err) resolve(entry.returned ? 'returned' : 'ack');
        else if (this.nacking) resolve('nacked');
        else reject(err instanceof Error ? err : new Error(String(err)));
      };
      try {
        const ok = this.ch.publish(exchange, routingKey, body, options, done);
        this.gen.batchWrites();
        if (!ok && !this.drained) this.drained = deferred();
      } catch (err) {
        done(err);
      }
    });
  }
}

/** A channel-level refusal from the broker (404, 406, 403...), as opposed to a lost connection. */
function brokerRefusal(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' && code >= 300 ? code : undefined;
}

export interface Outgoing {
  readonly exchange: string;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly properties: Options.Publish;
  /**
   * Declarations this message needs, run (once per connection) before publishing; returns
   * undefined when they are done on `gen` already.
   */
  readonly declare?: ((gen: Generation) => Promise<void> | undefined) | undefined;
  /** For messages: "cast to topic x". */
  readonly what: string;
}

export interface SendControl {
  /** Retries after a lost connection/channel: -1 until the signal, 0 none, n at most n. */
  readonly retry: number;
  /** The caller's: stops the send, and the wait for its confirm, at once. */
  readonly signal?: AbortSignal | undefined;
  /**
   * A call's: once cancelled, stops the send where it waits or would send again; its confirm is
   * not waited for then.
   */
  readonly cancel?: CallCancel | undefined;
}

/** The signal a send waits under (a call's is built only if its send has to wait). */
const waitSignal = (c: SendControl): AbortSignal | undefined => c.signal ?? c.cancel?.signal;
/** Why a send must not go on, if it must not. */
const stopReason = (c: SendControl): unknown => (c.signal?.aborted ? c.signal.reason : c.cancel?.reason);

/** A consumer the link restores on every new connection. */
export interface Restorable {
  readonly label: string;
  restore(gen: Generation): Promise<void>;
  /** Try `restore` again after a delay, for as long as `gen` lives. */
  retryLater(gen: Generation): void;
}

const MAX_CONNECT_LOG_INTERVAL_MS = 30_000;

export class Link {
  private gen: Generation | undefined;
  private closed = false;
  private genCounter = 0;
  /** Failed connection attempts so far (sends count them against their retry budget). */
  private failedAttempts = 0;
  /** Set while the latest attempt was refused (credentials, vhost): callers fail at once. */
  private refused: AuthenticationFailed | undefined;
  private wake = deferred();
  private blockedReason: string | undefined;
  private unblocked = deferred();
  private readonly downListeners = new Set<(err: Error) => void>();
  readonly consumers = new Set<Restorable>();
  readonly window: Semaphore;
  private readonly loopDone: Promise<void>;
  private readonly firstPass = deferred();
  private sleeper: AbortController | undefined;
  /** The `connection_name` client property ("<prog>:<pid>:<transport>:<uuid>"), as oslo sets it. */
  readonly connectionName: string;

  constructor(
    private readonly options: RabbitOptions,
    private readonly logger: Logger,
    transportName: string,
  ) {
    this.window = new Semaphore(options.confirmWindow);
    const prog = path.basename(process.argv[1] ?? 'node');
    this.connectionName = `${prog}:${process.pid}:${transportName}:${randomUUID()}`;
    this.loopDone = this.run().catch((err: unknown) => this.logger.error({ err }, 'connection loop failed'));
  }

  /** Resolves after the first connection, or after every broker of the list failed once. */
  started(): Promise<void> {
    return this.firstPass.promise;
  }

  /** Why the broker refused the latest connection attempt (credentials, vhost), if it did. */
  get refusal(): AuthenticationFailed | undefined {
    return this.gen ? undefined : this.refused;
  }

  get isUp(): boolean {
    return this.gen !== undefined && this.gen.alive;
  }

  get current(): Generation | undefined {
    return this.isUp ? this.gen : undefined;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Called with the reason whenever an established connection is lost. */
  onDown(listener: (err: Error) => void): () => void {
    this.downListeners.add(listener);
    return () => this.downListeners.delete(listener);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = deferred();
    w.resolve();
  }

  private backoffMs(attempt: number): number {
    const { retryIntervalS, retryBackoffS, intervalMaxS } = this.options;
    const base = Math.min(retryIntervalS + retryBackoffS * attempt, intervalMaxS) * 1000;
    return Math.round(base * (0.8 + Math.random() * 0.4)); // ±20 % so a fleet does not reconnect in step
  }

  private async run(): Promise<void> {
    const eps = this.options.endpoints;
    let next = 0;
    let failures = 0;
    let lastLogged = 0;
    while (!this.closed) {
      const ep = eps[next++ % eps.length] as Endpoint;
      let model: ChannelModel;
      try {
        model = await connect(ep.connect, {
          ...ep.socket,
          timeout: this.options.connectTimeoutS * 1000,
          clientProperties: { connection_name: this.connectionName },
        });
      } catch (err) {
        this.failedAttempts++;
        failures++;
        // A refused login or vhost will not fix itself in a call's lifetime: say so now rather
        // than at the call's timeout (attempts go on, for when the broker's config is fixed).
        const why = handshakeRefusal(err);
        this.refused = why ? new AuthenticationFailed(`${ep.label} refused the connection: ${why}`, { cause: err }) : undefined;
        this.notify();
        if (failures >= eps.length) this.firstPass.resolve();
        const now = Date.now();
        const log = { err, broker: ep.label, attempt: failures };
        // Loud on the first failure, then at most every 30 s: a long outage should not flood logs.
        if (failures === 1 || now - lastLogged > MAX_CONNECT_LOG_INTERVAL_MS) {
          lastLogged = now;
          this.logger.error(log, 'cannot connect to the broker; retrying');
        } else this.logger.debug(log, 'cannot connect to the broker; retrying');
        // Try the next broker of the list at once; back off after a full round.
        if (failures % eps.length === 0) await this.pause(this.backoffMs(failures / eps.length - 1));
        continue;
      }
      if (this.closed) {
        await model.close().catch(() => undefined);
        break;
      }
      const gen = new Generation(++this.genCounter, model, ep, this.logger);
      // The same reason comes with 'close', logged once there.
      model.on('error', (err: Error) => this.logger.debug({ err, broker: ep.label }, 'broker connection error'));
      model.on('close', (err?: Error) => gen.markLost(err ?? new TransportClosed('connection closed')));
      model.on('blocked', (reason: string) => this.setBlocked(reason));
      model.on('unblocked', () => this.setBlocked(undefined));
      this.setBlocked(undefined);

      // Consumers first: "up" means the topology of this process exists again. Consumers
      // added meanwhile are picked up too (the link is not "up" yet, so they wait for us).
      const restored = new Set<Restorable>();
      for (let todo = [...this.consumers]; todo.length > 0 && gen.alive; todo = [...this.consumers].filter((c) => !restored.has(c))) {
        for (const c of todo) {
          restored.add(c);
          if (!gen.alive) break;
          try {
            await c.restore(gen);
          } catch (err) {
            this.logger.error({ err, consumer: c.label }, 'could not restore a consumer; retrying while connected');
            c.retryLater(gen);
          }
        }
      }
      if (this.closed) {
        // Closed while setting up: close() found no connection to close, so this one is ours.
        await gen.model.close().catch(() => undefined);
        break;
      }
      if (!gen.alive) {
        // Lost while setting up: back off as after a failed attempt, not in a tight loop.
        failures++;
        this.failedAttempts++;
        this.notify();
        if (failures >= eps.length) this.firstPass.resolve();
        await gen.model.close().catch(() => undefined);
        await this.pause(this.backoffMs(0));
        continue;
      }
      this.gen = gen;
      this.refused = undefined;
      if (failures > 0 || gen.id > 1) this.logger.info({ broker: ep.label, attempts: failures }, 'connected to the broker');
      failures = 0;
      this.firstPass.resolve();
      this.notify();

      const reason = await gen.lost;
      this.gen = undefined;
      this.notify();
      if (this.closed) break;
      this.logger.warn({ err: reason, broker: ep.label }, 'broker connection lost; reconnecting');
      for (const l of [...this.downListeners]) {
        try {
          l(reason);
        } catch (err) {
          this.logger.error({ err }, 'connection-loss listener failed');
        }
      }
      next--; // the same broker first: it is most likely just restarting
    }
    this.firstPass.resolve();
  }

  private async pause(ms: number): Promise<void> {
    if (this.closed) return;
    this.sleeper = new AbortController();
    await sleep(ms, this.sleeper.signal).catch(() => undefined);
    this.sleeper = undefined;
  }

  private setBlocked(reason: string | undefined): void {
    if (reason !== undefined && this.blockedReason === undefined) {
      this.logger.warn({ reason }, 'the broker blocked publishing on this connection (resource alarm); sends wait');
    } else if (reason === undefined && this.blockedReason !== undefined) {
      this.logger.info({}, 'the broker unblocked this connection');
      this.unblocked.resolve();
      this.unblocked = deferred();
    }
    this.blockedReason = reason;
  }

  /** Whether the broker currently blocks publishing (connection.blocked). */
  get blocked(): string | undefined {
    return this.blockedReason;
  }

  private closedError(): HybridbusError {
    return new TransportClosed('the transport is closed');
  }

  /**
   * The live connection; waits for one while reconnecting. `budget.left` counts failed
   * connection attempts seen while waiting (Infinity: wait until the signal or close).
   */
  async whenUp(budget: { left: number }, signal?: AbortSignal): Promise<Generation> {
    for (;;) {
      if (this.closed) throw this.closedError();
      if (signal?.aborted) throw signal.reason;
      const gen = this.current;
      if (gen) return gen;
      if (this.refused) throw this.refused;
      if (budget.left <= 0) throw new MessageDeliveryFailure('not connected to the broker and no retries left');
      const seen = this.failedAttempts;
      await raceSignal(this.wake.promise, signal);
      budget.left -= this.failedAttempts - seen;
    }
  }

  /**
   * Publish with a broker confirm. Resolves once the broker has taken responsibility for the
   * message; rejects with MessageUndeliverable when a mandatory message was returned,
   * MessageDeliveryFailure on a nack or when the retries for a lost connection ran out.
   */
  async publish(msg: Outgoing, control: SendControl): Promise<void> {
    const budget = { left: control.retry < 0 ? Infinity : control.retry };
    // Connected, unblocked, a free slot, declared, an open channel (the usual case): nothing
    // is awaited before the confirm. Each wait below is skipped unless it has to wait.
    for (;;) {
      const gen = this.current ?? (await this.whenUp(budget, waitSignal(control)));
      if (this.blockedReason !== undefined) {
        if (budget.left <= 0) throw new MessageDeliveryFailure(`the broker blocks publishing (${this.blockedReason}); ${msg.what} not sent`);
        await raceSignal(this.unblocked.promise, waitSignal(control));
      }
      if (!this.window.tryAcquire()) await this.window.acquire(waitSignal(control));
      let confirmed: Promise<Outcome> | undefined;
      let outcome: Outcome;
      try {
        const declaring = msg.declare?.(gen);
        if (declaring) {
          try {
            await declaring;
          } catch (err) {
            const refusal = brokerRefusal(err);
            if (refusal !== undefined && gen.alive) {
              throw new TopologyError(`declaring what ${msg.what} needs failed: ${errorMessage(err)}`, { cause: err });
            }
            throw err;
          }
        }
        const pub = gen.readyPublisher ?? (await gen.confirmChannel());
        if (!pub.isWritable) await pub.writable(waitSignal(control));
        // Stopped while waiting without a signal to wake us (e.g. for a declaration).
        const why = stopReason(control);
        if (why !== undefined) throw why;
        confirmed = pub.publish(msg.exchange, msg.routingKey, msg.body, msg.properties);
        // The slot is held until the broker answers, even if the caller stops waiting.
        confirmed.then(this.releaseSlot, this.releaseSlot);
        outcome = await (control.signal ? raceSignal(confirmed, control.signal) : confirmed);
      } catch (err) {
        if (!confirmed) this.window.release();
        const why = stopReason(control);
        if (why !== undefined) throw why;
        if (this.closed) throw this.closedError();
        if (err instanceof HybridbusError) throw err;
        if (budget.left <= 0) throw new MessageDeliveryFailure(`${msg.what} was not confirmed by the broker: ${errorMessage(err)}`, { cause: err });
        budget.left--;
        this.logger.debug({ err, what: msg.what }, 'publish not confirmed (channel or connection lost); sending again');
        if (gen.alive) await sleep(50, waitSignal(control)); // a channel error: let the next channel open
        continue;
      }
      if (outcome === 'nacked') throw new MessageDeliveryFailure(`the broker refused (nack) ${msg.what}`);
      if (outcome === 'returned') {
        throw new MessageUndeliverable(`nobody can receive ${msg.what}: no queue is bound to exchange "${msg.exchange}" with routing key "${msg.routingKey}"`);
      }
      return;
    }
  }

  private readonly releaseSlot = (): void => this.window.release();

  /** Wait until no publish awaits a confirm, at most `ms`. */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.window.inUse > 0 && Date.now() < deadline) await sleep(10);
  }

  /**
   * Close. From the first moment nothing reconnects and nothing waits for a connection;
   * `whileUp` runs first if connected (what still has to go out on this connection).
   */
  async close(whileUp?: () => Promise<void>): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sleeper?.abort();
    this.notify();
    if (whileUp && this.isUp) await whileUp();
    this.unblocked.resolve();
    const gen = this.gen;
    this.gen = undefined;
    if (gen) {
      gen.markLost(new TransportClosed('closed'));
      await gen.model.close().catch(() => undefined);
    }
    await this.loopDone;
  }
}
