/**
 * OpenTelemetry tracing (@hybridbus/observability's instrumentTracing) across two processes,
 * with the real OTel SDK on both sides: this test process and a traced peer (otel/traced-peer.ts)
 * that sends the spans it records here as JSON. Over zmq://, rabbit:// (a real RabbitMQ), AMQP 1.0
 * in direct mode and through the Proton C++ broker, a call, the call its endpoint makes, an
 * error reply, a cast, a fanout and a notification each form one trace: the server span's parent
 * is the client span, with the kinds and attributes of the messaging semantic conventions.
 * And without a subscriber no `_trace` goes on the wire.
 */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { after, before, describe, test } from 'node:test';
import { SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, SamplingDecision, SimpleSpanProcessor, type Sampler } from '@opentelemetry/sdk-trace-base';
import { connect, type ConsumeMessage } from 'amqplib';
import { Bus, channels, MessagingTimeout, RemoteError, remoteError, TransportClosed, type Context, type Target, type NotifyDispatchEvent, type RpcDispatchEvent, type RpcSendEvent, type TraceCarrier } from 'hybridbus';
import { MemoryDriver, registerDriver, type DriverCallOptions, type RpcReply, type RpcRequest } from '@hybridbus/core/driver';
import { instrumentTracing, type CarrierPropagator } from '@hybridbus/observability';
import { sharedServers, startProtonBroker, startRabbitMQ } from './harness/launcher.js';
import { Arrivals, startTracedPeer, type TracedPeer } from './otel/peer.js';
import { RecordingExporter, registerSdk, type SpanRecord } from './otel/sdk.js';
import { zmqUrl } from './zmq/buses.js';
import { Collector, deferred, freshTopic, recordingLogger, tempDir } from './util.js';

const local = new Arrivals<SpanRecord>();
registerSdk(new RecordingExporter(local.push, 'test'));
const tracer = trace.getTracer('otel-trace.test');

const CTX: Context = { user_id: 'u-trace', request_id: 'req-trace-1' };
const UNIQUE_ID = /^[0-9a-f]{32}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

/** Tracing on for one test (each test says whether its messages are traced). */
async function traced<T>(fn: () => Promise<T>): Promise<T> {
  const stop = instrumentTracing();
  try {
    return await fn();
  } finally {
    stop();
  }
}

type Cleanup = (fn: () => Promise<unknown>) => void;

/**
 * An after() hook registered now, so before the hooks of servers started later in the scope
 * (hooks run in the order registered): peers and buses close while their broker still runs.
 */
function cleanups(): Cleanup {
  const fns: Array<() => Promise<unknown>> = [];
  after(() => Promise.allSettled(fns.map((fn) => fn())));
  return (fn) => void fns.push(fn);
}

async function newBus(url: string, cleanup: Cleanup): Promise<Bus> {
  // The peer's endpoints throw on purpose; core logs that, so keep the logs out of the output.
  const bus = await Bus.create({ transports: { default: url } }, { logger: recordingLogger() });
  cleanup(() => bus.close());
  return bus;
}

/** The attributes every span of ours has, by operation. */
function assertMessaging(s: SpanRecord, system: string, operation: string, type: 'send' | 'process'): void {
  assert.equal(s.attributes['messaging.system'], system, `${s.name}: messaging.system`);
  assert.equal(s.attributes['messaging.operation.name'], operation, `${s.name}: messaging.operation.name`);
  assert.equal(s.attributes['messaging.operation.type'], type, `${s.name}: messaging.operation.type`);
  assert.equal(s.attributes['hybridbus.transport'], 'default', `${s.name}: hybridbus.transport`);
}

/** A child span of `parent`, in its trace. */
function assertChildOf(child: SpanRecord, parent: SpanRecord): void {
  assert.equal(child.traceId, parent.traceId, `${child.name} (${child.process}) is in the trace of ${parent.name} (${parent.process})`);
  assert.equal(child.parentSpanId, parent.spanId, `${child.name} (${child.process}) is a child of ${parent.name} (${parent.process})`);
}

/**
 * The cross-process cases on one transport: `url` for both processes, `system` the expected
 * messaging.system.
 */
