/**
 * One conformance suite that every driver (and the hybrid router) passes, after Watermill's
 * pubsub tests: the same cases run against each backend, and a case is skipped only by a
 * capability declared by the transport its pattern is routed to (with the router, the call
 * transport's capabilities say nothing about notifications).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import {
  Bus,
  CallAborted,
  CallMonitorTimeout,
  ConnectionLost,
  InvalidTarget,
  MessageUndeliverable,
  MessagingTimeout,
  REQUEUE,
  RemoteError,
  VersionCapError,
  type BatchMessage,
  type BusOptions,
  type ConfigInput,
  type Context,
  type DriverCapabilities,
  type NotificationMetadata,
  type Pattern,
  type Serializer,
} from '@hybridbus/core';
import { Collector, deferred, freshTopic, recordingLogger } from '../util.js';

export interface BackendUnderTest {
  readonly name: string;
  /** Start whatever the backend needs (servers); called once before the cases. */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** The config of one "process": every bus made from it reaches the same backend. */
  config(): ConfigInput;
  /** Make the bus die as a crashed process would: no more replies or heartbeats. */
  crash(bus: Bus): Promise<void> | void;
  /**
   * A message to a topic nobody serves: 'undeliverable' (the default; every driver here can
   * tell: rabbit's mandatory publish comes back, zmq's name service has no host, the memory
   * hub no queue) fails a call, cast or fanout with MessageUndeliverable within
   * noServerTimeout; 'timeout' is for a backend that cannot tell, whose call only times out.
   */
  readonly noServer?: 'undeliverable' | 'timeout';
  /** Within this long (ms; default 500) a message to a topic nobody serves must have failed. */
  readonly noServerTimeout?: number;
}

type Caps = DriverCapabilities;

