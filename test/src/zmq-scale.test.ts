/**
 * zmq:// with more servers than the client's connection pool holds, and fanouts that must
 * reach every server or say how many they did not (issue 15). Servers run in this process,
 * one Bus (so one ROUTER, port and registration) each.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { QueueFull, type Bus, type Context } from '@hybridbus/core';
import { Collector, freshTopic, tempDir } from './util.js';
import { connectionsTo } from './zmq/tcp.js';
import { busesClosedAfter, driverOf, zmqUrl } from './zmq/buses.js';

const { bus } = busesClosedAfter();
const nsDir = (): string => tempDir('hb-zmq-scale-ns-');

/** `n` servers of `topic` named s0..s(n-1), each its own Bus; arrivals go to `got` as "server:i". */
async function servers(u: string, topic: string, n: number, got: Collector<string>): Promise<{ buses: Bus[]; ports: Set<number> }> {
  const buses: Bus[] = [];
  const ports = new Set<number>();
  for (let k = 0; k < n; k++) {
    const server = `s${k}`;
    const b = await bus(u);
    await b
      .rpcServer({ topic, server }, [
        {
          record: (_c: Context, a: { i: number }) => void got.push(`${server}:${a.i}`),
          hang: () => new Promise(() => undefined),
        },
      ])
      .start();
    buses.push(b);
    ports.add(Number((await driverOf(b).address())?.split(':')[1]));
  }
  return { buses, ports };
}

/** Every server in 0..n-1 has had cast `i`, each once. */
function reachedAll(got: readonly string[], n: number, i: number): void {
  const mine = got.filter((g) => g.endsWith(`:${i}`)).sort();
  const want = Array.from({ length: n }, (_, k) => `s${k}:${i}`).sort();
  assert.deepEqual(mine, want);
}

describe('a fanout to more servers than pool_max', () => {
  for (const acks of ['handled', 'none'] as const) {
    test(`acks=${acks}: pool_max=8, 40 servers: every fanout reaches all 40, the pool never holds more than 8`, async () => {
      const dir = nsDir();
      const topic = freshTopic();
      const got = new Collector<string>();
      const { ports } = await servers(zmqUrl(dir), topic, 40, got);
      const client = await bus(zmqUrl(dir, `&pool_max=8&acks=${acks}`));
      const fan = client.rpcClient({ topic, fanout: true });
      // The pool's size, and its TCP connections (closed ones linger briefly in teardown).
      let [most, mostTcp] = [0, 0];
      const sampler = setInterval(() => {
        most = Math.max(most, Number(driverOf(client).stats().extra?.['peers'] ?? 0));
        mostTcp = Math.max(mostTcp, connectionsTo(ports));
      }, 5);
      try {
        for (let i = 0; i < 3; i++) {
          await fan.cast({}, 'record', { i });
          await got.until(40 * (i + 1));
          reachedAll(got.items, 40, i);
        }
      } finally {
        clearInterval(sampler);
      }
      const c = await driverOf(client).counters();
      assert.ok((c['peers'] ?? 0) <= 8, `peers: ${c['peers']}`);
      assert.ok(most > 0 && most <= 8, `${most} peers pooled at once with pool_max=8`);
      assert.ok(mostTcp <= 16, `${mostTcp} TCP connections at once with pool_max=8`);
      // The pool cycled: connections were closed to make room, and peers waited for a slot.
      assert.ok((c['evictions'] ?? 0) >= 32 && (c['poolWaits'] ?? 0) >= 32, JSON.stringify(c));
      assert.equal(c['poolWaitsFailed'], 0);
      assert.ok(connectionsTo(ports) <= 8);
    });
  }

  test('a pool stuck with busy peers: the waiting send fails with QueueFull after connect_timeout, and beyond pool_queue at once', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    await servers(zmqUrl(dir), topic, 3, new Collector<string>());
    const client = await bus(zmqUrl(dir, '&pool_max=1&pool_queue=1&connect_timeout=300'));
    // The one slot: a call that never returns keeps its peer busy.
    const hung = client.rpcClient({ topic, server: 's0' }, { timeout: 60_000 }).call({}, 'hang');
    hung.catch(() => undefined);
    await new Promise<void>((resolve) => {
      const check = async (): Promise<void> => ((await driverOf(client).counters())['connects'] === 1 ? resolve() : void setTimeout(check, 10));
      void check();
    });
    const waits = client.rpcClient({ topic, server: 's1' }).cast({}, 'record', { i: 1 });
    // The wait queue holds one message: the next send to a new peer is refused at once.
    await assert.rejects(client.rpcClient({ topic, server: 's2' }).cast({}, 'record', { i: 2 }), (e: unknown) => {
      assert.ok(e instanceof QueueFull, String(e));
      assert.match(e.message, /pool_max=1/);
      assert.match(e.message, /pool_queue=1/);
      return true;
    });
    await assert.rejects(waits, (e: unknown) => {
      assert.ok(e instanceof QueueFull, String(e));
      assert.match(e.message, /no slot opened for 300 ms/);
      return true;
    });
    const c = await driverOf(client).counters();
    assert.equal(c['poolWaitsFailed'], 1);
  });
});
