/**
 * An amqp1 RPC server in its own process, for tests that kill it. argv[2] is JSON
 * { url, topic, server }; the parent gets { kind: 'ready' } once it listens and
 * { kind: 'hang' } when a `hang` call has reached it (that call never returns).
 */
import { Bus } from '@hybridbus/core';
import '@hybridbus/amqp1';

const { url, topic, server } = JSON.parse(process.argv[2] as string) as { url: string; topic: string; server: string };
const send = (m: unknown): void => void process.send?.(m);
const bus = await Bus.create({ transports: { default: url } });
await bus
  .rpcServer({ topic, server }, [
    {
      whoami: () => server,
      hang: () => (send({ kind: 'hang' }), new Promise(() => undefined)),
    },
  ])
  .start();
send({ kind: 'ready' });
