/**
 * Diagnostics behind the findings of the zmq benchmark, for whoever works on the driver:
 *
 *   node benchmarks/dist/zmq-diag.js layers  [inflight=256] [seconds=2]
 *     Call throughput through RpcClient.call (core) and through the driver's call() directly,
 *     interleaved, 3 times each: how much of a call's cost is core's client and how much the driver.
 *
 *   node benchmarks/dist/zmq-diag.js backlog [seconds=1]
 *     A hybridbus server in this process, the benchmark's cast client in a child flooding it for
 *     `seconds`: how long the server takes to handle it all, how far the RpcServer's limiter queue
 *     grows and how long the event loop stalls; then again with the limiter's queue swapped for one
 *     with O(1) dequeue (a stand-in for a fix in core's Limiter; no package code is changed).
 *
 * Both reach into private fields of @hybridbus/core and zmq-direct on purpose (read-only, except
 * the swapped queue in `backlog`); they are diagnostics, not API users.
 */
import { Bus, CallCancel, type RpcClient } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child } from './lib/proc.js';
import { median } from './lib/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const [what, ...rest] = process.argv.slice(2);
const dir = mkdtempSync(path.join(os.tmpdir(), 'hb-diag-ns-'));
const url = `zmq://?matchmaker=local:${dir}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const payload = { p: 'x'.repeat(100) };

async function layers(inflight: number, seconds: number): Promise<void> {
  const server = Child.start(path.join(here, 'zmq-server.js'), { role: 'hb', url, topic: 'diag' }, { name: 'server' });
  await server.next('ready');
  const bus = await Bus.create({ transports: { default: url } });
  const client: RpcClient = bus.rpcClient({ topic: 'diag' });
  const driver = bus.transport('default') as ZmqDriver;
  const viaClient = (): Promise<unknown> => client.call({}, 'echo', payload);
  // What the driver needs per call, without core's timers and serialization.
  const viaDriver = (): Promise<unknown> => {
    const cancel = new CallCancel();
    const request = { method: 'echo', args: payload, context: {}, uniqueId: randomUUID().replaceAll('-', '') };
    return driver.call(client.target, request, { timeoutMs: 60_000, cancel, onHeartbeat: () => undefined, callMonitorTimeoutMs: undefined });
  };
  const rate = async (call: () => Promise<unknown>): Promise<number> => {
    let done = 0;
    let stop = false;
    const workers = Array.from({ length: inflight }, async () => {
      while (!stop) {
        await call();
        done++;
      }
    });
    await sleep(1000); // warm-up
    const [d0, t0] = [done, performance.now()];
    await sleep(seconds * 1000);
    const r = (done - d0) / ((performance.now() - t0) / 1000);
    stop = true;
    await Promise.all(workers);
    return r;
  };
  const results: Record<string, number[]> = { 'RpcClient.call': [], 'driver.call': [] };
  for (let i = 0; i < 3; i++) {
    results['RpcClient.call']!.push(await rate(viaClient));
    results['driver.call']!.push(await rate(viaDriver));
  }
  for (const [k, v] of Object.entries(results)) {
    console.log(`${k.padEnd(15)} ${inflight} in flight: median ${Math.round(median(v))} calls/s (${v.map(Math.round).join(', ')})`);
  }
  await bus.close();
  await server.stop();
}

interface LimiterInternals {
  waiting: { push(f: () => void): number; shift(): (() => void) | undefined; readonly length: number };
}

/** A FIFO with O(1) dequeue (head index, compacted now and then). */
function dequeQueue(): LimiterInternals['waiting'] {
  let q: Array<(() => void) | undefined> = [];
  let head = 0;
  return {
    push: (f) => q.push(f) - head,
    shift: () => {
      if (head === q.length) return undefined;
      const f = q[head];
      q[head++] = undefined;
      if (head > 4096 && head * 2 > q.length) {
        q = q.slice(head);
        head = 0;
      }
      return f;
    },
    get length() {
      return q.length - head;
    },
  };
}

async function backlog(seconds: number, deque: boolean): Promise<void> {
  const bus = await Bus.create({ transports: { default: url } });
  let handled = 0;
  const topic = `backlog${deque ? 'deque' : 'array'}`;
  const server = bus.rpcServer({ topic, server: 's' }, [{ sink: () => void handled++ }]);
  await server.start();
  const limiter = (server as unknown as { limiter: LimiterInternals }).limiter;
  if (deque) limiter.waiting = dequeQueue();
  let peak = 0;
  const { waiting } = limiter;
  const push = waiting.push.bind(waiting);
  waiting.push = (f) => {
    const n = push(f);
    if (n > peak) peak = n;
    return n;
  };
  let last = performance.now();
  let stall = 0;
  const ticker = setInterval(() => {
    const t = performance.now();
    stall = Math.max(stall, t - last);
    last = t;
  }, 10);
  const warm = 5000;
  const client = Child.start(
    path.join(here, 'zmq-client.js'),
    { backend: 'hb', url, topic, scenario: 'cast', payload: 100, window: 256, warmupCount: warm, durationMs: seconds * 1000 },
    { name: 'cast client' },
  );
  await client.next('warmed');
  while (handled < warm) await sleep(5);
  [peak, stall, last] = [0, 0, performance.now()];
  const t0 = performance.now();
  client.send({ kind: 'measure' });
  const sent = (await client.next('sent'))['sent'] as number;
  while (handled < warm + sent) await sleep(5);
  const took = (performance.now() - t0) / 1000;
  clearInterval(ticker);
  console.log(
    `${deque ? 'O(1) dequeue   ' : 'Limiter as is  '}: ${sent} casts sent in ${seconds} s, all handled after ${took.toFixed(1)} s (${Math.round(sent / took)}/s); ` +
      `limiter queue peaked at ${peak}; longest event-loop stall ${Math.round(stall)} ms; dedup ids held: ${(bus.transport('default') as unknown as { seen: Map<string, number> }).seen.size}`,
  );
  client.send({ kind: 'done' });
  await client.next('result');
  await client.stop();
  await bus.close();
}

try {
  if (what === 'layers') await layers(Number(rest[0] ?? 256), Number(rest[1] ?? 2));
  else if (what === 'backlog') {
    for (const deque of [false, true, false, true]) await backlog(Number(rest[0] ?? 1), deque);
  } else {
    console.error('usage: zmq-diag.js layers [inflight] [seconds] | backlog [seconds]');
    process.exitCode = 2;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit();
