/**
 * OpenTelemetry tracing for hybridbus, as a subscriber to core's diagnostics channels
 * (packages/core/src/diagnostics.ts). Only `@opentelemetry/api` is used: the application brings
 * the SDK (a TracerProvider, a context manager, a propagator) and registers it as it likes.
 *
 *   import { instrumentTracing } from '@hybridbus/observability';
 *   const stop = instrumentTracing();   // after (or before) registering the OTel SDK
 *
 * Spans, named and attributed after the OTel messaging semantic conventions:
 * - a client span per call (CLIENT), cast, fanout and notification topic (PRODUCER), a child of
 *   the context active when the send started; its context goes into the message's `_trace`
 *   carrier (docs/wire.md);
 * - a server span per request an RpcServer takes (SERVER for a call, CONSUMER for a cast or
 *   fanout) and per notification a listener takes (CONSUMER), whose parent is the sender's
 *   context from the carrier, and which is current while the endpoint runs, so whatever the
 *   endpoint sends becomes its child.
 */
import diagnostics from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  diag,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { channels, RemoteError, type NotifyDispatchEvent, type NotifySendEvent, type RpcDispatchEvent, type RpcSendEvent, type TraceCarrier } from '@hybridbus/core';

const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

/** What instrumentTracing needs of a propagator: `TextMapPropagator` and the global `propagation` both fit. */
export interface CarrierPropagator {
  inject(ctx: Context, carrier: TraceCarrier, setter: TextMapSetter<TraceCarrier>): void;
  extract(ctx: Context, carrier: Readonly<TraceCarrier>, getter: TextMapGetter<Readonly<TraceCarrier>>): Context;
}

export interface TracingOptions {
  /** Where spans go (default: the global one, `trace.getTracerProvider()`). */
  readonly tracerProvider?: TracerProvider | undefined;
  /**
   * How span contexts are written to and read from a message's carrier (default: the global
   * propagator, `propagation`; the SDK's default is W3C Trace Context plus Baggage).
   */
  readonly propagator?: CarrierPropagator | undefined;
}

/**
 * `messaging.system` by URL scheme. The conventions name products; ZeroMQ and a bare AMQP 1.0
 * peer have no registered value, so they get the protocol's own name. amqp:// may be a router,
 * any AMQP 1.0 broker or a peer in direct mode, so "amqp1" (the protocol, not a product) is all
 * that is known; rabbit:// always speaks AMQP 0-9-1 to RabbitMQ. Any other scheme is used as is.
 */
const SYSTEMS: Readonly<Record<string, string>> = {
  zmq: 'zeromq',
  rabbit: 'rabbitmq',
  amqp: 'amqp1',
  amqps: 'amqp1',
  amqp1: 'amqp1',
};
const systemOf = (scheme: string): string => SYSTEMS[scheme] ?? scheme;

type SendEvent = RpcSendEvent | NotifySendEvent;
type DispatchEvent = RpcDispatchEvent | NotifyDispatchEvent;
type Handler = (message: unknown, name: string | symbol) => void;

/**
 * Subscribe OpenTelemetry tracing to the bus's diagnostics channels; returns the function that
 * unsubscribes it. Call it once per process (each call traces every message again). Spans still
 * open when it is undone are never ended, so undo it only when no message is in flight.
 */
export function instrumentTracing(options: TracingOptions = {}): () => void {
  // Before an SDK is registered the global provider hands out a proxy tracer, which finds the
  // SDK's tracer once one is: instrumenting first and registering after works.
  const tracer: Tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer('hybridbus', VERSION);
  const propagator: CarrierPropagator = options.propagator ?? propagation;
  // The same event object goes to start and end/error (diagnostics.ts): the span rides on it
  // under a key of this subscription's own (a WeakMap entry per message was a GC cost).
  const SPAN: unique symbol = Symbol('hybridbus span');
  type Carrying = { [SPAN]?: Span | undefined };
  const take = (e: object): Span | undefined => {
    const span = (e as Carrying)[SPAN];
    if (span !== undefined) (e as Carrying)[SPAN] = undefined;
    return span;
  };

  const send = (kind: SpanKind) => (message: unknown): void => {
    const e = message as SendEvent;
    const parent = context.active();
    const span = tracer.startSpan(sendName(e), { kind, attributes: sendAttributes(e) }, parent);
    if (span.isRecording()) span.setAttributes(sendDetails(e));
    (e as Carrying)[SPAN] = span;
    propagator.inject(trace.setSpan(parent, span), e.trace, defaultTextMapSetter);
  };

  const dispatch = (kind: (e: DispatchEvent) => SpanKind) => (message: unknown): void => {
    const e = message as DispatchEvent;
    // The sender's context or none: never whatever happened to be active in the driver's callback.
    const parent = e.trace === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, e.trace, defaultTextMapGetter);
    const span = tracer.startSpan(dispatchName(e), { kind: kind(e), attributes: dispatchAttributes(e) }, parent);
    if (span.isRecording()) span.setAttributes(dispatchDetails(e));
    (e as Carrying)[SPAN] = span;
    const current = trace.setSpan(parent, span);
    e.bind = (fn) => context.with(current, fn);
  };

  const end = (message: unknown): void => {
    const e = message as SendEvent | DispatchEvent;
    const span = take(e);
    if (span === undefined) return; // started before we subscribed
    if (e.pattern === 'notify' && 'outcome' in e && e.outcome === 'requeue') span.setAttribute('hybridbus.outcome', 'requeue');
    span.end();
  };

  const fail = (message: unknown): void => {
    const e = message as SendEvent | DispatchEvent;
    const span = take(e);
    if (span === undefined) return;
    const err = e.error ?? new Error('failed');
    span.recordException(err);
    span.setAttribute('error.type', errorType(err));
    if ('outcome' in e && e.outcome === 'undispatchable') span.setAttribute('hybridbus.outcome', 'undispatchable');
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof RemoteError ? `${err.remoteClass}: ${err.remoteMessage}` : err.message });
    span.end();
  };

  const subscriptions: Array<[string | symbol, Handler]> = [
    [channels.call.start.name, send(SpanKind.CLIENT)],
    [channels.cast.start.name, send(SpanKind.PRODUCER)],
    [channels.notify.start.name, send(SpanKind.PRODUCER)],
    [channels.dispatch.start.name, dispatch((e) => (e.pattern === 'call' ? SpanKind.SERVER : SpanKind.CONSUMER))],
    [channels.notifyDispatch.start.name, dispatch(() => SpanKind.CONSUMER)],
  ];
  for (const ch of [channels.call, channels.cast, channels.notify, channels.dispatch, channels.notifyDispatch]) {
    subscriptions.push([ch.end.name, end], [ch.error.name, fail]);
  }
  // diagnostics_channel rethrows a subscriber's error as an uncaught exception: a fault here (a
  // propagator that throws, a malformed event from another publisher) costs a span, not the process.
  const guarded = subscriptions.map(([name, fn]): [string | symbol, Handler] => [
    name,
    (message, channel) => {
      try {
        fn(message, channel);
      } catch (err) {
        diag.error(`hybridbus tracing: ${String(channel)} failed`, err);
      }
    },
  ]);
  for (const [name, fn] of guarded) diagnostics.subscribe(name, fn);
  return () => {
    for (const [name, fn] of guarded) diagnostics.unsubscribe(name, fn);
  };
}

