/**
 * Moleculer 0.15 as a peer contender (`moleculer-tcp`): a ServiceBroker per process with its TCP
 * transporter (no UDP discovery: the servers' `host:port/nodeID` are given to the client as
 * static URLs, the engine's endpoints), defaults otherwise (JSON serializer, round-robin
 * balancer, no metrics or tracing, logger off).
 * - calls: `broker.call('bench.echo', {p})`, the server's action returning its params;
 * - cast: a balanced event, `broker.emit('bench.sink', {p})` (one instance of the service's group
 *   gets it; fire-and-forget over TCP), 64 in flight like the hybridbus child.
 * `moleculer-amqp` (spec.data.url set): the same through its AMQP transporter on the bench's
 * RabbitMQ, `prefetch: 0` (no limit, as the rabbit driver's default; Moleculer's own default is
 * 1), defaults otherwise; no endpoints are needed.
 * Moleculer has no notification pools and no fanout to "every server of a topic" here, so the
 * contender declares those unsupported.
 */
import { ServiceBroker, type Context } from 'moleculer';
import { Payloads, readSpec, runClient, runServer, windowed, type ClientSide } from './child.js';
import type { ClientSpec, ServerSpec } from './contender.js';

type AmqpOptions = { url: string; prefetch: number };
const SERVICE = 'bench';

function broker(spec: ServerSpec | ClientSpec, nodeID: string, urls: readonly string[] | undefined): ServiceBroker {
  const amqp = spec.data['url'];
  return new ServiceBroker({
    nodeID,
    logger: false,
    transporter:
      typeof amqp === 'string'
        ? // socketOptions reach amqplib's connect (typed in Moleculer's JS, not its .d.ts): TCP_NODELAY, as every
          // amqplib contender has; without it a call waits out Nagle against delayed ACKs (~40 ms).
          { type: 'AMQP', options: { url: amqp, prefetch: 0, socketOptions: { noDelay: true } } as AmqpOptions }
        : { type: 'TCP', options: { udpDiscovery: false, ...(urls ? { urls: urls.join(',') } : {}) } },
  });
}

/** The TCP transporter's listening port, once started. */
function portOf(b: ServiceBroker): number {
  const tx = (b.transit as unknown as { tx: { opts: { port: number } } }).tx;
  return tx.opts.port;
}

const role = readSpec<ServerSpec | ClientSpec>().role;

if (role === 'server') {
  await runServer(async (spec, arrivals) => {
    const brokers: ServiceBroker[] = [];
    for (const server of spec.servers) {
      const b = broker(spec, `${spec.topic}-${server}`, undefined);
      b.createService({
        name: SERVICE,
        actions: { echo: (ctx: Context<Record<string, unknown>>) => ctx.params },
        events: { 'bench.sink': () => void arrivals.hit() },
      });
      await b.start();
      brokers.push(b);
    }
    return {
      endpoints: typeof spec.data['url'] === 'string' ? [] : brokers.map((b) => `127.0.0.1:${portOf(b)}/${b.nodeID}`),
      close: async () => void (await Promise.allSettled(brokers.map((b) => b.stop()))),
    };
  });
} else {
  await runClient(async (spec): Promise<ClientSide> => {
    const b = broker(spec, `${spec.topic}-client${spec.process}`, typeof spec.data['url'] === 'string' ? undefined : spec.endpoints);
    await b.start();
    await b.waitForServices(SERVICE, 60_000);
    const payloads = new Payloads(spec.payload.sizes);
    return {
      call: async () => {
        await b.call(`${SERVICE}.echo`, { p: payloads.nextText() });
      },
      sendMany: windowed(() => b.emit('bench.sink', { p: payloads.nextText() })),
      close: () => b.stop(),
    };
  });
}
