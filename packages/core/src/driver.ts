/**
 * The driver contract: the one interface every backend implements completely (all four
 * patterns), after oslo.messaging's BaseDriver. Core does everything that is the same across
 * backends (targets, dispatch, versions, policy, errors, timeouts, serialization); a driver
 * moves messages and reports delivery. Drivers register themselves by URL scheme.
 */
import type { Logger } from './logger.js';
import type { Notification, Priority, RpcReply, RpcRequest } from './message.js';
import type { Target } from './target.js';
import { UnknownTransport } from './errors.js';

export type Pattern = 'call' | 'cast' | 'fanout' | 'notify';
export const PATTERNS: readonly Pattern[] = ['call', 'cast', 'fanout', 'notify'];

/** Declared, not guessed: the conformance suite skips a case only by one of these. */
export interface DriverCapabilities {
  /** Messages survive the restart of whatever carries them (a broker with durable queues). */
  readonly durable: boolean;
  /** Needs no broker between peers. */
  readonly brokerless: boolean;
  /** Notification listener pools: one member of each pool gets each notification. */
  readonly pools: boolean;
  /** A notification listener can hand a message back for redelivery. */
  readonly requeue: boolean;
  /** Servers send heartbeats during long calls; clients see them. */
  readonly callMonitor: boolean;
  /**
   * A fanout reaches every server of the topic. A queue-only broker cannot fan out, and its
   * driver's fanout() fails with UnsupportedFeature instead of reaching one server.
   */
  readonly broadcast: boolean;
}

/**
 * What a driver reports about itself, under the same names for every driver (metrics export
 * these). Gauges are "now"; the others count since the driver was made.
 */
export interface DriverStats {
  /** Connections open now (to servers, brokers or peers). */
  readonly connections: number;
  /** Calls sent and waiting for their reply. */
  readonly pendingCalls: number;
  /** Messages waiting in this process to be written (for a connection, credit or a free slot). */
  readonly queued: number;
  /** Messages written and waiting for their ack, confirm or settlement. */
  readonly unacked: number;
  /** Since start: messages sent again (after a lost connection, a nack, a missing ack). */
  readonly retried: number;
  /** Since start: connections made again after one was lost. */
  readonly reconnects: number;
  /** Since start: frames or messages that could not be decoded or authenticated and were dropped. */
  readonly dropped: number;
  /** Driver-specific figures, for operators who know the driver. */
  readonly extra?: Readonly<Record<string, number>> | undefined;
}

/** `connected`: working; `degraded`: working with a fault (a name service unreachable, a peer lost); `down`: cannot send. */
export type HealthState = 'connected' | 'degraded' | 'down';

export interface TransportHealth {
  readonly state: HealthState;
  /** Why it is not `connected` (never contains credentials). */
  readonly reason?: string | undefined;
}

export interface DriverCallOptions {
  /** The overall timeout in ms, for drivers that put it on the wire (message TTL). */
  readonly timeoutMs: number;
  /** When set, the server should heartbeat at least this often (ms). */
  readonly callMonitorTimeoutMs?: number | undefined;
  /**
   * Fired by core on timeout, heartbeat loss or the caller's abort: reject with its reason and
   * clean up. Core never fires it once the call has settled.
   */
  readonly cancel: CallCancel;
  /** The driver calls this for every heartbeat (`ending: false`) of this call. */
  readonly onHeartbeat: () => void;
  /** Connection retries: -1 forever (until the signal), 0 none, n at most n. */
  readonly retry?: number | undefined;
}

/**
 * Cancels one call, or one send that is no longer needed. An AbortSignal would do, but building
 * one (an EventTarget) per call was about a sixth of a zmq client's CPU; this holds a single
 * handler and costs nothing until fired, and builds its `signal` only for code that asks.
 */
export class CallCancel {
  private handler: ((reason: Error) => void) | undefined;
  private controller: AbortController | undefined;
  /** Why it was cancelled, once it has been. */
  reason: Error | undefined;

  /** Set the handler (replacing any earlier one); it runs at once if already cancelled. */
  onCancel(handler: (reason: Error) => void): void {
    if (this.reason) handler(this.reason);
    else this.handler = handler;
  }

  /** An AbortSignal that aborts with the reason (made on first use: for APIs that take one). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Cancel (the first reason wins) and run the handler. */
  cancel(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    const h = this.handler;
    this.handler = undefined;
    this.controller?.abort(reason);
    h?.(reason);
  }
}

export interface SendOptions {
  readonly signal?: AbortSignal | undefined;
  readonly retry?: number | undefined;
}

/** A request delivered to a server. */
export interface IncomingRpc {
  readonly pattern: 'call' | 'cast' | 'fanout';
  readonly request: RpcRequest;
  /** From the caller: heartbeat at half this interval while the call runs. */
  readonly callMonitorTimeoutMs?: number | undefined;
  /** Send the final reply of a call (no-op for casts). */
  reply(reply: Omit<RpcReply, 'ending'>): Promise<void>;
  /** Send a call-monitor heartbeat (no-op for casts). */
  heartbeat(): Promise<void>;
}

