/**
 * zmq:// — brokerless RPC over ZeroMQ. A server binds one ROUTER per transport and registers
 * "topic" and "topic.server" in the name service; a client looks the key up, picks a host
 * round-robin and sends over its pooled connection. This facade wires the parts and holds the
 * lifecycle; a message's path runs client.ts → routing.ts → outbound.ts → (wire) →
 * inbound.ts → server.ts → handler, and back the same way.
 */
import { TransportClosed, type Logger, type Target } from '@hybridbus/core';
import type {
  DriverCallOptions,
  Notification,
  RpcReply,
  RpcRequest,
  Driver,
  DriverCapabilities,
  DriverContext,
  ListenOptions,
  NotificationListenOptions,
  SendOptions,
  Subscription,
  DriverStats,
  TransportHealth,
} from '@hybridbus/core/driver';
import { publishTransportEvent } from '@hybridbus/core/driver';
import { createNameService, type NameService } from '@hybridbus/nameservice';
import { randomBytes } from 'node:crypto';
import { ZmqClient } from './client.js';
import { Keys } from './keys.js';
import { Multicast } from './multicast/index.js';
import { ZmqNotifications } from './notifications.js';
import type { ZmqOptions } from './options.js';
import { Outbound } from './outbound.js';
import { Routing } from './routing.js';
import { ZmqServer, type NotificationHandler, type RpcHandler } from './server.js';

export const zmqCapabilities: DriverCapabilities = {
  durable: false,
  brokerless: true,
  pools: true,
  requeue: false,
  callMonitor: true,
  broadcast: true,
};

/** How long close() lets messages already handed over reach the wire (ms). */
const CLOSE_LINGER_MS = 2000;

/**
 * ZeroMQ's I/O thread scans all its timers whenever it cancels one, which it does per heartbeat
 * per connection: heartbeats cost it about n² per interval for n connections (at 9,000 and 1 s it
 * was 86 % busy and handshakes missed connect_timeout; benchmarks/zmq-findings.md). The default
 * pool (1,024) is far below that; a pool configured past it is warned of once, with the way out.
 */
const HEARTBEAT_COST_LIMIT = (4096 * 4096) / 1000; // 4,096 connections at the default 1 s interval

function warnOfHeartbeatCost(options: ZmqOptions, logger: Logger): void {
  const n = options.poolMax;
  const every = options.heartbeatInterval;
  if (every <= 0 || n <= 4096 || (n * n) / every <= HEARTBEAT_COST_LIMIT) return;
  logger.warn(
    { poolMax: n, heartbeatInterval: every },
    `zmq-direct: pool_max=${n} with heartbeat_interval=${every} ms: ZeroMQ's heartbeat timers cost its I/O thread about pool_max² / heartbeat_interval, and with thousands of connections handshakes can miss connect_timeout; keep pool_max at most 4096 or set heartbeat_interval to at least ${Math.ceil((n * n) / HEARTBEAT_COST_LIMIT)} ms`,
  );
}

export class ZmqDriver implements Driver {
  readonly capabilities = zmqCapabilities;
  readonly nameService: NameService;
  private outbound: Outbound | undefined;
  private readonly keys: Keys;
  private readonly routing: Routing;
  private readonly client: ZmqClient;
  private readonly server: ZmqServer;
  private readonly notifications: ZmqNotifications;
  private readonly multicast: Multicast | undefined;
  private closed = false;

