/**
 * Fanout servers in a process of their own, for multicast-body.ts (inside the test's network
 * namespace): `count` servers (default 1, a Bus each) serve `topic` on zmq:// with the URL it is
 * given, count what arrives (by the message's `n`, per server), and answer the parent's
 * questions over the IPC channel. Their own process so the parent can freeze it with SIGSTOP
 * while fanouts go.
 */
import { udpSockets } from './udp-sockets.js';
import { Bus, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { recordingLogger } from '../util.js';

const [url, topic, count] = process.argv.slice(2) as [string, string, string | undefined];
const logger = recordingLogger();
const buses: Bus[] = [];
/** Per server: how many times each `n` arrived. */
const seens: Map<number, number>[] = [];
for (let i = 0; i < Number(count ?? 1); i++) buses.push(await Bus.create({ transports: { default: url } }, { logger }));
const bus = buses[0] as Bus;
const driver = bus.transport('default') as ZmqDriver;
/** The fanouts every server has had (the least of them). */
const seen = { get size(): number {
  return Math.min(...seens.map((s) => s.size));
} };
let waitFor = Infinity;
let onAll: (() => void) | undefined;
/** 'settled': everything sent either arrived or was reported lost. */
let settledAt = Infinity;
let onSettled: (() => void) | undefined;
const lost = async (): Promise<number> => (await driver.counters())['mcastLost'] ?? 0;
const checkSettled = (): void => {
  if (onSettled) void lost().then((l) => (seen.size + l >= settledAt ? onSettled?.() : undefined));
};
const warn = logger.warn;
logger.warn = (obj, msg) => {
  warn(obj, msg);
  checkSettled();
};
for (const [i, b] of buses.entries()) {
  const mine = new Map<number, number>();
  seens.push(mine);
  await b
    .rpcServer({ topic, server: `r${process.pid}s${i}` }, [
      {
        tick: (_c: Context, a: { n: number }) => {
          mine.set(a.n, (mine.get(a.n) ?? 0) + 1);
          if (seen.size >= waitFor) onAll?.();
          checkSettled();
        },
      },
    ])
    .start();
}


type Ask = { ask: 'until'; n: number } | { ask: 'settled'; n: number } | { ask: 'stats' } | { ask: 'udp'; port: number } | { ask: 'close' };
process.on('message', (m: Ask) => {
  void (async () => {
    if (m.ask === 'until') {
      waitFor = m.n;
      if (seen.size < m.n) await new Promise<void>((resolve) => (onAll = resolve));
      process.send?.({ until: seen.size });
    } else if (m.ask === 'settled') {
      settledAt = m.n;
      await new Promise<void>((resolve) => {
        onSettled = resolve;
        checkSettled();
      });
      onSettled = undefined;
      process.send?.({ settled: true });
    } else if (m.ask === 'stats') {
      const d = driver;
      const twice = seens.reduce((a, s) => a + [...s.values()].filter((c) => c > 1).length, 0);
      const lostLogs = logger.records.filter((r) => r.level === 'warn' && /multicast fanout\(s\) lost/.test(r.msg ?? '')).length;
      process.send?.({ distinct: seen.size, perServer: seens.map((s) => s.size), twice, counters: await d.counters(), stats: d.stats(), lostLogs });
    } else if (m.ask === 'udp') {
      process.send?.({ sockets: udpSockets(m.port) });
    } else {
      await Promise.all(buses.map((b) => b.close()));
      process.exit(0);
    }
  })();
});
process.send?.({ ready: true });