function acrossProcesses(system: string, url: () => string, cleanup: Cleanup, opts: { fanout: boolean } = { fanout: true }): void {
  let peer: TracedPeer | undefined;
  let bus: Bus;
  const topic = freshTopic('otel');
  const inner = freshTopic('otel-inner');
  const notifyTopic = freshTopic('otel-notif');
  before(async () => {
    const p = await startTracedPeer({ url: url(), topic, inner, notifyTopic });
    peer = p;
    cleanup(() => p.stop());
    bus = await newBus(url(), cleanup);
  });
  const started = (): TracedPeer => {
    assert.ok(peer, 'the peer started');
    return peer;
  };

  test('a call and the call its endpoint makes: one trace, server spans children of client spans, across the processes', () =>
    traced(async () => {
      const client = bus.rpcClient({ topic }, { timeout: 30_000 });
      const result = await tracer.startActiveSpan(`request ${topic}`, async (root) => {
        try {
          return await client.call<number>(CTX, 'nested', { a: 2, b: 40 });
        } finally {
          root.end();
        }
      });
      assert.equal(result, 42);
      const root = await local.find('the root span', (s) => s.name === `request ${topic}`);

      // Our client span: a child of the span active when the call started.
      const call = await local.find('the call span', (s) => s.traceId === root.traceId && s.kind === SpanKind.CLIENT);
      assertChildOf(call, root);
      assert.equal(call.name, `call ${topic}`);
      assertMessaging(call, system, 'call', 'send');
      assert.equal(call.attributes['messaging.destination.name'], topic);
      assert.equal(call.attributes['rpc.method'], 'nested');
      assert.match(String(call.attributes['messaging.message.id']), UNIQUE_ID);
      assert.equal(call.status.code, SpanStatusCode.UNSET);

      // The peer's server span: parent from the carrier, the same message id.
      const server = await started().spans.find('the server span', (s) => s.traceId === root.traceId && s.kind === SpanKind.SERVER && s.name === `process ${topic}`);
      assertChildOf(server, call);
      assertMessaging(server, system, 'process', 'process');
      assert.equal(server.attributes['messaging.destination.name'], topic);
      assert.equal(server.attributes['messaging.message.id'], call.attributes['messaging.message.id']);
      assert.equal(server.attributes['rpc.method'], 'nested');
      assert.equal(server.attributes['hybridbus.pattern'], 'call');
      assert.equal(server.attributes['hybridbus.server'], 'peer1');
      assert.equal(server.status.code, SpanStatusCode.UNSET);

      // The call the endpoint made ran inside the server span, and its server span is its child.
      const nested = await started().spans.find('the nested call span', (s) => s.traceId === root.traceId && s.kind === SpanKind.CLIENT);
      assertChildOf(nested, server);
      assert.equal(nested.name, `call ${inner}`);
      assertMessaging(nested, system, 'call', 'send');
      assert.equal(nested.attributes['rpc.method'], 'add');
      const innerServer = await started().spans.find('the nested server span', (s) => s.traceId === root.traceId && s.name === `process ${inner}`);
      assertChildOf(innerServer, nested);
      assert.equal(innerServer.kind, SpanKind.SERVER);

      // Nothing else in the trace: the root, the two calls and the two server spans.
      const inTrace = [...local.items, ...started().spans.items].filter((s) => s.traceId === root.traceId);
      assert.deepEqual(
        inTrace.map((s) => `${s.process}: ${s.name}`).sort(),
        [`peer: call ${inner}`, `peer: process ${inner}`, `peer: process ${topic}`, `test: call ${topic}`, `test: request ${topic}`].sort(),
      );
    }));

  test('an error reply marks the client span ERROR (with the remote class) and the server span too', () =>
    traced(async () => {
      const client = bus.rpcClient({ topic }, { timeout: 30_000 });
      await assert.rejects(client.call(CTX, 'fail'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'ValueError');
      const call = await local.find('the failed call span', (s) => s.name === `call ${topic}` && s.attributes['rpc.method'] === 'fail');
      assert.equal(call.parentSpanId, undefined, 'no span was active: a root span');
      assert.equal(call.status.code, SpanStatusCode.ERROR);
      assert.equal(call.status.message, 'ValueError: boom');
      assert.equal(call.attributes['error.type'], 'builtins.ValueError');
      assert.ok(call.events.includes('exception'), 'the exception is recorded');
      const server = await started().spans.find('the failed server span', (s) => s.name === `process ${topic}` && s.attributes['rpc.method'] === 'fail');
      assertChildOf(server, call);
      assert.equal(server.status.code, SpanStatusCode.ERROR);
      assert.ok(server.events.includes('exception'));
    }));

  test(`${opts.fanout ? 'a cast, a fanout' : 'a cast'} and a notification: PRODUCER spans here, CONSUMER spans in the peer, linked`, () =>
    traced(async () => {
      const client = bus.rpcClient({ topic });
      const casts = [['cast', 1], ['fanout', 2]] as const;
      for (const [pattern, n] of opts.fanout ? casts : casts.slice(0, 1)) {
        await (pattern === 'fanout' ? client.prepare({ fanout: true }) : client).cast(CTX, 'tick', { n });
        await started().reports.find(`the ${pattern}`, (m) => m.kind === 'tick' && m.n === n);
        const sent = await local.find(`the ${pattern} span`, (s) => s.name === `${pattern} ${topic}`);
        assert.equal(sent.kind, SpanKind.PRODUCER);
        assertMessaging(sent, system, pattern, 'send');
        assert.equal(sent.attributes['messaging.destination.name'], topic);
        assert.equal(sent.attributes['rpc.method'], 'tick');
        const got = await started().spans.find(`the ${pattern}'s consumer span`, (s) => s.parentSpanId === sent.spanId);
        assertChildOf(got, sent);
        assert.equal(got.kind, SpanKind.CONSUMER);
        assert.equal(got.name, `process ${topic}`);
        assertMessaging(got, system, 'process', 'process');
        assert.equal(got.attributes['hybridbus.pattern'], pattern);
        assert.equal(got.attributes['messaging.message.id'], sent.attributes['messaging.message.id']);
      }

      await bus.notifier({ publisherId: 'trace.test', topics: [notifyTopic] }).info(CTX, 'trace.test.event', { k: 'v' });
      await started().reports.find('the notification', (m) => m.kind === 'notified' && m.eventType === 'trace.test.event');
      const sent = await local.find('the notify span', (s) => s.name === `notify ${notifyTopic}.info`);
      assert.equal(sent.kind, SpanKind.PRODUCER);
      assertMessaging(sent, system, 'notify', 'send');
      assert.equal(sent.attributes['messaging.destination.name'], `${notifyTopic}.info`);
      assert.match(String(sent.attributes['messaging.message.id']), UUID);
      const got = await started().spans.find("the notification's consumer span", (s) => s.parentSpanId === sent.spanId);
      assertChildOf(got, sent);
      assert.equal(got.kind, SpanKind.CONSUMER);
      assert.equal(got.name, `process ${notifyTopic}.info`);
      assertMessaging(got, system, 'process', 'process');
      assert.equal(got.attributes['messaging.destination.name'], `${notifyTopic}.info`);
      assert.equal(got.attributes['messaging.message.id'], sent.attributes['messaging.message.id']);
      assert.equal(got.attributes['hybridbus.notification.priority'], 'info');
    }));
}

describe('the trace carrier, in process (memory://)', () => {
  const cleanup = cleanups();
  /** The carriers an RpcServer and a listener were handed, seen by a dispatch-only subscriber (no tracer). */
  const seen = (): { rpc: Collector<RpcDispatchEvent['trace']>; notes: Collector<NotifyDispatchEvent['trace']>; stop: () => void } => {
    const rpc = new Collector<RpcDispatchEvent['trace']>();
    const notes = new Collector<NotifyDispatchEvent['trace']>();
    const onRpc = (e: unknown): void => rpc.push((e as RpcDispatchEvent).trace);
    const onNote = (e: unknown): void => notes.push((e as NotifyDispatchEvent).trace);
    diagnostics.subscribe(channels.dispatch.start.name, onRpc);
    diagnostics.subscribe(channels.notifyDispatch.start.name, onNote);
    return {
      rpc,
      notes,
      stop: () => {
        diagnostics.unsubscribe(channels.dispatch.start.name, onRpc);
        diagnostics.unsubscribe(channels.notifyDispatch.start.name, onNote);
      },
    };
  };

  test('without a subscriber a request and a notification carry no _trace; with tracing on, a W3C traceparent', async () => {
    const bus = await newBus(`memory://${freshTopic('hub')}`, cleanup);
    const topic = freshTopic('mem');
    const server = bus.rpcServer({ topic, server: 's1' }, [{ ping: () => 'pong' }]);
    await server.start();
    const listener = bus.notificationListener([{ topic }], [{ info: () => undefined }]);
    await listener.start();
    const client = bus.rpcClient({ topic });
    const notifier = bus.notifier({ publisherId: 'mem', topics: [topic] });
    const dispatched = seen();
    try {
      assert.equal(channels.call.start.hasSubscribers || channels.notify.start.hasSubscribers, false, 'no sender-side subscriber');
      assert.equal(await client.call(CTX, 'ping'), 'pong');
      await notifier.info(CTX, 'e', {});
      // requestFromOslo sets `trace` only when the inner message had a `_trace` key.
      assert.deepEqual(await dispatched.rpc.until(1), [undefined]);
      assert.deepEqual(await dispatched.notes.until(1), [undefined]);

      await traced(async () => {
        assert.equal(await client.call(CTX, 'ping'), 'pong');
        await notifier.info(CTX, 'e', {});
      });
      const [, rpcTrace] = await dispatched.rpc.until(2);
      const [, noteTrace] = await dispatched.notes.until(2);
      const call = await local.find('the memory call span', (s) => s.name === `call ${topic}`);
      assert.equal(call.attributes['messaging.system'], 'memory', 'an unknown scheme is its own messaging.system');
      assert.deepEqual(rpcTrace, { traceparent: `00-${call.traceId}-${call.spanId}-01` });
      assert.match(String(noteTrace?.['traceparent']), TRACEPARENT);
    } finally {
      dispatched.stop();
      await listener.stop();
      await server.stop();
    }
  });

  test('options: spans go to the given tracerProvider, the carrier is written and read by the given propagator', async () => {
    const bus = await newBus(`memory://${freshTopic('hub')}`, cleanup);
    const topic = freshTopic('mem-opts');
    const server = bus.rpcServer({ topic, server: 's1' }, [{ ping: () => 'pong' }]);
    await server.start();
    const mine = new Arrivals<SpanRecord>();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new RecordingExporter(mine.push, 'mine'))] });
    // A propagator of its own: one key holding "traceId/spanId".
    const propagator: CarrierPropagator = {
      inject: (ctx, carrier, setter) => {
        const sc = trace.getSpanContext(ctx);
        if (sc) setter.set(carrier, 'x-span', `${sc.traceId}/${sc.spanId}`);
      },
      extract: (ctx, carrier, getter) => {
        const [traceId, spanId] = String(getter.get(carrier, 'x-span') ?? '').split('/');
        return traceId && spanId ? trace.setSpanContext(ctx, { traceId, spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true }) : ctx;
      },
    };
    const carriers: TraceCarrier[] = [];
    const onEnd = (e: unknown): void => void carriers.push((e as RpcSendEvent).trace);
    diagnostics.subscribe(channels.call.end.name, onEnd);
    const stop = instrumentTracing({ tracerProvider: provider, propagator });
    const globalBefore = local.items.length;
    try {
      assert.equal(await bus.rpcClient({ topic }).call(CTX, 'ping'), 'pong');
    } finally {
      stop();
      diagnostics.unsubscribe(channels.call.end.name, onEnd);
    }
    const call = await mine.find('the call span', (s) => s.name === `call ${topic}`);
    const served = await mine.find('the server span', (s) => s.name === `process ${topic}`);
    assertChildOf(served, call);
    assert.deepEqual(carriers, [{ 'x-span': `${call.traceId}/${call.spanId}` }]);
    assert.equal(local.items.length, globalBefore, 'nothing went to the global provider');
    await server.stop();
    await provider.shutdown();
  });

  test('a sampler is handed the attributes it may decide on; a trace it drops still reaches the server, unsampled', async () => {
    const bus = await newBus(`memory://${freshTopic('hub')}`, cleanup);
    const topic = freshTopic('mem-sampled');
    const server = bus.rpcServer({ topic, server: 's1' }, [{ ping: () => 'pong' }]);
    await server.start();
    // Drops every span and remembers what it was asked about.
    const asked: Array<{ name: string; attributes: Attributes; parent: string | undefined }> = [];
    const sampler: Sampler = {
      shouldSample: (ctx, _traceId, name, _kind, attributes) => {
        asked.push({ name, attributes: { ...attributes }, parent: trace.getSpanContext(ctx)?.traceId });
        return { decision: SamplingDecision.NOT_RECORD };
      },
      toString: () => 'drop-all',
    };
    const dropped = new Arrivals<SpanRecord>();
    const provider = new BasicTracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor(new RecordingExporter(dropped.push, 'dropped'))] });
    const dispatched = new Collector<TraceCarrier | undefined>();
    const onDispatch = (e: unknown): void => dispatched.push((e as RpcDispatchEvent).trace);
    diagnostics.subscribe(channels.dispatch.end.name, onDispatch);
    const stop = instrumentTracing({ tracerProvider: provider, propagator: new W3CTraceContextPropagator() });
    try {
      assert.equal(await bus.rpcClient({ topic }).call(CTX, 'ping'), 'pong');
      const [carrier] = await dispatched.until(1);
      // The trace goes on, marked not sampled (flags 00), so the server's parent-based sampler drops it too.
      const m = /^00-([0-9a-f]{32})-[0-9a-f]{16}-00$/.exec(String(carrier?.['traceparent']));
      assert.ok(m, `an unsampled traceparent: ${JSON.stringify(carrier)}`);
      const [client, served] = asked;
      assert.deepEqual(client, {
        name: `call ${topic}`,
        attributes: { 'messaging.system': 'memory', 'messaging.operation.name': 'call', 'messaging.operation.type': 'send', 'messaging.destination.name': topic, 'rpc.method': 'ping' },
        parent: undefined,
      });
      assert.deepEqual(served, {
        name: `process ${topic}`,
        attributes: { 'messaging.system': 'memory', 'messaging.operation.name': 'process', 'messaging.operation.type': 'process', 'messaging.destination.name': topic, 'rpc.method': 'ping' },
        parent: m[1],
      });
      assert.equal(asked.length, 2);
    } finally {
      stop();
      diagnostics.unsubscribe(channels.dispatch.end.name, onDispatch);
      await server.stop();
      await provider.shutdown();
    }
    assert.equal(dropped.items.length, 0, 'no span recorded');
  });

  test('a tracer fault costs the span, never the call nor the process', async () => {
    const bus = await newBus(`memory://${freshTopic('hub')}`, cleanup);
    const topic = freshTopic('mem-fault');
    const server = bus.rpcServer({ topic, server: 's1' }, [{ ping: () => 'pong' }]);
    await server.start();
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown): void => void uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    const broken: CarrierPropagator = {
      inject: () => {
        throw new Error('a broken propagator');
      },
      extract: (ctx) => ctx,
    };
    const stop = instrumentTracing({ propagator: broken });
    try {
      assert.equal(await bus.rpcClient({ topic }).call(CTX, 'ping'), 'pong');
      // diagnostics_channel would rethrow on the next tick: let one pass
      await new Promise((r) => setImmediate(r));
    } finally {
      stop();
      process.off('uncaughtException', onUncaught);
    }
    assert.deepEqual(uncaught, []);
    await server.stop();
  });

  test('a timed-out call ends its span ERROR (MessagingTimeout); unsubscribing stops the spans', async () => {
    const bus = await newBus(`memory://${freshTopic('hub')}`, cleanup);
    const topic = freshTopic('mem-hang');
    const release = deferred();
    const server = bus.rpcServer({ topic, server: 's1' }, [{ hang: () => release.promise, ping: () => 'pong' }]);
    await server.start();
    const client = bus.rpcClient({ topic }, { timeout: 200 });
    await traced(() => assert.rejects(client.call(CTX, 'hang'), MessagingTimeout));
    release.resolve();
    const span = await local.find('the timed-out call span', (s) => s.name === `call ${topic}` && s.attributes['rpc.method'] === 'hang');
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes['error.type'], 'MessagingTimeout');
    const before = local.items.length;
    assert.equal(await client.call(CTX, 'ping'), 'pong');
    assert.equal(local.items.length, before, 'no span once tracing is off');
    await server.stop();
  });
});

