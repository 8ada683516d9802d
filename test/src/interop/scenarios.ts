/**
 * The interop scenarios every transport's tests run against the real Python oslo.messaging peer
 * (oslo_peer.py): our RPC server and notification listener as its client and notifier find them,
 * and what our client, server, notifier and listener must see of it.
 */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { channels, MessagingTimeout, PRIORITIES, RemoteError, remoteError, type Bus, type Context, type NotificationMetadata, type NotifySendEvent, type RpcSendEvent, type TraceCarrier } from '@hybridbus/core';
import { instrumentTracing } from '@hybridbus/observability';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { RecordingExporter, registerSdk, type SpanRecord } from '../otel/sdk.js';
import { Collector } from '../util.js';
import type { Line, PythonPeer } from './python-peer.js';

/** The context our side sends. */
export const TS_CTX: Context = { user_id: 'u-ts', project_id: 'p-ts', request_id: 'req-ts-1' };

export const isNotification = (priority: string) => (l: Line): boolean => l['event'] === 'notification' && l['priority'] === priority;

/** The priorities besides info and error, for oslo_peer.py's `notify TOPIC PRIOS`. */
export const MORE_PRIORITIES: readonly string[] = PRIORITIES.filter((p) => p !== 'info' && p !== 'error');

class QuotaExceeded extends Error {
  override name = 'QuotaExceeded';
  readonly module = 'nova.exception';
}

export type Casts = Collector<{ n: number; c: Context }>;

/** Our RPC server on `topic` (server ts1) with the methods oslo_peer.py's client mode calls. */
export async function startTsServer(bus: Bus, topic: string): Promise<{ casts: Casts; stop: () => Promise<void> }> {
  const casts: Casts = new Collector();
  const server = bus.rpcServer({ topic, server: 'ts1' }, [
    {
      target: { namespace: 'test', version: '1.2' },
      echo: (c: Context, a: { arg: unknown }) => ({ arg: a.arg, ctxt: c }),
      add: (_c: Context, a: { a: number; b: number }) => a.a + a.b,
      // README, "Remote errors": the typed way to make a Python caller raise a builtin class.
      fail: () => {
        throw remoteError('ValueError', 'boom', { module: 'builtins' });
      },
      quota: () => {
        throw new QuotaExceeded('quota exceeded for cores');
      },
      slow: (_c: Context, a: { seconds: number }) => new Promise((r) => setTimeout(() => r(`slept ${a.seconds}`), a.seconds * 1000)),
      tick: (c: Context, a: { n: number }) => void casts.push({ n: a.n, c }),
    },
  ]);
  await server.start();
  return { casts, stop: () => server.stop() };
}

/** What oslo_peer.py's `client TOPIC [timeout]` gets from startTsServer's server. */
export async function assertPythonClientOfTs(py: PythonPeer, casts: Casts, opts: { timeout?: boolean } = {}): Promise<void> {
  const echo = (await py.result('echo'))['result'] as Line;
  assert.deepEqual(echo['arg'], { s: 'héllo ☃', n: [1, 2.5, null, true] });
  assert.equal((echo['ctxt'] as Line)['user_id'], 'u-py');
  assert.equal((echo['ctxt'] as Line)['request_id'], 'req-py-1');
  assert.equal((await py.result('add'))['result'], 42);
  // a builtin class is rebuilt as itself by the Python client
  const fail = await py.result('fail');
  assert.deepEqual([fail['error'], fail['module'], fail['message']], ['ValueError', 'builtins', 'boom']);
  // any other class arrives as oslo_messaging.RemoteError carrying our class and message
  const quota = await py.result('quota');
  assert.deepEqual([quota['error'], quota['exc_type'], quota['value']], ['RemoteError', 'QuotaExceeded', 'quota exceeded for cores']);
  const nosuch = await py.result('nosuch');
  assert.deepEqual([nosuch['error'], nosuch['exc_type'], nosuch['value']], ['RemoteError', 'NoSuchMethod', 'Endpoint does not support RPC method nosuch']);
  // our server heartbeats at call_monitor_timeout/2 (1 s), so oslo's 2 s call monitor keeps the 3 s call alive
  assert.equal((await py.result('monitored'))['result'], 'slept 3');
  assert.equal((await py.result('direct'))['result'], 2);
  assert.equal((await py.result('cast'))['error'], undefined);
  assert.equal((await py.result('fanout'))['error'], undefined);
  if (opts.timeout) assert.equal((await py.result('timeout'))['error'], 'MessagingTimeout');
  assert.equal(await py.exited, 0, py.stderrTail);
  const got = await casts.until(2);
  assert.deepEqual(got.map((c) => c.n).sort(), [1, 2]);
  assert.equal(got[0]?.c['user_id'], 'u-py');
}

