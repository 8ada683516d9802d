/**
 * rabbit:// — oslo.messaging's rabbit driver on the wire (../shared/docs/oslo-wire.md part 1):
 * the same exchanges, queues, flags, bindings, properties and bodies, so TypeScript services
 * and Python oslo services can call and notify each other through one RabbitMQ.
 *
 * Beyond oslo: every send is confirmed by the broker (bounded window, backpressure), calls and
 * casts are `mandatory` so "nobody serves this topic" is an error instead of a silent loss,
 * in-flight calls fail with ConnectionLost when the connection drops, and receivers drop
 * duplicates by `_unique_id` (our own resends after a lost confirm can duplicate).
 *
 * This class wires the parts and is the driver contract's face: client.ts (call, cast, fanout,
 * replies), server.ts (listen, requests, sending replies), notifications.ts; below them
 * link.ts (the connection and its recovery), publishing.ts (confirmed sends), topology.ts
 * (declarations), subscriptions.ts and consumer.ts (consuming).
 */
import { TransportClosed, type Target } from '@hybridbus/core';
import type {
  DriverCallOptions,
  Driver,
  DriverCapabilities,
  DriverContext,
  IncomingNotification,
  IncomingRpc,
  ListenOptions,
  Notification,
  NotificationListenOptions,
  RpcReply,
  RpcRequest,
  SendOptions,
  Subscription,
  DriverStats,
  TransportHealth,
} from '@hybridbus/core/driver';
import { RabbitClient } from './client.js';
import { Link } from './link.js';
import { RabbitNotifications } from './notifications.js';
import type { RabbitOptions } from './options.js';
import type { PartEnv } from './parts.js';
import { Sender } from './publishing.js';
import { RabbitServer } from './server.js';
import { Subscriptions } from './subscriptions.js';
import { Topology } from './topology.js';
import { sleep } from './util.js';

/** On close: how long unconfirmed sends, then the consumers' cancellation, are waited for. */
const CLOSE_STEP_MS = 2_000;

export class RabbitDriver implements Driver {
  readonly capabilities: DriverCapabilities;
  /** The broker connection (protected: a test double in test/ reaches its socket). */
  protected readonly link: Link;
  private readonly sender: Sender;
  private readonly subscriptions: Subscriptions;
  private readonly client: RabbitClient;
  private readonly server: RabbitServer;
  private readonly notifications: RabbitNotifications;
  private closed = false;
  /** Deliveries dropped as malformed, by every consumer of this driver. */
  private readonly counts = { malformed: 0 };

  constructor(
    readonly options: RabbitOptions,
    private readonly context: DriverContext,
  ) {
    this.capabilities = {
      durable: options.durableQueues || options.quorumQueues,
      brokerless: false,
      pools: true,
      requeue: true,
      callMonitor: true,
      broadcast: true,
    };
    const { logger, name, controlExchange } = context;
    this.link = new Link(options, logger, name, options.scheme);
    this.sender = new Sender(this.link, logger, options.confirmWindow);
    this.subscriptions = new Subscriptions({ link: this.link, logger, prefetch: options.prefetch, retryMs: options.retryIntervalS * 1000, counts: this.counts });
    const env: PartEnv = {
      options,
      logger,
      name,
      controlExchange,
      link: this.link,
      sender: this.sender,
      topology: new Topology(options),
      subscriptions: this.subscriptions,
    };
    this.client = new RabbitClient(env);
    this.server = new RabbitServer(env);
    this.notifications = new RabbitNotifications(env);
  }

  /** Resolves after the first connection (or after every broker failed once; it keeps trying). */
  started(): Promise<void> {
    return this.link.started();
  }

  /** Connected, with every consumer of this driver declared and consuming. */
  async whenConnected(signal?: AbortSignal): Promise<void> {
    await this.link.whenUp({ left: Infinity }, signal);
  }

  get connected(): boolean {
    return this.link.isUp;
  }

  /** The `connection_name` this driver's connection announces (find it in `list_connections`). */
  get connectionName(): string {
    return this.link.connectionName;
  }

  /** `reply_<uuid hex>`: this driver's reply queue (declared on its first call). */
  get replyQueue(): string {
    return this.client.replyQueue;
  }

  /** Publishes waiting for the broker's confirm (bounded by `confirm_window`). */
  get unconfirmed(): number {
    return this.sender.window.inUse;
  }

  private checkOpen(): void {
    if (this.closed || this.link.isClosed) throw new TransportClosed(`rabbit transport "${this.context.name}" is closed`);
  }

  async call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
    this.checkOpen();
    return this.client.call(target, request, options);
  }

  async cast(target: Target, request: RpcRequest, options: SendOptions): Promise<void> {
    this.checkOpen();
    return this.client.send(target, request, options, false);
  }

  async fanout(target: Target, request: RpcRequest, options: SendOptions): Promise<void> {
    this.checkOpen();
    return this.client.send(target, request, options, true);
  }

  async listen(target: Target, handler: (msg: IncomingRpc) => void, _options: ListenOptions): Promise<Subscription> {
    this.checkOpen();
    return this.server.listen(target, handler);
  }

  async notify(target: Target, notification: Notification, options: SendOptions): Promise<void> {
    this.checkOpen();
    return this.notifications.notify(target, notification, options);
  }

  async listenForNotifications(
    targets: readonly Target[],
    handler: (msg: IncomingNotification) => void,
    options: NotificationListenOptions,
  ): Promise<Subscription> {
    this.checkOpen();
    return this.notifications.listen(targets, handler, options);
  }

  stats(): DriverStats {
    const { sender } = this;
    const s = sender.stats;
    return {
      connections: this.link.isUp ? 1 : 0,
      pendingCalls: this.client.pendingCalls,
      queued: sender.queued,
      unacked: sender.unconfirmed,
      retried: s.nackRetries + s.resends + s.replyRetries,
      reconnects: this.link.reconnects,
      dropped: this.counts.malformed,
      extra: { ...s, confirmWindowInUse: sender.window.inUse },
    };
  }

  /** Down (with why) while the connection is being re-made; degraded while publishing is blocked or a consumer recovers. */
  health(): TransportHealth {
    if (this.closed) return { state: 'down', reason: 'closed' };
    return this.link.health();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    await this.link.close(async () => {
      await this.sender.drain(CLOSE_STEP_MS);
      // Cancel consumers and delete our uuid-named queues instead of leaving them to x-expires.
      await Promise.race([this.subscriptions.stopAll(), sleep(CLOSE_STEP_MS)]);
    });
  }
}