export interface IncomingNotification {
  readonly notification: Notification;
  /**
   * The target topic it was sent to (one of those the listener asked for). Drivers set it, so a
   * listener of several topics, and its traces and metrics, can tell where each came from.
   */
  readonly topic?: string | undefined;
  /** It may have been delivered before (a redelivery after a failure): endpoints should be idempotent. */
  readonly redelivered?: boolean;
  /** Done with it: never deliver it again. */
  ack(): Promise<void>;
  /** Give it back for redelivery (only when `capabilities.requeue`). */
  requeue(): Promise<void>;
}

/** A running consumer. `stop()` stops new deliveries; replies to delivered ones still go out. */
export interface Subscription {
  stop(): Promise<void>;
}

export interface ListenOptions {
  /** The patterns the router sends this transport for the server's topic (a hint for setup). */
  readonly patterns: ReadonlySet<'call' | 'cast' | 'fanout'>;
}

export interface NotificationListenOptions {
  /** Listener pool name: each pool gets a copy, one member of the pool handles it. */
  readonly pool?: string | undefined;
  /** The priorities the endpoints handle (drivers bind only these). */
  readonly priorities: readonly Priority[];
}

export interface Driver {
  readonly capabilities: DriverCapabilities;
  /** Send a request and resolve with the final reply; reject with the cancel's reason once cancelled. */
  call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply>;
  /** One-way to one server of the topic (or `target.server`). */
  cast(target: Target, request: RpcRequest, options: SendOptions): Promise<void>;
  /** One-way to every server of the topic. */
  fanout(target: Target, request: RpcRequest, options: SendOptions): Promise<void>;
  /** Publish a notification on `target.topic` at its priority. */
  notify(target: Target, notification: Notification, options: SendOptions): Promise<void>;
  /**
   * Consume requests for `target` (topic, topic.server and fanout). The handler returns the
   * promise of the message's processing (it never rejects), so a driver can stop reading
   * while too many are unfinished and let its transport push back on senders.
   */
  listen(target: Target, handler: (msg: IncomingRpc) => Promise<void> | void, options: ListenOptions): Promise<Subscription>;
  /** Consume notifications of the targets' topics at the given priorities (handler: as listen's). */
  listenForNotifications(
    targets: readonly Target[],
    handler: (msg: IncomingNotification) => Promise<void> | void,
    options: NotificationListenOptions,
  ): Promise<Subscription>;
  /** A snapshot of the driver's figures (cheap: metrics read it at every scrape). */
  stats(): DriverStats;
  /** Whether it can carry messages now, and if not why. */
  health(): TransportHealth;
  /** Release every connection; pending calls reject with TransportClosed. */
  close(): Promise<void>;
}

export interface DriverContext {
  readonly logger: Logger;
  /** The transport's name in the config, for logs and metrics. */
  readonly name: string;
  /** The default exchange for targets without one. */
  readonly controlExchange: string;
}

export interface DriverFactory {
  readonly schemes: readonly string[];
  create(url: URL, context: DriverContext): Driver | Promise<Driver>;
  /**
   * Check a URL's driver options at config load, before anything connects: throw a ConfigError
   * naming the option, the value and the expected form.
   */
  checkUrl?(url: URL): void;
  /** A URL that works with no server and no option: offered as the embedded default transport. */
  readonly defaultUrl?: string;
}

const registry = new Map<string, DriverFactory>();

/** Driver packages call this on import: `import '@hybridbus/zmq-direct'` makes `zmq://` work. */
export function registerDriver(factory: DriverFactory): void {
  for (const scheme of factory.schemes) registry.set(scheme, factory);
}

export function registeredSchemes(): string[] {
  return [...registry.keys()];
}

/** The driver registered for a scheme ("zmq", without the colon). */
export function driverFor(scheme: string): DriverFactory | undefined {
  return registry.get(scheme);
}

/** The embedded default transport: the first registered driver that offers one. */
export function defaultTransportUrl(): string | undefined {
  for (const f of registry.values()) if (f.defaultUrl !== undefined) return f.defaultUrl;
  return undefined;
}

export function schemeOf(url: string | URL): string {
  return (typeof url === 'string' ? new URL(url) : url).protocol.replace(/:$/, '');
}

export async function createDriver(url: string | URL, context: DriverContext): Promise<Driver> {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  const factory = registry.get(schemeOf(parsed));
  if (!factory) {
    throw new UnknownTransport(
      `transport "${context.name}": no driver registered for scheme "${schemeOf(parsed)}:" ` +
        `(registered: ${registeredSchemes().join(', ') || 'none'}); import its package, e.g. "@hybridbus/zmq-direct"`,
    );
  }
  return factory.create(parsed, context);
}