/** Our client against oslo_peer.py's `server py1` on `topic`: calls, remote errors, call monitoring, a cast. */
export async function assertTsClientOfPython(bus: Bus, py: PythonPeer, topic: string, opts: { timeout?: boolean } = {}): Promise<void> {
  const client = bus.rpcClient({ topic, namespace: 'test', version: '1.2' }, { timeout: 15_000 });
  const payload = { s: 'héllo ☃', n: [1, 2.5, null, true, false], nested: { k: 'v', empty: {} } };
  const echoed = await client.call<{ arg: unknown; ctxt: Context }>(TS_CTX, 'echo', { arg: payload });
  assert.deepEqual(echoed.arg, payload);
  assert.equal(echoed.ctxt['user_id'], 'u-ts');
  assert.equal(echoed.ctxt['request_id'], 'req-ts-1');
  assert.equal(await client.call(TS_CTX, 'add', { a: 2, b: 40 }), 42);
  assert.equal(await client.prepare({ server: 'py1', version: '1.0' }).call(TS_CTX, 'add', { a: 1, b: 1 }), 2);

  await assert.rejects(client.call(TS_CTX, 'fail'), (e: unknown) => {
    assert.ok(e instanceof RemoteError, String(e));
    assert.equal(e.remoteClass, 'ValueError');
    assert.equal(e.remoteModule, 'builtins');
    assert.equal(e.remoteMessage, 'boom');
    assert.ok(e.remoteTraceback.some((l) => l.includes('ValueError: boom')), 'the Python traceback comes along');
    return true;
  });
  await assert.rejects(client.call(TS_CTX, 'nosuch'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'NoSuchMethod' && e.remoteModule === 'oslo_messaging.rpc.dispatcher');
  await assert.rejects(client.prepare({ version: '2.0' }).call(TS_CTX, 'echo', { arg: 1 }), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'UnsupportedVersion');

  // oslo's server heartbeats every call_monitor_timeout/2 s: a 3 s call survives a 2 s monitor timeout.
  const t0 = Date.now();
  assert.equal(await client.prepare({ callMonitorTimeout: 2_000 }).call(TS_CTX, 'slow', { seconds: 3 }), 'slept 3');
  assert.ok(Date.now() - t0 >= 2_900);
  // and without a monitor the call's own timeout ends it
  if (opts.timeout) await assert.rejects(client.prepare({ timeout: 1_000 }).call(TS_CTX, 'slow', { seconds: 3 }), (e: unknown) => e instanceof MessagingTimeout);

  await client.cast(TS_CTX, 'tick', { n: 1 });
  const cast = await py.line((l) => l['event'] === 'cast' && l['n'] === 1);
  assert.equal((cast['ctxt'] as Context)['user_id'], 'u-ts');
  assert.equal((cast['ctxt'] as Context)['request_id'], 'req-ts-1');
}

export type Received = { priority: string; c: Context; publisherId: string; eventType: string; payload: unknown; metadata: NotificationMetadata };

/** Our notification listener on `topic`, with an endpoint for every priority. */
export async function startTsListener(bus: Bus, topic: string): Promise<{ got: Collector<Received>; stop: () => Promise<void> }> {
  const got = new Collector<Received>();
  const rec = (priority: string) => (c: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) =>
    void got.push({ priority, c, publisherId, eventType, payload, metadata });
  const listener = bus.notificationListener([{ topic }], [Object.fromEntries(PRIORITIES.map((p) => [p, rec(p)]))]);
  await listener.start();
  return { got, stop: () => listener.stop() };
}

/** What our listener got from oslo_peer.py's `notify TOPIC [PRIOS]`. */
export async function assertFromPythonNotifier(got: Collector<Received>, more: readonly string[] = []): Promise<void> {
  const items = await got.until(2 + more.length);
  const info = items.find((i) => i.priority === 'info');
  assert.ok(info);
  assert.equal(info.publisherId, 'py.node1');
  assert.equal(info.eventType, 'compute.instance.create.end');
  assert.deepEqual(info.payload, { seq: 1, state: 'active' });
  assert.equal(info.c['user_id'], 'u-py');
  assert.match(info.metadata.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.match(info.metadata.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
  const error = items.find((i) => i.priority === 'error');
  assert.equal(error?.eventType, 'compute.instance.create.error');
  assert.deepEqual(error?.payload, { seq: 2 });
  for (const p of more) {
    const n = items.find((i) => i.priority === p);
    assert.deepEqual([n?.eventType, n?.payload, n?.publisherId], [`test.${p}`, { p }, 'py.node1'], `priority ${p}`);
  }
  assert.equal(items.length, 2 + more.length);
}

/** Our notifier's info and error to `topic`, then one per priority of `more`. */
export async function sendTsNotifications(bus: Bus, topic: string, more: readonly string[] = []): Promise<void> {
  const notifier = bus.notifier({ publisherId: 'compute.ts-1', topics: [topic] });
  await notifier.info(TS_CTX, 'compute.instance.create.end', { state: 'active', s: 'héllo ☃' });
  await notifier.error(TS_CTX, 'compute.instance.create.error', { code: 500 });
  for (const p of more) await notifier[p as (typeof PRIORITIES)[number]](TS_CTX, `test.${p}`, { p });
}

/** What oslo_peer.py's `listen` got of sendTsNotifications. */
export async function assertFromTsNotifier(py: PythonPeer, more: readonly string[] = []): Promise<void> {
  const info = await py.line(isNotification('info'));
  assert.equal(info['publisher_id'], 'compute.ts-1');
  assert.equal(info['event_type'], 'compute.instance.create.end');
  assert.deepEqual(info['payload'], { state: 'active', s: 'héllo ☃' });
  assert.equal((info['ctxt'] as Line)['user_id'], 'u-ts');
  assert.equal((info['ctxt'] as Line)['request_id'], 'req-ts-1');
  const metadata = info['metadata'] as Line;
  assert.match(String(metadata['message_id']), /^[0-9a-f-]{36}$/);
  assert.match(String(metadata['timestamp']), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
  const error = await py.line(isNotification('error'));
  assert.equal(error['event_type'], 'compute.instance.create.error');
  assert.deepEqual(error['payload'], { code: 500 });
  for (const p of more) {
    const n = await py.line(isNotification(p));
    assert.deepEqual([n['event_type'], n['payload'], n['publisher_id']], [`test.${p}`, { p }, 'compute.ts-1'], `priority ${p}`);
  }
}

let sdkSpans: SpanRecord[] | undefined;

/**
 * Runs `fn` with our tracing on (the OTel SDK registered on first use, instrumentTracing for the
 * duration), so every call, cast and notification our side sends carries a `_trace` carrier.
 * Returns the spans recorded meanwhile and the carriers that went out.
 */
export async function withTracing(fn: () => Promise<void>): Promise<{ spans: SpanRecord[]; carriers: TraceCarrier[] }> {
  if (sdkSpans === undefined) {
    const all: SpanRecord[] = (sdkSpans = []);
    registerSdk(new RecordingExporter((s) => void all.push(s), 'test'));
  }
  const first = sdkSpans.length;
  const carriers: TraceCarrier[] = [];
  const sent = (e: unknown): void => void carriers.push((e as RpcSendEvent | NotifySendEvent).trace);
  const names = [channels.call, channels.cast, channels.notify].flatMap((ch) => [ch.end.name, ch.error.name]);
  const stop = instrumentTracing();
  for (const n of names) diagnostics.subscribe(n, sent);
  try {
    await fn();
  } finally {
    for (const n of names) diagnostics.unsubscribe(n, sent);
    stop();
  }
  return { spans: sdkSpans.slice(first), carriers };
}

/**
 * What withTracing recorded of assertTsClientOfPython on `topic`, a fanout there when `fanout`,
 * and sendTsNotifications to `notifyTopic`: every send carried a W3C traceparent, and the spans
 * say what the Python peer answered (an error reply is the only ERROR).
 */
export function assertTracedSends(got: { spans: SpanRecord[]; carriers: TraceCarrier[] }, topic: string, notifyTopic: string, fanout: boolean): void {
  for (const c of got.carriers) assert.match(String(c['traceparent']), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'every send carried a traceparent');
  const named = (name: string, method?: string): SpanRecord[] => got.spans.filter((s) => s.name === name && (method === undefined || s.attributes['rpc.method'] === method));
  assert.equal(got.carriers.length, got.spans.length, 'a carrier per span');
  const [echo] = named(`call ${topic}`, 'echo');
  assert.equal(echo?.kind, SpanKind.CLIENT);
  assert.equal(echo?.status.code, SpanStatusCode.UNSET);
  const [fail] = named(`call ${topic}`, 'fail');
  assert.equal(fail?.status.code, SpanStatusCode.ERROR);
  assert.equal(fail?.attributes['error.type'], 'builtins.ValueError');
  assert.equal(named(`cast ${topic}`, 'tick')[0]?.kind, SpanKind.PRODUCER);
  if (fanout) assert.equal(named(`fanout ${topic}`, 'tick')[0]?.kind, SpanKind.PRODUCER);
  for (const p of ['info', 'error']) assert.equal(named(`notify ${notifyTopic}.${p}`)[0]?.kind, SpanKind.PRODUCER, `the ${p} notification's span`);
  const errors = got.spans.filter((s) => s.status.code === SpanStatusCode.ERROR).map((s) => s.attributes['rpc.method']);
  assert.deepEqual(errors.sort(), ['echo', 'fail', 'nosuch'], 'only the error replies are errors (echo: the unsupported version)');
}
