/**
 * Prometheus metrics for a bus (prom-client), from core's diagnostics channels and, at scrape
 * time, from `bus.stats()` and `bus.health()`. Every metric and label is listed in README.md.
 *
 * Bus identity: the channels are process-wide; each message event names its bus, so only the
 * messages of registered buses are counted, each under its `bus` label (option `busName`,
 * default "default"; two buses registered into one registry need different names). The metrics
 * are created once per registry and prefix, however many buses register there. Transport events
 * come from the drivers, which do not know their bus: `transport_events_total` counts every bus
 * of the process, by transport name (`reconnects_total` has the per-bus figure).
 */
import diagnostics from 'node:diagnostics_channel';
import { channels, type Bus, type DriverStats, type HealthState, type NotifyDispatchEvent, type NotifySendEvent, type RpcDispatchEvent, type RpcSendEvent, type TransportEvent } from '@hybridbus/core';
import { Counter, Gauge, Histogram, register as globalRegistry, type Registry, type RegistryContentType } from 'prom-client';

/** A prom-client registry of either exposition format. */
export type MetricsRegistry = Registry<RegistryContentType>;

export interface MetricsOptions {
  /** Where the metrics go (default: prom-client's global `register`). */
  readonly registry?: MetricsRegistry | undefined;
  /** Prefix of every metric name (default "hybridbus_"). */
  readonly prefix?: string | undefined;
  /** Histogram buckets in seconds for call latency and dispatch duration (default DEFAULT_BUCKETS). */
  readonly buckets?: readonly number[] | undefined;
  /** The `bus` label of this bus's scrape-time metrics (default "default"); unique per registry. */
  readonly busName?: string | undefined;
}

/** 0.5 ms to 60 s (the default rpc.timeout): a local zmq call lands low, a call over a busy broker high. */
export const DEFAULT_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The `outcome` of a failed send: the error's class when it is one of these (hybridbus's own
 * errors, so the label's values stay a known, small set), else "error".
 */
export const ERROR_OUTCOMES: ReadonlySet<string> = new Set([
  'MessagingTimeout',
  'CallMonitorTimeout',
  'CallAborted',
  'RemoteError',
  'NoSuchMethod',
  'UnsupportedVersion',
  'VersionCapError',
  'InvalidTarget',
  'MessageDeliveryFailure',
  'MessageUndeliverable',
  'QueueFull',
  'MessageTooLarge',
  'MalformedMessage',
  'ConnectionLost',
  'AuthenticationFailed',
  'TransportClosed',
  'UnsupportedFeature',
]);

function errorOutcome(err: Error | undefined): string {
  return err !== undefined && ERROR_OUTCOMES.has(err.name) ? err.name : 'error';
}

/** Every metric's name, without the prefix (README.md describes each). */
export const METRIC_NAMES = [
  'messages_sent_total',
  'messages_handled_total',
  'call_duration_seconds',
  'dispatch_duration_seconds',
  'calls_in_flight',
  'transport_events_total',
  'connections',
  'pending_calls',
  'queued_messages',
  'unacked_messages',
  'retried_messages_total',
  'reconnects_total',
  'dropped_frames_total',
  'transport_extra',
  'transport_up',
  'transport_state',
] as const;
type MetricName = (typeof METRIC_NAMES)[number];

const HEALTH_STATES: readonly HealthState[] = ['connected', 'degraded', 'down'];

type SendEvent = RpcSendEvent | NotifySendEvent;
type HandleEvent = RpcDispatchEvent | NotifyDispatchEvent;

interface Count {
  n: number;
}
type RowLabels = { readonly bus: string; readonly transport: string; readonly pattern: string; readonly outcome: string };
/**
 * A row of counts, with its label sets made once: prom-client's observe() keeps no label set of
 * its own, so a fresh object per message was an allocation per call on each side.
 */
interface Row extends Count {
  readonly labels: RowLabels;
  /** The call-latency histogram's labels (no pattern), made on first use. */
  callLabels?: { readonly bus: string; readonly transport: string; readonly outcome: string };
}
/** Counts by bus, transport, pattern and outcome: nested maps, so counting a message builds no key. */
type Tallies = Map<string, Map<string, Map<string, Map<string, Row>>>>;

