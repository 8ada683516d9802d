/**
 * The bus and its pattern router: named transports, a pattern → transport map, per-topic
 * overrides. The router only selects a driver; it never touches messages.
 */
import { loadConfig, type ConfigInput, type HybridbusConfig, type LoadConfigOptions } from './config.js';
import type { TransportRef } from './diagnostics.js';
import { createDriver, PATTERNS, schemeOf, type Driver, type DriverStats, type HealthState, type Pattern, type TransportHealth } from './driver.js';
import type { BusRuntime } from './runtime.js';
import { TransportClosed } from './errors.js';
import { defaultLogger, type Logger } from './logger.js';
import { NotificationListener, BatchNotificationListener, type BatchNotificationEndpoint, type BatchOptions, type NotificationEndpoint, type NotificationListenerOptions } from './notify/listener.js';
import { Notifier, type NotifierOptions } from './notify/notifier.js';
import { RpcClient, type RpcClientOptions } from './rpc/client.js';
import { RpcServer, type RpcServerOptions } from './rpc/server.js';
import { jsonSerializer, type Serializer } from './serializer.js';
import type { TargetFields } from './target.js';

export interface BusOptions {
  readonly logger?: Logger | undefined;
  readonly serializer?: Serializer | undefined;
}

/** Each transport's health and the worst of them (`down` beats `degraded` beats `connected`). */
export interface BusHealth {
  readonly state: HealthState;
  readonly transports: Readonly<Record<string, TransportHealth & TransportRef>>;
}

const SEVERITY: Record<HealthState, number> = { connected: 0, degraded: 1, down: 2 };

export class Bus {
  private closed = false;
  private readonly runtime: BusRuntime;
  private readonly refs = new Map<Driver, TransportRef>();

  private constructor(
    readonly config: HybridbusConfig,
    private readonly drivers: ReadonlyMap<string, Driver>,
    logger: Logger,
    serializer: Serializer,
  ) {
    for (const [name, d] of drivers) this.refs.set(d, { transport: name, scheme: schemeOf(config.transports[name] as string) });
    const transportFor = (topic: string, pattern: Pattern): Driver => {
      if (this.closed) throw new TransportClosed('the bus is closed');
      return this.transport(this.route(topic, pattern));
    };
    this.runtime = {
      transportFor,
      transportsFor: (topic, patterns) => {
        const out = new Map<Driver, Set<Pattern>>();
        for (const p of patterns) {
          const d = transportFor(topic, p);
          out.set(d, (out.get(d) ?? new Set()).add(p));
        }
        return out;
      },
      refOf: (d) => this.refs.get(d) ?? { transport: 'unknown', scheme: 'unknown' },
      bus: this,
      serializer,
      logger,
      controlExchange: config.controlExchange,
      rpc: config.rpc,
      notifications: config.notifications,
    };
  }

  /** A bus from a config object (validated like a file), or the embedded default with none. */
  static async create(config: ConfigInput | HybridbusConfig = {}, options: BusOptions = {}): Promise<Bus> {
    return Bus.fromLoaded(loadConfig({ overrides: config as ConfigInput, env: {} }), options);
  }

  /** A bus from a JSON/YAML file, HYBRIDBUS_* environment variables and overrides. */
  static async fromConfig(file?: string | LoadConfigOptions, options: BusOptions = {}): Promise<Bus> {
    return Bus.fromLoaded(loadConfig(typeof file === 'string' || file === undefined ? { file } : file), options);
  }

  private static async fromLoaded(config: HybridbusConfig, options: BusOptions): Promise<Bus> {
    const logger = options.logger ?? defaultLogger(config.log.level);
    const used = new Set<string>([...PATTERNS.map((p) => config.patterns[p]), ...Object.values(config.topics).flatMap((m) => Object.values(m))]);
    const drivers = new Map<string, Driver>();
    try {
      for (const name of used) {
        const url = config.transports[name] as string;
        drivers.set(name, await createDriver(url, { logger: logger.child({ transport: name }), name, controlExchange: config.controlExchange }));
      }
    } catch (e) {
      await Promise.allSettled([...drivers.values()].map((d) => d.close()));
      throw e;
    }
    return new Bus(config, drivers, logger, options.serializer ?? jsonSerializer);
  }

  /** The name of the transport that carries `pattern` for `topic`. */
  route(topic: string, pattern: Pattern): string {
    return this.config.topics[topic]?.[pattern] ?? this.config.patterns[pattern];
  }

  /** A transport by name (only those some pattern routes to are created). */
  transport(name: string): Driver {
    const d = this.drivers.get(name);
    if (!d) throw new TransportClosed(`transport "${name}" is not in use by any pattern`);
    return d;
  }

  /** Clients, servers and listeners are made only by an open bus: after close() they could never work. */
  private open(what: string): BusRuntime {
    if (this.closed) throw new TransportClosed(`the bus is closed: ${what}() needs an open bus (Bus.create or Bus.fromConfig)`);
    return this.runtime;
  }

  rpcClient(target: TargetFields, options?: RpcClientOptions): RpcClient {
    return new RpcClient(this.open('rpcClient'), target, options);
  }

  rpcServer(target: TargetFields, endpoints: readonly object[], options?: RpcServerOptions): RpcServer {
    return new RpcServer(this.open('rpcServer'), target, endpoints, options);
  }

  notifier(options: NotifierOptions): Notifier {
    return new Notifier(this.open('notifier'), options);
  }

  notificationListener(targets: readonly TargetFields[], endpoints: readonly NotificationEndpoint[], options: NotificationListenerOptions = {}): NotificationListener {
    return new NotificationListener(this.open('notificationListener'), targets, endpoints, options);
  }

  batchNotificationListener(targets: readonly TargetFields[], endpoints: readonly BatchNotificationEndpoint[], options: BatchOptions): BatchNotificationListener {
    return new BatchNotificationListener(this.open('batchNotificationListener'), targets, endpoints, options);
  }

  /** Each transport in use: whether it can carry messages now, and if not why (for probes: `/healthz`). */
  health(): BusHealth {
    const transports: Record<string, TransportHealth & TransportRef> = {};
    let worst: HealthState = 'connected';
    for (const [d, ref] of this.refs) {
      const h: TransportHealth = this.closed ? { state: 'down', reason: 'the bus is closed' } : d.health();
      transports[ref.transport] = { ...ref, ...h };
      if (SEVERITY[h.state] > SEVERITY[worst]) worst = h.state;
    }
    return { state: worst, transports };
  }

  /** Each transport's figures, under the same names for every driver (metrics read these). */
  stats(): Readonly<Record<string, DriverStats & TransportRef>> {
    const out: Record<string, DriverStats & TransportRef> = {};
    for (const [d, ref] of this.refs) out[ref.transport] = { ...ref, ...d.stats() };
    return out;
  }

  /** Close every transport. Stop servers and listeners first to let them drain. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.drivers.values()].map((d) => d.close()));
  }
}
