/**
 * Measuring client of the zmq benchmark, one process per measurement. argv[2] is a JSON spec;
 * the result goes to the parent as { kind: 'result', ... }.
 *
 * Scenarios, each for backend "hb" (hybridbus zmq-direct) or "raw" (zeromq.js directly):
 * - latency:    sequential request/reply; hb `call`, raw DEALER → ROUTER echo.
 * - throughput: `inflight` requests kept outstanding; hb concurrent `call`s, raw one DEALER
 *               with a send loop awaiting each send().
 * - cast:       one-way messages as fast as they go; hb `cast` with `window` in flight, raw
 *               PUSH with a send loop awaiting each send(). The server counts; the parent
 *               coordinates the warm-up and the measured phase ('warmed' → 'measure' → 'sent').
 * - fds:        open fds before and after reaching every one of many peers.
 */
import { Bus, type RpcClient } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { readdirSync, readlinkSync } from 'node:fs';
import * as zmq from 'zeromq';
import { fromParent, reportErrors, toParent } from './lib/proc.js';
import { LatencyRecorder, nowNs } from './lib/stats.js';

type Backend = { backend: 'hb'; url: string; topic: string } | { backend: 'raw'; endpoint: string };
type Spec = Backend &
  (
    | { scenario: 'latency'; payload: number; warmup: number; count: number }
    | { scenario: 'throughput'; payload: number; inflight: number; warmupMs: number; durationMs: number }
    | { scenario: 'cast'; payload: number; window: number; warmupCount: number; durationMs: number }
    | { scenario: 'fds'; payload: number; servers: string[]; endpoints: string[]; concurrency: number }
  );

reportErrors();
const spec = JSON.parse(process.argv[2] as string) as Spec;
const payload = Buffer.alloc(spec.payload, 'x');
/** The same 100 bytes as an RPC argument (hybridbus arguments are JSON). */
const payloadText = payload.toString('latin1');

/** A request/reply round trip for this backend. */
interface Caller {
  call(): Promise<void>;
  close(): Promise<void>;
}

/** The driver's counters (batches, records, peers, ...): evidence of how well it batched. */
let counters: Record<string, number> | undefined;
const keepCounters = async (bus: Bus): Promise<void> => {
  counters = await (bus.transport('default') as ZmqDriver).counters();
};

async function hbCaller(url: string, topic: string): Promise<Caller & { client: RpcClient; bus: Bus }> {
  const bus = await Bus.create({ transports: { default: url } });
  const client = bus.rpcClient({ topic });
  const args = { p: payloadText };
  return {
    bus,
    client,
    call: async () => {
      const r = await client.call<{ p: string }>({}, 'echo', args);
      if (r.p.length !== spec.payload) throw new Error('bad echo');
    },
    close: async () => {
      await keepCounters(bus);
      await bus.close();
    },
  };
}

async function rawCaller(endpoint: string): Promise<Caller & { dealer: zmq.Dealer }> {
  const dealer = new zmq.Dealer({ linger: 0 });
  dealer.connect(endpoint);
  return {
    dealer,
    call: async () => {
      await dealer.send(payload);
      const [reply] = await dealer.receive();
      if (reply?.length !== spec.payload) throw new Error('bad echo');
    },
    close: async () => dealer.close(),
  };
}

const caller = (s: Backend): Promise<Caller> => (s.backend === 'hb' ? hbCaller(s.url, s.topic) : rawCaller(s.endpoint));

/** Measurement window driven by completions (no timers: a busy loop would starve them). */
class Window {
  private phase: 'warm' | 'measure' | 'done' = 'warm';
  private readonly warmEnd: number;
  private end = 0;
  private t0 = 0;
  private d0 = 0;
  done = 0;
  private cpu0: NodeJS.CpuUsage | undefined;
  result: { ops: number; seconds: number; clientCpuUsPerOp: number } | undefined;
  private resolve: (() => void) | undefined;
  readonly finished = new Promise<void>((r) => (this.resolve = r));

  constructor(
    warmupMs: number,
    private readonly durationMs: number,
  ) {
    this.warmEnd = nowNs() + warmupMs * 1e6;
  }

  get stopped(): boolean {
    return this.phase === 'done';
  }

  /** One more operation completed. */
  tick(n = 1): void {
    this.done += n;
    if (this.phase === 'done') return;
    const t = nowNs();
    if (this.phase === 'warm' && t >= this.warmEnd) {
      this.phase = 'measure';
      this.cpu0 = process.cpuUsage();
      this.t0 = t;
      this.d0 = this.done;
      this.end = t + this.durationMs * 1e6;
    } else if (this.phase === 'measure' && t >= this.end) {
      this.phase = 'done';
      const cpu = process.cpuUsage(this.cpu0);
      const ops = this.done - this.d0;
      this.result = { ops, seconds: (t - this.t0) / 1e9, clientCpuUsPerOp: (cpu.user + cpu.system) / ops };
      this.resolve?.();
    }
  }
}

async function latency(s: Extract<Spec, { scenario: 'latency' }>): Promise<unknown> {
  const c = await caller(s);
  for (let i = 0; i < s.warmup; i++) await c.call();
  const rec = new LatencyRecorder();
  for (let i = 0; i < s.count; i++) {
    const t = nowNs();
    await c.call();
    rec.record(nowNs() - t);
  }
  await c.close();
  return { latency: rec.summary(), histogram: rec.encoded() };
}

