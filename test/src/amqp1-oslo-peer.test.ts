/**
 * The real Python oslo.messaging peer (test/src/interop/oslo_peer.py) over AMQP 1.0, Python to
 * Python: oslo's amqp1 driver (Debian's python3-oslo.messaging with python3-pyngus and
 * python3-qpid-proton) through the Qpid Proton C++ example broker, and through qdrouterd when
 * there is one. The interop tests of hybridbus's own AMQP 1.0 driver stand on this peer.
 *
 * What oslo does on each:
 * - A Proton example broker sends no `product` connection property, so oslo's default
 *   addressing_mode=dynamic picks its legacy addresses (exclusive.<exchange>.<topic>.<server>,
 *   unicast.<exchange>.<topic>, broadcast.<exchange>.<topic>.all); every address is a queue, so
 *   a fanout cast reaches one server of a topic, not all of them.
 * - qdrouterd says product=qpid-dispatch-router: routable addresses (openstack.org/om/rpc/...),
 *   distributed as the router is told (harness/qdrouterd.ts): fanout reaches every server.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { qdrouterdAvailable, sharedServers, startProtonBroker, startQdrouterd } from './harness/launcher.js';
import { pythonHas, PythonPeer, type Line } from './interop/python-peer.js';
import { freshTopic, tempDir } from './util.js';

const haveAmqp1 = pythonHas('oslo_messaging', 'pyngus', 'proton');
const noAmqp1 = 'python3-oslo.messaging with python3-pyngus and python3-qpid-proton is not installed (scripts/install-deps.sh installs them)';
const qdrouterd = qdrouterdAvailable();

const isReady = (l: Line): boolean => l['event'] === 'ready';
const isCast = (n: number) => (l: Line): boolean => l['event'] === 'cast' && l['n'] === n;
const isNotification = (priority: string) => (l: Line): boolean => l['event'] === 'notification' && l['priority'] === priority;

/** Peers started by a describe(), stopped by its after() (registered before its servers'). */
function peerPool(): (args: string[], env?: Record<string, string>) => PythonPeer {
  const peers: PythonPeer[] = [];
  after(() => Promise.allSettled(peers.map((p) => p.stop())));
  return (args, env) => {
    const p = new PythonPeer(args, env);
    peers.push(p);
    return p;
  };
}

/** What `client` mode gets from a Python `server ts1` (which has no `quota`). */
async function assertClientResults(client: PythonPeer): Promise<void> {
  const echo = (await client.result('echo'))['result'] as Line;
  assert.deepEqual(echo['arg'], { s: 'héllo ☃', n: [1, 2.5, null, true] });
  assert.equal((echo['ctxt'] as Line)['user_id'], 'u-py');
  assert.equal((await client.result('add'))['result'], 42);
  const fail = await client.result('fail');
  assert.deepEqual([fail['error'], fail['module'], fail['message']], ['ValueError', 'builtins', 'boom']);
  for (const op of ['quota', 'nosuch']) {
    const r = await client.result(op);
    assert.deepEqual([r['error'], r['exc_type'], r['value']], ['RemoteError', 'NoSuchMethod', `Endpoint does not support RPC method ${op}`]);
  }
  // the server's heartbeats keep a 3 s call alive under a 2 s call monitor
  assert.equal((await client.result('monitored'))['result'], 'slept 3');
  assert.equal((await client.result('direct'))['result'], 2);
  assert.equal((await client.result('cast'))['error'], undefined);
  assert.equal((await client.result('fanout'))['error'], undefined);
  assert.equal(await client.exited, 0);
}

async function assertNotified(listener: PythonPeer): Promise<void> {
  const info = await listener.line(isNotification('info'));
  assert.equal(info['publisher_id'], 'py.node1');
  assert.equal(info['event_type'], 'compute.instance.create.end');
  assert.deepEqual(info['payload'], { seq: 1, state: 'active' });
  assert.equal((info['ctxt'] as Line)['user_id'], 'u-py');
  assert.match(String((info['metadata'] as Line)['message_id']), /^[0-9a-f-]{36}$/);
  const error = await listener.line(isNotification('error'));
  assert.equal(error['event_type'], 'compute.instance.create.error');
  assert.deepEqual(error['payload'], { seq: 2 });
}

