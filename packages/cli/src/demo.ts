/**
 * The main job on the embedded default: one server process's worth of endpoints, a client,
 * three fanout members and a notification pool, each pattern's round trip printed.
 * A config file (or HYBRIDBUS_* variables) runs the same demo on real transports.
 */
import { Bus, maskSecrets, type Context } from '@hybridbus/core';
import { performance } from 'node:perf_hooks';

const ctx: Context = { user_id: 'demo', request_id: 'req-demo-1' };

function row(pattern: string, transport: string, what: string, ms: number): void {
  console.log(`${pattern.padEnd(8)} ${transport.padEnd(26)} ${what.padEnd(44)} ${ms.toFixed(2).padStart(8)} ms`);
}

/** Run the demo on the config `file` (or the embedded default) and print each round trip. */
export async function runDemo(file?: string): Promise<void> {
  const bus = await Bus.fromConfig(file);
  // The transport's URL as it may be shown: its password masked.
  const url = (p: 'call' | 'cast' | 'fanout' | 'notify'): string => `${bus.route('scheduler', p)} (${maskSecrets(String(bus.config.transports[bus.route('scheduler', p)]))})`;
  let castDone: () => void = () => undefined;
  const fanoutSeen = new Set<string>();
  let fanoutDone: () => void = () => undefined;

  const servers = ['node-1', 'node-2', 'node-3'].map((name) =>
    bus.rpcServer({ topic: 'scheduler', server: name }, [
      {
        target: { version: '1.2' },
        select_destinations: (_c: Context, a: { spec: { vcpus: number } }) => ({ host: name, vcpus: a.spec.vcpus }),
        update_stats: () => castDone(),
        refresh: () => {
          fanoutSeen.add(name);
          if (fanoutSeen.size === 3) fanoutDone();
        },
      },
    ]),
  );
  for (const s of servers) await s.start();
  let notified: (eventType: string) => void = () => undefined;
  const listener = bus.notificationListener([{ topic: 'notifications' }], [{ info: (_c, _p, eventType) => notified(eventType) }], { pool: 'billing' });
  await listener.start();

  console.log(`hybridbus demo on ${file ?? 'the embedded default (no server needed)'}\n`);
  console.log(`${'pattern'.padEnd(8)} ${'transport'.padEnd(26)} ${'what happened'.padEnd(44)} ${'time'.padStart(11)}`);
  const client = bus.rpcClient({ topic: 'scheduler', version: '1.2' }, { timeout: 10_000 });

  let t = performance.now();
  const r = await client.call<{ host: string }>(ctx, 'select_destinations', { spec: { vcpus: 2 } });
  row('call', url('call'), `select_destinations -> ${r.host}`, performance.now() - t);

  t = performance.now();
  await new Promise<void>((resolve) => {
    castDone = resolve;
    void client.cast(ctx, 'update_stats', { host: 'node-7' });
  });
  row('cast', url('cast'), 'update_stats handled by one server', performance.now() - t);

  t = performance.now();
  await new Promise<void>((resolve) => {
    fanoutDone = resolve;
    void client.prepare({ fanout: true }).cast(ctx, 'refresh', {});
  });
  row('fanout', url('fanout'), `refresh reached ${[...fanoutSeen].sort().join(', ')}`, performance.now() - t);

  t = performance.now();
  const event = await new Promise<string>((resolve) => {
    notified = resolve;
    void bus.notifier({ publisherId: 'compute.node-7' }).info(ctx, 'compute.instance.create.end', { state: 'active' });
  });
  row('notify', url('notify'), `${event} -> pool "billing"`, performance.now() - t);

  const n = 2000;
  t = performance.now();
  await Promise.all(Array.from({ length: n }, () => client.call(ctx, 'select_destinations', { spec: { vcpus: 1 } })));
  const s = (performance.now() - t) / 1000;
  console.log(`\n${n} concurrent calls in ${(s * 1000).toFixed(0)} ms (${Math.round(n / s)} calls/s)`);

  await listener.stop();
  for (const srv of servers) await srv.stop();
  await bus.close();
}