/**
 * `messaging.destination.name`: the oslo topic for RPC (the server, when one is named, is its
 * own attribute: topics stay low-cardinality span names); for a notification the address oslo
 * routes it to, `topic.priority` ("notifications.info"), which is what a listener subscribes to.
 */
function destinationOf(e: SendEvent): string {
  const topic = e.target.topic ?? '';
  return e.pattern === 'notify' ? `${topic}.${e.notification.priority}` : topic;
}

function sendName(e: SendEvent): string {
  return `${e.pattern} ${destinationOf(e)}`;
}

/** A notification's destination is the address it was sent to, as on the sender's span. */
function notifyDestination(e: NotifyDispatchEvent): string | undefined {
  return e.topic === undefined ? undefined : `${e.topic}.${e.notification.priority}`;
}

/** By the operation alone when the driver did not say the topic (the conventions' rule for an unknown destination). */
function dispatchName(e: DispatchEvent): string {
  if (e.pattern !== 'notify') return `process ${e.target.topic ?? ''}`;
  const destination = notifyDestination(e);
  return destination === undefined ? 'process' : `process ${destination}`;
}

/*
 * A span's attributes come in two parts. Those a sampler may decide on (the conventions list
 * system, operation, destination, consumer group, rpc.method as "at span creation") are given to
 * startSpan; the rest only to a span that records. Most spans are sampled out in production, and
 * the SDK copies and checks every attribute it is handed even for a span it then drops.
 */
function sendAttributes(e: SendEvent): Attributes {
  const a: Attributes = {
    'messaging.system': systemOf(e.scheme),
    'messaging.operation.name': e.pattern,
    'messaging.operation.type': 'send',
    'messaging.destination.name': destinationOf(e),
  };
  if (e.pattern !== 'notify') a['rpc.method'] = e.method;
  return a;
}

function sendDetails(e: SendEvent): Attributes {
  const a: Attributes = { 'hybridbus.transport': e.transport };
  if (e.pattern === 'notify') {
    a['messaging.message.id'] = e.notification.messageId;
  } else {
    a['messaging.message.id'] = e.request.uniqueId;
    if (e.target.server !== undefined) a['hybridbus.server'] = e.target.server;
  }
  return a;
}

function dispatchAttributes(e: DispatchEvent): Attributes {
  const a: Attributes = {
    'messaging.system': systemOf(e.scheme),
    'messaging.operation.name': 'process',
    'messaging.operation.type': 'process',
  };
  if (e.pattern === 'notify') {
    const destination = notifyDestination(e);
    if (destination !== undefined) a['messaging.destination.name'] = destination;
    if (e.pool !== undefined) a['messaging.consumer.group.name'] = e.pool;
  } else {
    if (e.target.topic !== undefined) a['messaging.destination.name'] = e.target.topic;
    a['rpc.method'] = e.method;
  }
  return a;
}

function dispatchDetails(e: DispatchEvent): Attributes {
  const a: Attributes = { 'hybridbus.transport': e.transport };
  if (e.pattern === 'notify') {
    a['messaging.message.id'] = e.notification.messageId;
    a['hybridbus.notification.priority'] = e.notification.priority;
  } else {
    a['messaging.message.id'] = e.request.uniqueId;
    a['hybridbus.pattern'] = e.pattern;
    if (e.target.server !== undefined) a['hybridbus.server'] = e.target.server;
  }
  return a;
}

/** `error.type`: a low-cardinality class name; a remote error's is the remote class, with its module. */
function errorType(err: Error): string {
  return err instanceof RemoteError ? `${err.remoteModule}.${err.remoteClass}` : err.name;
}