function countOf(t: Tallies, bus: string, transport: string, pattern: string, outcome: string): Row {
  let byTransport = t.get(bus);
  if (byTransport === undefined) t.set(bus, (byTransport = new Map()));
  let byPattern = byTransport.get(transport);
  if (byPattern === undefined) byTransport.set(transport, (byPattern = new Map()));
  let byOutcome = byPattern.get(pattern);
  if (byOutcome === undefined) byPattern.set(pattern, (byOutcome = new Map()));
  let n = byOutcome.get(outcome);
  if (n === undefined) byOutcome.set(outcome, (n = { n: 0, labels: { bus, transport, pattern, outcome } }));
  return n;
}

/** The metrics of one registry and prefix, shared by every bus registered there. */
class Shared {
  readonly buses = new Map<string, Bus>();
  /** The other way round: a message event's bus → its name here. */
  private readonly names = new Map<Bus, string>();
  private readonly unsubscribe: Array<() => void> = [];
  /** Per-message counts since registration, read by the counters at scrape time. */
  private readonly sentCounts: Tallies = new Map();
  private readonly handledCounts: Tallies = new Map();
  /** Calls started and not settled, by bus and transport. */
  private readonly inFlight = new Map<string, Map<string, Count>>();

  constructor(
    readonly registry: MetricsRegistry,
    readonly prefix: string,
    readonly buckets: readonly number[],
  ) {
    const registers = [registry];
    const name = (n: MetricName): string => prefix + n;
    const buses = this.buses;
    // Scrape-time metrics: one row per (bus, transport); each collect() resets first, so the
    // rows of an unregistered bus or a transport no longer in use go away.
    const eachTransport = (fill: (bus: string, transport: string, stats: DriverStats) => void): void => {
      for (const [busName, bus] of buses) for (const [transport, s] of Object.entries(bus.stats())) fill(busName, transport, s);
    };

    // Per-message figures are kept in plain counters here and handed to prom-client at scrape
    // time: its inc()/observe() hash the label set on every call (~0.5–0.9 µs each, four per call
    // on the client), which was most of what metrics cost a busy zmq:// client. Only the two
    // histograms are updated per message, as prom-client offers no other way to fill one.
    const sentCounts = this.sentCounts;
    const handledCounts = this.handledCounts;
    const inFlightCounts = this.inFlight;
    const names = this.names;
    const tally = (counts: Tallies, into: Counter<'bus' | 'transport' | 'pattern' | 'outcome'>): void => {
      for (const byTransport of counts.values()) {
        for (const byPattern of byTransport.values()) for (const byOutcome of byPattern.values()) for (const row of byOutcome.values()) into.inc(row.labels, row.n);
      }
    };
    new Counter({
      name: name('messages_sent_total'),
      help: 'Messages sent by clients and notifiers (calls, casts, fanouts, notifications per topic), by outcome',
      labelNames: ['bus', 'transport', 'pattern', 'outcome'] as const,
      registers,
      collect() {
        this.reset();
        tally(sentCounts, this);
      },
    });
    new Counter({
      name: name('messages_handled_total'),
      help: 'Messages taken by RPC servers and notification listeners, by outcome',
      labelNames: ['bus', 'transport', 'pattern', 'outcome'] as const,
      registers,
      collect() {
        this.reset();
        tally(handledCounts, this);
      },
    });
    const callSeconds = new Histogram({ name: name('call_duration_seconds'), help: 'RPC call latency as the caller sees it, from send to reply or error', labelNames: ['bus', 'transport', 'outcome'] as const, buckets: [...buckets], registers });
    const dispatchSeconds = new Histogram({ name: name('dispatch_duration_seconds'), help: 'Time a server or listener spent on a message, from taking it to its reply, ack or requeue', labelNames: ['bus', 'transport', 'pattern', 'outcome'] as const, buckets: [...buckets], registers });
    new Gauge({
      name: name('calls_in_flight'),
      help: 'RPC calls sent and not yet settled',
      labelNames: ['bus', 'transport'] as const,
      registers,
      collect() {
        this.reset();
        for (const [bus, byTransport] of inFlightCounts) for (const [transport, n] of byTransport) this.set({ bus, transport }, n.n);
      },
    });
    const transportEvents = new Counter({ name: name('transport_events_total'), help: 'Connection changes reported by the drivers while metrics were registered', labelNames: ['transport', 'event'] as const, registers });

    const gauge = (n: MetricName, help: string, pick: (s: DriverStats) => number): void => {
      new Gauge({
        name: name(n),
        help,
        labelNames: ['bus', 'transport'] as const,
        registers,
        collect() {
          this.reset();
          eachTransport((bus, transport, s) => this.set({ bus, transport }, pick(s)));
        },
      });
    };
    // Totals the drivers keep since they started: counters, set from the driver's own figure.
    const total = (n: MetricName, help: string, pick: (s: DriverStats) => number): void => {
      new Counter({
        name: name(n),
        help,
        labelNames: ['bus', 'transport'] as const,
        registers,
        collect() {
          this.reset();
          eachTransport((bus, transport, s) => this.inc({ bus, transport }, pick(s)));
        },
      });
    };
    gauge('connections', 'Connections open now (to servers, brokers or peers)', (s) => s.connections);
    gauge('pending_calls', 'Calls sent and waiting for their reply, as the driver counts them', (s) => s.pendingCalls);
    gauge('queued_messages', 'Messages waiting in this process to be written (for a connection, credit or a free slot)', (s) => s.queued);
    gauge('unacked_messages', 'Messages written and waiting for their ack, confirm or settlement', (s) => s.unacked);
    total('retried_messages_total', 'Messages sent again (after a lost connection, a nack, a missing ack) since the transport started', (s) => s.retried);
    total('reconnects_total', 'Connections made again after one was lost, since the transport started', (s) => s.reconnects);
    total('dropped_frames_total', 'Frames or messages that could not be decoded or authenticated and were dropped, since the transport started', (s) => s.dropped);
    new Gauge({
      name: name('transport_extra'),
      help: "Driver-specific figures (DriverStats.extra), by the driver's own name for each",
      labelNames: ['bus', 'transport', 'figure'] as const,
      registers,
      collect() {
        this.reset();
        eachTransport((bus, transport, s) => {
          for (const [figure, v] of Object.entries(s.extra ?? {})) this.set({ bus, transport, figure }, v);
        });
      },
    });
    new Gauge({
      name: name('transport_up'),
      help: 'Whether the transport can carry messages: 1 when connected or degraded, 0 when down',
      labelNames: ['bus', 'transport', 'scheme'] as const,
      registers,
      collect() {
        this.reset();
        for (const [bus, b] of buses) for (const [transport, h] of Object.entries(b.health().transports)) this.set({ bus, transport, scheme: h.scheme }, h.state === 'down' ? 0 : 1);
      },
    });
    new Gauge({
      name: name('transport_state'),
      help: 'The transport health state: 1 for the current state (connected, degraded or down), 0 for the others',
      labelNames: ['bus', 'transport', 'state'] as const,
      registers,
      collect() {
        this.reset();
        for (const [bus, b] of buses) {
          for (const [transport, h] of Object.entries(b.health().transports)) for (const state of HEALTH_STATES) this.set({ bus, transport, state }, h.state === state ? 1 : 0);
        }
      },
    });

    const seconds = (e: { durationMs?: number }): number => (e.durationMs ?? 0) / 1000;
    // Marks the calls whose start this instance counted: only those leave the in-flight figure
    // (a property under a key of its own: a WeakSet entry per call was a GC cost).
    const COUNTED: unique symbol = Symbol('hybridbus metrics in flight');
    type Marked = { [COUNTED]?: Count | undefined };
    const onSent = (e: SendEvent): void => {
      const bus = names.get(e.bus);
      if (bus === undefined) return; // another bus of the process
      const outcome = e.error === undefined ? 'ok' : errorOutcome(e.error);
      const row = countOf(sentCounts, bus, e.transport, e.pattern, outcome);
      row.n++;
      if (e.pattern === 'call') {
        callSeconds.observe((row.callLabels ??= { bus, transport: e.transport, outcome }), seconds(e));
        const counted = (e as Marked)[COUNTED];
        if (counted !== undefined) {
          (e as Marked)[COUNTED] = undefined;
          counted.n--;
        }
      }
    };
    const onHandled = (e: HandleEvent): void => {
      const bus = names.get(e.bus);
      if (bus === undefined) return;
      // Core sets `outcome` before end/error; the fallback only covers a publisher that did not.
      const outcome = e.outcome ?? (e.error === undefined ? 'ok' : 'error');
      const row = countOf(handledCounts, bus, e.transport, e.pattern, outcome);
      row.n++;
      dispatchSeconds.observe(row.labels, seconds(e));
    };
    const onCallStart = (e: RpcSendEvent): void => {
      const bus = names.get(e.bus);
      if (bus === undefined) return;
      let byTransport = inFlightCounts.get(bus);
      if (byTransport === undefined) inFlightCounts.set(bus, (byTransport = new Map()));
      let n = byTransport.get(e.transport);
      if (n === undefined) byTransport.set(e.transport, (n = { n: 0 }));
      n.n++;
      (e as Marked)[COUNTED] = n;
    };
    const sub = <T>(channel: diagnostics.Channel<T>, fn: (e: T) => void): void => {
      const listener = (message: unknown): void => {
        try {
          fn(message as T);
        } catch {
          // diagnostics_channel rethrows a subscriber's error as an uncaught exception: a
          // malformed event from some publisher must cost a sample, not the process.
        }
      };
      channel.subscribe(listener);
      this.unsubscribe.push(() => channel.unsubscribe(listener));
    };
    sub(channels.call.start, onCallStart);
    for (const ch of [channels.call, channels.cast]) {
      sub(ch.end, onSent);
      sub(ch.error, onSent);
    }
    sub(channels.notify.end, onSent);
    sub(channels.notify.error, onSent);
    for (const ch of [channels.dispatch, channels.notifyDispatch]) {
      sub<HandleEvent>(ch.end, onHandled);
      sub<HandleEvent>(ch.error, onHandled);
    }
    for (const event of ['connect', 'disconnect', 'reconnect'] as const) {
      sub(channels.transport[event], (e: TransportEvent) => transportEvents.inc({ transport: e.transport, event }));
    }
  }

