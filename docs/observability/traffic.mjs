// Traffic for the README's Observability screenshot (docs/observability/screenshot.sh runs it):
// a zmq:// bus with an RPC server, a client and a notification listener, metrics on
// http://127.0.0.1:9464/metrics, calls at a rate that rises and falls, a few remote errors,
// casts and notifications, for DURATION_S seconds.
import { Bus } from 'hybridbus';
import { registerMetrics, serveObservability } from '@hybridbus/observability';
import { Registry } from 'prom-client';

const seconds = Number(process.env.DURATION_S ?? 180);
const bus = await Bus.create({ transports: { default: 'zmq://' }, log: { level: 'fatal' } });
const registry = new Registry();
registerMetrics(bus, { registry });
const endpoint = await serveObservability({ bus, registry, host: '127.0.0.1', port: Number(process.env.PORT ?? 9464) });
const server = bus.rpcServer({ topic: 'compute', server: 'node-1' }, [
  {
    boot: async (_ctx, { ms }) => {
      await new Promise((r) => setTimeout(r, ms));
      return 'ok';
    },
    resize: () => {
      throw new Error('no valid host was found');
    },
    update_stats: () => undefined,
  },
]);
await server.start();
const listener = bus.notificationListener([{ topic: 'notifications' }], [{ info: () => undefined }], { pool: 'ceilometer' });
await listener.start();
const client = bus.rpcClient({ topic: 'compute' });
const notifier = bus.notifier({ publisherId: 'compute.node-1' });
console.log(`metrics on ${endpoint.url}/metrics for ${seconds} s`);

const start = Date.now();
while (Date.now() - start < seconds * 1000) {
  const t = (Date.now() - start) / 1000;
  // A load that rises and falls over a minute: 20 to 220 calls per 100 ms tick.
  const n = Math.round(120 + 100 * Math.sin((2 * Math.PI * t) / 60));
  const work = [];
  for (let i = 0; i < n; i++) work.push(client.call({}, 'boot', { ms: Math.round(Math.random() * 8) }));
  for (let i = 0; i < n / 10; i++) work.push(client.call({}, 'resize', {}).catch(() => undefined));
  for (let i = 0; i < n / 2; i++) work.push(client.cast({}, 'update_stats', {}));
  for (let i = 0; i < n / 4; i++) work.push(notifier.info({}, 'compute.instance.create.end', { id: i }));
  await Promise.all([...work, new Promise((r) => setTimeout(r, 100))]);
}
await listener.stop();
await server.stop();
await endpoint.close();
await bus.close();
