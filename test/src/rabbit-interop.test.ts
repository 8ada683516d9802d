/**
 * Interop with the real Python oslo.messaging (Debian's python3-oslo.messaging, run with
 * /usr/bin/python3) through one RabbitMQ: RPC both ways (results, remote errors with class and
 * message, call monitoring, casts, fanout) and notifications both ways (with and without pools).
 * The Python side is test/src/interop/oslo_peer.py.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Bus } from '@hybridbus/core';
import '@hybridbus/rabbit-brokered';
import { sharedServers, startRabbitMQ } from './harness/launcher.js';
import { pythonHas, PythonPeer } from './interop/python-peer.js';
import { assertFromPythonNotifier, assertFromTsNotifier, assertPythonClientOfTs, assertTracedSends, assertTsClientOfPython, sendTsNotifications, startTsListener, startTsServer, TS_CTX, withTracing } from './interop/scenarios.js';
import { freshTopic, recordingLogger } from './util.js';

const haveOslo = pythonHas('oslo_messaging');

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
    const bus = await newBus();
    await assertTsClientOfPython(bus, py, topic);
    await bus.rpcClient({ topic, namespace: 'test', version: '1.2' }).prepare({ fanout: true }).cast(TS_CTX, 'tick', { n: 2 });
    await py.line((l) => l['event'] === 'cast' && l['n'] === 2);
  });

  test('a Python client calls our server: results, remote errors with class and message, call monitoring, cast, fanout', async () => {
    const topic = freshTopic('ts-srv');
    const server = await startTsServer(await newBus(), topic);
    const py = peer('client', url(), topic);
    await assertPythonClientOfTs(py, server.casts);
    await server.stop();
  });

  test('notifications from a Python notifier reach our listener', async () => {
    const topic = freshTopic('py-notif');
    const listener = await startTsListener(await newBus(), topic);
    const py = peer('notify', url(), topic);
    assert.equal(await py.exited, 0);
    await assertFromPythonNotifier(listener.got);
    await listener.stop();
  });

  test('our notifications reach Python listeners, with and without a pool', async () => {
    const topic = freshTopic('ts-notif');
    const plain = peer('listen', url(), topic);
    const pooled = peer('listen', url(), topic, freshTopic('py-pool'));
    await plain.line((l) => l['event'] === 'ready');
    await pooled.line((l) => l['event'] === 'ready');
    await sendTsNotifications(await newBus(), topic);
    for (const py of [plain, pooled]) await assertFromTsNotifier(py);
  });

  test('with our tracing on (a _trace carrier in every message), a Python server and listener handle our calls, casts, fanout and notifications as usual', async () => {
    const topic = freshTopic('py-traced');
    const notifyTopic = freshTopic('py-traced-notif');
    const py = peer('server', url(), topic, 'py1');
    const listener = peer('listen', url(), notifyTopic);
    await py.line((l) => l['event'] === 'ready');
    await listener.line((l) => l['event'] === 'ready');
    const bus = await newBus();
    const traced = await withTracing(async () => {
      await assertTsClientOfPython(bus, py, topic);
      await bus.rpcClient({ topic, namespace: 'test', version: '1.2' }).prepare({ fanout: true }).cast(TS_CTX, 'tick', { n: 2 });
      await py.line((l) => l['event'] === 'cast' && l['n'] === 2);
      await sendTsNotifications(bus, notifyTopic);
      await assertFromTsNotifier(listener);
    });
    assertTracedSends(traced, topic, notifyTopic, true);
  });
});
