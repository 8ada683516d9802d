/** zmq-direct with the Redis name service, against a real redis-server from the launcher. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Bus, type ConfigInput } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { conformance } from './conformance/suite.js';
import { startRedis, type RedisServer } from './harness/launcher.js';
import { freshTopic } from './util.js';
import { startChild, type ChildServer } from './zmq/children.js';

let redis: RedisServer;
const url = (extra = ''): string => `zmq://?matchmaker=${encodeURIComponent(redis.url)}&heartbeat_interval=200${extra}`;

conformance({
  name: 'zmq:// (Redis name service)',
  setup: async () => {
    redis = await startRedis();
  },
  teardown: async () => {
    await redis.stop();
  },
  config: () => ({ transports: { default: url() } }),
  crash: (bus: Bus) => (bus.transport('default') as ZmqDriver).close(),
  noServerTimeout: 2000,
});

describe('zmq:// while Redis goes away', () => {
  let server: RedisServer;
  const buses: Bus[] = [];
  const kids: ChildServer[] = [];
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await Promise.allSettled(buses.map((b) => b.close()));
    await Promise.allSettled(kids.map((k) => k.kill()));
    await server.stop();
  });

  test('Redis stopped and restarted while calls continue: no call fails, servers re-register', async () => {
    const u = `zmq://?matchmaker=${encodeURIComponent(server.url)}&heartbeat_interval=200&ns_cache=100`;
    const cfg: ConfigInput = { transports: { default: u } };
    const topic = freshTopic();
    kids.push(await startChild(cfg, [{ topic, server: 'a' }]));
    kids.push(await startChild(cfg, [{ topic, server: 'b' }]));
    const bus = await Bus.create(cfg);
    buses.push(bus);
    const client = bus.rpcClient({ topic }, { timeout: 5_000 });
    const answers: string[] = [];
    let stop = false;
    const caller = (async () => {
      while (!stop) {
        try {
          answers.push(await client.call<string>({}, 'whoami'));
        } catch (e) {
          throw new Error(`call ${answers.length + 1} failed (redis ${server.running ? 'up' : 'down'}): ${String(e)}`, { cause: e });
        }
      }
    })();
    const before = () => answers.length;
    const progress = async (what: string) => {
      const n = before();
      const deadline = Date.now() + 5_000;
      while (answers.length < n + 50) {
        if (Date.now() > deadline) throw new Error(`calls stalled ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    caller.catch(() => undefined); // awaited below; a failure must not also surface as unhandled
    await progress('before the outage');
    await server.kill();
    const ns = (bus.transport('default') as ZmqDriver).nameService;
    const noticed = Date.now() + 5_000;
    while (ns.stats.backendErrors === 0) {
      assert.ok(Date.now() < noticed, 'the outage was noticed by a lookup');
      await new Promise((r) => setTimeout(r, 20));
    }
    await progress('while Redis is down'); // answered from the cached lookups
    await server.restart();
    await progress('after Redis came back');
    // A process that never saw the old data finds both servers once they have re-registered.
    const fresh = await Bus.create(cfg);
    buses.push(fresh);
    const key = `openstack/${topic}`;
    const deadline = Date.now() + 8_000;
    let hosts: readonly unknown[] = [];
    while (Date.now() < deadline && (hosts = await (fresh.transport('default') as ZmqDriver).nameService.lookup(key).catch(() => [])).length < 2) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(hosts.length, 2, 'both servers re-registered after the restart');
    stop = true;
    await caller; // would throw if any call had failed
    assert.deepEqual(new Set(answers), new Set(['a', 'b']));
  });
});
