/**
 * Interop with the real Python oslo.messaging (Debian's python3-oslo.messaging, run with
 * /usr/bin/python3) through one RabbitMQ: RPC both ways (results, remote errors with class and
 * message, call monitoring, casts, fanout) and notifications both ways (with and without pools).
 * The Python side is test/src/interop/oslo_peer.py.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Bus, RemoteError, remoteError, type Context, type NotificationMetadata } from '@hybridbus/core';
import '@hybridbus/rabbit-brokered';
import { sharedServers, startRabbitMQ } from './harness/launcher.js';
import { pythonHas, PythonPeer, type Line } from './interop/python-peer.js';
import { Collector, freshTopic, recordingLogger } from './util.js';

const haveOslo = pythonHas('oslo_messaging');
const ctx: Context = { user_id: 'u-ts', project_id: 'p-ts', request_id: 'req-ts-1' };

describe('interop with Python oslo.messaging over RabbitMQ', { skip: haveOslo ? false : 'python3-oslo.messaging is not installed (scripts/install-deps.sh installs it)' }, () => {
  const buses: Bus[] = [];
  const peers: PythonPeer[] = [];
  // Registered before sharedServers' hooks, so it runs before the broker stops.
  after(async () => {
    await Promise.allSettled(peers.map((p) => p.stop()));
    await Promise.allSettled(buses.map((b) => b.close()));
  });
  const servers = sharedServers({ rabbit: () => startRabbitMQ({ plugins: [] }) });
  const url = (): string => servers.rabbit.url.replace(/^amqp:/, 'rabbit:');
  const newBus = async (): Promise<Bus> => {
    // Server-side exceptions are logged by core; keep them out of the test output.
    const bus = await Bus.create({ transports: { default: url() } }, { logger: recordingLogger() });
    buses.push(bus);
    return bus;
  };
  const peer = (...args: string[]): PythonPeer => {
    const p = new PythonPeer(args);
    peers.push(p);
    return p;
  };

  test('our client calls a Python RPC server: results, remote errors, call monitoring, cast, fanout', async () => {
    const topic = freshTopic('py-srv');
    const py = peer('server', url(), topic, 'py1');
    await py.line((l) => l['event'] === 'ready');
    const client = (await newBus()).rpcClient({ topic, namespace: 'test', version: '1.2' }, { timeout: 15_000 });

    const payload = { s: 'héllo ☃', n: [1, 2.5, null, true, false], nested: { k: 'v', empty: {} } };
    const echoed = await client.call<{ arg: unknown; ctxt: Context }>(ctx, 'echo', { arg: payload });
    assert.deepEqual(echoed.arg, payload);
    assert.equal(echoed.ctxt['user_id'], 'u-ts');
    assert.equal(echoed.ctxt['request_id'], 'req-ts-1');
    assert.equal(await client.call(ctx, 'add', { a: 2, b: 40 }), 42);
    assert.equal(await client.prepare({ server: 'py1', version: '1.0' }).call(ctx, 'add', { a: 1, b: 1 }), 2);

    await assert.rejects(client.call(ctx, 'fail'), (e: unknown) => {
      assert.ok(e instanceof RemoteError, String(e));
      assert.equal(e.remoteClass, 'ValueError');
      assert.equal(e.remoteModule, 'builtins');
      assert.equal(e.remoteMessage, 'boom');
      assert.ok(e.remoteTraceback.some((l) => l.includes('ValueError: boom')), 'the Python traceback comes along');
      return true;
    });
    await assert.rejects(client.call(ctx, 'nosuch'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'NoSuchMethod' && e.remoteModule === 'oslo_messaging.rpc.dispatcher');
    await assert.rejects(client.prepare({ version: '2.0' }).call(ctx, 'echo', { arg: 1 }), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'UnsupportedVersion');

    // oslo's server heartbeats every _timeout/2 s: a 3 s call survives a 2 s monitor timeout.
    const t0 = Date.now();
    assert.equal(await client.prepare({ callMonitorTimeout: 2_000 }).call(ctx, 'slow', { seconds: 3 }), 'slept 3');
    assert.ok(Date.now() - t0 >= 2_900);

    await client.cast(ctx, 'tick', { n: 1 });
    await client.prepare({ fanout: true }).cast(ctx, 'tick', { n: 2 });
    const cast = await py.line((l) => l['event'] === 'cast' && l['n'] === 1);
    assert.equal((cast['ctxt'] as Context)['user_id'], 'u-ts');
    await py.line((l) => l['event'] === 'cast' && l['n'] === 2);
  });

  test('a Python client calls our server: results, remote errors with class and message, call monitoring, cast, fanout', async () => {
    const topic = freshTopic('ts-srv');
    class QuotaExceeded extends Error {
      override name = 'QuotaExceeded';
      readonly module = 'nova.exception';
    }
    const casts = new Collector<{ n: number; c: Context }>();
    const bus = await newBus();
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
    const py = peer('client', url(), topic);

    const echo = await py.result('echo');
    assert.deepEqual((echo['result'] as Line)['arg'], { s: 'héllo ☃', n: [1, 2.5, null, true] });
    assert.equal(((echo['result'] as Line)['ctxt'] as Line)['user_id'], 'u-py');
    assert.equal((await py.result('add'))['result'], 42);
    // a builtin class is rebuilt as itself by the Python client
    const fail = await py.result('fail');
    assert.equal(fail['error'], 'ValueError');
    assert.equal(fail['message'], 'boom');
    // any other class arrives as oslo_messaging.RemoteError carrying our class and message
    const quota = await py.result('quota');
    assert.deepEqual([quota['error'], quota['exc_type'], quota['value']], ['RemoteError', 'QuotaExceeded', 'quota exceeded for cores']);
    const nosuch = await py.result('nosuch');
    assert.deepEqual([nosuch['error'], nosuch['exc_type'], nosuch['value']], ['RemoteError', 'NoSuchMethod', 'Endpoint does not support RPC method nosuch']);
    // our server heartbeats at _timeout/2 (1 s), so oslo's 2 s call monitor keeps the 3 s call alive
    assert.equal((await py.result('monitored'))['result'], 'slept 3');
    assert.equal((await py.result('direct'))['result'], 2);
    assert.equal((await py.result('cast'))['error'], undefined);
    assert.equal((await py.result('fanout'))['error'], undefined);
    const got = await casts.until(2);
    assert.deepEqual(got.map((c) => c.n).sort(), [1, 2]);
    assert.equal(got[0]?.c['user_id'], 'u-py');
    assert.equal(await py.exited, 0);
    await server.stop();
  });

  test('notifications from a Python notifier reach our listener', async () => {
    const topic = freshTopic('py-notif');
    const got = new Collector<{ priority: string; c: Context; publisherId: string; eventType: string; payload: unknown; metadata: NotificationMetadata }>();
    const rec = (priority: string) => (c: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) =>
      void got.push({ priority, c, publisherId, eventType, payload, metadata });
    const listener = (await newBus()).notificationListener([{ topic }], [{ info: rec('info'), error: rec('error') }]);
    await listener.start();
    const py = peer('notify', url(), topic);
    assert.equal(await py.exited, 0);
    const items = await got.until(2);
    const info = items.find((i) => i.priority === 'info');
    assert.ok(info);
    assert.equal(info.publisherId, 'py.node1');
    assert.equal(info.eventType, 'compute.instance.create.end');
    assert.deepEqual(info.payload, { seq: 1, state: 'active' });
    assert.equal(info.c['user_id'], 'u-py');
    assert.match(info.metadata.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.match(info.metadata.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
    assert.deepEqual(items.find((i) => i.priority === 'error')?.payload, { seq: 2 });
    await listener.stop();
  });

  test('our notifications reach Python listeners, with and without a pool', async () => {
    const topic = freshTopic('ts-notif');
    const plain = peer('listen', url(), topic);
    const pooled = peer('listen', url(), topic, freshTopic('py-pool'));
    await plain.line((l) => l['event'] === 'ready');
    await pooled.line((l) => l['event'] === 'ready');
    const notifier = (await newBus()).notifier({ publisherId: 'compute.ts-1', topics: [topic] });
    await notifier.info(ctx, 'compute.instance.create.end', { state: 'active' });
    await notifier.error(ctx, 'compute.instance.create.error', { code: 500 });
    for (const py of [plain, pooled]) {
      const info = await py.line((l) => l['event'] === 'notification' && l['priority'] === 'info');
      assert.equal(info['publisher_id'], 'compute.ts-1');
      assert.equal(info['event_type'], 'compute.instance.create.end');
      assert.deepEqual(info['payload'], { state: 'active' });
      assert.equal((info['ctxt'] as Line)['user_id'], 'u-ts');
      const metadata = info['metadata'] as Line;
      assert.match(String(metadata['message_id']), /^[0-9a-f-]{36}$/);
      assert.match(String(metadata['timestamp']), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
      const error = await py.line((l) => l['event'] === 'notification' && l['priority'] === 'error');
      assert.deepEqual(error['payload'], { code: 500 });
    }
  });
});
