/**
 * amqp:// — oslo.messaging's amqp1 driver on the wire (docs/wire.md, "amqp1"), through a
 * broker, through a router network, or directly peer to peer. This facade picks the carrier
 * (one connection to the intermediary, or the name service and a connection per server),
 * wires the parts and is the driver contract's face. A message's path: client.ts /
 * notifications.ts → carrier.ts → peer.ts → outbox.ts → (wire) → inbound.ts (an
 * intermediary's link, or listener.ts in direct mode) → server.ts / notifications.ts → handler.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { TransportClosed, type Target } from '@hybridbus/core';
import type {
  Driver,
  DriverCallOptions,
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
import { exchangeOf, serverKey } from '@hybridbus/core/driver';
import { createNameService, type HostRecord, type NameService } from '@hybridbus/nameservice';
import rhea from 'rhea';
import type { ConnectionOptions, Container } from 'rhea';
import { addressingFor, makeAddresser, type Addresser } from './addressing.js';
import { Direct, Intermediary, type Carrier } from './carrier.js';
import { Amqp1Client } from './client.js';
import type { Amqp1Kind, Env } from './env.js';
import { DirectListener, PRODUCT } from './listener.js';
import { Amqp1Notifications } from './notifications.js';
import type { Amqp1Host, Amqp1Options } from './options.js';
import { Peer, type PeerCounts } from './peer.js';
import { Amqp1Server } from './server.js';
import { SharedRegistrations } from './registrations.js';

/** What each kind of carrier can do: declared, never pretended (README, "amqp1"). */
export const AMQP1_CAPABILITIES: Readonly<Record<Amqp1Kind, DriverCapabilities>> = {
  // A queue broker: `accepted` on enqueue, no multicast, released messages not redelivered.
  broker: { durable: false, brokerless: false, pools: false, requeue: false, callMonitor: true, broadcast: false },
  // RabbitMQ's plugin: fanout through amq.topic, released messages requeued.
  rabbitmq: { durable: false, brokerless: false, pools: false, requeue: true, callMonitor: true, broadcast: true },
  // A router network: multicast addresses, end-to-end outcomes (a release reaches the sender, which resends).
  router: { durable: false, brokerless: false, pools: false, requeue: true, callMonitor: true, broadcast: true },
  direct: { durable: false, brokerless: true, pools: true, requeue: true, callMonitor: true, broadcast: true },
};

/** What the peer's `product` says it is. */
function kindOf(product: unknown): Amqp1Kind {
  if (product === 'qpid-dispatch-router' || product === 'skupper-router') return 'router';
  if (product === 'RabbitMQ') return 'rabbitmq';
  return 'broker';
}

export class Amqp1Driver implements Driver {
  private readonly container: Container;
  /** Protected, with listenerStarting: a test double destroys their sockets to play a crashed process. */
  protected readonly carrier: Carrier;
  private readonly peer: Peer | undefined;
  private readonly ns: NameService | undefined;
  protected listenerStarting: Promise<DirectListener> | undefined;
  private readonly client: Amqp1Client;
  private readonly server: Amqp1Server;
  private readonly notifications: Amqp1Notifications;
  private readonly env: Env;
  private readonly addressers = new Map<string, Addresser>();
  private readonly containerId: string;
  private closed = false;
  /** Totals over every connection this driver made (direct peers come and go). */
  private readonly counts: PeerCounts = { resends: 0, reconnects: 0 };