async function throughput(s: Extract<Spec, { scenario: 'throughput' }>): Promise<unknown> {
  const w = new Window(s.warmupMs, s.durationMs);
  if (s.backend === 'hb') {
    const c = await hbCaller(s.url, s.topic);
    // `inflight` callers, each starting its next call as soon as its last one returns.
    const workers = Array.from({ length: s.inflight }, async () => {
      while (!w.stopped) {
        await c.call();
        w.tick();
      }
    });
    await w.finished;
    await Promise.all(workers);
    await c.close();
  } else {
    // What a raw zeromq.js user writes: one DEALER, a send loop that awaits each send() and
    // keeps `inflight` requests outstanding, a receive loop that counts replies.
    const { dealer } = await rawCaller(s.endpoint);
    let outstanding = 0;
    let wake: (() => void) | undefined;
    void (async () => {
      for await (const [reply] of dealer) {
        if (reply?.length !== s.payload) throw new Error('bad echo');
        outstanding--;
        w.tick();
        wake?.();
        if (w.stopped) break;
      }
    })().catch(() => undefined);
    while (!w.stopped) {
      if (outstanding >= s.inflight) {
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      outstanding++;
      await dealer.send(payload);
    }
    await w.finished;
    dealer.close();
  }
  const r = w.result as { ops: number; seconds: number };
  return { ...r, rate: r.ops / r.seconds };
}

async function cast(s: Extract<Spec, { scenario: 'cast' }>): Promise<unknown> {
  let send: () => Promise<void>;
  let close: () => Promise<void>;
  let window: number;
  if (s.backend === 'hb') {
    const bus = await Bus.create({ transports: { default: s.url } });
    const client = bus.rpcClient({ topic: s.topic });
    const args = { p: payloadText };
    send = () => client.cast({}, 'sink', args);
    close = async () => {
      await keepCounters(bus);
      await bus.close();
    };
    window = s.window;
  } else {
    const push = new zmq.Push({ linger: 0 });
    push.connect(s.endpoint);
    send = () => push.send(payload);
    close = async () => push.close();
    window = 1; // one send at a time on a zeromq.js socket
  }
  /** `window` senders; returns how many messages were handed over until `more()` said stop. */
  const run = async (more: (sent: number) => boolean): Promise<number> => {
    let issued = 0;
    let sent = 0;
    await Promise.all(
      Array.from({ length: window }, async () => {
        while (more(issued)) {
          issued++;
          await send();
          sent++;
        }
      }),
    );
    return sent;
  };
  const warmed = await run((n) => n < s.warmupCount);
  toParent({ kind: 'warmed', sent: warmed });
  await fromParent('measure');
  const deadline = nowNs() + s.durationMs * 1e6;
  const t0 = nowNs();
  // Looking at the clock every message costs little next to a send.
  const sent = await run(() => nowNs() < deadline);
  const seconds = (nowNs() - t0) / 1e9;
  toParent({ kind: 'sent', sent, seconds, endedAt: performance.timeOrigin + performance.now() });
  await fromParent('done');
  await close();
  return { sent, sendSeconds: seconds, sendRate: sent / seconds };
}

/** Open fds of this process, by kind (socket, eventfd, eventpoll, pipe, ...). */
function openFds(): { total: number; byKind: Record<string, number> } {
  const byKind: Record<string, number> = {};
  let total = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the directory handle readdir used, closed by now
    }
    total++;
    const kind = /^(socket|pipe):/.exec(target)?.[1] ?? /^anon_inode:\[?([^\]]+)\]?/.exec(target)?.[1] ?? (target.startsWith('/') ? 'file' : target);
    byKind[kind] = (byKind[kind] ?? 0) + 1;
  }
  return { total, byKind };
}

async function fds(s: Extract<Spec, { scenario: 'fds' }>): Promise<unknown> {
  // Process warnings while reaching the peers, by message (the parent runs this with --no-warnings).
  const warnings: Record<string, number> = {};
  process.on('warning', (w) => void (warnings[w.message] = (warnings[w.message] ?? 0) + 1));
  // Both backends start from a running ZeroMQ context (its I/O threads hold a few fds).
  const warm = new zmq.Pair({ linger: 0 });
  let before: ReturnType<typeof openFds>;
  let after: ReturnType<typeof openFds>;
  let reached: number;
  let extra: Record<string, unknown> = {};
  if (s.backend === 'hb') {
    const bus = await Bus.create({ transports: { default: s.url } });
    const client = bus.rpcClient({ topic: s.topic });
    before = openFds();
    const names = [...s.servers];
    const answered = new Set<string>();
    await Promise.all(
      Array.from({ length: s.concurrency }, async () => {
        for (let name = names.shift(); name !== undefined; name = names.shift()) {
          answered.add(await client.prepare({ server: name }).call<string>({}, 'whoami'));
        }
      }),
    );
    reached = answered.size;
    after = openFds();
    extra = { counters: await (bus.transport('default') as ZmqDriver).counters() };
    await bus.close();
  } else {
    before = openFds();
    const dealer = new zmq.Dealer({ linger: 0 });
    for (const ep of s.endpoints) dealer.connect(ep);
    // A DEALER round-robins over its peers' pipes, which exist from connect(): one each.
    for (let i = 0; i < s.endpoints.length; i++) await dealer.send(payload);
    const answered = new Set<string>();
    for (let i = 0; i < s.endpoints.length; i++) {
      const [from] = await dealer.receive();
      answered.add(String(from));
    }
    reached = answered.size;
    after = openFds();
    dealer.close();
  }
  warm.close();
  const peers = s.backend === 'hb' ? s.servers.length : s.endpoints.length;
  return { peers, reached, before, after, perPeer: (after.total - before.total) / peers, warnings, ...extra };
}

const run = { latency, throughput, cast, fds }[spec.scenario] as (s: Spec) => Promise<unknown>;
const result = (await run(spec)) as object;
toParent({ kind: 'result', ...result, ...(counters ? { counters } : {}) });
await fromParent('exit');
process.exit(0);
