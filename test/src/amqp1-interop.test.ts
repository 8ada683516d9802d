/**
 * Interop of hybridbus's AMQP 1.0 driver (packages/amqp1) with the real Python oslo.messaging
 * amqp1 driver (Debian's python3-oslo.messaging with python3-pyngus and python3-qpid-proton, run
 * as test/src/interop/oslo_peer.py):
 *
 * - direct mode: a Python client connects straight to our server's listener (amqp://HOST:PORT/
 *   of the listener, which announces product "hybridbus", so oslo uses its routable addresses
 *   and attaches a dynamic reply source that the listener names);
 * - through the Qpid Proton C++ example broker (no `product`: oslo's legacy addresses), RPC and
 *   notifications both ways;
 * - the same through qdrouterd when there is one (routable addresses, end-to-end outcomes).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Bus, MessagingTimeout, PRIORITIES, RemoteError, remoteError, type Context, type NotificationMetadata } from 'hybridbus';
import { freePort, qdrouterdAvailable, sharedServers, startProtonBroker, startQdrouterd } from './harness/launcher.js';
import { pythonHas, PythonPeer, type Line } from './interop/python-peer.js';
import { Collector, freshTopic, recordingLogger, tempDir } from './util.js';
import rhea, { type Delivery, type EventContext, type Message } from 'rhea';

const haveAmqp1 = pythonHas('oslo_messaging', 'pyngus', 'proton');
const noAmqp1 = 'python3-oslo.messaging with python3-pyngus and python3-qpid-proton is not installed (scripts/install-deps.sh installs them)';
const qdrouterd = qdrouterdAvailable();
const routerSkip = !haveAmqp1 ? noAmqp1 : 'reason' in qdrouterd ? qdrouterd.reason : false;

const ctx: Context = { user_id: 'u-ts', project_id: 'p-ts', request_id: 'req-ts-1' };
const isReady = (l: Line): boolean => l['event'] === 'ready';
const isNotification = (priority: string) => (l: Line): boolean => l['event'] === 'notification' && l['priority'] === priority;
/** The priorities besides info and error, for oslo_peer.py's `notify TOPIC PRIOS`. */
const MORE_PRIORITIES = PRIORITIES.filter((p) => p !== 'info' && p !== 'error');

/** Buses and Python peers of a describe(), closed by its after() (registered before its servers'). */
function fixtures(): { bus: (url: string) => Promise<Bus>; peer: (...args: string[]) => PythonPeer } {
  const buses: Bus[] = [];
  const peers: PythonPeer[] = [];
  after(async () => {
    await Promise.allSettled(peers.map((p) => p.stop()));
    await Promise.allSettled(buses.map((b) => b.close()));
  });
  return {
    bus: async (url) => {
      // Server-side exceptions are logged by core; keep them out of the test output.
      const b = await Bus.create({ transports: { default: url } }, { logger: recordingLogger() });
      buses.push(b);
      return b;
    },
    peer: (...args) => {
      const p = new PythonPeer(args);
      peers.push(p);
      return p;
    },
  };
}

class QuotaExceeded extends Error {
  override name = 'QuotaExceeded';
  readonly module = 'nova.exception';
}

