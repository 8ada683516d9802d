/**
 * The broker connection of one driver instance ("process"): connects to the failover list with
 * backoff and jitter, restores every consumer on each new connection before it is used, and
 * tells who waits for a connection (or an unblocked one) when there is one. Publishing over it:
 * publishing.ts.
 *
 * amqplib 2.x has a recovering connection of its own, but it is bound to a single URL; oslo's
 * failover list (and re-running our topology per connection) needs the loop to be ours.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { connect, type ChannelModel } from 'amqplib';
import { AuthenticationFailed, HybridbusError, MessageDeliveryFailure, TransportClosed, type Logger } from '@hybridbus/core';
import { publishTransportEvent, type TransportHealth } from '@hybridbus/core/driver';
import { handshakeRefusal } from './amqplib-internals.js';
import { Generation } from './generation.js';
import type { BrokerAddress, RabbitOptions } from './options.js';
import { deferred, errorMessage, raceSignal, sleep } from './util.js';

/** A consumer the link restores on every new connection. */
export interface Restorable {
  readonly label: string;
  /** Its channel was lost on a live connection and it waits to consume again. */
  readonly recovering: boolean;
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
  private unblock = deferred();
  private readonly downListeners = new Set<(err: Error) => void>();
  readonly consumers = new Set<Restorable>();
  private readonly loopDone: Promise<void>;
  private readonly firstPass = deferred();
  private sleeper: AbortController | undefined;
  /** Why the last connection was lost, until one is made again (then it counts as a reconnect). */
  private lost: string | undefined;
  /** The `connection_name` client property ("<prog>:<pid>:<transport>:<uuid>"), as oslo sets it. */
  readonly connectionName: string;
  /** Since start: connections made again after one was lost. */
  reconnects = 0;
  /** Why the link is not up, while it is not (never credentials: broker labels and error texts). */
  private downReason = 'connecting to the broker';

  constructor(
    private readonly options: RabbitOptions,
    private readonly logger: Logger,
    private readonly transportName: string,
    /** The URL scheme the transport was configured with, for diagnostics events. */
    private readonly scheme = 'rabbit',
  ) {
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

  /**
   * Down (and why) while not connected; degraded while the broker blocks publishing or a
   * consumer's channel is being recovered; else connected. O(consumers): for scrapes.
   */
  health(): TransportHealth {
    if (this.closed) return { state: 'down', reason: 'closed' };
    if (!this.isUp) return { state: 'down', reason: this.downReason };
    if (this.blockedReason !== undefined) return { state: 'degraded', reason: `the broker blocks publishing (${this.blockedReason})` };
    let recovering = 0;
    let first = '';
    for (const c of this.consumers) {
      if (c.recovering && recovering++ === 0) first = c.label;
    }
    if (recovering > 0) return { state: 'degraded', reason: `${first}${recovering > 1 ? ` and ${recovering - 1} other consumer(s)` : ''}: channel being recovered` };
    return { state: 'connected' };
  }

  /** Called with the reason whenever an established connection is lost. */
  onDown(listener: (err: Error) => void): () => void {
    this.downListeners.add(listener);
    return () => this.downListeners.delete(listener);
  }

  private wakeWaiters(): void {
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
    const eps = this.options.brokers;
    let next = 0;
    let failures = 0;
    let lastLogged = 0;
    while (!this.closed) {
      const ep = eps[next++ % eps.length] as BrokerAddress;
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
        const attempt = `cannot connect to ${ep.label}: ${errorMessage(err)}`;
        this.downReason = this.refused?.message ?? (this.lost ? `connection lost: ${this.lost}; reconnecting (${attempt})` : `${attempt}; retrying`);
        this.wakeWaiters();
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
        this.downReason = `connection to ${ep.label} lost while restoring consumers; retrying`;
        failures++;
        this.failedAttempts++;
        this.wakeWaiters();
        if (failures >= eps.length) this.firstPass.resolve();
        await gen.model.close().catch(() => undefined);
        await this.pause(this.backoffMs(0));
        continue;
      }
      this.gen = gen;
      this.refused = undefined;
      const again = this.lost !== undefined;
      this.lost = undefined;
      if (again) this.reconnects++;
      publishTransportEvent(again ? 'reconnect' : 'connect', () => ({ transport: this.transportName, scheme: this.scheme, peer: ep.label }));
      if (failures > 0 || gen.id > 1) this.logger.info({ broker: ep.label, attempts: failures }, 'connected to the broker');
      failures = 0;
      this.firstPass.resolve();
      this.wakeWaiters();

      const reason = await gen.lost;
      this.gen = undefined;
      this.wakeWaiters();
      if (!this.closed) {
        this.lost = errorMessage(reason);
        this.downReason = `connection lost: ${this.lost}; reconnecting`;
      }
      publishTransportEvent('disconnect', () => ({ transport: this.transportName, scheme: this.scheme, peer: ep.label, reason: this.closed ? 'closed' : this.lost }));
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
      this.unblock.resolve();
      this.unblock = deferred();
    }
    this.blockedReason = reason;
  }

  /** Whether the broker currently blocks publishing (connection.blocked). */
  get blocked(): string | undefined {
    return this.blockedReason;
  }

  /** Wait while the broker blocks publishing (connection.blocked). */
  whenUnblocked(signal?: AbortSignal): Promise<void> {
    return raceSignal(this.unblock.promise, signal);
  }

  closedError(): HybridbusError {
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
   * Close. From the first moment nothing reconnects and nothing waits for a connection;
   * `whileUp` runs first if connected (what still has to go out on this connection).
   */
  async close(whileUp?: () => Promise<void>): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sleeper?.abort();
    this.wakeWaiters();
    if (whileUp && this.isUp) await whileUp();
    this.unblock.resolve();
    const gen = this.gen;
    this.gen = undefined;
    if (gen) {
      gen.markLost(new TransportClosed('closed'));
      await gen.model.close().catch(() => undefined);
    }
    await this.loopDone;
  }
}