  /** The name `bus` is registered under here, if it is. */
  nameOf(bus: Bus): string | undefined {
    return this.names.get(bus);
  }

  add(name: string, bus: Bus): void {
    this.buses.set(name, bus);
    this.names.set(bus, name);
  }

  /** Forget a bus: its counts go (its histogram rows stay until the last bus leaves). */
  remove(name: string): void {
    const bus = this.buses.get(name);
    if (bus !== undefined) this.names.delete(bus);
    this.buses.delete(name);
    this.sentCounts.delete(name);
    this.handledCounts.delete(name);
    this.inFlight.delete(name);
  }

  dispose(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    for (const n of METRIC_NAMES) this.registry.removeSingleMetric(this.prefix + n);
  }
}

const shared = new WeakMap<MetricsRegistry, Map<string, Shared>>();

/**
 * Register the bus's metrics into `options.registry` (default prom-client's global one) and
 * start counting. Returns the function that stops: it forgets this bus, and when no bus is left
 * on that registry and prefix, unsubscribes from the channels and removes every metric.
 */
export function registerMetrics(bus: Bus, options: MetricsOptions = {}): () => void {
  const registry = options.registry ?? (globalRegistry as MetricsRegistry);
  const prefix = options.prefix ?? 'hybridbus_';
  const busName = options.busName ?? 'default';
  const buckets = options.buckets ?? DEFAULT_BUCKETS;
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix + 'x')) throw new TypeError(`registerMetrics prefix: must be a Prometheus metric name prefix such as "hybridbus_": value was ${JSON.stringify(prefix)}`);
  let byPrefix = shared.get(registry);
  if (!byPrefix) shared.set(registry, (byPrefix = new Map()));
  let s = byPrefix.get(prefix);
  if (s) {
    if (s.buses.has(busName)) throw new Error(`registerMetrics: a bus named "${busName}" is already registered in this registry with prefix "${prefix}"; give each bus its own busName`);
    const already = s.nameOf(bus);
    if (already !== undefined) throw new Error(`registerMetrics: this bus is already registered in this registry with prefix "${prefix}" as "${already}"`);
    if (s.buckets.join() !== buckets.join()) throw new Error(`registerMetrics buckets: the metrics with prefix "${prefix}" in this registry already use [${s.buckets.join(', ')}]: value was [${buckets.join(', ')}]`);
  } else {
    // Checked before creating any, so a clash leaves the registry as it was.
    const taken = METRIC_NAMES.map((n) => prefix + n).filter((n) => registry.getSingleMetric(n) !== undefined);
    if (taken.length > 0) throw new Error(`registerMetrics: ${taken.join(', ')} already registered in this registry by something else (another copy of @hybridbus/observability?); use another registry or prefix`);
    s = new Shared(registry, prefix, buckets);
    byPrefix.set(prefix, s);
  }
  const mine = s;
  mine.add(busName, bus);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    mine.remove(busName);
    if (mine.buses.size > 0) return;
    mine.dispose();
    byPrefix.delete(prefix);
  };
}
