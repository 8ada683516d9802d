/**
 * @hybridbus/observability's Prometheus metrics and /metrics + /healthz endpoint, on real parts:
 * an RPC server, a client and a notification listener over zmq:// (the embedded default) and over
 * a real RabbitMQ, scraped over real HTTP; /healthz follows the broker down and back up.
 */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { after, describe, test } from 'node:test';
import { Bus, channels, RemoteError, type ConfigInput, type Context, type TransportEvent } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import { registerMetrics, serveObservability, type ObservabilityServer } from '@hybridbus/observability';
import { Counter, Gauge, Registry } from 'prom-client';
import { sharedServers, startRabbitMQ } from './harness/launcher.js';
import { Collector, deferred, freshTopic, tempDir } from './util.js';

const ctx: Context = { user_id: 'u', project_id: 'p', request_id: 'req-metrics' };

type Labels = Record<string, string>;
interface Sample {
  readonly name: string;
  readonly labels: Labels;
  readonly value: number;
}

/** The samples of a Prometheus text exposition (enough of the format for prom-client's output). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `an exposition line: ${line}`);
    const labels: Labels = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `labels`; 0 when there is none yet. */
function value(samples: readonly Sample[], name: string, labels: Labels = {}): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(hits.length <= 1, `one sample of ${name}${JSON.stringify(labels)}, got ${hits.length}`);
  return hits[0]?.value ?? 0;
}

async function scrape(server: ObservabilityServer): Promise<Sample[]> {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4; charset=utf-8$/);
  return parse(await res.text());
}

