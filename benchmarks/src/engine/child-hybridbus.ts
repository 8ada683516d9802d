/**
 * A hybridbus contender's child, server or client (spec.role), for any bus config: the
 * public Bus API only, so every transport and the hybrid router are measured alike.
 * spec.data.config is the bus config (ConfigInput); spec.data.notifyPool === false listens for
 * notifications without a pool (amqp1 through an intermediary has none).
 */
import { Bus, type ConfigInput, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import '@hybridbus/amqp1';
import { Payloads, readSpec, runClient, runServer, windowed, type ClientSide } from './child.js';
import type { ClientSpec, ServerSpec } from './contender.js';
import type { ObserveMode } from './observe.js';

const ctx: Context = {};

/** A bus for the spec; with `observe`, tracing and metrics are on (contenders-observed.ts). */
async function busOf(spec: ServerSpec | ClientSpec): Promise<Bus> {
  const bus = await Bus.create(spec.data['config'] as ConfigInput);
  const mode = spec.data['observe'];
  if (typeof mode === 'string') (await import('./observe.js')).observe(bus, mode as ObserveMode);
  return bus;
}

const role = readSpec<ServerSpec | ClientSpec>().role;
if (role === 'server') {
  await runServer(async (spec, arrivals) => {
    const buses: Bus[] = [];
    const stops: Array<() => Promise<void>> = [];
    if (spec.scenario === 'notify') {
      const bus = await busOf(spec);
      buses.push(bus);
      // A pool: the listeners of one service sharing the work, as oslo's notification pools do.
      const pool = spec.data['notifyPool'] === false ? {} : { pool: 'bench' };
      const listener = bus.notificationListener([{ topic: spec.topic }], [{ info: () => void arrivals.hit() }], pool);
      await listener.start();
      stops.push(() => listener.stop());
    } else {
      // One bus per server: each is its own peer (socket, connection), as separate nodes would be.
      for (const server of spec.servers) {
        const bus = await busOf(spec);
        buses.push(bus);
        const rpc = bus.rpcServer({ topic: spec.topic, server }, [
          {
            echo: (_c: Context, args: Record<string, unknown>) => args,
            sink: () => void arrivals.hit(),
          },
        ]);
        await rpc.start();
        stops.push(() => rpc.stop());
      }
    }
    return {
      close: async () => {
        await Promise.allSettled(stops.map((s) => s()));
        await Promise.allSettled(buses.map((b) => b.close()));
      },
    };
  });
} else {
  await runClient(async (spec): Promise<ClientSide> => {
    const bus = await busOf(spec);
    const payloads = new Payloads(spec.payload.sizes);
    const client = bus.rpcClient({ topic: spec.topic });
    const fanout = client.prepare({ fanout: true });
    const notifier = bus.notifier({ publisherId: `bench.${process.pid}`, topics: [spec.topic] });
    const one: () => Promise<void> =
      spec.scenario === 'fanout'
        ? () => fanout.cast(ctx, 'sink', { p: payloads.nextText() })
        : spec.scenario === 'notify'
          ? () => notifier.info(ctx, 'bench.event', { p: payloads.nextText() })
          : () => client.cast(ctx, 'sink', { p: payloads.nextText() });
    return {
      call: async () => {
        await client.call(ctx, 'echo', { p: payloads.nextText() });
      },
      sendMany: windowed(one),
      close: () => bus.close(),
    };
  });
}