describe('a reply that comes before the send is confirmed', () => {
  const cleanup = cleanups();
  /**
   * memory:// whose calls cancel their token once the reply is in, as rabbit:// does when a
   * reply beats the publish confirm ("the call is settled; its send is no longer needed").
   */
  class SettlingDriver extends MemoryDriver {
    override async call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
      const reply = await super.call(target, request, options);
      options.cancel.cancel(new TransportClosed('the call is settled; its send is no longer needed'));
      return reply;
    }
  }
  registerDriver({ schemes: ['settling-memory'], create: (url, ctx) => new SettlingDriver(url.host + url.pathname, ctx) });

  test('an error reply stays the error, for the caller and for its span', async () => {
    const bus = await newBus(`settling-memory://${freshTopic('hub')}`, cleanup);
    const topic = freshTopic('settled');
    const fail = (): never => {
      throw remoteError('ValueError', 'boom', { module: 'builtins' });
    };
    const server = bus.rpcServer({ topic, server: 's1' }, [{ fail, ok: () => 1 }]);
    await server.start();
    const client = bus.rpcClient({ topic });
    await traced(async () => {
      assert.equal(await client.call(CTX, 'ok'), 1);
      await assert.rejects(client.call(CTX, 'fail'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'ValueError');
    });
    const span = await local.find('the failed call span', (s) => s.name === `call ${topic}` && s.attributes['rpc.method'] === 'fail');
    assert.equal(span.attributes['error.type'], 'builtins.ValueError');
    await server.stop();
  });
});