async function healthz(server: ObservabilityServer): Promise<{ status: number; body: { state: string; transports: Record<string, { state: string; reason?: string }> } }> {
  const res = await fetch(`${server.url}/healthz`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return { status: res.status, body: (await res.json()) as { state: string; transports: Record<string, { state: string; reason?: string }> } };
}

/** Poll `/healthz` (an endpoint, not an event: polling is the probe's own way) until `status`. */
async function healthzUntil(server: ObservabilityServer, status: number, ms: number): Promise<Awaited<ReturnType<typeof healthz>>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const h = await healthz(server);
    if (h.status === status) return h;
    if (Date.now() > deadline) throw new Error(`/healthz still ${h.status} (${JSON.stringify(h.body)}) after ${ms} ms, waiting for ${status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Events of a channel, collected (subscribed after the metrics, so they count first). */
function collect<T>(channel: diagnostics.Channel<T>): { events: Collector<T>; stop: () => void } {
  const events = new Collector<T>();
  const fn = (m: unknown): void => events.push(m as T);
  channel.subscribe(fn);
  return { events, stop: () => void channel.unsubscribe(fn) };
}

/**
 * On one bus (transport "default"): 3 calls that succeed, 1 whose endpoint raises, 1 cast and
 * 1 notification; asserts each metric moved by exactly that much.
 */
async function trafficMovesTheCounters(bus: Bus, server: ObservabilityServer): Promise<void> {
  const topic = freshTopic('metrics');
  const rpc = bus.rpcServer({ topic, server: 's1' }, [
    {
      echo: (_c: Context, args: Record<string, unknown>) => args,
      fail: () => {
        throw new Error('no capacity');
      },
      poke: () => undefined,
      hold: () => held.promise,
    },
  ]);
  const held = deferred<string>();
  const nTopic = freshTopic('metrics-n');
  const listener = bus.notificationListener([{ topic: nTopic }], [{ info: () => undefined }]);
  await rpc.start();
  await listener.start();
  const dispatched = collect(channels.dispatch.end);
  const dispatchFailed = collect(channels.dispatch.error);
  const notified = collect(channels.notifyDispatch.end);
  try {
    const before = await scrape(server);
    const t = { transport: 'default' };
    const client = bus.rpcClient({ topic });
    for (let i = 0; i < 3; i++) assert.deepEqual(await client.call(ctx, 'echo', { i }), { i });
    await assert.rejects(client.call(ctx, 'fail', {}), RemoteError);
    await client.cast(ctx, 'poke', {});
    await bus.notifier({ publisherId: 'metrics-test', topics: [nTopic] }).info(ctx, 'thing.happened', { n: 1 });
    // The server side finishes after the client sees its reply: wait for its events.
    await dispatched.events.until(4, 30_000);
    await dispatchFailed.events.until(1, 30_000);
    await notified.events.until(1, 30_000);
    const now = await scrape(server);
    const moved = (name: string, labels: Labels): number => value(now, name, { ...t, ...labels }) - value(before, name, { ...t, ...labels });

    assert.equal(moved('hybridbus_messages_sent_total', { pattern: 'call', outcome: 'ok' }), 3);
    assert.equal(moved('hybridbus_messages_sent_total', { pattern: 'call', outcome: 'RemoteError' }), 1);
    assert.equal(moved('hybridbus_messages_sent_total', { pattern: 'cast', outcome: 'ok' }), 1);
    assert.equal(moved('hybridbus_messages_sent_total', { pattern: 'notify', outcome: 'ok' }), 1);
    assert.equal(moved('hybridbus_messages_handled_total', { pattern: 'call', outcome: 'ok' }), 3);
    assert.equal(moved('hybridbus_messages_handled_total', { pattern: 'call', outcome: 'failed' }), 1);
    assert.equal(moved('hybridbus_messages_handled_total', { pattern: 'cast', outcome: 'ok' }), 1);
    assert.equal(moved('hybridbus_messages_handled_total', { pattern: 'notify', outcome: 'ack' }), 1);
    assert.equal(moved('hybridbus_call_duration_seconds_count', { outcome: 'ok' }), 3);
    assert.equal(moved('hybridbus_call_duration_seconds_count', { outcome: 'RemoteError' }), 1);
    assert.equal(moved('hybridbus_call_duration_seconds_bucket', { outcome: 'ok', le: '+Inf' }), 3);
    assert.ok(moved('hybridbus_call_duration_seconds_sum', { outcome: 'ok' }) > 0, 'call latency adds up');
    assert.equal(moved('hybridbus_dispatch_duration_seconds_count', { pattern: 'call', outcome: 'ok' }), 3);
    assert.equal(moved('hybridbus_dispatch_duration_seconds_count', { pattern: 'notify', outcome: 'ack' }), 1);
    assert.equal(value(now, 'hybridbus_calls_in_flight', t), 0, 'every call settled');
    assert.equal(value(now, 'hybridbus_transport_up', { bus: 'default', ...t }), 1);
    assert.equal(value(now, 'hybridbus_transport_state', { bus: 'default', ...t, state: 'connected' }), 1);
    assert.equal(value(now, 'hybridbus_transport_state', { bus: 'default', ...t, state: 'down' }), 0);
    for (const name of ['connections', 'pending_calls', 'queued_messages', 'unacked_messages', 'retried_messages_total', 'reconnects_total', 'dropped_frames_total']) {
      assert.ok(now.some((s) => s.name === `hybridbus_${name}` && s.labels['bus'] === 'default' && s.labels['transport'] === 'default'), `hybridbus_${name} has a row for the transport`);
    }
    assert.equal(value(now, 'hybridbus_pending_calls', { bus: 'default', ...t }), 0);
    const h = await healthz(server);
    assert.equal(h.status, 200);
    assert.equal(h.body.state, 'connected');

    // A call the server holds is in flight until its reply.
    const started = collect(channels.dispatch.start);
    try {
      const pending = client.call(ctx, 'hold', {});
      await started.events.until(1, 30_000);
      assert.equal(value(await scrape(server), 'hybridbus_calls_in_flight', t), 1);
      held.resolve('done');
      assert.equal(await pending, 'done');
      assert.equal(value(await scrape(server), 'hybridbus_calls_in_flight', t), 0);
    } finally {
      started.stop();
    }
  } finally {
    dispatched.stop();
    dispatchFailed.stop();
    notified.stop();
    await listener.stop();
    await rpc.stop();
  }
}

describe('metrics over zmq:// (the embedded default)', () => {
  const open: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const f of open.reverse()) await f();
  });
  /** A zmq:// bus; buses given the same name-service directory reach each other's servers. */
  const zmqBus = async (ns = tempDir('hb-metrics-ns-')): Promise<Bus> => {
    const bus = await Bus.create({ transports: { default: `zmq://?matchmaker=local:${ns}` } } satisfies ConfigInput);
    open.push(() => bus.close());
    return bus;
  };

  test('calls, a remote error, a cast and a notification move the counters by exactly that much', async () => {
    const bus = await zmqBus();
    const registry = new Registry();
    const unregister = registerMetrics(bus, { registry });
    open.push(unregister);
    const server = await serveObservability({ bus, registry, host: '127.0.0.1', port: 0 });
    open.push(() => server.close());
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(server.port, 0);
    await trafficMovesTheCounters(bus, server);
    unregister(); // the channels are process-wide: later tests count on having none
  });

  test('bad requests get 404/405 and the server goes on; HEAD has no body; a closed bus is 503', async () => {
    const bus = await zmqBus();
    const registry = new Registry();
    const unregister = registerMetrics(bus, { registry });
    open.push(unregister);
    const server = await serveObservability({ bus, registry, port: 0 });
    open.push(() => server.close());
    assert.equal((await fetch(`${server.url}/nope`)).status, 404);
    assert.equal((await fetch(`${server.url}/`)).status, 404);
    const post = await fetch(`${server.url}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    assert.equal((await fetch(`${server.url}/healthz`, { method: 'DELETE' })).status, 405);
    const head = await fetch(`${server.url}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${server.url}/metrics?name[]=x`)).status, 200, 'a query string is ignored');
    assert.equal((await healthz(server)).status, 200);
    await bus.close();
    const down = await healthz(server);
    assert.equal(down.status, 503);
    assert.equal(down.body.state, 'down');
    assert.equal(value(await scrape(server), 'hybridbus_transport_up', { bus: 'default', transport: 'default' }), 0);
    await assert.rejects(serveObservability({ bus, registry, port: 70000 }), /port: must be an integer from 0 to 65535.*70000/);
    await assert.rejects(serveObservability({ bus, registry, port: server.port }), /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    unregister();
  });

  test('two buses in one registry: a bus label each, each counts its own messages, an unregistered bus is not counted; unregister removes them all', async () => {
    const ns = tempDir('hb-metrics-ns-');
    const [a, b, other] = [await zmqBus(ns), await zmqBus(ns), await zmqBus(ns)];
    const registry = new Registry();
    const offA = registerMetrics(a, { registry, busName: 'a' });
    assert.throws(() => registerMetrics(b, { registry, busName: 'a' }), /a bus named "a" is already registered/);
    assert.throws(() => registerMetrics(a, { registry, busName: 'a2' }), /this bus is already registered in this registry with prefix "hybridbus_" as "a"/);
    assert.throws(() => registerMetrics(b, { registry, busName: 'b', buckets: [1, 2] }), /buckets: .* already use/);
    const offB = registerMetrics(b, { registry, busName: 'b' });
    // Every bus serves the same topic; a's client calls twice, b's once, `other` (not registered) three times.
    const topic = freshTopic('per-bus');
    const server = a.rpcServer({ topic, server: 's1' }, [{ echo: (_c: Context, args: Record<string, unknown>) => args }]);
    await server.start();
    const dispatched = collect(channels.dispatch.end);
    try {
      for (const [bus, n] of [[a, 2], [b, 1], [other, 3]] as const) for (let i = 0; i < n; i++) assert.deepEqual(await bus.rpcClient({ topic }).call(ctx, 'echo', { i }), { i });
      await dispatched.events.until(6, 30_000);
    } finally {
      dispatched.stop();
      await server.stop();
    }
    const text = await registry.metrics();
    const samples = parse(text);
    const calls = { transport: 'default', pattern: 'call', outcome: 'ok' };
    assert.equal(value(samples, 'hybridbus_messages_sent_total', { bus: 'a', ...calls }), 2);
    assert.equal(value(samples, 'hybridbus_messages_sent_total', { bus: 'b', ...calls }), 1);
    assert.equal(value(samples, 'hybridbus_call_duration_seconds_count', { bus: 'b', transport: 'default', outcome: 'ok' }), 1);
    assert.equal(value(samples, 'hybridbus_messages_handled_total', { bus: 'a', ...calls }), 6, "a's server took every call");
    assert.equal(samples.filter((s) => s.name === 'hybridbus_messages_sent_total').length, 2, 'no row for the unregistered bus');
    assert.equal(value(samples, 'hybridbus_transport_up', { bus: 'a', transport: 'default' }), 1);
    assert.equal(value(samples, 'hybridbus_transport_up', { bus: 'b', transport: 'default' }), 1);
    assert.equal(text.match(/^# TYPE hybridbus_messages_sent_total counter$/gm)?.length, 1);
    assert.ok(channels.call.end.hasSubscribers);

    offB();
    const onlyA = parse(await registry.metrics());
    assert.equal(value(onlyA, 'hybridbus_transport_up', { bus: 'b' }), 0, "b's rows are gone");
    assert.equal(value(onlyA, 'hybridbus_transport_up', { bus: 'a' }), 1);
    offA();
    offA(); // twice is harmless
    assert.deepEqual(registry.getMetricsAsArray(), [], 'every metric is removed');
    assert.equal((await registry.metrics()).trim(), '');
    for (const ch of [channels.call.start, channels.call.end, channels.cast.start, channels.cast.end, channels.dispatch.start, channels.notifyDispatch.start, channels.dispatch.end, channels.notify.end, channels.notifyDispatch.end, channels.transport.connect]) {
      assert.equal(ch.hasSubscribers, false, `${ch.name.toString()} has no subscriber left`);
    }
    // A clash with a metric someone else registered changes nothing.
    const foreign = new Counter({ name: 'hybridbus_connections', help: 'not ours', registers: [registry] });
    assert.throws(() => registerMetrics(a, { registry }), /hybridbus_connections already registered in this registry by something else/);
    assert.deepEqual(registry.getMetricsAsArray(), [foreign]);
    registry.removeSingleMetric('hybridbus_connections');
    // And a fresh registration works again, from zero.
    const again = registerMetrics(a, { registry });
    assert.equal(value(parse(await registry.metrics()), 'hybridbus_messages_sent_total'), 0);
    again();
  });
});

test('/healthz: degraded is 200 and says so; a failing collect() is a 500 for that scrape only', async () => {
  let state: 'connected' | 'degraded' | 'down' = 'degraded';
  const bus = {
    health: () => ({ state, transports: { default: { transport: 'default', scheme: 'zmq', state, reason: state === 'connected' ? undefined : 'peer 10.0.0.7:9501 lost' } } }),
  };
  const registry = new Registry();
  let fail = true;
  new Gauge({
    name: 'flaky',
    help: 'fails once',
    registers: [registry],
    collect() {
      if (fail) throw new Error('collect broke');
      this.set(1);
    },
  });
  const server = await serveObservability({ bus, registry, port: 0 });
  try {
    const degraded = await healthz(server);
    assert.equal(degraded.status, 200);
    assert.equal(degraded.body.state, 'degraded');
    assert.equal(degraded.body.transports['default']?.reason, 'peer 10.0.0.7:9501 lost');
    state = 'down';
    assert.equal((await healthz(server)).status, 503);
    const broken = await fetch(`${server.url}/metrics`);
    assert.equal(broken.status, 500);
    assert.match(await broken.text(), /collect broke/);
    fail = false;
    assert.match(await (await fetch(`${server.url}/metrics`)).text(), /^flaky 1$/m);
  } finally {
    await server.close();
  }
});

test('transport events are counted by transport and kind', async () => {
  const registry = new Registry();
  const bus = await Bus.create({ transports: { default: `zmq://?matchmaker=local:${tempDir('hb-metrics-ns-')}` } });
  const off = registerMetrics(bus, { registry });
  try {
    // As a driver reports them (core's kit: publishTransportEvent).
    channels.transport.disconnect.publish({ transport: 'rabbit', scheme: 'rabbit', peer: '127.0.0.1:5672', reason: 'ECONNRESET' });
    channels.transport.reconnect.publish({ transport: 'rabbit', scheme: 'rabbit', peer: '127.0.0.1:5672' });
    channels.transport.reconnect.publish({ transport: 'rabbit', scheme: 'rabbit', peer: '127.0.0.1:5672' });
    // A malformed event from some other publisher is not the application's uncaught exception.
    channels.transport.connect.publish(null as unknown as TransportEvent);
    await new Promise((r) => setImmediate(r));
    const samples = parse(await registry.metrics());
    assert.equal(value(samples, 'hybridbus_transport_events_total', { transport: 'rabbit', event: 'disconnect' }), 1);
    assert.equal(value(samples, 'hybridbus_transport_events_total', { transport: 'rabbit', event: 'reconnect' }), 2);
    assert.equal(value(samples, 'hybridbus_transport_events_total', { transport: 'rabbit', event: 'connect' }), 0);
  } finally {
    off();
    await bus.close();
  }
});

describe('metrics over rabbit:// (a real RabbitMQ)', () => {
  const open: Array<() => Promise<void> | void> = [];
  // Registered before sharedServers' hooks, so it runs before the broker stops.
  after(async () => {
    for (const f of open.reverse()) await f();
  });
  const servers = sharedServers({ rabbit: () => startRabbitMQ({ plugins: [] }) });

  test('the counters move with traffic, and /healthz is 503 while the broker is down and 200 once it is back', async () => {
    const url = `${servers.rabbit.url.replace(/^amqp:/, 'rabbit:')}?rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1`;
    const bus = await Bus.create({ transports: { default: url } });
    open.push(() => bus.close());
    const registry = new Registry();
    open.push(registerMetrics(bus, { registry }));
    const server = await serveObservability({ bus, registry, host: '127.0.0.1', port: 0 });
    open.push(() => server.close());
    await trafficMovesTheCounters(bus, server);

    // Whatever the driver reports of the outage, the counter says the same.
    const disconnects = collect(channels.transport.disconnect);
    open.push(disconnects.stop);
    await servers.rabbit.kill();
    const down = await healthzUntil(server, 503, 60_000);
    assert.equal(down.body.state, 'down');
    assert.equal(down.body.transports['default']?.state, 'down');
    assert.equal(value(await scrape(server), 'hybridbus_transport_up', { bus: 'default', transport: 'default' }), 0);

    await servers.rabbit.restart();
    const up = await healthzUntil(server, 200, 90_000);
    assert.equal(up.body.state, 'connected');
    const back = await scrape(server);
    assert.equal(value(back, 'hybridbus_transport_up', { bus: 'default', transport: 'default' }), 1);
    assert.equal(value(back, 'hybridbus_transport_events_total', { transport: 'default', event: 'disconnect' }), disconnects.events.items.length);
  });
});
