/**
 * zmq:// with more servers than the client's connection pool holds, and fanouts that must
 * reach every server or say how many they did not (issue 15). Servers run in this process,
 * one Bus (so one ROUTER, port and registration) each.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { QueueFull, type Bus, type Context } from '@hybridbus/core';
import { FanoutIncomplete } from '@hybridbus/zmq-direct';
import { Collector, freshTopic, tempDir } from './util.js';
import { connectionsTo } from './zmq/tcp.js';
import { busesClosedAfter, cfg, driverOf, zmqUrl } from './zmq/buses.js';
import { startChild, type ChildServer } from './zmq/children.js';

const { bus } = busesClosedAfter();
const kids: ChildServer[] = [];
after(() => Promise.allSettled(kids.map((k) => k.kill())));
/** Casts handled by child servers, as "server:i", and a wait for some of them. */
class Handled {
  private readonly seen = new Set<string>();
  private wake: Array<() => void> = [];
  readonly push = (r: { server: string; i: number }): void => {
    this.seen.add(`${r.server}:${r.i}`);
    for (const w of this.wake.splice(0)) w();
  };
  async all(want: readonly string[], ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!want.every((w) => this.seen.has(w))) {
      if (Date.now() > deadline) throw new Error(`handled: ${[...this.seen].sort().join(' ')}; missing: ${want.filter((w) => !this.seen.has(w)).join(' ')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, deadline - Date.now());
        this.wake.push(() => (clearTimeout(t), r()));
      });
    }
  }
}
/** A process hosting one server of `topic` (its own port and registration). */
async function child(u: string, topic: string, server: string, handled?: Handled): Promise<ChildServer> {
  const c = await startChild(cfg(u), [{ topic, server }], handled?.push);
  kids.push(c);
  return c;
}
/** Resolves once `ok()` holds, checked every 10 ms (for counters that have no event). */
async function until(what: string, ok: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
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

  test('connect_burst=4, 40 new servers: at most 4 handshakes under way at once, every fanout reaches all 40', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const got = new Collector<string>();
    await servers(zmqUrl(dir), topic, 40, got);
    const client = await bus(zmqUrl(dir, '&connect_burst=4'));
    const fan = client.rpcClient({ topic, fanout: true });
    for (let i = 0; i < 2; i++) {
      await fan.cast({}, 'record', { i });
      await got.until(40 * (i + 1));
      reachedAll(got.items, 40, i);
    }
    const c = await driverOf(client).counters();
    // Without the cap the first fanout dials all 40 at once (dialingPeak 40).
    assert.equal(c['dialingPeak'], 4, JSON.stringify(c));
    assert.equal(c['connects'], 40, 'each server dialled once: the pool (1024) kept them all');
    assert.ok((c['poolWaits'] ?? 0) >= 36, `peers waited their turn to dial: ${JSON.stringify(c)}`);
    assert.equal(c['poolWaitsFailed'], 0);
  });

  test('an event loop busy past connect_timeout right after dialling does not count a live server as unreachable', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const got = new Collector<string>();
    await servers(zmqUrl(dir), topic, 1, got);
    const client = await bus(zmqUrl(dir, '&connect_timeout=100'));
    const sent = client.rpcClient({ topic, server: 's0' }).call({}, 'record', { i: 7 });
    // Checked every turn (not every 10 ms): the stall must begin before the handshake's event is read.
    while ((await driverOf(client).counters())['connects'] !== 1) await new Promise((r) => setImmediate(r));
    // Busy for 4 × connect_timeout, as a client building a fanout to thousands is: the handshake
    // completes on ZeroMQ's I/O thread meanwhile, and its event waits behind the expired deadline.
    const end = Date.now() + 400;
    while (Date.now() < end) {
      // the stall
    }
    await sent;
    assert.deepEqual(got.items, ['s0:7']);
  });

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
    // Settled into a value at once: it must not reject unobserved while s2's send is checked.
    const waited = client.rpcClient({ topic, server: 's1' }).cast({}, 'record', { i: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // s1's message waits before s2's is sent (their name-service lookups could finish in either order).
    await until('the message for s1 to wait for a slot', async () => (await driverOf(client).counters())['poolWaits'] === 1);
    // The wait queue holds one message: the next send to a new peer is refused at once.
    await assert.rejects(client.rpcClient({ topic, server: 's2' }).cast({}, 'record', { i: 2 }), (e: unknown) => {
      assert.ok(e instanceof QueueFull, String(e));
      assert.match(e.message, /pool_max=1/);
      assert.match(e.message, /pool_queue=1/);
      return true;
    });
    const e = await waited;
    assert.ok(e instanceof QueueFull, String(e));
    assert.match(e.message, /neither a slot opened nor a handshake completed \(connect_burst=256\) for 300 ms/);
    const c = await driverOf(client).counters();
    assert.equal(c['poolWaitsFailed'], 1);
  });
});

describe('a fanout reaches every registered server, or says how many it did not', () => {
  test('a server whose connection was lost (and came back) still gets the next fanout: it is not skipped as forgotten', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const u = zmqUrl(dir);
    const handled = new Handled();
    const a = await child(u, topic, 'a', handled);
    await child(u, topic, 'b', handled);
    await child(u, topic, 'c', handled);
    const client = await bus(u);
    const fan = client.rpcClient({ topic, fanout: true });
    await fan.cast({}, 'record', { i: 0 });
    // a stops answering: its heartbeats time out with a copy in flight, so its connection is lost.
    a.proc.kill('SIGSTOP');
    const lost = fan.cast({}, 'record', { i: 1 });
    lost.catch(() => undefined);
    await until('the client to drop the frozen server', async () => ((await driverOf(client).counters())['peersLost'] ?? 0) >= 1);
    a.proc.kill('SIGCONT');
    await lost.catch(() => undefined);
    // Right after (its record has not been refreshed since): every server must get fanout 2.
    await fan.cast({}, 'record', { i: 2 });
    await handled.all(['a:2', 'b:2', 'c:2']);
  });

  test('a dead server still registered: every fanout fails with FanoutIncomplete naming 1 of 3 not reached, the others get it', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const u = zmqUrl(dir, '&connect_timeout=300');
    const handled = new Handled();
    const a = await child(u, topic, 'a', handled);
    await child(u, topic, 'b', handled);
    await child(u, topic, 'c', handled);
    const client = await bus(u);
    const fan = client.rpcClient({ topic, fanout: true });
    await fan.cast({}, 'record', { i: 0 });
    await a.kill('SIGKILL'); // its record stays until ns_ttl
    for (const i of [1, 2]) {
      await assert.rejects(fan.cast({}, 'record', { i }), (e: unknown) => {
        assert.ok(e instanceof FanoutIncomplete, String(e));
        assert.equal(e.notReached, 1);
        assert.equal(e.servers, 3);
        assert.deepEqual(e.addresses, [a.address]);
        assert.match(e.message, /did not reach 1 of 3 servers/);
        return true;
      }, `fanout ${i}`);
    }
    await handled.all(['b:1', 'c:1', 'b:2', 'c:2']);
  });

  test('acks=none: a fanout to a registered server that is gone fails with FanoutIncomplete naming it, the others get it', async () => {
    const dir = nsDir();
    const topic = freshTopic();
    const u = zmqUrl(dir, '&connect_timeout=300&acks=none');
    const handled = new Handled();
    const a = await child(u, topic, 'a', handled);
    await child(u, topic, 'b', handled);
    await child(u, topic, 'c', handled);
    await a.kill('SIGKILL'); // before the client ever reached it: its copy cannot leave
    const client = await bus(u);
    const fan = client.rpcClient({ topic, fanout: true });
    await assert.rejects(fan.cast({}, 'record', { i: 1 }), (e: unknown) => {
      assert.ok(e instanceof FanoutIncomplete, String(e));
      assert.equal(e.notReached, 1);
      assert.equal(e.servers, 3);
      assert.deepEqual(e.addresses, [a.address]);
      return true;
    });
    await handled.all(['b:1', 'c:1']);
  });
});