export function conformance(backend: BackendUnderTest): void {
  describe(`conformance: ${backend.name}`, () => {
    const buses: Bus[] = [];
    let probe: Bus;

    const newBus = async (options?: BusOptions, config: ConfigInput = backend.config()): Promise<Bus> => {
      const bus = await Bus.create(config, options);
      buses.push(bus);
      return bus;
    };

    before(async () => {
      await backend.setup?.();
      probe = await newBus();
    });
    after(async () => {
      await Promise.allSettled(buses.map((b) => b.close()));
      await backend.teardown?.();
    });

    /**
     * Skip the case unless the transport the router gives `pattern` for `topic` declares `cap`:
     * with a router, each pattern may go over a different transport.
     */
    const skipUnless = (t: TestContext, topic: string, pattern: Pattern, cap: keyof Caps): boolean => {
      const name = probe.route(topic, pattern);
      if (probe.transport(name).capabilities[cap]) return false;
      t.skip(`transport "${name}", which carries ${pattern}, does not declare ${cap}`);
      return true;
    };

    /** An RPC server on its own bus, recording what it handles. */
    const startServer = async (topic: string, server: string, endpoints: object[], opts: Parameters<Bus['rpcServer']>[2] = {}) => {
      const bus = await newBus();
      const s = bus.rpcServer({ topic, server }, endpoints, opts);
      await s.start();
      return { bus, server: s };
    };

    const ctx: Context = { user_id: 'u1', project_id: 'p1', request_id: 'req-1' };

    test('call: arguments and context reach the endpoint, the result comes back', async () => {
      const topic = freshTopic();
      await startServer(topic, 's1', [{ echo: (c: Context, args: Record<string, unknown>) => ({ c, args }) }]);
      const client = (await newBus()).rpcClient({ topic });
      const payload = { s: 'héllo ☃', n: [1, 2.5, null, true, false], nested: { k: 'v', empty: {} } };
      const r = await client.call<{ c: Context; args: Record<string, unknown> }>(ctx, 'echo', { arg: payload });
      assert.deepEqual(r.args, { arg: payload });
      assert.deepEqual(r.c, ctx);
    });

    test('cast: each message is handled by exactly one server of the topic', async () => {
      const topic = freshTopic();
      const seen = new Collector<string>();
      const endpoint = (name: string) => ({ tick: (_c: Context, a: { i: number }) => seen.push(`${name}:${a.i}`), ping: () => name });
      const a = await startServer(topic, 'a', [endpoint('a')]);
      const b = await startServer(topic, 'b', [endpoint('b')]);
      const client = (await newBus()).rpcClient({ topic });
      for (let i = 0; i < 20; i++) await client.cast(ctx, 'tick', { i });
      await seen.until(20);
      // A call to each server after the casts: a duplicate would have arrived by now.
      assert.equal(await client.prepare({ server: 'a' }).call(ctx, 'ping'), 'a');
      assert.equal(await client.prepare({ server: 'b' }).call(ctx, 'ping'), 'b');
      assert.equal(seen.items.length, 20);
      assert.deepEqual(new Set(seen.items.map((s) => s.split(':')[1])).size, 20);
      void a;
      void b;
    });

    test('call: load spreads over the servers of a topic; server targeting reaches only that server', async () => {
      const topic = freshTopic();
      await startServer(topic, 'a', [{ who: () => 'a' }]);
      await startServer(topic, 'b', [{ who: () => 'b' }]);
      const client = (await newBus()).rpcClient({ topic });
      const anyServer = await Promise.all(Array.from({ length: 20 }, () => client.call<string>(ctx, 'who')));
      assert.deepEqual(new Set(anyServer), new Set(['a', 'b']));
      const targeted = await Promise.all(Array.from({ length: 10 }, () => client.prepare({ server: 'b' }).call<string>(ctx, 'who')));
      assert.deepEqual(targeted, Array(10).fill('b'));
    });

    test('fanout: a cast reaches every server of the topic once', async () => {
      const topic = freshTopic();
      const seen = new Collector<string>();
      for (const name of ['a', 'b', 'c']) {
        await startServer(topic, name, [{ refresh: (_c: Context, a: { n: number }) => seen.push(`${name}${a.n}`), ping: () => name }]);
      }
      const client = (await newBus()).rpcClient({ topic });
      await client.prepare({ fanout: true }).cast(ctx, 'refresh', { n: 1 });
      await client.prepare({ fanout: true }).cast(ctx, 'refresh', { n: 2 });
      await seen.until(6);
      for (const name of ['a', 'b', 'c']) await client.prepare({ server: name }).call(ctx, 'ping');
      assert.deepEqual([...seen.items].sort(), ['a1', 'a2', 'b1', 'b2', 'c1', 'c2']);
    });

    test('call with fanout, or a server target without a server, is rejected locally', async () => {
      const bus = await newBus();
      const client = bus.rpcClient({ topic: freshTopic() });
      await assert.rejects(client.prepare({ fanout: true }).call(ctx, 'x'), InvalidTarget);
      assert.throws(() => bus.rpcServer({ topic: 't' }, []), InvalidTarget);
      assert.throws(() => bus.rpcClient({ server: 's' }), InvalidTarget);
    });

    describe('namespaces and versions', () => {
      const topic = freshTopic();
      let bus: Bus;
      before(async () => {
        await startServer(topic, 's', [
          { target: { namespace: 'compute', version: '1.2', legacyNamespaces: ['nova'] }, get: () => 'compute-1.2', only12: () => 'x' },
          { target: { version: '2.1' }, get: () => 'default-2.1' },
          { target: { namespace: 'compute', version: '1.5' }, other: () => 'compute-1.5' },
        ]);
        bus = await newBus();
      });
      const call = (fields: { namespace?: string; version?: string }, method = 'get') =>
        bus.rpcClient({ topic, ...fields }).call(ctx, method);

      test('the first endpoint with the namespace, a compatible version and the method serves', async () => {
        assert.equal(await call({ namespace: 'compute', version: '1.0' }), 'compute-1.2');
        assert.equal(await call({ namespace: 'compute', version: '1.2' }), 'compute-1.2');
        assert.equal(await call({ namespace: 'nova', version: '1.1' }), 'compute-1.2');
        assert.equal(await call({ version: '2.0' }), 'default-2.1');
        assert.equal(await call({ namespace: 'compute', version: '1.4' }, 'other'), 'compute-1.5');
      });

      const rejectsWith = async (p: Promise<unknown>, cls: string, text: RegExp) => {
        await assert.rejects(p, (e: unknown) => {
          assert.ok(e instanceof RemoteError, `expected RemoteError, got ${String(e)}`);
          assert.equal(e.remoteClass, cls);
          assert.equal(e.remoteModule, 'oslo_messaging.rpc.dispatcher');
          assert.match(e.remoteMessage, text);
          return true;
        });
      };

      test('a newer minor or another major is UnsupportedVersion; a missing method is NoSuchMethod', async () => {
        await rejectsWith(call({ namespace: 'compute', version: '1.6' }), 'UnsupportedVersion', /version 1\.6/);
        await rejectsWith(call({ version: '3.0' }), 'UnsupportedVersion', /version 3\.0/);
        await rejectsWith(call({ namespace: 'nosuch' }), 'UnsupportedVersion', /version 1\.0/);
        await rejectsWith(call({ namespace: 'compute', version: '1.4' }, 'nope'), 'NoSuchMethod', /nope/);
        // compatible endpoints (1.2 and 1.5) exist but only the 1.2 one has only12: 1.3 skips it
        await rejectsWith(call({ namespace: 'compute', version: '1.3' }, 'only12'), 'NoSuchMethod', /only12/);
      });

      test('a version above the version cap is refused before sending', async () => {
        const client = bus.rpcClient({ topic, namespace: 'compute', version: '1.2' }, { versionCap: '1.1' });
        assert.equal(client.canSendVersion(), false);
        assert.equal(client.canSendVersion('1.1'), true);
        await assert.rejects(client.call(ctx, 'get'), VersionCapError);
        await assert.rejects(client.cast(ctx, 'get'), VersionCapError);
        assert.equal(await client.prepare({ version: '1.1' }).call(ctx, 'get'), 'compute-1.2');
      });
    });

    describe('access policy', () => {
      class Api {
        hidden = 'not a method';
        ping(): string {
          return 'pong';
        }
        _secret(): string {
          return 'leaked';
        }
        __proto_like(): string {
          return 'leaked';
        }
      }
      test('names starting with "_", inherited Object methods and non-functions are never callable', async () => {
        const topic = freshTopic();
        await startServer(topic, 's', [new Api()]);
        const client = (await newBus()).rpcClient({ topic });
        assert.equal(await client.call(ctx, 'ping'), 'pong');
        for (const m of ['_secret', '__proto_like', 'constructor', 'toString', 'hasOwnProperty', 'hidden', 'target']) {
          await assert.rejects(client.call(ctx, m), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'NoSuchMethod', m);
        }
      });
      test('the explicit policy allows only the methods an endpoint lists in `exposed`', async () => {
        const topic = freshTopic();
        const endpoint = { exposed: ['open', '_sneaky'], open: () => 'ok', closed: () => 'leaked', _sneaky: () => 'leaked' };
        await startServer(topic, 's', [endpoint], { accessPolicy: 'explicit' });
        const client = (await newBus()).rpcClient({ topic });
        assert.equal(await client.call(ctx, 'open'), 'ok');
        for (const m of ['closed', '_sneaky']) {
          await assert.rejects(client.call(ctx, m), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'NoSuchMethod');
        }
      });
    });

    test('remote errors carry class, module, message and traceback; the server keeps serving', async () => {
      class QuotaExceeded extends Error {
        override name = 'QuotaExceeded';
        readonly module = 'nova.exception';
      }
      const topic = freshTopic();
      const logger = recordingLogger();
      const bus = await newBus({ logger });
      const server = bus.rpcServer({ topic, server: 's' }, [
        {
          expectedExceptions: [QuotaExceeded],
          quota: () => {
            throw new QuotaExceeded('quota exceeded for cores');
          },
          boom: async () => {
            throw new TypeError('boom');
          },
          ok: () => 1,
        },
      ]);
      await server.start();
      const client = (await newBus()).rpcClient({ topic });
      await assert.rejects(client.call(ctx, 'quota'), (e: unknown) => {
        assert.ok(e instanceof RemoteError);
        assert.equal(e.code, 'HB_REMOTE');
        assert.equal(e.remoteClass, 'QuotaExceeded');
        assert.equal(e.remoteModule, 'nova.exception');
        assert.equal(e.remoteMessage, 'quota exceeded for cores');
        assert.ok(e.remoteTraceback.some((l) => l.includes('quota exceeded')));
        return true;
      });
      await assert.rejects(client.call(ctx, 'boom'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'TypeError');
      assert.equal(await client.call(ctx, 'ok'), 1);
      // Expected exceptions are part of the API: not logged as server faults.
      const errors = logger.records.filter((r) => r.level === 'error').map((r) => String((r.obj as { method?: string }).method));
      assert.deepEqual(errors, ['boom']);
      await server.stop();
    });

    test('a result JSON cannot encode fails the call with a RemoteError; the server keeps serving', async () => {
      const topic = freshTopic();
      const bus = await newBus({ logger: recordingLogger() });
      const server = bus.rpcServer({ topic, server: 's' }, [{ big: () => 10n, ok: () => 1 }]);
      await server.start();
      const client = (await newBus()).rpcClient({ topic });
      await assert.rejects(client.call(ctx, 'big'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'TypeError' && /BigInt/.test(e.remoteMessage));
      assert.equal(await client.call(ctx, 'ok'), 1);
      await server.stop();
    });

    test('a call times out with MessagingTimeout; an AbortSignal aborts it with CallAborted', async () => {
      const topic = freshTopic();
      const release = deferred();
      await startServer(topic, 's', [{ slow: () => release.promise.then(() => 'late'), fast: () => 'fast' }]);
      const client = (await newBus()).rpcClient({ topic }, { timeout: 200 });
      const t0 = Date.now();
      await assert.rejects(client.call(ctx, 'slow'), (e: unknown) => e instanceof MessagingTimeout && e.code === 'HB_TIMEOUT');
      assert.ok(Date.now() - t0 < 5_000);
      const ac = new AbortController();
      const p = client.call(ctx, 'slow', {}, { signal: ac.signal, timeout: 10_000 });
      ac.abort(new Error('user gave up'));
      await assert.rejects(p, (e: unknown) => e instanceof CallAborted && (e.cause as Error).message === 'user gave up');
      await assert.rejects(client.call(ctx, 'slow', {}, { signal: AbortSignal.abort() }), CallAborted);
      release.resolve();
      assert.equal(await client.call(ctx, 'fast'), 'fast');
    });

    test('a call, cast or fanout to a topic nobody serves fails fast with MessageUndeliverable (or, where the backend cannot tell, a call times out)', async (t) => {
      const within = backend.noServerTimeout ?? 500;
      const topic = freshTopic('nobody');
      if (backend.noServer === 'timeout') {
        const client = (await newBus()).rpcClient({ topic }, { timeout: within });
        await assert.rejects(client.call(ctx, 'x'), MessagingTimeout);
        return t.diagnostic(`${backend.name} cannot tell that nobody serves a topic: only the call's timeout was checked`);
      }
      // A timeout far beyond `within`: failing in time is the transport telling, not the timer.
      const client = (await newBus()).rpcClient({ topic }, { timeout: 60_000 });
      const sends: Array<[string, () => Promise<unknown>]> = [
        ['call', () => client.call(ctx, 'x')],
        ['cast', () => client.cast(ctx, 'x')],
        ['cast to a server', () => client.prepare({ server: 'gone' }).cast(ctx, 'x')],
        ['fanout', () => client.prepare({ fanout: true }).cast(ctx, 'x')],
      ];
      for (const [what, send] of sends) {
        const t0 = Date.now();
        await assert.rejects(send(), (e: unknown) => {
          assert.ok(e instanceof MessageUndeliverable, `${what}: expected MessageUndeliverable, got ${String(e)}`);
          return true;
        });
        assert.ok(Date.now() - t0 < within, `${what} failed after ${Date.now() - t0} ms (expected within ${within} ms)`);
      }
    });

    test('bounded concurrency: at most maxConcurrency requests run at once, all complete', async () => {
      const topic = freshTopic();
      let running = 0;
      let peak = 0;
      const gate = new Collector<() => void>();
      await startServer(topic, 's', [
        {
          work: () =>
            new Promise<string>((resolve) => {
              running++;
              peak = Math.max(peak, running);
              gate.push(() => (running--, resolve('done')));
            }),
        },
      ], { maxConcurrency: 2 });
      const client = (await newBus()).rpcClient({ topic });
      const calls = Array.from({ length: 6 }, () => client.call(ctx, 'work'));
      // Keep two running at every step: a third would push the peak above 2.
      for (let i = 0; i < 6; i++) {
        await gate.until(Math.min(i + 2, 6));
        (gate.items[i] as () => void)();
      }
      assert.deepEqual(await Promise.all(calls), Array(6).fill('done'));
      assert.equal(peak, 2);
    });

    test('stop() drains: a call in flight still gets its reply, and stop waits for it', async () => {
      const topic = freshTopic();
      const started = deferred();
      const release = deferred();
      const order: string[] = [];
      const { server } = await startServer(topic, 's', [
        { slow: async () => (started.resolve(), await release.promise, order.push('handled'), 'finished') },
      ]);
      const client = (await newBus()).rpcClient({ topic });
      const call = client.call(ctx, 'slow');
      await started.promise;
      const stopped = server.stop().then(() => order.push('stopped'));
      assert.equal(server.inFlight, 1);
      release.resolve();
      assert.equal(await call, 'finished');
      await stopped;
      assert.deepEqual(order, ['handled', 'stopped']);
      assert.equal(server.running, false);
    });

    test('serializer hook: entities and context go through it both ways', async () => {
      const serializer: Serializer = {
        serializeEntity: (_c, e) => (e instanceof Date ? { $date: e.toISOString() } : e),
        deserializeEntity: (_c, e) =>
          typeof e === 'object' && e !== null && '$date' in e ? new Date(String((e as { $date: string }).$date)) : e,
        serializeContext: (c) => ({ ...c, serialized: true }),
        deserializeContext: (c) => ({ ...c, deserialized: true }),
      };
      const topic = freshTopic();
      const sbus = await newBus({ serializer });
      const server = sbus.rpcServer({ topic, server: 's' }, [
        { later: (c: Context, a: { when: Date }) => (assert.ok(a.when instanceof Date), assert.equal(c['serialized'], true), assert.equal(c['deserialized'], true), new Date(a.when.getTime() + 1000)) },
      ]);
      await server.start();
      const client = (await newBus({ serializer })).rpcClient({ topic });
      const r = await client.call<Date>(ctx, 'later', { when: new Date('2026-01-01T00:00:00Z') });
      assert.ok(r instanceof Date);
      assert.equal(r.toISOString(), '2026-01-01T00:00:01.000Z');
      await server.stop();
    });

    describe('call monitoring', () => {
      test('heartbeats keep a long call alive past the monitor timeout', async (t) => {
        const topic = freshTopic();
        if (skipUnless(t, topic, 'call', 'callMonitor')) return;
        // The first heartbeat must come within the monitor timeout of the call's start, delivery
        // included: 600 ms leaves room for a loaded machine; the call lasts 2.5 monitor timeouts.
        await startServer(topic, 's', [{ slow: () => new Promise((r) => setTimeout(() => r('done'), 1_500)) }]);
        const client = (await newBus()).rpcClient({ topic }, { callMonitorTimeout: 600, timeout: 10_000 });
        assert.equal(await client.call(ctx, 'slow'), 'done');
      });
      test('when the server dies mid-call the client fails early (CallMonitorTimeout, or ConnectionLost where the transport sees the peer go)', async (t) => {
        const topic = freshTopic();
        if (skipUnless(t, topic, 'call', 'callMonitor')) return;
        const started = deferred();
        const { bus } = await startServer(topic, 's', [{ hang: () => (started.resolve(), new Promise(() => undefined)) }]);
        // Not shorter: a request still on its way to the server after the monitor timeout failed
        // the call before the crash (seen at 300 ms on a loaded 2-core machine).
        const client = (await newBus()).rpcClient({ topic }, { callMonitorTimeout: 1_000, timeout: 30_000 });
        const t0 = Date.now();
        const call = client.call(ctx, 'hang');
        await started.promise;
        await backend.crash(bus);
        await assert.rejects(call, (e: unknown) => e instanceof CallMonitorTimeout || e instanceof ConnectionLost);
        assert.ok(Date.now() - t0 < 10_000, 'failed well before the 30 s timeout');
      });
    });

    describe('notifications', () => {
      test('a notification reaches the endpoint method of its priority with all its fields', async () => {
        const topic = freshTopic('notif');
        const got = new Collector<{ priority: string; c: Context; publisherId: string; eventType: string; payload: unknown; metadata: NotificationMetadata }>();
        const rec = (priority: string) => (c: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) =>
          void got.push({ priority, c, publisherId, eventType, payload, metadata });
        const lbus = await newBus();
        const listener = lbus.notificationListener([{ topic }], [{ info: rec('info'), error: rec('error'), sample: rec('sample') }]);
        await listener.start();
        const notifier = (await newBus()).notifier({ publisherId: 'compute.node-7', topics: [topic] });
        await notifier.info(ctx, 'compute.instance.create.end', { state: 'active' });
        await notifier.error(ctx, 'compute.instance.create.error', { code: 500 });
        await notifier.prepare({ publisherId: 'compute.node-8' }).sample(ctx, 'cpu.util', 0.5);
        const items = await got.until(3);
        const byPriority = Object.fromEntries(items.map((i) => [i.priority, i]));
        assert.deepEqual(Object.keys(byPriority).sort(), ['error', 'info', 'sample']);
        const info = byPriority['info'] as (typeof items)[number];
        assert.deepEqual(info.c, ctx);
        assert.equal(info.publisherId, 'compute.node-7');
        assert.equal(info.eventType, 'compute.instance.create.end');
        assert.deepEqual(info.payload, { state: 'active' });
        assert.match(info.metadata.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        assert.match(info.metadata.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
        assert.equal(info.metadata.redelivered, false);
        assert.equal(byPriority['sample']?.publisherId, 'compute.node-8');
        await listener.stop();
      });

      test('a notifier with several topics sends to each', async () => {
        const [t1, t2] = [freshTopic('n1'), freshTopic('n2')];
        const got = new Collector<string>();
        const lbus = await newBus();
        const l1 = lbus.notificationListener([{ topic: t1 }], [{ warn: () => void got.push(t1) }]);
        const l2 = lbus.notificationListener([{ topic: t2 }], [{ warn: () => void got.push(t2) }]);
        await l1.start();
        await l2.start();
        await (await newBus()).notifier({ publisherId: 'p', topics: [t1, t2] }).warn(ctx, 'e', {});
        assert.deepEqual([...(await got.until(2))].sort(), [t1, t2].sort());
        await l1.stop();
        await l2.stop();
      });

      test('filter rules select by publisher id, event type, context and metadata', async () => {
        const topic = freshTopic('filter');
        const got = new Collector<string>();
        const lbus = await newBus();
        const listener = lbus.notificationListener([{ topic }], [
          { filterRule: { eventType: 'compute\\.' }, info: (_c, _p, e) => void got.push(`compute:${e}`) },
          { filterRule: { publisherId: /^api\./, context: { user_id: 'admin' } }, info: (_c, p, e) => void got.push(`api:${p}:${e}`) },
          { filterRule: { metadata: { messageId: 'no-such-id' } }, info: () => void got.push('never') },
          { info: (_c, _p, e) => void got.push(`all:${e}`) },
        ]);
        await listener.start();
        const bus = await newBus();
        await bus.notifier({ publisherId: 'api.1', topics: [topic] }).info({ user_id: 'admin' }, 'compute.x', {});
        await bus.notifier({ publisherId: 'api.2', topics: [topic] }).info({ user_id: 'bob' }, 'image.y', {});
        await bus.notifier({ publisherId: 'other', topics: [topic] }).info({ user_id: 'admin' }, 'network.z', {});
        const items = await got.until(5);
        assert.deepEqual([...items].sort(), ['all:compute.x', 'all:image.y', 'all:network.z', 'api:api.1:compute.x', 'compute:compute.x'].sort());
        await listener.stop();
        assert.equal(got.items.length, 5);
      });

      test('pools: every pool gets each notification, one member of a pool handles it', async (t) => {
        const topic = freshTopic('pool');
        if (skipUnless(t, topic, 'notify', 'pools')) return;
        const got = new Collector<string>();
        const listeners = [];
        for (const [pool, member] of [['billing', 'b1'], ['billing', 'b2'], ['audit', 'a1']] as const) {
          const bus = await newBus();
          const l = bus.notificationListener([{ topic }], [{ info: (_c, _p, _e, payload) => void got.push(`${pool}/${member}/${(payload as { i: number }).i}`) }], { pool });
          await l.start();
          listeners.push(l);
        }
        const notifier = (await newBus()).notifier({ publisherId: 'p', topics: [topic] });
        for (let i = 0; i < 10; i++) await notifier.info(ctx, 'e', { i });
        await got.until(20);
        await Promise.all(listeners.map((l) => l.stop()));
        const perPool = (pool: string) => got.items.filter((s) => s.startsWith(`${pool}/`)).map((s) => Number(s.split('/')[2])).sort((a, b) => a - b);
        assert.deepEqual(perPool('billing'), [...Array(10).keys()]);
        assert.deepEqual(perPool('audit'), [...Array(10).keys()]);
      });

      test('requeue: an endpoint that returns REQUEUE gets the notification again', async (t) => {
        const topic = freshTopic('requeue');
        if (skipUnless(t, topic, 'notify', 'requeue')) return;
        const got = new Collector<string>();
        const redelivered: boolean[] = [];
        let first = true;
        const bus = await newBus();
        const listener = bus.notificationListener([{ topic }], [
          {
            info: (_c, _p, e, _payload, metadata) => {
              got.push(e);
              redelivered.push(metadata.redelivered);
              if (first) {
                first = false;
                return REQUEUE;
              }
              return undefined;
            },
          },
        ], { allowRequeue: true });
        await listener.start();
        await (await newBus()).notifier({ publisherId: 'p', topics: [topic] }).info(ctx, 'retry.me', {});
        assert.deepEqual(await got.until(2), ['retry.me', 'retry.me']);
        assert.deepEqual(redelivered, [false, true], 'the requeued copy comes back marked redelivered');
        await listener.stop();
      });

      test('batch listening: endpoints get lists by size, and the rest after the batch timeout', async () => {
        const topic = freshTopic('batch');
        const batches = new Collector<BatchMessage[]>();
        const bus = await newBus();
        const listener = bus.batchNotificationListener([{ topic }], [{ info: (ms) => void batches.push([...ms]) }], { batchSize: 5, batchTimeout: 200 });
        await listener.start();
        const notifier = (await newBus()).notifier({ publisherId: 'p', topics: [topic] });
        // Sent together: with acks on "handled" (zmq://), each notification resolves only once its
        // batch has been handled, so awaiting them one by one would wait out the batch timeout each.
        await Promise.all([...Array(12).keys()].map((i) => notifier.info(ctx, 'e', { i })));
        const got = await batches.until(3);
        assert.deepEqual(got.map((b) => b.length), [5, 5, 2]);
        assert.deepEqual(got.flat().map((m) => (m.payload as { i: number }).i).sort((a, b) => a - b), [...Array(12).keys()]);
        assert.deepEqual(got[0]?.[0]?.ctxt, ctx);
        await listener.stop();
      });
    });
  });
}
