/**
 * RPC servers in their own process, for the liveness tests (zmq-liveness.test.ts): they get
 * frozen (SIGSTOP) and killed (SIGKILL). argv[2] is JSON: { config, servers: [{ topic, server }] }.
 *
 * Endpoints: whoami, echo, hang (reports it started, never returns), slow({ i, ms }) (reports
 * "started", waits ms, reports "done" BEFORE returning, so the report is in the pipe before any
 * ack can leave), tally({ c, i }) (counted here, reported on request: for floods).
 * The parent may send { kind: 'counters' } (answered with the driver's counters),
 * { kind: 'tally' } (answered with the tally) and { kind: 'exit' }.
 */
import { Bus, type ConfigInput, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';

interface Spec {
  config: ConfigInput;
  servers: Array<{ topic: string; server: string }>;
}

const spec = JSON.parse(process.argv[2] as string) as Spec;
const send = (m: unknown): void => void process.send?.(m);
const bus = await Bus.create(spec.config);
const driver = bus.transport('default') as ZmqDriver;
/** client id → the cast numbers handled, in order (a number twice = handled twice). */
const tally: Record<string, number[]> = {};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

for (const { topic, server } of spec.servers) {
  const s = bus.rpcServer({ topic, server }, [
    {
      whoami: () => server,
      echo: (_c: Context, a: Record<string, unknown>) => a,
      hang: () => {
        send({ kind: 'started', method: 'hang', server });
        return new Promise(() => undefined);
      },
      slow: async (_c: Context, a: { i: number; ms: number }) => {
        send({ kind: 'started', method: 'slow', server, i: a.i });
        await sleep(a.ms);
        // Written to the parent before the method returns (and so before its ack can leave): a
        // report still buffered here when the process is killed would look like a lost cast.
        await new Promise((r) => process.send?.({ kind: 'done', method: 'slow', server, i: a.i }, r));
        return server;
      },
      tally: (_c: Context, a: { c: string; i: number }) => void (tally[a.c] ??= []).push(a.i),
    },
  ]);
  await s.start();
}
send({ kind: 'ready', address: await driver.address(), pid: process.pid });
process.on('message', (m: { kind?: string }) => {
  if (m.kind === 'counters') void driver.counters().then((counters) => send({ kind: 'counters', counters }));
  else if (m.kind === 'tally') send({ kind: 'tally', tally });
  else if (m.kind === 'exit') void bus.close().then(() => process.exit(0));
});
