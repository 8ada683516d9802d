/**
 * One process of a fault scenario (forked by procs.ts). argv[2] is JSON: { role, name, ... }.
 *
 * Roles
 * - server:   RPC servers on `topic` (one per name in `servers`) with one method, `work(id)`,
 *             that waits `workMs`, then reports the id as handled (for calls and casts alike).
 * - listener: a notification listener (pool `pool`) that reports the `id` of each `info` payload.
 * - sender:   after `go`, sends `count` messages (`ops` in turn: call, cast, notify) with at
 *             most `concurrency` outstanding and, with `intervalMs`, one started per interval;
 *             reports each id as sent, then resolved or rejected (with its error class).
 * - fuzzer:   after `go`, sends `count` garbage messages (fuzz.ts) from `sockets` raw zeromq.js
 *             DEALERs to `address`, reading whatever comes back.
 *
 * Reports go to the parent over IPC in batches ({kind: 'events', sent, ok, failed, got}); a
 * command `<cmd>` is answered with `<cmd>:done` after every report before it has been sent,
 * so the parent has seen everything that happened before the answer. Commands: go, stop (a
 * sender or fuzzer stops starting messages and reports `finished`), mem (heap and RSS after a
 * GC when run with --expose-gc, plus zmq driver counters), drain (servers and listeners stop:
 * core's stop() waits for what is in flight), exit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Bus, type Context, type Driver } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import * as zmq from 'zeromq';
import { Fuzzer } from './fuzz.js';
import type { LedgerEvents } from './types.js';

interface Spec {
  role: 'server' | 'listener' | 'sender' | 'fuzzer';
  name: string;
  url?: string;
  controlExchange?: string;
  topic?: string;
  servers?: string[];
  workMs?: number;
  pool?: string;
  ops?: Array<'call' | 'cast' | 'notify'>;
  count?: number;
  concurrency?: number;
  intervalMs?: number;
  maxMs?: number;
  timeoutMs?: number;
  settleMs?: number;
  prefix?: string;
  server?: string;
  address?: string;
  sockets?: number;
  seed?: number;
  key?: string;
  maxMessageSize?: number;
}

const spec = JSON.parse(process.argv[2] as string) as Spec;
const send = (m: Record<string, unknown>): void => void process.send?.(m);
// The campaign went away without telling us: nobody is left to report to.
process.on('disconnect', () => process.exit(0));

class Reporter {
  private ev: Required<LedgerEvents> = { sent: [], ok: [], failed: [], got: [] };
  private timer: NodeJS.Timeout | undefined;
  private size = 0;
  /** After `finished`, outcomes are no longer reported (they stay unsettled in the ledger). */
  closed = false;

  sent(id: string): void {
    this.ev.sent.push(id);
    this.bump();
  }
  ok(id: string): void {
    if (this.closed) return;
    this.ev.ok.push(id);
    this.bump();
  }
  failed(id: string, err: unknown): void {
    if (this.closed) return;
    const e = err as Error;
    this.ev.failed.push([id, e?.name ?? typeof err, String(e?.message ?? err).slice(0, 300)]);
    this.bump();
  }
  /**
   * Handled: reported at once, not batched. An acked cast's ack leaves after its endpoint
   * returns; a batched report could still be waiting when the server is killed right after
   * the ack, and a handled cast would be counted lost.
   */
  got(id: string): void {
    this.ev.got.push(id);
    this.size++;
    this.flush();
  }
  private bump(): void {
    if (++this.size >= 2000) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), 20);
  }
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.size === 0) return;
    send({ kind: 'events', ...this.ev });
    this.ev = { sent: [], ok: [], failed: [], got: [] };
    this.size = 0;
  }
}

const rep = new Reporter();
const answer = (cmd: string, data: Record<string, unknown> = {}): void => {
  rep.flush();
  send({ kind: `${cmd}:done`, ...data });
};

let bus: Bus | undefined;
const makeBus = async (): Promise<Bus> =>
  (bus = await Bus.create({
    transports: { default: spec.url as string },
    ...(spec.controlExchange ? { controlExchange: spec.controlExchange } : {}),
  }));

/** What stops on `drain`. */
const stoppables: Array<{ stop(): Promise<void> }> = [];
let go: () => void = () => undefined;
const started = new Promise<void>((r) => (go = r));
let stopRequested = false;
let wake: () => void = () => undefined;

async function memory(): Promise<Record<string, unknown>> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) for (let i = 0; i < 3; i++) (gc(), await sleep(10));
  const m = process.memoryUsage();
  const driver = bus?.transport('default') as (Driver & { counters?: () => Promise<Record<string, number>> }) | undefined;
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, gc: Boolean(gc), counters: driver?.counters ? await driver.counters() : {} };
}

process.on('message', (m: { cmd?: string }) => {
  switch (m.cmd) {
    case 'go':
      go();
      break;
    case 'stop':
      stopRequested = true;
      wake();
      break;
    case 'mem':
      void memory().then((data) => answer('mem', data));
      break;
    case 'drain':
      void Promise.allSettled(stoppables.map((s) => s.stop())).then(() => answer('drain'));
      break;
    case 'exit': {
      rep.flush();
      const closing = Promise.allSettled([bus?.close(), ...fuzzSockets.map((s) => s.close())]);
      void Promise.race([closing, sleep(5000)]).then(() => {
        rep.flush();
        process.exit(0);
      });
      break;
    }
  }
});

