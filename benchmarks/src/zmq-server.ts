/**
 * Server side of the zmq benchmark, one process per backend and scenario. argv[2] is a JSON
 * spec; the process tells the parent { kind: 'ready', ... } once it listens, and exits on
 * { kind: 'exit' }.
 *
 * Roles:
 * - hb:       one hybridbus RpcServer; `echo` returns its args, `sink` counts casts.
 * - raw-echo: a raw ROUTER that echoes [id, payload].
 * - raw-pull: a raw PULL that counts messages.
 * - hb-many:  one Bus (so one ROUTER, one port) per server name, each with an RpcServer.
 * - raw-many: `count` raw ROUTERs, each answering [id, its port].
 *
 * Counting roles answer { kind: 'expect', n, reset } with { kind: 'reached', count, seconds }
 * once n messages have arrived: `seconds` is the time from the first to the n-th arrival
 * (measured here, so one clock), and `reset` starts the count afresh.
 */
import { Bus, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import * as zmq from 'zeromq';
import { fromParent, reportErrors, toParent } from './lib/proc.js';

type Spec =
  | { role: 'hb'; url: string; topic: string }
  | { role: 'raw-echo' }
  | { role: 'raw-pull' }
  | { role: 'hb-many'; url: string; topic: string; servers: string[] }
  | { role: 'raw-many'; count: number };

reportErrors();
const spec = JSON.parse(process.argv[2] as string) as Spec;
const closers: Array<() => Promise<void> | void> = [];

/** Wall-clock ms = hrtime ms + this (to compare arrival times with the client's clock). */
const wallOffsetMs = performance.timeOrigin + performance.now() - Number(process.hrtime.bigint()) / 1e6;

/** Arrival counter with first/last arrival times. */
const counter = {
  count: 0,
  first: 0n,
  last: 0n,
  hit(): void {
    const t = process.hrtime.bigint();
    if (this.count++ === 0) this.first = t;
    this.last = t;
    if (this.count === this.target) this.answer();
  },
  target: -1,
  reset: false,
  answer(): void {
    toParent({ kind: 'reached', count: this.count, seconds: Number(this.last - this.first) / 1e9, lastAt: Number(this.last) / 1e6 + wallOffsetMs, ...memory() });
    this.target = -1;
    if (this.reset) this.count = 0;
  },
};

async function expectLoop(): Promise<void> {
  for (;;) {
    const m = await fromParent('expect');
    counter.reset = m['reset'] === true;
    counter.target = m['n'] as number;
    if (counter.count >= counter.target) counter.answer();
  }
}

/** This process's memory, MB: what a backlog of received-but-unhandled messages costs. */
function memory(): { rssMB: number; heapUsedMB: number } {
  // With --expose-gc, heapUsed is what is still retained, not garbage not yet collected.
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rssMB: Math.round(m.rss / 2 ** 20), heapUsedMB: Math.round(m.heapUsed / 2 ** 20) };
}

const wantMaxSockets = (n: number): void => {
  if (zmq.context.maxSockets < n) zmq.context.maxSockets = Math.min(n, zmq.context.maxSocketsLimit);
};

switch (spec.role) {
  case 'hb': {
    const bus = await Bus.create({ transports: { default: spec.url } });
    const server = bus.rpcServer({ topic: spec.topic, server: 's0' }, [
      {
        echo: (_c: Context, args: Record<string, unknown>) => args,
        sink: () => void counter.hit(),
      },
    ]);
    await server.start();
    closers.push(() => bus.close());
    void expectLoop();
    toParent({ kind: 'ready', address: await (bus.transport('default') as ZmqDriver).address() });
    break;
  }
  case 'raw-echo': {
    const router = new zmq.Router({ linger: 0 });
    await router.bind('tcp://127.0.0.1:*');
    closers.push(() => router.close());
    void (async () => {
      for await (const [id, payload] of router) await router.send([id as Buffer, payload as Buffer]);
    })().catch(() => undefined);
    toParent({ kind: 'ready', endpoint: router.lastEndpoint });
    break;
  }
  case 'raw-pull': {
    const pull = new zmq.Pull({ linger: 0 });
    await pull.bind('tcp://127.0.0.1:*');
    closers.push(() => pull.close());
    void (async () => {
      for await (const _ of pull) counter.hit();
    })().catch(() => undefined);
    void expectLoop();
    toParent({ kind: 'ready', endpoint: pull.lastEndpoint });
    break;
  }
  case 'hb-many': {
    const addresses: string[] = [];
    for (const server of spec.servers) {
      const bus = await Bus.create({ transports: { default: spec.url } });
      await bus.rpcServer({ topic: spec.topic, server }, [{ whoami: () => server }]).start();
      closers.push(() => bus.close());
      addresses.push((await (bus.transport('default') as ZmqDriver).address()) as string);
    }
    toParent({ kind: 'ready', addresses });
    break;
  }
  case 'raw-many': {
    wantMaxSockets(spec.count + 64);
    const endpoints: string[] = [];
    for (let i = 0; i < spec.count; i++) {
      const router = new zmq.Router({ linger: 0 });
      await router.bind('tcp://127.0.0.1:*');
      const endpoint = router.lastEndpoint as string;
      const me = Buffer.from(endpoint);
      closers.push(() => router.close());
      void (async () => {
        for await (const [id] of router) await router.send([id as Buffer, me]);
      })().catch(() => undefined);
      endpoints.push(endpoint);
    }
    toParent({ kind: 'ready', endpoints });
    break;
  }
}

await fromParent('exit');
await Promise.allSettled(closers.map((c) => c()));
process.exit(0);