  constructor(
    readonly options: Amqp1Options,
    private readonly context: DriverContext,
  ) {
    this.containerId = options.containerName ?? `hybridbus-${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.container = rhea.create_container({ id: this.containerId });
    const { logger, name, controlExchange } = context;
    const direct = options.mode === 'direct';
    const transport = { transport: name, scheme: options.scheme ?? 'amqp' };
    if (direct) {
      this.ns = createNameService(options.matchmaker, { ttlMs: options.nsTtlMs, cacheMs: options.nsCacheMs, logger });
      this.carrier = new Direct({
        container: this.container,
        nameService: this.ns,
        logger,
        connect: (record) => this.connectOptions(hostOf(record)),
        replyCredit: options.replyLinkCredit,
        counts: this.counts,
        transport,
      });
    } else {
      const hosts = options.hosts;
      const label = hosts.map((h) => `${h.host}:${h.port}`).join(',');
      const replyTag = randomBytes(16).toString('hex');
      this.peer = new Peer(this.container, {
        label,
        address: label,
        logger,
        connect: (attempt) => this.connectOptions(hosts[attempt % hosts.length] as Amqp1Host),
        reconnect: { initialMs: options.retryIntervalMs, maxMs: options.retryIntervalMaxMs },
        // RabbitMQ's plugin has no dynamic sources: a private queue bound to amq.topic instead.
        replySource: () => (this.kind() === 'rabbitmq' ? { address: `/topic/reply.${replyTag}` } : { dynamic: true }),
        replyCredit: options.replyLinkCredit,
        counts: this.counts,
        transport,
      });
      this.carrier = new Intermediary(this.peer);
    }
    const self = this;
    const keyOf = (t: Target, k: string): string => `amqp1:${exchangeOf(t, controlExchange)}/${k}`;
    this.env = {
      options,
      logger,
      name,
      controlExchange,
      carrier: this.carrier,
      direct,
      listener: () => this.listener(),
      kind: () => this.kind(),
      closed: () => this.closed,
      capabilities: () => this.capabilities,
      addresser: (peer) => this.addresserFor(addressingFor(options, peer.remoteProperties['product'])),
      addressers: () =>
        options.addressingMode === 'dynamic' ? [this.addresserFor('legacy'), this.addresserFor('routable')] : [this.addresserFor(options.addressingMode)],
      nameService: () => self.ns as NameService,
      registrations: new SharedRegistrations(() => self.ns as NameService),
      fanoutAddress: (peer, t) => {
        const a = this.env.addresser(peer).fanout(t);
        return this.kind() === 'rabbitmq' ? `/topic/${a}` : a;
      },
      rpcKey: (t) => keyOf(t, serverKey(t)),
      groupKey: (t) => keyOf(t, t.topic as string),
      notifyKey: (t) => `amqp1:notify:${exchangeOf(t, controlExchange)}/${t.topic}`,
    };
    this.client = new Amqp1Client(this.env);
    this.server = new Amqp1Server(this.env);
    this.notifications = new Amqp1Notifications(this.env);
  }

  /** Resolves after the first connection attempt to the intermediary (it keeps trying after a failure). */
  async started(): Promise<void> {
    const peer = this.peer;
    if (!peer) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        offUp();
        offDown();
        resolve();
      };
      const offUp = peer.onUp(done);
      const offDown = peer.onDown(done);
      if (peer.isUp) done();
    });
  }

  /** The carrier: the configured mode, or in `auto` what the intermediary announced. */
  kind(): Amqp1Kind {
    const mode = this.options.mode;
    if (mode !== 'auto') return mode;
    return kindOf(this.peer?.remoteProperties['product']);
  }

  get capabilities(): DriverCapabilities {
    return AMQP1_CAPABILITIES[this.kind()];
  }

  get connected(): boolean {
    return this.peer ? this.peer.isUp : !this.closed;
  }

  /** Direct mode: the name service servers register in (for `hybridbus nameservice ls`). */
  get nameService(): NameService | undefined {
    return this.ns;
  }

  get counters(): Record<string, number> {
    return {
      callsInFlight: this.client.inFlight,
      ...this.server.counters,
      notificationsMalformed: this.notifications.malformed,
    };
  }

  private addresserFor(kind: 'legacy' | 'routable'): Addresser {
    let a = this.addressers.get(kind);
    if (!a) this.addressers.set(kind, (a = makeAddresser(kind, this.options, this.context.controlExchange)));
    return a;
  }

  private listener(): Promise<DirectListener> {
    this.listenerStarting ??= DirectListener.start(this.options, this.context.logger, this.containerId);
    return this.listenerStarting;
  }

  private connectOptions(h: Amqp1Host): ConnectionOptions {
    const o = this.options;
    const sasl = rhea.sasl.client_mechanisms();
    let explicitSasl = false;
    for (const m of o.saslMechanisms) {
      if (m === 'PLAIN' && o.username !== undefined) {
        sasl.enable_plain(o.username, o.password ?? '');
        explicitSasl = true;
      } else if (m === 'ANONYMOUS' && (o.username !== undefined || o.saslMechanisms.length > 1)) {
        // Offered beside PLAIN: servers built on Debian's Proton offer only ANONYMOUS.
        sasl.enable_anonymous(o.username ?? 'anonymous');
        explicitSasl = true;
      } else if (m === 'EXTERNAL') {
        sasl.enable_external();
        explicitSasl = true;
      }
    }
    if (o.mode === 'direct' && !explicitSasl) {
      // Our listeners take SASL or none; with SASL, one that wants credentials says so (AuthenticationFailed) instead of hanging up.
      sasl.enable_anonymous('anonymous');
      explicitSasl = true;
    }
    const tls = o.tls;
    return {
      host: h.host,
      port: h.port,
      container_id: this.containerId,
      idle_time_out: o.idleTimeoutMs || undefined,
      properties: { product: PRODUCT },
      ...(explicitSasl ? { sasl_mechanisms: sasl } : {}),
      ...(tls ? { transport: 'tls', ca: tls.ca, cert: tls.cert, key: tls.key, passphrase: tls.passphrase, servername: tls.servername, rejectUnauthorized: true } : { transport: 'tcp' }),
      tcp_no_delay: true,
    } as unknown as ConnectionOptions;
  }

  private checkOpen(): void {
    if (this.closed) throw new TransportClosed(`amqp1 transport "${this.context.name}" is closed`);
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

  async listen(target: Target, handler: (msg: IncomingRpc) => Promise<void> | void, _options: ListenOptions): Promise<Subscription> {
    this.checkOpen();
    return this.server.listen(target, handler);
  }

  async notify(target: Target, notification: Notification, options: SendOptions): Promise<void> {
    this.checkOpen();
    return this.notifications.notify(target, notification, options);
  }

  async listenForNotifications(
    targets: readonly Target[],
    handler: (msg: IncomingNotification) => Promise<void> | void,
    options: NotificationListenOptions,
  ): Promise<Subscription> {
    this.checkOpen();
    return this.notifications.listen(targets, handler, options);
  }

  stats(): DriverStats {
    // Summed over the links at each read (O(links)) rather than kept per message.
    const out = { queued: 0, unacked: 0 };
    if (!this.closed) this.carrier.addOutstanding(out);
    const malformed = this.notifications.malformed + this.server.counters.malformed + this.client.malformed;
    return {
      connections: this.closed ? 0 : this.carrier.connections,
      pendingCalls: this.client.inFlight,
      queued: out.queued,
      unacked: out.unacked,
      retried: this.counts.resends,
      reconnects: this.counts.reconnects,
      dropped: malformed,
      extra: {
        ...this.server.counters,
        notificationsMalformed: this.notifications.malformed,
        repliesMalformed: this.client.malformed,
      },
    };
  }

  /**
   * Through an intermediary: connected while its connection is up, down (with why) while it is
   * re-made. Direct: degraded while the name service is unreachable or sends to a server failed
   * lately (as zmq://), else connected.
   */
  health(): TransportHealth {
    if (this.closed) return { state: 'down', reason: 'closed' };
    const peer = this.peer;
    if (peer) return peer.isUp ? { state: 'connected' } : { state: 'down', reason: peer.downReason };
    const ns = this.ns?.unreachable;
    if (ns !== undefined) return { state: 'degraded', reason: ns };
    const trouble = this.carrier instanceof Direct ? this.carrier.trouble(this.options.nsTtlMs) : undefined;
    if (trouble !== undefined) return { state: 'degraded', reason: trouble };
    return { state: 'connected' };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    this.carrier.close();
    if (this.listenerStarting) await (await this.listenerStarting.catch(() => undefined))?.close();
    await this.ns?.close().catch((e: unknown) => this.context.logger.warn({}, `amqp1 "${this.context.name}": name service close failed: ${(e as Error).message}`));
  }
}

function hostOf(record: HostRecord): Amqp1Host {
  const i = record.address.lastIndexOf(':');
  return { host: record.address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(record.address.slice(i + 1)) };
}