describe('one trace across two processes over zmq://', { timeout: 180_000 }, () => {
  const dir = tempDir('hb-otel-zmq-ns-');
  acrossProcesses('zeromq', () => zmqUrl(dir), cleanups());
});

describe('one trace across two processes over rabbit:// (RabbitMQ)', { timeout: 240_000 }, () => {
  const cleanup = cleanups();
  const servers = sharedServers({ rabbit: () => startRabbitMQ({ plugins: [] }) });
  const url = (): string => servers.rabbit.url.replace(/^amqp:/, 'rabbit:');
  acrossProcesses('rabbitmq', url, cleanup);

  test('on the wire: no _trace key without a tracer; the client span context under _trace with one', async () => {
    const conn = await connect(servers.rabbit.url);
    cleanup(() => conn.close());
    const ch = await conn.createChannel();
    const topic = freshTopic('otel-wire');
    await ch.assertExchange('openstack', 'topic', { durable: false, autoDelete: false });
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, 'openstack', topic);
    await ch.bindQueue(queue, 'openstack', `${topic}.info`);
    const got = new Collector<ConsumeMessage>();
    await ch.consume(queue, (m) => m && got.push(m), { noAck: true });
    const inner = (m: ConsumeMessage | undefined): Record<string, unknown> =>
      JSON.parse((JSON.parse(m?.content.toString('utf8') ?? '{}') as Record<string, string>)['oslo.message'] ?? '{}') as Record<string, unknown>;

    const bus = await newBus(url(), cleanup);
    const client = bus.rpcClient({ topic });
    const notifier = bus.notifier({ publisherId: 'wire', topics: [topic] });
    await client.cast(CTX, 'plain', {});
    await notifier.info(CTX, 'plain', {});
    await got.until(2);
    await traced(async () => {
      await client.cast(CTX, 'traced', {});
      await notifier.info(CTX, 'traced', {});
    });
    const msgs = (await got.until(4)).map(inner);
    const plainCast = msgs.find((d) => d['method'] === 'plain');
    const plainNote = msgs.find((d) => d['event_type'] === 'plain');
    assert.ok(plainCast && plainNote);
    assert.equal('_trace' in plainCast, false, 'an untraced cast is oslo’s message, no _trace');
    assert.equal('_trace' in plainNote, false, 'an untraced notification is oslo’s message, no _trace');
    assert.deepEqual(Object.keys(plainCast).sort(), ['_context_request_id', '_context_user_id', '_unique_id', 'args', 'method']);

    const tracedCast = msgs.find((d) => d['method'] === 'traced');
    const tracedNote = msgs.find((d) => d['event_type'] === 'traced');
    const castSpan = await local.find('the traced cast span', (s) => s.name === `cast ${topic}` && s.attributes['rpc.method'] === 'traced');
    const noteSpan = await local.find('the traced notify span', (s) => s.name === `notify ${topic}.info`);
    assert.deepEqual(tracedCast?.['_trace'], { traceparent: `00-${castSpan.traceId}-${castSpan.spanId}-01` } satisfies TraceCarrier);
    assert.deepEqual(tracedNote?.['_trace'], { traceparent: `00-${noteSpan.traceId}-${noteSpan.spanId}-01` } satisfies TraceCarrier);
  });
});

describe('one trace across two processes over AMQP 1.0, direct mode', { timeout: 180_000 }, () => {
  const dir = tempDir('hb-otel-amqp1-ns-');
  acrossProcesses('amqp1', () => `amqp://?mode=direct&matchmaker=${encodeURIComponent(`local:${dir}`)}`, cleanups());
});

describe('one trace across two processes over AMQP 1.0, through the Proton C++ broker', { timeout: 240_000 }, () => {
  const cleanup = cleanups();
  const servers = sharedServers({ broker: () => startProtonBroker({ flavour: 'cpp' }) });
  // Every address is a queue there: the driver refuses a fanout that would reach one server only.
  acrossProcesses('amqp1', () => `${servers.broker.url}/`, cleanup, { fanout: false });
});
