/**
 * A server process of the scale scenario, hosting many servers (spec.role):
 * - hb:  one Bus per server name (so its own ROUTER, port and name-service registration), each
 *        with an RpcServer on spec.topic whose `sink` method records the fanout's `seq`;
 * - raw: spec.count raw zeromq.js ROUTERs, each answering [id, "ok"] to whatever arrives;
 * - fan: one Bus on a brokered URL (rabbit://) with an RpcServer per server name on spec.topic
 *        (a fanout queue each), recording as hb does: the broker fanout beside the zmq one.
 * With jitterMs, hb and fan servers start at random moments spread over that many ms (as a
 * fleet booting does), not back to back.
 *
 * Messages (lib/proc.ts): → ready { at, endpoints?, registered, rssKiB, fds } once every server
 * listens (and, for hb, is registered); ← mark → marked { cpuMs }; ← expect { seq } → reached { seq, firstAt, lastAt } once
 * every server here has had fanout `seq` (wall-clock ms, comparable across processes); ← exit.
 */
import { readdirSync } from 'node:fs';
import { Bus, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import * as zmq from 'zeromq';
import { fromParent, reportErrors, toParent } from '../lib/proc.js';
import { startProfile, writeProfile } from '../lib/profile.js';

interface Hosting {
  readonly url: string;
  readonly topic: string;
  readonly servers: readonly string[];
  readonly jitterMs?: number;
}
export type ScaleServerSpec = (Hosting & { readonly role: 'hb' }) | (Hosting & { readonly role: 'fan' }) | { readonly role: 'raw'; readonly count: number };

reportErrors();
// The parent is gone: nothing left to serve.
process.on('disconnect', () => process.exit(0));
const spec = JSON.parse(process.argv[process.argv.length - 1] as string) as ScaleServerSpec;
const wallMs = (): number => performance.timeOrigin + performance.now();
const closers: Array<() => Promise<void> | void> = [];

// zeromq.js's global context allows 1023 sockets by default, and the limit must be raised before
// the first socket (libzmq sizes its slot table then; a later raise has no effect). A zmq://
// server takes three: its ROUTER and the two PAIR sockets of the ROUTER's event monitor (with
// multicast, the process's receiver adds a DEALER per sender, within the spare).
const sockets = (spec.role === 'raw' ? spec.count : 3 * spec.servers.length) + 64;
if (zmq.context.maxSockets < sockets) zmq.context.maxSockets = Math.min(sockets, zmq.context.maxSocketsLimit);

/** seq → arrivals so far, across this process's servers. */
const arrivals = new Map<number, { count: number; firstAt: number; lastAt: number }>();
const waiting = new Map<number, true>();
const hosted = spec.role === 'raw' ? spec.count : spec.servers.length;

function arrived(seq: number): void {
  const t = wallMs();
  const a = arrivals.get(seq);
  if (a) {
    a.count++;
    a.lastAt = t;
  } else arrivals.set(seq, { count: 1, firstAt: t, lastAt: t });
  answer(seq);
}

function answer(seq: number): void {
  const a = arrivals.get(seq);
  if (!waiting.has(seq) || !a || a.count < hosted) return;
  waiting.delete(seq);
  arrivals.delete(seq);
  const cpu = process.cpuUsage();
  toParent({ kind: 'reached', seq, firstAt: a.firstAt, lastAt: a.lastAt, count: a.count, cpuMs: (cpu.user + cpu.system) / 1000 });
}

void (async () => {
  for (;;) {
    await fromParent('mark');
    const cpu = process.cpuUsage();
    toParent({ kind: 'marked', cpuMs: (cpu.user + cpu.system) / 1000 });
  }
})();

void (async () => {
  for (;;) {
    const m = await fromParent('expect');
    startProfile();
    const seq = Number(m['seq']);
    waiting.set(seq, true);
    answer(seq);
  }
})();

const rssKiB = (): number => Math.round(process.memoryUsage().rss / 1024);
const openFds = (): number => readdirSync('/proc/self/fd').length - 1;

const endpoint = [{ sink: (_c: Context, args: Record<string, unknown>) => void arrived(Number(args['seq'])) }];
/** Run `start` for each server, back to back, or each after a random delay below jitterMs. */
async function startAll(servers: readonly string[], jitterMs: number, start: (server: string) => Promise<void>): Promise<void> {
  if (jitterMs <= 0) {
    for (const server of servers) await start(server);
    return;
  }
  await Promise.all(servers.map(async (server) => {
    await new Promise((r) => setTimeout(r, Math.random() * jitterMs));
    await start(server);
  }));
}

if (spec.role === 'hb') {
  let registered = 0;
  let retries = 0;
  await startAll(spec.servers, spec.jitterMs ?? 0, async (server) => {
    // A server whose registration times out (a name service, or this process, swamped by the
    // start-up storm) starts again after a pause, as a supervisor would restart it: counted.
    for (let attempt = 0; ; attempt++) {
      const bus = await Bus.create({ transports: { default: spec.url } });
      try {
        await bus.rpcServer({ topic: spec.topic, server }, endpoint).start();
      } catch (e) {
        await bus.close();
        if (attempt >= 5) throw e;
        retries++;
        await new Promise((r) => setTimeout(r, 1000 + Math.random() * 2000));
        continue;
      }
      closers.push(() => bus.close());
      registered += (bus.transport('default') as ZmqDriver).nameService.stats.registered;
      return;
    }
  });
  toParent({ kind: 'ready', at: wallMs(), registered, retries, rssKiB: rssKiB(), fds: openFds() });
} else if (spec.role === 'fan') {
  const bus = await Bus.create({ transports: { default: spec.url } });
  closers.push(() => bus.close());
  await startAll(spec.servers, spec.jitterMs ?? 0, (server) => bus.rpcServer({ topic: spec.topic, server }, endpoint).start().then(() => undefined));
  toParent({ kind: 'ready', at: wallMs(), registered: 0, rssKiB: rssKiB(), fds: openFds() });
} else {
  const endpoints: string[] = [];
  const ok = Buffer.from('ok');
  for (let i = 0; i < spec.count; i++) {
    const router = new zmq.Router({ linger: 0 });
    await router.bind('tcp://127.0.0.1:*');
    closers.push(() => router.close());
    void (async () => {
      for await (const [id] of router) await router.send([id as Buffer, ok]);
    })().catch(() => undefined);
    endpoints.push(router.lastEndpoint as string);
  }
  toParent({ kind: 'ready', at: wallMs(), endpoints, registered: 0, rssKiB: rssKiB(), fds: openFds() });
}

await fromParent('exit');
await writeProfile();
await Promise.allSettled(closers.map((c) => c()));
process.exit(0);
