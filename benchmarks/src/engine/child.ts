/**
 * The Node side of the bench protocol (contender.ts): a contender's child script calls
 * `runServer` or `runClient` with what differs between contenders (how to echo, count and
 * send), and this file speaks the protocol. Measuring loops live here too, so every Node
 * contender is timed by the same code.
 */
import { LatencyRecorder, nowNs } from '../lib/stats.js';
import type { ClientSpec, ServerSpec } from './contender.js';

type Msg = { readonly kind: string; readonly [k: string]: unknown };

const send = (m: Msg): void => void process.send?.(m);
/** Wall clock in ms, fractional (comparable across processes on one host). */
export const wallMs = (): number => performance.timeOrigin + performance.now();
const cpuUs = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

/** The spec: always the last argument. */
export function readSpec<T extends ServerSpec | ClientSpec>(): T {
  return JSON.parse(process.argv[process.argv.length - 1] as string) as T;
}

function onCrash(): void {
  const fail = (e: unknown): void => {
    send({ kind: 'error', message: e instanceof Error ? e.message : String(e) });
    setTimeout(() => process.exit(1), 100);
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  // The parent is gone: nothing left to report to.
  process.on('disconnect', () => process.exit(0));
}

/**
 * One-way messages (casts, notifications, fanouts) a client keeps in flight when each is
 * acknowledged: a caller that awaited each one serially would measure its own round trips. Every
 * client that waits for acks (hybridbus, raw zeromq.js with acks) uses this one window.
 */
export const SEND_WINDOW = 64;

/** sendMany() for a client whose one-way sends each resolve when done: SEND_WINDOW of them at once. */
export function windowed(one: () => Promise<unknown>): ClientSide['sendMany'] {
  return async (more) => {
    let sent = 0;
    await Promise.all(
      Array.from({ length: SEND_WINDOW }, async () => {
        while (more()) {
          await one();
          sent++;
        }
      }),
    );
    return sent;
  };
}

/** Payload bodies of the spec's sizes, cycled through (ASCII, so bytes = characters). */
export class Payloads {
  private readonly texts: string[];
  private readonly bufs: Buffer[];
  private i = 0;
  constructor(sizes: readonly number[]) {
    this.texts = sizes.map((n) => 'x'.repeat(n));
    this.bufs = this.texts.map((t) => Buffer.from(t));
  }
  nextText(): string {
    const t = this.texts[this.i] as string;
    this.i = (this.i + 1) % this.texts.length;
    return t;
  }
  nextBuffer(): Buffer {
    const b = this.bufs[this.i] as Buffer;
    this.i = (this.i + 1) % this.bufs.length;
    return b;
  }
}

/** Counts one-way arrivals across every server of this process and answers `expect`. */
export class Arrivals {
  private count = 0;
  private firstAt = 0;
  private lastAt = 0;
  private want: { n: number; reset: boolean } | undefined;

  readonly hit = (): void => {
    const t = wallMs();
    if (this.count++ === 0) this.firstAt = t;
    this.lastAt = t;
    if (this.want && this.count >= this.want.n) this.answer();
  };

  expect(n: number, reset: boolean): void {
    this.want = { n, reset };
    if (this.count >= n) this.answer();
  }

  private answer(): void {
    send({ kind: 'reached', count: this.count, firstAt: this.firstAt, lastAt: this.lastAt });
    if (this.want?.reset) this.count = 0;
    this.want = undefined;
  }
}

export interface ServerSide {
  readonly endpoints?: readonly string[];
  close(): Promise<void> | void;
}

/** A server process: `setup` listens (echo, and `arrivals.hit()` on each one-way message). */
export async function runServer(setup: (spec: ServerSpec, arrivals: Arrivals) => Promise<ServerSide>): Promise<void> {
  onCrash();
  const spec = readSpec<ServerSpec>();
  const arrivals = new Arrivals();
  const side = await setup(spec, arrivals);
  process.on('message', (m: Msg) => {
    if (m.kind === 'expect') arrivals.expect(Number(m['n']), m['reset'] === true);
    else if (m.kind === 'cpu') send({ kind: 'cpu', us: cpuUs() });
    else if (m.kind === 'exit') void Promise.resolve(side.close()).finally(() => process.exit(0));
  });
  send({ kind: 'ready', endpoints: side.endpoints ?? [] });
}

export interface ClientSide {
  /** One call; resolves with the reply. */
  call?(): Promise<void>;
  /** Keep `inflight` calls outstanding until `stop()` says so; resolves with calls completed. */
  pipeline?(inflight: number, stop: () => boolean): Promise<number>;
  /** Send one-way messages until `more()` says stop; resolves with how many were sent. */
  sendMany(more: () => boolean): Promise<number>;
  close(): Promise<void> | void;
}

/** Percentiles reported for charts (and p50/p90/p99/max for the table). */
const PERCENTILES = [0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9, 99.95, 99.99, 100];

/** Calls in flight with `call()` alone: `inflight` loops, each starting a call when its last returns. */
async function pipelineOf(call: () => Promise<void>, inflight: number, stop: () => boolean): Promise<number> {
  let done = 0;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (!stop()) {
        await call();
        done++;
      }
    }),
  );
  return done;
}

