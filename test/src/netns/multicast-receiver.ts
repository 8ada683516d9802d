/**
 * A fanout server in a process of its own, for multicast-body.ts (inside the test's network
 * namespace): serves `topic` on zmq:// with the URL it is given, counts what arrives (by the
 * message's `n`), and answers the parent's questions over the IPC channel. Its own process so
 * the parent can freeze it with SIGSTOP while fanouts go.
 */
import { Bus, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { recordingLogger } from '../util.js';

const [url, topic] = process.argv.slice(2) as [string, string];
const logger = recordingLogger();
const bus = await Bus.create({ transports: { default: url } }, { logger });
const driver = bus.transport('default') as ZmqDriver;
const seen = new Map<number, number>();
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
const server = bus.rpcServer({ topic, server: `r${process.pid}` }, [
  {
    tick: (_c: Context, a: { n: number }) => {
      seen.set(a.n, (seen.get(a.n) ?? 0) + 1);
      if (seen.size >= waitFor) onAll?.();
      checkSettled();
    },
  },
]);
await server.start();

type Ask = { ask: 'until'; n: number } | { ask: 'settled'; n: number } | { ask: 'stats' } | { ask: 'close' };
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
      const twice = [...seen.values()].filter((c) => c > 1).length;
      const lostLogs = logger.records.filter((r) => r.level === 'warn' && /multicast fanout\(s\) lost/.test(r.msg ?? '')).length;
      process.send?.({ distinct: seen.size, twice, counters: await d.counters(), stats: d.stats(), lostLogs });
    } else {
      await bus.close();
      process.exit(0);
    }
  })();
});
process.send?.({ ready: true });
