/** zmq-direct with the etcd name service, against a real etcd from the launcher. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import '@hybridbus/zmq-direct';
import { startEtcd, type EtcdServer } from './harness/launcher.js';
import { freshTopic } from './util.js';
import { busesClosedAfter, driverOf } from './zmq/buses.js';

describe('zmq:// with matchmaker=etcd://', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  const { bus } = busesClosedAfter(); // after() hooks run in order: the buses close before etcd stops
  after(() => etcd.stop());

  test('a call between two buses: the server registers in etcd, the client finds it there', async () => {
    const url = `zmq://?matchmaker=${encodeURIComponent(`${etcd.url}/zmq-test`)}&heartbeat_interval=200`;
    const topic = freshTopic();
    const serverBus = await bus(url);
    const srv = serverBus.rpcServer({ topic, server: 'host-1' }, [{ echo: (_ctx: unknown, args: unknown) => args }]);
    await srv.start();
    const clientBus = await bus(url);
    assert.equal(driverOf(clientBus).nameService.kind, 'etcd');
    const client = clientBus.rpcClient({ topic }, { timeout: 5_000 });
    assert.deepEqual(await client.call({}, 'echo', { hello: 'etcd' }), { hello: 'etcd' });
    const targeted = clientBus.rpcClient({ topic, server: 'host-1' }, { timeout: 5_000 });
    assert.deepEqual(await targeted.call({}, 'echo', { n: 2 }), { n: 2 });
    await srv.stop();
  });
});