/** A client process: `setup` connects; this file runs the commands and times them. */
export async function runClient(setup: (spec: ClientSpec) => Promise<ClientSide>): Promise<void> {
  onCrash();
  const spec = readSpec<ClientSpec>();
  const side = await setup(spec);
  const queue: Msg[] = [];
  let wake: (() => void) | undefined;
  process.on('message', (m: Msg) => {
    queue.push(m);
    wake?.();
  });
  send({ kind: 'ready' });
  for (;;) {
    while (queue.length === 0) await new Promise<void>((r) => (wake = r));
    const m = queue.shift() as Msg;
    const c0 = cpuUs();
    const t0 = nowNs();
    if (m.kind === 'exit') {
      await side.close();
      process.exit(0);
    } else if (m.kind === 'latency') {
      const call = side.call?.bind(side);
      if (!call) throw new Error(`${spec.contender} has no calls`);
      const rec = new LatencyRecorder();
      const count = Number(m['count']);
      for (let i = 0; i < count; i++) {
        const t = nowNs();
        await call();
        rec.record(nowNs() - t);
      }
      const seconds = (nowNs() - t0) / 1e9;
      send({ kind: 'done', ops: count, seconds, cpuUs: cpuUs() - c0, histogram: PERCENTILES.map((p) => [p, rec.percentileUs(p)]) });
    } else if (m.kind === 'throughput') {
      const end = t0 + Number(m['durationMs']) * 1e6;
      // Looking at the clock per completed call costs little next to a call.
      const stop = (): boolean => nowNs() >= end;
      const inflight = Number(m['inflight']);
      const call = side.call?.bind(side);
      if (!side.pipeline && !call) throw new Error(`${spec.contender} has no calls`);
      const ops = side.pipeline ? await side.pipeline(inflight, stop) : await pipelineOf(call as () => Promise<void>, inflight, stop);
      send({ kind: 'done', ops, seconds: (nowNs() - t0) / 1e9, cpuUs: cpuUs() - c0 });
    } else if (m.kind === 'send') {
      const count = m['count'] === undefined ? Infinity : Number(m['count']);
      const end = m['durationMs'] === undefined ? Infinity : t0 + Number(m['durationMs']) * 1e6;
      let issued = 0;
      const startedAt = wallMs();
      const ops = await side.sendMany(() => issued++ < count && (end === Infinity || nowNs() < end));
      const endedAt = wallMs();
      send({ kind: 'done', ops, seconds: (nowNs() - t0) / 1e9, cpuUs: cpuUs() - c0, startedAt, endedAt });
    } else {
      throw new Error(`unknown command ${JSON.stringify(m.kind)}`);
    }
  }
}