  constructor(
    readonly options: ZmqOptions,
    private readonly context: DriverContext,
  ) {
    const { logger } = context;
    warnOfHeartbeatCost(options, logger);
    this.nameService = createNameService(options.matchmaker, { ttlMs: options.nsTtl, cacheMs: options.nsCache, logger });
    this.keys = new Keys(context.controlExchange);
    const socket = {
      open: (): Outbound => {
        if (this.closed) throw new TransportClosed(`zmq transport "${context.name}" is closed`);
        return (this.outbound ??= new Outbound(
          options,
          {
            onFrames: (a, r) => this.client.onFrames(a, r),
            onPeerLost: (a, ids, e) => this.client.onPeerLost(a, ids, e),
            onConnection: (kind, peer, reason) => publishTransportEvent(kind, () => ({ transport: context.name, scheme: 'zmq', peer, reason })),
          },
          logger,
        ));
      },
      current: (): Outbound | undefined => this.outbound,
    };
    this.routing = new Routing(options, this.nameService, this.keys, socket);
    this.multicast = Multicast.of(options, logger);
    this.client = new ZmqClient(options, this.routing, this.keys, randomBytes(4).toString('hex'), logger, this.multicast);
    this.server = new ZmqServer(options, this.nameService, this.keys, context.name, logger, this.multicast);
    this.notifications = new ZmqNotifications(options, this.nameService, this.keys, this.client, this.server);
  }

  call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
    return this.client.call(target, request, options);
  }

  cast(target: Target, request: RpcRequest, _options: SendOptions): Promise<void> {
    return this.client.cast(target, request);
  }

  fanout(target: Target, request: RpcRequest, _options: SendOptions): Promise<void> {
    return this.client.fanout(target, request);
  }

  notify(target: Target, notification: Notification, _options: SendOptions): Promise<void> {
    return this.notifications.notify(target, notification);
  }

  listen(target: Target, handler: RpcHandler, _options: ListenOptions): Promise<Subscription> {
    return this.server.listen(target, handler);
  }

  listenForNotifications(targets: readonly Target[], handler: NotificationHandler, options: NotificationListenOptions): Promise<Subscription> {
    return this.notifications.listen(targets, handler, options);
  }

  /** The bound address, once a server or listener started ("host:port"). */
  address(): Promise<string | undefined> {
    return this.server.address();
  }

  /** Counters for tests, benchmarks and `hybridbus` status: stats().extra, the client's, and the server's (dedup). */
  async counters(): Promise<Record<string, number>> {
    return { ...this.client.stats, ...this.stats().extra, ...(await this.server.counters()) };
  }

  stats(): DriverStats {
    const c = this.client.stats;
    const out = this.outbound;
    const ib = this.server.inboundStats;
    return {
      connections: out?.connected ?? 0,
      pendingCalls: c.pendingCalls,
      queued: out?.queued ?? 0,
      unacked: c.pendingAcks,
      // Acked sends sent again, and messages that went to another host after one failed.
      retried: c.retries + this.routing.stats.failovers,
      reconnects: out?.stats.reconnects ?? 0,
      dropped: (ib ? ib.dropped + ib.handshakeFailures : 0) + c.malformedAnswers + (out?.stats.badFrames ?? 0) + (this.multicast?.dropped ?? 0),
      extra: {
        peers: out?.size ?? 0,
        ...(out?.stats ?? {}),
        failovers: this.routing.stats.failovers,
        malformedAnswers: c.malformedAnswers,
        ...this.notifications.stats,
        ...(ib ?? {}),
        ...this.multicast?.counters(),
      },
    };
  }

  /**
   * Down once closed; degraded while the name service is unreachable (lookups answer from its
   * cache) or sends to some peer failed lately (until a handshake with it, or ns_ttl).
   */
  health(): TransportHealth {
    if (this.closed) return { state: 'down', reason: 'closed' };
    const ns = this.nameService.unreachable;
    if (ns !== undefined) return { state: 'degraded', reason: ns };
    const peer = this.outbound?.trouble(this.options.nsTtl);
    if (peer !== undefined) return { state: 'degraded', reason: peer };
    return { state: 'connected' };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.nameService.close().catch((err: unknown) => this.context.logger.warn({ err }, 'zmq-direct: name service close failed'));
    await this.client.close(new TransportClosed(`zmq transport "${this.context.name}" closed`));
    await this.outbound?.close(CLOSE_LINGER_MS);
    await this.server.close();
    await this.multicast?.close();
  }
}
