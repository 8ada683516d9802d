/**
 * Instrumentation points, as `node:diagnostics_channel` channels (undici's style): core and the
 * drivers publish an event object on a named channel only when that channel has subscribers, so
 * nothing is built or paid when nobody listens. Tracing and metrics (`@hybridbus/observability`)
 * are subscribers like any other; an application may subscribe too:
 *
 *   import diagnostics from 'node:diagnostics_channel';
 *   diagnostics.subscribe('hybridbus:rpc:call:end', (e) => console.log(e.method, e.durationMs));
 *
 * The same object is passed to a message's `start` and then its `end` or `error`, so a subscriber
 * can keep per-message state in a WeakMap keyed by it.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Bus } from './bus.js';
import type { Pattern } from './driver.js';
import type { Notification, RpcRequest } from './message.js';
import type { Target } from './target.js';

/** A W3C Trace Context carrier (`traceparent`, `tracestate`, …): string keys and values. */
export type TraceCarrier = Record<string, string>;

/** Which transport carries a message: its name in the config and its URL scheme. */
export interface TransportRef {
  /** The transport's name in the config ("default", "rabbit", …). */
  readonly transport: string;
  /** Its URL scheme without the colon ("zmq", "rabbit", "amqp", "memory", …). */
  readonly scheme: string;
}

interface Timed {
  /**
   * The bus whose client, server, notifier or listener it is: channels are process-wide, and a
   * process may hold several buses (metrics count only those registered, each by its name).
   */
  readonly bus: Bus;
  /** `performance.now()` when the message started: set by core before `start`. */
  readonly startedAt: number;
  /** Set before `end` or `error`: ms from start. */
  durationMs?: number;
  /** Set before `error`. */
  error?: Error;
}

/** A call, cast or fanout sent by an RpcClient (channels `hybridbus:rpc:{call,cast}:*`). */
export interface RpcSendEvent extends TransportRef, Timed {
  readonly pattern: 'call' | 'cast' | 'fanout';
  readonly target: Target;
  readonly method: string;
  /** The request; `request.uniqueId` is the message id. */
  readonly request: RpcRequest;
  /**
   * Written by subscribers during `start` (a tracer injects its context here); carried to the
   * server in the message and handed to its dispatch event as `trace`.
   */
  readonly trace: TraceCarrier;
}

/** A request an RpcServer takes (channels `hybridbus:rpc:dispatch:*`). */
export interface RpcDispatchEvent extends TransportRef, Timed {
  readonly pattern: 'call' | 'cast' | 'fanout';
  /** The server's target. */
  readonly target: Target;
  readonly method: string;
  readonly request: RpcRequest;
  /** The sender's trace carrier, when it sent one. */
  readonly trace: Readonly<TraceCarrier> | undefined;
  /**
   * A subscriber may set this during `start` to run the endpoint inside its context (a tracer
   * makes the dispatch span current, so calls the endpoint makes become its children).
   */
  bind?: (<T>(fn: () => T) => T) | undefined;
  /** Set before `end`/`error`: `ok`, `failed` (the endpoint raised) or `undispatchable` (no endpoint). */
  outcome?: 'ok' | 'failed' | 'undispatchable';
}

/** A notification sent by a Notifier to one topic (channels `hybridbus:notify:send:*`). */
export interface NotifySendEvent extends TransportRef, Timed {
  readonly pattern: 'notify';
  readonly target: Target;
  readonly notification: Notification;
  /** As RpcSendEvent's. */
  readonly trace: TraceCarrier;
}

/** A notification a listener takes (channels `hybridbus:notify:dispatch:*`). */
export interface NotifyDispatchEvent extends TransportRef, Timed {
  readonly pattern: 'notify';
  readonly notification: Notification;
  /** The topic it was sent to, when the driver says (IncomingNotification.topic). */
  readonly topic: string | undefined;
  readonly pool: string | undefined;
  readonly trace: Readonly<TraceCarrier> | undefined;
  /** As RpcDispatchEvent's. */
  bind?: (<T>(fn: () => T) => T) | undefined;
  /** Set before `end`: the listener acked it or handed it back. */
  outcome?: 'ack' | 'requeue';
}

/** A driver's connection changed (channels `hybridbus:transport:*`). */
export interface TransportEvent extends TransportRef {
  /** The peer or broker, without credentials ("127.0.0.1:5672", a server's name, …). */
  readonly peer?: string | undefined;
  /** Why (disconnect: the error or "closed"). */
  readonly reason?: string | undefined;
}

interface Channels<T> {
  readonly start: diagnostics.Channel<T>;
  readonly end: diagnostics.Channel<T>;
  readonly error: diagnostics.Channel<T>;
  /** Whether any of the three has a subscriber: publishers build a message's event only then. */
  active(): boolean;
}

function triple<T>(prefix: string): Channels<T> {
  const start = diagnostics.channel(`${prefix}:start`) as diagnostics.Channel<T>;
  const end = diagnostics.channel(`${prefix}:end`) as diagnostics.Channel<T>;
  const error = diagnostics.channel(`${prefix}:error`) as diagnostics.Channel<T>;
  return { start, end, error, active: () => start.hasSubscribers || end.hasSubscribers || error.hasSubscribers };
}

/** Every channel core and the drivers publish on, by name (README: "Observability"). */
export const channels = {
  /** RpcClient.call: start, then end (a result) or error (a remote error, a timeout, a lost connection, …). */
  call: triple<RpcSendEvent>('hybridbus:rpc:call'),
  /** RpcClient.cast, with `pattern` 'cast' or 'fanout': end once the transport took it, or error. */
  cast: triple<RpcSendEvent>('hybridbus:rpc:cast'),
  /** RpcServer: start when a request is taken, end after the endpoint (and a call's reply). */
  dispatch: triple<RpcDispatchEvent>('hybridbus:rpc:dispatch'),
  /** Notifier: one start/end per topic a notification goes to. */
  notify: triple<NotifySendEvent>('hybridbus:notify:send'),
  /** Notification listeners: one per notification taken. */
  notifyDispatch: triple<NotifyDispatchEvent>('hybridbus:notify:dispatch'),
  transport: {
    connect: diagnostics.channel('hybridbus:transport:connect') as diagnostics.Channel<TransportEvent>,
    disconnect: diagnostics.channel('hybridbus:transport:disconnect') as diagnostics.Channel<TransportEvent>,
    reconnect: diagnostics.channel('hybridbus:transport:reconnect') as diagnostics.Channel<TransportEvent>,
  },
} as const;

/**
 * Publish `end` or `error` for an event whose `start` went out (`error` when `err` is given).
 * Publishers create events with every field (`durationMs`, `error`, … undefined): a field added
 * later changes the object's shape per message, which doubled a traced call's CPU.
 */
export function finish<T extends Timed>(ch: Channels<T>, event: T, err?: unknown): void {
  event.durationMs = performance.now() - event.startedAt;
  if (err === undefined) ch.end.publish(event);
  else {
    event.error = err instanceof Error ? err : new Error(String(err));
    ch.error.publish(event);
  }
}

/** For drivers: publish a connection change (only when someone listens). */
export function publishTransportEvent(kind: keyof (typeof channels)['transport'], event: () => TransportEvent): void {
  const ch = channels.transport[kind];
  if (ch.hasSubscribers) ch.publish(event());
}