const fuzzSockets: zmq.Dealer[] = [];

async function server(): Promise<void> {
  const b = await makeBus();
  const workMs = spec.workMs ?? 0;
  const endpoint = {
    work: async (_c: Context, a: { id?: unknown } | null) => {
      if (workMs > 0) await sleep(workMs);
      // Only a string id is legitimate traffic: garbage (fuzz.ts) never sends one.
      if (typeof a?.id === 'string') rep.got(a.id);
      return a?.id ?? null;
    },
  };
  for (const server of spec.servers ?? ['s0']) {
    const s = b.rpcServer({ topic: spec.topic as string, server }, [endpoint]);
    await s.start();
    stoppables.push(s);
  }
  const driver = b.transport('default') as Driver & { address?: () => Promise<string | undefined> };
  send({ kind: 'ready', pid: process.pid, address: driver.address ? await driver.address() : undefined });
}

async function listener(): Promise<void> {
  const b = await makeBus();
  const l = b.notificationListener(
    [{ topic: spec.topic as string }],
    [{ info: (_c: Context, _p: string, _e: string, payload: unknown) => void rep.got(String((payload as { id: unknown }).id)) }],
    spec.pool !== undefined ? { pool: spec.pool } : {},
  );
  await l.start();
  stoppables.push(l);
  send({ kind: 'ready', pid: process.pid });
}

async function sender(): Promise<void> {
  const b = await makeBus();
  const timeout = spec.timeoutMs ?? 10_000;
  const client = b.rpcClient({ topic: spec.topic as string, ...(spec.server ? { server: spec.server } : {}) }, { timeout });
  const notifier = b.notifier({ publisherId: spec.name, topics: [spec.topic as string] });
  const ops = spec.ops ?? ['call'];
  const one = (op: string, id: string): Promise<unknown> =>
    op === 'call' ? client.call({}, 'work', { id }) : op === 'cast' ? client.cast({}, 'work', { id }) : notifier.info({}, 'fault.test', { id });
  send({ kind: 'ready', pid: process.pid });
  await started;
  const count = spec.count ?? 100;
  const concurrency = spec.concurrency ?? 1;
  const deadline = Date.now() + (spec.maxMs ?? 60_000);
  let outstanding = 0;
  let i = 0;
  const freed = (): Promise<void> => new Promise((r) => (wake = r));
  while (!stopRequested && i < count && Date.now() < deadline) {
    if (outstanding >= concurrency) {
      await freed();
      continue;
    }
    const id = `${spec.prefix ?? spec.name}-${i}`;
    const op = ops[i % ops.length] as string;
    i++;
    outstanding++;
    rep.sent(id);
    one(op, id).then(
      () => rep.ok(id),
      (e: unknown) => rep.failed(id, e),
    ).finally(() => {
      outstanding--;
      wake();
    });
    if (spec.intervalMs) await sleep(spec.intervalMs);
  }
  const settleBy = Date.now() + (spec.settleMs ?? 30_000);
  while (outstanding > 0 && Date.now() < settleBy) await Promise.race([freed(), sleep(Math.max(1, settleBy - Date.now()))]);
  rep.flush();
  rep.closed = true;
  send({ kind: 'finished', started: i, unsettled: outstanding });
}

async function fuzzer(): Promise<void> {
  const n = spec.sockets ?? 4;
  for (let s = 0; s < n; s++) {
    // Reconnect quickly: an oversize frame makes the server's libzmq drop the connection.
    const d = new zmq.Dealer({ linger: 0, reconnectInterval: 10, sendHighWaterMark: 1000 });
    d.connect(`tcp://${spec.address}`);
    fuzzSockets.push(d);
  }
  let replies = 0;
  for (const d of fuzzSockets) {
    void (async () => {
      try {
        for await (const _ of d) replies++;
      } catch {
        // closed
      }
    })();
  }
  send({ kind: 'ready', pid: process.pid });
  await started;
  const count = spec.count ?? 1000;
  const byKind: Record<string, number> = {};
  let sent = 0;
  const t0 = Date.now();
  const deadline = t0 + (spec.maxMs ?? 600_000);
  await Promise.all(
    fuzzSockets.map(async (d, s) => {
      const gen = new Fuzzer((spec.seed ?? 1) * 1000 + s, { key: spec.key as string, maxMessageSize: spec.maxMessageSize as number });
      while (sent < count && !stopRequested && Date.now() < deadline) {
        const { kind, frames } = gen.next();
        sent++;
        byKind[kind] = (byKind[kind] ?? 0) + 1;
        await d.send(frames);
      }
    }),
  );
  send({ kind: 'finished', sent, byKind, replies, ms: Date.now() - t0 });
}

try {
  await { server, listener, sender, fuzzer }[spec.role]();
} catch (err) {
  process.stderr.write(`${spec.name} (${spec.role}) failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(70);
}