describe('the Python oslo.messaging peer over AMQP 1.0, through the Proton C++ broker', { skip: haveAmqp1 ? false : noAmqp1, timeout: 60_000 }, () => {
  const peer = peerPool();
  const servers = sharedServers({ broker: () => startProtonBroker({ flavour: 'cpp' }) });

  test('a Python client calls a Python RPC server: results, remote errors, call monitoring, a direct call, cast and fanout', async () => {
    const topic = freshTopic('py-rpc');
    const url = `${servers.broker.url}/`;
    const server = peer(['server', url, topic, 'ts1']); // client mode's direct call goes to server ts1
    await server.line(isReady);
    const client = peer(['client', url, topic]);
    await assertClientResults(client);
    const cast = await server.line(isCast(1));
    assert.equal((cast['ctxt'] as Line)['user_id'], 'u-py');
    await server.line(isCast(2)); // the only server on the topic: the fanout's one queue reaches it
  });

  test('notifications from a Python notifier reach a Python listener (URL without the trailing slash)', async () => {
    const topic = freshTopic('py-notif');
    const url = servers.broker.url; // amqp://127.0.0.1:PORT works as well
    const listener = peer(['listen', url, topic]);
    await listener.line(isReady);
    const notifier = peer(['notify', url, topic]);
    assert.equal(await notifier.exited, 0, notifier.stderrTail);
    await assertNotified(listener);
  });

  test('driver options reach oslo as URL query parameters and through OSLO_PEER_CONFIG_FILE', async () => {
    // The listener takes routable addressing from its URL, the notifier from an oslo.config file:
    // were either ignored, the two would use different addresses and nothing would arrive.
    const topic = freshTopic('py-opts');
    const configFile = path.join(tempDir('hybridbus-oslo-peer-'), 'peer.conf');
    fs.writeFileSync(configFile, '[oslo_messaging_amqp]\naddressing_mode = routable\n');
    const listener = peer(['listen', `${servers.broker.url}/?addressing_mode=routable`, topic]);
    await listener.line(isReady);
    const notifier = peer(['notify', `${servers.broker.url}/`, topic], { OSLO_PEER_CONFIG_FILE: configFile });
    assert.equal(await notifier.exited, 0, notifier.stderrTail);
    await assertNotified(listener);

    const bad = peer(['notify', `${servers.broker.url}/?no_such_option=1`, topic]);
    assert.notEqual(await bad.exited, 0);
    assert.match(bad.stderrTail, /NoSuchOptError: no such option no_such_option in group \[oslo_messaging_amqp\]/);
  });

  test('the amqp1 driver has no notification pools: `listen POOL` fails', async () => {
    const listener = peer(['listen', `${servers.broker.url}/`, freshTopic('py-pool'), 'pool1']);
    assert.notEqual(await listener.exited, 0);
    assert.match(listener.stderrTail, /NotImplementedError: "pool" not implemented by this transport driver/);
  });
});

const routerSkip = !haveAmqp1 ? noAmqp1 : 'reason' in qdrouterd ? qdrouterd.reason : false;

describe('the Python oslo.messaging peer over AMQP 1.0, through qdrouterd', { skip: routerSkip, timeout: 60_000 }, () => {
  const peer = peerPool();
  const servers = sharedServers({ router: () => startQdrouterd() });

  test('routable addresses: a fanout cast reaches every server of the topic, calls reach one; notifications arrive', async () => {
    const topic = freshTopic('py-router');
    const url = `${servers.router.url}/`;
    const [ts1, ts2] = [peer(['server', url, topic, 'ts1']), peer(['server', url, topic, 'ts2'])];
    const listener = peer(['listen', url, topic]);
    await Promise.all([ts1, ts2, listener].map((p) => p.line(isReady)));
    const client = peer(['client', url, topic]);
    await assertClientResults(client);
    await Promise.all([ts1.line(isCast(2)), ts2.line(isCast(2))]);
    const notifier = peer(['notify', url, topic]);
    assert.equal(await notifier.exited, 0, notifier.stderrTail);
    await assertNotified(listener);
  });
});