/** Our RPC server on `topic` (server ts1) with the methods oslo_peer.py's client mode calls. */
async function startTsServer(bus: Bus, topic: string): Promise<{ casts: Collector<{ n: number; c: Context }>; stop: () => Promise<void> }> {
  const casts = new Collector<{ n: number; c: Context }>();
  const server = bus.rpcServer({ topic, server: 'ts1' }, [
    {
      target: { namespace: 'test', version: '1.2' },
      echo: (c: Context, a: { arg: unknown }) => ({ arg: a.arg, ctxt: c }),
      add: (_c: Context, a: { a: number; b: number }) => a.a + a.b,
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

/** What oslo_peer.py's `client TOPIC timeout` gets from startTsServer's server. */
async function assertPythonClientOfTs(py: PythonPeer, casts: Collector<{ n: number; c: Context }>): Promise<void> {
  const echo = await py.result('echo');
  assert.deepEqual((echo['result'] as Line)['arg'], { s: 'héllo ☃', n: [1, 2.5, null, true] });
  assert.equal(((echo['result'] as Line)['ctxt'] as Line)['user_id'], 'u-py');
  assert.equal(((echo['result'] as Line)['ctxt'] as Line)['request_id'], 'req-py-1');
  assert.equal((await py.result('add'))['result'], 42);
  // a builtin class is rebuilt as itself by the Python client
  const fail = await py.result('fail');
  assert.deepEqual([fail['error'], fail['module'], fail['message']], ['ValueError', 'builtins', 'boom']);
  // any other class arrives as oslo_messaging.RemoteError carrying our class and message
  const quota = await py.result('quota');
  assert.deepEqual([quota['error'], quota['exc_type'], quota['value']], ['RemoteError', 'QuotaExceeded', 'quota exceeded for cores']);
  const nosuch = await py.result('nosuch');
  assert.deepEqual([nosuch['error'], nosuch['exc_type'], nosuch['value']], ['RemoteError', 'NoSuchMethod', 'Endpoint does not support RPC method nosuch']);
  // our server heartbeats at call_monitor_timeout/2, so oslo's 2 s call monitor keeps a 3 s call alive
  assert.equal((await py.result('monitored'))['result'], 'slept 3', JSON.stringify(await py.result('monitored')));
  assert.equal((await py.result('direct'))['result'], 2);
  assert.equal((await py.result('cast'))['error'], undefined);
  assert.equal((await py.result('fanout'))['error'], undefined);
  assert.equal((await py.result('timeout'))['error'], 'MessagingTimeout');
  assert.equal(await py.exited, 0, py.stderrTail);
  const got = await casts.until(2);
  assert.deepEqual(got.map((c) => c.n).sort(), [1, 2]);
  assert.equal(got[0]?.c['user_id'], 'u-py');
}

/** Our client against oslo_peer.py's `server py1` on `topic`. */
async function assertTsClientOfPython(bus: Bus, py: PythonPeer, topic: string): Promise<void> {
  const client = bus.rpcClient({ topic, namespace: 'test', version: '1.2' }, { timeout: 15_000 });
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

  // oslo's server heartbeats every call_monitor_timeout/2 s: a 3 s call survives a 2 s monitor timeout.
  const t0 = Date.now();
  assert.equal(await client.prepare({ callMonitorTimeout: 2_000 }).call(ctx, 'slow', { seconds: 3 }), 'slept 3');
  assert.ok(Date.now() - t0 >= 2_900);
  // and without a monitor the call's own timeout ends it
  await assert.rejects(client.prepare({ timeout: 1_000 }).call(ctx, 'slow', { seconds: 3 }), (e: unknown) => e instanceof MessagingTimeout);

  await client.cast(ctx, 'tick', { n: 1 });
  const cast = await py.line((l) => l['event'] === 'cast' && l['n'] === 1);
  assert.equal((cast['ctxt'] as Context)['user_id'], 'u-ts');
  assert.equal((cast['ctxt'] as Context)['request_id'], 'req-ts-1');
}

type Received = { priority: string; c: Context; publisherId: string; eventType: string; payload: unknown; metadata: NotificationMetadata };

async function tsListener(bus: Bus, topic: string): Promise<{ got: Collector<Received>; stop: () => Promise<void> }> {
  const got = new Collector<Received>();
  const rec = (priority: string) => (c: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) =>
    void got.push({ priority, c, publisherId, eventType, payload, metadata });
  const listener = bus.notificationListener([{ topic }], [Object.fromEntries(PRIORITIES.map((p) => [p, rec(p)]))]);
  await listener.start();
  return { got, stop: () => listener.stop() };
}

/** What our listener got from oslo_peer.py's `notify`. */
async function assertFromPythonNotifier(got: Collector<Received>): Promise<void> {
  const items = await got.until(2 + MORE_PRIORITIES.length);
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
  for (const p of MORE_PRIORITIES) {
    const n = items.find((i) => i.priority === p);
    assert.deepEqual([n?.eventType, n?.payload, n?.publisherId], [`test.${p}`, { p }, 'py.node1'], `priority ${p}`);
  }
  assert.equal(items.length, 2 + MORE_PRIORITIES.length);
}

/** What oslo_peer.py's `listen` got from our notifier. */
async function assertFromTsNotifier(bus: Bus, py: PythonPeer, topic: string): Promise<void> {
  const notifier = bus.notifier({ publisherId: 'compute.ts-1', topics: [topic] });
  await notifier.info(ctx, 'compute.instance.create.end', { state: 'active', s: 'héllo ☃' });
  await notifier.error(ctx, 'compute.instance.create.error', { code: 500 });
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
  for (const p of MORE_PRIORITIES) {
    await notifier[p](ctx, `test.${p}`, { p });
    const n = await py.line(isNotification(p));
    assert.deepEqual([n['event_type'], n['payload'], n['publisher_id']], [`test.${p}`, { p }, 'compute.ts-1'], `priority ${p}`);
  }
}

describe('Python oslo.messaging amqp1 clients and our direct-mode servers', { skip: haveAmqp1 ? false : noAmqp1, timeout: 90_000 }, () => {
  const { bus, peer } = fixtures();
  const directUrl = async (): Promise<{ url: string; port: number }> => {
    const port = await freePort();
    const matchmaker = `local:${path.join(tempDir('hybridbus-amqp1-interop-'), 'ns')}`;
    return { port, url: `amqp://?mode=direct&matchmaker=${encodeURIComponent(matchmaker)}&port=${port}` };
  };

  test('a Python client attached to our listener: results, remote errors, call monitoring, a direct call, cast, fanout, timeout', async () => {
    const topic = freshTopic('py-direct');
    const { port, url } = await directUrl();
    const b = await bus(url);
    const server = await startTsServer(b, topic);
    const py = peer('client', `amqp://127.0.0.1:${port}/`, topic, 'timeout');
    await assertPythonClientOfTs(py, server.casts);
    await server.stop();
  });

  test('a Python notifier attached to our listener, with its legacy addresses: every priority arrives', async () => {
    // The listener takes both address forms, so an oslo configured with addressing_mode=legacy finds it too.
    const topic = freshTopic('py-direct-notif');
    const { port, url } = await directUrl();
    const listener = await tsListener(await bus(url), topic);
    const py = peer('notify', `amqp://127.0.0.1:${port}/?addressing_mode=legacy`, topic, MORE_PRIORITIES.join(','));
    assert.equal(await py.exited, 0, py.stderrTail);
    await assertFromPythonNotifier(listener.got);
    await listener.stop();
  });

  test('any AMQP 1.0 client on our listener: data-section bodies, ulong/uuid/binary message-ids echoed with their type, enveloped requests, garbage rejected', async () => {
    const topic = freshTopic('raw-direct');
    const { port, url } = await directUrl();
    const b = await bus(url);
    const server = await startTsServer(b, topic);
    const container = rhea.create_container({ id: 'raw-client' });
    const conn = container.connect({ host: '127.0.0.1', port, reconnect: false });
    after(() => conn.close());
    const replyTo = await new Promise<string>((resolve) => {
      conn.open_receiver({ source: { dynamic: true } as unknown as { address: string } }).once('receiver_open', (c: EventContext) => resolve(c.receiver?.source?.address as string));
    });
    const replies = new Collector<Message>();
    conn.on('message', (c: EventContext) => void replies.push(c.message as Message));
    const sender = conn.open_sender({ target: { address: `openstack.org/om/rpc/anycast/openstack/${topic}` } });
    await new Promise((r) => sender.once('sendable', r));
    const outcome = (m: Message): Promise<string> =>
      new Promise((resolve) => {
        const d: Delivery = sender.send(m);
        for (const ev of ['accepted', 'rejected', 'released', 'modified']) sender.on(ev, (c: EventContext) => c.delivery === d && resolve(ev));
      });
    const request = (method: string, args: object, context: object = { user_id: 'u-raw' }): string => JSON.stringify({ request: { method, args, namespace: 'test', version: '1.2' }, context });
    const uuid = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
    const binary = Buffer.from('0a0b0c', 'hex');
    const half = Buffer.from(request('add', { a: 20, b: 1 }));
    const sent: Array<[Message, unknown]> = [
      [{ message_id: 'str-1', reply_to: replyTo, body: rhea.message.data_section(Buffer.from(request('add', { a: 1, b: 2 }))) }, 3],
      [{ message_id: 42, reply_to: replyTo, body: request('add', { a: 40, b: 2 }) }, 42],
      [{ message_id: uuid, reply_to: replyTo, body: request('add', { a: 0, b: 7 }) }, 7],
      [{ message_id: rhea.types.wrap_binary(binary) as unknown as Buffer, reply_to: replyTo, body: rhea.message.data_sections([half.subarray(0, 9), half.subarray(9)]) }, 21],
      // a 2.0 envelope around the request, its context in _context_ keys (oslo's common.deserialize_msg takes it)
      [{ message_id: 'env-1', reply_to: replyTo, body: JSON.stringify({ request: { 'oslo.version': '2.0', 'oslo.message': JSON.stringify({ method: 'echo', args: { arg: 1 }, namespace: 'test', version: '1.2', _context_user_id: 'u-env' }) } }) }, { arg: 1, ctxt: { user_id: 'u-env' } }],
    ];
    for (const [m] of sent) assert.equal(await outcome({ ...m, to: sender.target.address }), 'accepted');
    const got = await replies.until(sent.length);
    for (const [m, result] of sent) {
      const id = (m.message_id as { value?: unknown }).value ?? m.message_id;
      const reply = got.find((r) => (Buffer.isBuffer(id) ? Buffer.isBuffer(r.correlation_id) && id.equals(r.correlation_id) : r.correlation_id === id));
      assert.ok(reply, `a reply to message-id ${String(id)}`);
      assert.deepEqual(JSON.parse(reply.body as string), { response: result });
    }
    // garbage: rejected with amqp:decode-error, nothing dispatched
    assert.equal(await outcome({ message_id: 'bad-1', reply_to: replyTo, body: 'not json' }), 'rejected');
    assert.equal(await outcome({ message_id: 'bad-2', reply_to: replyTo, body: rhea.message.sequence_section([1, 2]) }), 'rejected');
    conn.close();
    await server.stop();
  });
});

/** The brokered cases, for any intermediary URL. */
function brokered({ bus, peer }: ReturnType<typeof fixtures>, url: () => string, fanoutReachesAll: boolean): void {
  test('our client calls a Python RPC server: results, remote errors, call monitoring, timeout, cast', async () => {
    const topic = freshTopic('py-srv');
    const py = peer('server', url(), topic, 'py1');
    await py.line(isReady);
    await assertTsClientOfPython(await bus(url()), py, topic);
  });

  test('a Python client calls our server: results, remote errors, call monitoring, a direct call, cast, fanout, timeout', async () => {
    const topic = freshTopic('ts-srv');
    const server = await startTsServer(await bus(url()), topic);
    const py = peer('client', url(), topic, 'timeout');
    await assertPythonClientOfTs(py, server.casts);
    await server.stop();
  });

  if (fanoutReachesAll) {
    test('our fanout reaches every Python server of the topic', async () => {
      const topic = freshTopic('py-fan');
      const [a, b] = [peer('server', url(), topic, 'py1'), peer('server', url(), topic, 'py2')];
      await Promise.all([a, b].map((p) => p.line(isReady)));
      const client = (await bus(url())).rpcClient({ topic, namespace: 'test', version: '1.2' });
      await client.prepare({ fanout: true }).cast(ctx, 'tick', { n: 2 });
      await Promise.all([a, b].map((p) => p.line((l) => l['event'] === 'cast' && l['n'] === 2)));
    });
  }

  test('notifications from a Python notifier reach our listener', async () => {
    const topic = freshTopic('py-notif');
    const listener = await tsListener(await bus(url()), topic);
    const py = peer('notify', url(), topic, MORE_PRIORITIES.join(','));
    assert.equal(await py.exited, 0, py.stderrTail);
    await assertFromPythonNotifier(listener.got);
    await listener.stop();
  });

  test('our notifications reach a Python listener', async () => {
    const topic = freshTopic('ts-notif');
    const py = peer('listen', url(), topic);
    await py.line(isReady);
    await assertFromTsNotifier(await bus(url()), py, topic);
  });
}

describe('interop with Python oslo.messaging amqp1 through the Proton C++ broker', { skip: haveAmqp1 ? false : noAmqp1, timeout: 90_000 }, () => {
  const fx = fixtures();
  const servers = sharedServers({ broker: () => startProtonBroker({ flavour: 'cpp' }) });
  // Every address is a queue there: a fanout reaches one server of the topic.
  brokered(fx, () => `${servers.broker.url}/`, false);
});

describe('interop with Python oslo.messaging amqp1 through qdrouterd', { skip: routerSkip, timeout: 90_000 }, () => {
  const fx = fixtures();
  const servers = sharedServers({ router: () => startQdrouterd() });
  brokered(fx, () => `${servers.router.url}/`, true);
});
