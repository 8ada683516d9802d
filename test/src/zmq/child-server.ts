/**
 * An RPC server in its own process, for tests that kill servers. argv[2] is JSON:
 * { config, servers: [{ topic, server }] }. Every handled cast (`record`, or `slowRecord` after
 * 20 ms) is reported to the parent over IPC; the parent gets { ready, address } once every server listens.
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
for (const { topic, server } of spec.servers) {
  const s = bus.rpcServer({ topic, server }, [
    {
      whoami: () => server,
      echo: (_c: Context, a: Record<string, unknown>) => a,
      record: (_c: Context, a: { i: number }) => send({ kind: 'record', server, i: a.i }),
      /** Takes 20 ms, and reports only once done (the report written before the method returns). */
      slowRecord: async (_c: Context, a: { i: number }) => {
        await new Promise((r) => setTimeout(r, 20));
        await new Promise((r) => process.send?.({ kind: 'record', server, i: a.i }, r));
      },
      hang: () => new Promise(() => undefined),
    },
  ]);
  await s.start();
}
send({ kind: 'ready', address: await (bus.transport('default') as ZmqDriver).address(), pid: process.pid });
process.on('message', (m: { kind?: string }) => {
  if (m.kind === 'exit') void bus.close().then(() => process.exit(0));
});
