/**
 * The measuring client of the scale scenario (spec.role):
 * - hb:  a hybridbus Bus on the zmq:// URL (or a brokered one, rabbit://: no name service to
 *        poll, no counters), fanning out to spec.topic; each fanout reports the CPU it cost. A second name-service
 *        instance of the same backend (no cache) polls for registrations, so the driver's own
 *        lookup counts are only those its fanouts made.
 *   ← await { n } → seen { at, polls } once a lookup of the topic answers n records;
 *   ← fanout { seq } → sent { startedAt, resolvedAt };
 *   ← measure → measured { fds, rssKiB, lookups, cacheHits, records, peers }.
 * - raw: one zeromq.js DEALER; ← connect { endpoints } connects to all, sends one message per
 *   peer (round-robin) and waits for every answer → connected { ms, fds, rssKiB }.
 * Both send ready { fds, rssKiB } first: the baseline, before any peer is reached.
 */
import { readdirSync } from 'node:fs';
import { Bus, type Context } from '@hybridbus/core';
import { createNameService } from '@hybridbus/nameservice';
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import * as zmq from 'zeromq';
import { fromParent, reportErrors, toParent, type Message } from '../lib/proc.js';
import { startProfile, writeProfile } from '../lib/profile.js';

export type ScaleClientSpec = { readonly role: 'hb'; readonly url: string; readonly topic: string; readonly peers: number } | { readonly role: 'raw'; readonly peers: number };

reportErrors();
process.on('disconnect', () => process.exit(0));
const spec = JSON.parse(process.argv[process.argv.length - 1] as string) as ScaleClientSpec;
const wallMs = (): number => performance.timeOrigin + performance.now();
const ctx: Context = {};

/** This process's open fds (readdir's own handle is not counted: it is closed before the list returns). */
const openFds = (): number => readdirSync('/proc/self/fd').length - 1;

/** RSS in KiB, after a full GC when --expose-gc allows it (so garbage does not count). */
function rssKiB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Math.round(process.memoryUsage().rss / 1024);
}

// Enough sockets for the raw client and the driver, whatever the peer count.
const sockets = spec.peers + 64; // the raw client's DEALERs at most; the driver's ROUTER and its monitor are 3
if (zmq.context.maxSockets < sockets) zmq.context.maxSockets = Math.min(sockets, zmq.context.maxSocketsLimit);
// Start the context's I/O threads (and their fds) before the baseline: they are paid once per
// process, not per peer. The throwaway socket is closed again.
new zmq.Dealer({ linger: 0 }).close();
// Its close is asynchronous (libzmq's reaper): let it finish before the baseline.
await new Promise((r) => setTimeout(r, 200));

const commands = async (handlers: Record<string, (m: Message) => Promise<Message>>): Promise<void> => {
  const kinds = Object.keys(handlers);
  const loops = kinds.map(async (kind) => {
    for (;;) {
      const m = await fromParent(kind);
      toParent(await (handlers[kind] as (m: Message) => Promise<Message>)(m));
    }
  });
  await Promise.race([fromParent('exit'), ...loops]);
};

if (spec.role === 'hb') {
  const bus = await Bus.create({ transports: { default: spec.url } });
  // zmq:// has a name service to poll and counters to read; a brokered URL (rabbit://) has neither.
  const driver = /^zmq:/.test(spec.url) ? (bus.transport('default') as ZmqDriver) : undefined;
  const fanout = bus.rpcClient({ topic: spec.topic }).prepare({ fanout: true });
  const poller = driver ? createNameService(driver.options.matchmaker, { ttlMs: driver.options.nsTtl, cacheMs: 0 }) : undefined;
  // The key the driver fans out to: "<exchange>/<topic>" (the exchange is the bus's control exchange).
  const keyOf = (driver as unknown as { topicKey?: (t: { topic: string }) => string } | undefined)?.topicKey;
  const key = keyOf ? keyOf.call(driver, { topic: spec.topic }) : `openstack/${spec.topic}`;
  toParent({ kind: 'ready', fds: openFds(), rssKiB: rssKiB(), key });
  await commands({
    await: async (m) => {
      let polls = 0;
      for (;;) {
        polls++;
        const t0 = wallMs();
        if (!poller || (await poller.lookup(key)).length >= Number(m['n'])) return { kind: 'seen', at: wallMs(), polls };
        // Every 20 ms while a lookup is cheap; at thousands of records, a pause 20× the lookup's
        // time (≤ 1 s), so the poller is ≤ 5 % of the name service's reads, not the load measured.
        await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(20, 20 * (wallMs() - t0)))));
      }
    },
    fanout: async (m) => {
      startProfile();
      const startedAt = wallMs();
      const cpu0 = process.cpuUsage();
      let error: string | undefined;
      try {
        await fanout.cast(ctx, 'sink', { seq: Number(m['seq']) });
      } catch (e) {
        error = `${(e as Error).name}: ${(e as Error).message}`;
      }
      const resolvedAt = wallMs();
      const cpu = process.cpuUsage(cpu0);
      // The registered servers (the uncached poller: the driver's lookup counts stay its own) and
      // the driver's counters: evidence when a fanout does not reach every server.
      const hosts = poller ? (await poller.lookup(key)).length : -1;
      return { kind: 'sent', startedAt, resolvedAt, cpuMs: (cpu.user + cpu.system) / 1000, error, hosts, counters: driver ? await driver.counters() : {} };
    },
    measure: async () => {
      const fds = openFds();
      const rss = rssKiB();
      if (!driver || !poller) return { kind: 'measured', fds, rssKiB: rss, lookups: 0, cacheHits: 0, records: 0, peers: 0 };
      const ns = driver.nameService.stats;
      let records = 0;
      for (const rs of (await poller.list()).values()) records += rs.length;
      const counters = await driver.counters();
      return { kind: 'measured', fds, rssKiB: rss, lookups: ns.lookups, cacheHits: ns.cacheHits, records, peers: Number(counters['peers'] ?? 0) };
    },
  });
  await writeProfile();
  await poller?.close();
  await bus.close();
} else {
  const dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 0 });
  toParent({ kind: 'ready', fds: openFds(), rssKiB: rssKiB() });
  await commands({
    connect: async (m) => {
      const endpoints = m['endpoints'] as string[];
      const t0 = wallMs();
      for (const e of endpoints) dealer.connect(e);
      const hello = Buffer.from('hello');
      for (let i = 0; i < endpoints.length; i++) await dealer.send(hello);
      for (let i = 0; i < endpoints.length; i++) await dealer.receive();
      return { kind: 'connected', ms: wallMs() - t0, fds: openFds(), rssKiB: rssKiB() };
    },
  });
  dealer.close();
}
process.exit(0);
