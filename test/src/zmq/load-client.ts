/**
 * A client process for the load-shape test: on { kind: 'go' } it sends, on every event-loop
 * turn for durationMs, one cast (tally { c: id, i }) and one call (echo { i }) to `topic`,
 * then waits (at most settleMs) for all of them to settle and reports a summary.
 * argv[2] is JSON: { config, topic, id, durationMs, callTimeoutMs, settleMs }.
 */
import { Bus, type ConfigInput } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';

interface Spec {
  config: ConfigInput;
  topic: string;
  id: string;
  durationMs: number;
  callTimeoutMs: number;
  settleMs: number;
}

export interface LoadResult {
  id: string;
  turns: number;
  calls: number;
  answered: number;
  wrongAnswers: number;
  callErrors: Record<string, number>;
  firstCallError: string | undefined;
  unsettledCalls: number;
  casts: number;
  /** The cast numbers whose promise resolved (acked). */
  castsResolved: number[];
  castErrors: Record<string, number>;
  firstCastError: string | undefined;
  unsettledCasts: number;
  counters: Record<string, number>;
}

const spec = JSON.parse(process.argv[2] as string) as Spec;
const send = (m: unknown): void => void process.send?.(m);
const bus = await Bus.create(spec.config);
const client = bus.rpcClient({ topic: spec.topic }, { timeout: spec.callTimeoutMs });
// One call first: the connection is up and the name service answered before the clock starts.
await client.call({}, 'echo', { i: -1 });
send({ kind: 'ready' });

async function run(): Promise<LoadResult> {
  const r: LoadResult = {
    id: spec.id,
    turns: 0,
    calls: 0,
    answered: 0,
    wrongAnswers: 0,
    callErrors: {},
    firstCallError: undefined,
    unsettledCalls: 0,
    casts: 0,
    castsResolved: [],
    castErrors: {},
    firstCastError: undefined,
    unsettledCasts: 0,
    counters: {},
  };
  const pending = new Set<Promise<void>>();
  let callsOpen = 0;
  let castsOpen = 0;
  const track = (p: Promise<void>): void => {
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  const end = Date.now() + spec.durationMs;
  for (let i = 0; Date.now() < end; i++) {
    r.turns++;
    r.casts++;
    castsOpen++;
    track(
      client.cast({}, 'tally', { c: spec.id, i }).then(
        () => void (castsOpen--, r.castsResolved.push(i)),
        (e: Error) => {
          castsOpen--;
          r.castErrors[e.name] = (r.castErrors[e.name] ?? 0) + 1;
          r.firstCastError ??= `${e.name}: ${e.message}`;
        },
      ),
    );
    r.calls++;
    callsOpen++;
    track(
      client.call<{ i: number }>({}, 'echo', { i }).then(
        (v) => {
          callsOpen--;
          r.answered++;
          if (v?.i !== i) r.wrongAnswers++;
        },
        (e: Error) => {
          callsOpen--;
          r.callErrors[e.name] = (r.callErrors[e.name] ?? 0) + 1;
          r.firstCallError ??= `${e.name}: ${e.message}`;
        },
      ),
    );
    await new Promise((res) => setImmediate(res)); // one cast and one call per event-loop turn
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.allSettled([...pending]), new Promise((res) => (timer = setTimeout(res, spec.settleMs)))]);
  clearTimeout(timer);
  r.unsettledCalls = callsOpen;
  r.unsettledCasts = castsOpen;
  r.counters = await (bus.transport('default') as ZmqDriver).counters();
  return r;
}

process.on('message', (m: { kind?: string }) => {
  if (m.kind === 'go') void run().then((result) => send({ kind: 'result', result }));
  else if (m.kind === 'exit') void bus.close().then(() => process.exit(0));
});
