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
import { Bus } from 'hybridbus';
import { freePort, qdrouterdAvailable, sharedServers, startProtonBroker, startQdrouterd } from './harness/launcher.js';
import { pythonHas, PythonPeer, type Line } from './interop/python-peer.js';
import {
  assertFromPythonNotifier,
  assertFromTsNotifier,
  assertPythonClientOfTs,
  assertTracedSends,
  assertTsClientOfPython,
  MORE_PRIORITIES,
  sendTsNotifications,
  startTsListener,
  startTsServer,
  TS_CTX,
  withTracing,
} from './interop/scenarios.js';
import { Collector, freshTopic, recordingLogger, tempDir } from './util.js';
import rhea, { type Delivery, type EventContext, type Message } from 'rhea';

const haveAmqp1 = pythonHas('oslo_messaging', 'pyngus', 'proton');
const noAmqp1 = 'python3-oslo.messaging with python3-pyngus and python3-qpid-proton is not installed (scripts/install-deps.sh installs them)';
const qdrouterd = qdrouterdAvailable();
const routerSkip = !haveAmqp1 ? noAmqp1 : 'reason' in qdrouterd ? qdrouterd.reason : false;

const isReady = (l: Line): boolean => l['event'] === 'ready';

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
    await assertPythonClientOfTs(py, server.casts, { timeout: true });
    await server.stop();
  });

  test('a Python notifier attached to our listener, with its legacy addresses: every priority arrives', async () => {
    // The listener takes both address forms, so an oslo configured with addressing_mode=legacy finds it too.
    const topic = freshTopic('py-direct-notif');
    const { port, url } = await directUrl();
    const listener = await startTsListener(await bus(url), topic);
    const py = peer('notify', `amqp://127.0.0.1:${port}/?addressing_mode=legacy`, topic, MORE_PRIORITIES.join(','));
    assert.equal(await py.exited, 0, py.stderrTail);
    await assertFromPythonNotifier(listener.got, MORE_PRIORITIES);
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
    await assertTsClientOfPython(await bus(url()), py, topic, { timeout: true });
  });

  test('a Python client calls our server: results, remote errors, call monitoring, a direct call, cast, fanout, timeout', async () => {
    const topic = freshTopic('ts-srv');
    const server = await startTsServer(await bus(url()), topic);
    const py = peer('client', url(), topic, 'timeout');
    await assertPythonClientOfTs(py, server.casts, { timeout: true });
    await server.stop();
  });

  if (fanoutReachesAll) {
    test('our fanout reaches every Python server of the topic', async () => {
      const topic = freshTopic('py-fan');
      const [a, b] = [peer('server', url(), topic, 'py1'), peer('server', url(), topic, 'py2')];
      await Promise.all([a, b].map((p) => p.line(isReady)));
      const client = (await bus(url())).rpcClient({ topic, namespace: 'test', version: '1.2' });
      // A peer says "ready" before the router has spread its multicast link: fanout probes until
      // both servers have seen one (each probe is a real fanout; the router drops none it accepts).
      for (let i = 0; ; i++) {
        assert.ok(i < 40, 'the Python servers never both received a probe fanout');
        await client.prepare({ fanout: true }).cast({ user_id: 'u-ts' }, 'tick', { n: `probe-${i}` });
        const seen = await Promise.all([a, b].map((p) => p.line((l) => l['event'] === 'cast' && String(l['n']).startsWith('probe-'), 250).then(() => true, () => false)));
        if (seen.every(Boolean)) break;
      }
      await client.prepare({ fanout: true }).cast({ user_id: 'u-ts' }, 'tick', { n: 2 });
      await Promise.all([a, b].map((p) => p.line((l) => l['event'] === 'cast' && l['n'] === 2)));
    });
  }

  test('notifications from a Python notifier reach our listener', async () => {
    const topic = freshTopic('py-notif');
    const listener = await startTsListener(await bus(url()), topic);
    const py = peer('notify', url(), topic, MORE_PRIORITIES.join(','));
    assert.equal(await py.exited, 0, py.stderrTail);
    await assertFromPythonNotifier(listener.got, MORE_PRIORITIES);
    await listener.stop();
  });

  test('our notifications reach a Python listener', async () => {
    const topic = freshTopic('ts-notif');
    const py = peer('listen', url(), topic);
    await py.line(isReady);
    await sendTsNotifications(await bus(url()), topic, MORE_PRIORITIES);
    await assertFromTsNotifier(py, MORE_PRIORITIES);
  });

  test(`with our tracing on (_trace in every request and notification), a Python server and listener handle our calls, casts${fanoutReachesAll ? ', fanout' : ''} and notifications as usual`, async () => {
    const topic = freshTopic('py-traced');
    const notifyTopic = freshTopic('py-traced-notif');
    const py = peer('server', url(), topic, 'py1');
    const listener = peer('listen', url(), notifyTopic);
    await Promise.all([py, listener].map((p) => p.line(isReady)));
    const b = await bus(url());
    const traced = await withTracing(async () => {
      await assertTsClientOfPython(b, py, topic);
      if (fanoutReachesAll) {
        await b.rpcClient({ topic, namespace: 'test', version: '1.2' }).prepare({ fanout: true }).cast(TS_CTX, 'tick', { n: 2 });
        await py.line((l) => l['event'] === 'cast' && l['n'] === 2);
      }
      await sendTsNotifications(b, notifyTopic);
      await assertFromTsNotifier(listener);
    });
    assertTracedSends(traced, topic, notifyTopic, fanoutReachesAll);
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
