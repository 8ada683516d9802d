/**
 * A client calling and casting in a loop: argv[2] is JSON { url, topic, attempts }. Reports
 * { kind: 'done', errors: { class or 'ok': count } } to the parent; a libzmq assertion would
 * instead end this process with SIGABRT, which is what the tests look for.
 */
import { Bus } from '@hybridbus/core';
import '@hybridbus/zmq-direct';

const { url, topic, attempts } = JSON.parse(process.argv[2] as string) as { url: string; topic: string; attempts: number };
const bus = await Bus.create({ transports: { default: url } });
const client = bus.rpcClient({ topic }, { timeout: 5000 });
const errors: Record<string, number> = {};
for (let i = 0; i < attempts; i++) {
  try {
    await (i % 2 ? client.cast({}, 'echo', { i }) : client.call({}, 'echo', { i }));
    errors['ok'] = (errors['ok'] ?? 0) + 1;
  } catch (e) {
    const name = (e as Error).name;
    errors[name] = (errors[name] ?? 0) + 1;
  }
}
process.send?.({ kind: 'done', errors });
await bus.close();
process.disconnect?.();
