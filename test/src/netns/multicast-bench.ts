/**
 * Fanout to many servers, unicast vs multicast (issue 15, part 5). Run it inside a network
 * namespace (never on the host's network):
 *
 *   unshare -n -- sh -c 'ip link set lo up && ip link set lo multicast on && \
 *     ip route add 224.0.0.0/4 dev lo && exec node test/dist/netns/multicast-bench.js [steps] [procs] [probes] [acks]'
 *
 * steps: server counts (default 100,1000); procs: server processes they are spread over
 * (default 4); probes: timed fanouts per step and mode (default 20); acks: none|handled
 * (default none); modes: unicast,multicast (default both). Per step and mode (unicast: servers without multicast; multicast: servers
 * joined to the topic's group), one client process sends warm-up fanouts (unicast opens its N
 * connections then), then `probes` fanouts one at a time, each timed from the cast to the last
 * server's arrival (servers report wall-clock arrival times), with the client's CPU (process
 * total, ZeroMQ's I/O thread included) over the probes divided by their number. Prints a table
 * and one JSON line.
 */
import { Bus, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import * as zmq from 'zeromq';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../util.js';

const wallMs = (): number => performance.timeOrigin + performance.now();
const ctx: Context = {};
const MULTICAST = '&multicast=udp://239.192.0.1:5555&multicast_interface=lo';

if (process.argv[2] === '--servers') {
  // A server process: one Bus (its own ROUTER, DISH and record) per server name.
  const [url, topic, count] = [process.argv[3] as string, process.argv[4] as string, Number(process.argv[5])];
  // Per server: its ROUTER, the ROUTER's event monitor (two PAIR sockets); the process's DISH; and spare.
  const sockets = count * 5 + 64;
  if (zmq.context.maxSockets < sockets) zmq.context.maxSockets = Math.min(sockets, zmq.context.maxSocketsLimit);
  const arrivals = new Map<number, { count: number; firstAt: number; lastAt: number }>();
  const buses: Bus[] = [];
  for (let i = 0; i < count; i++) {
    const bus = await Bus.create({ transports: { default: url } });
    buses.push(bus);
    await bus
      .rpcServer({ topic, server: `p${process.pid}s${i}` }, [
        {
          sink: (_c: Context, a: { seq: number }) => {
            const r = arrivals.get(a.seq) ?? { count: 0, firstAt: wallMs(), lastAt: 0 };
            r.count++;
            r.lastAt = wallMs();
            arrivals.set(a.seq, r);
            if (r.count === count) {
              arrivals.delete(a.seq);
              const cpu = process.cpuUsage();
              process.send?.({ seq: a.seq, lastAt: r.lastAt, firstAt: r.firstAt, cpuUs: cpu.user + cpu.system });
            }
          },
        },
      ])
      .start();
  }
  process.on('message', (m: { ask?: string }) => {
    if (m.ask !== 'counters') return;
    void (async () => {
      // The process's buses share one receiver (multicast/receiver.ts): its counters are the process's.
      const sum: Record<string, number> = {};
      const c = buses[0] ? await (buses[0].transport('default') as unknown as { counters(): Promise<Record<string, number>> }).counters() : {};
      for (const k of ['mcastGaps', 'mcastRecovered', 'mcastLost', 'mcastDuplicates']) sum[k] = c[k] ?? 0;
      process.send?.({ counters: sum });
    })();
  });
  process.send?.({ ready: true });
  await once(process, 'disconnect');
  await Promise.allSettled(buses.map((b) => b.close()));
  process.exit(0);
}

const steps = (process.argv[2] ?? '100,1000').split(',').map(Number);
const procs = Number(process.argv[3] ?? 4);
const probes = Number(process.argv[4] ?? 20);
const acks = process.argv[5] ?? 'none';
const modes = (process.argv[6] ?? 'unicast,multicast').split(',') as Array<'unicast' | 'multicast'>;
const self = fileURLToPath(import.meta.url);

interface Row {
  n: number;
  mode: 'unicast' | 'multicast';
  /** Median and max over the probes: cast → last server's arrival (ms). */
  allMs: number;
  maxMs: number;
  /** Median: cast → the cast resolved (every copy handed to ZeroMQ), and → the first server's arrival (ms). */
  sendMs: number;
  firstMs: number;
  /** Client CPU per fanout (µs), process total, and of it in the kernel. */
  cpuUs: number;
  sysUs: number;
  /** Server processes' CPU per fanout (µs), summed. */
  serverCpuUs: number;
  /** Client-side: unicast connections, multicast datagrams, over the whole step. */
  connects: number;
  datagrams: number;
  /** Receivers, summed: gaps seen, datagrams repaired, datagrams given up. */
  gaps: number;
  recovered: number;
  lost: number;
}

async function step(n: number, mode: Row['mode']): Promise<Row> {
  const dir = tempDir('hb-mcbench-');
  const url = `zmq://?matchmaker=local:${dir}&ns_cache=600000&ns_ttl=600000&acks=${acks}${mode === 'multicast' ? MULTICAST : ''}`;
  const topic = `bench${n}${mode}`;
  const per = Array.from({ length: procs }, (_, p) => Math.floor(n / procs) + (p < n % procs ? 1 : 0)).filter((k) => k > 0);
  const kids: ChildProcess[] = per.map((k) => fork(self, ['--servers', url, topic, String(k)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    await Promise.all(kids.map((c) => once(c, 'message')));
    const bus = await Bus.create({ transports: { default: url } });
    const driver = bus.transport('default') as unknown as { counters(): Promise<Record<string, number>> };
    const fan = bus.rpcClient({ topic }).prepare({ fanout: true });
    let seq = 0;
    let serverCpu = 0;
    const sends: number[] = [];
    const firsts: number[] = [];
    const one = async (): Promise<number> => {
      const s = seq++;
      const reached = kids.map((c) => waitFor(c, s));
      const t0 = wallMs();
      await fan.cast(ctx, 'sink', { seq: s });
      sends.push(wallMs() - t0);
      const at = await Promise.all(reached);
      serverCpu = at.reduce((sum, r) => sum + r.cpuUs, 0);
      firsts.push(Math.min(...at.map((r) => r.firstAt)) - t0);
      return Math.max(...at.map((r) => r.lastAt)) - t0;
    };
    for (let i = 0; i < 3; i++) await one();
    sends.length = 0;
    firsts.length = 0;
    const times: number[] = [];
    const serverCpu0 = serverCpu;
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < probes; i++) times.push(await one());
    const cpu = process.cpuUsage(cpu0);
    const c = await driver.counters();
    await bus.close();
    // Repairs at the receivers over the whole step (loss under load shows here, and in the max).
    const theirs = await Promise.all(
      kids.map(async (k) => {
        const answer = once(k, 'message') as Promise<[{ counters: Record<string, number> }]>;
        k.send({ ask: 'counters' });
        return (await answer)[0].counters;
      }),
    );
    const total = (name: string): number => theirs.reduce((a, t) => a + (t[name] ?? 0), 0);
    times.sort((a, b) => a - b);
    return {
      n,
      mode,
      allMs: round(times[Math.floor(times.length / 2)] as number),
      maxMs: round(times[times.length - 1] as number),
      sendMs: round(median(sends)),
      firstMs: round(median(firsts)),
      cpuUs: Math.round((cpu.user + cpu.system) / probes),
      sysUs: Math.round(cpu.system / probes),
      serverCpuUs: Math.round((serverCpu - serverCpu0) / probes),
      connects: c['connects'] ?? 0,
      datagrams: c['mcastSent'] ?? 0,
      gaps: total('mcastGaps'),
      recovered: total('mcastRecovered'),
      lost: total('mcastLost'),
    };
  } finally {
    for (const c of kids) c.disconnect();
    await Promise.all(kids.map((c) => (c.exitCode === null ? once(c, 'exit') : undefined)));
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function waitFor(c: ChildProcess, seq: number): Promise<{ lastAt: number; firstAt: number; cpuUs: number }> {
  return new Promise((resolve) => {
    const on = (m: { seq?: number; lastAt?: number; firstAt?: number; cpuUs?: number }): void => {
      if (m.seq !== seq) return;
      c.off('message', on);
      resolve({ lastAt: m.lastAt as number, firstAt: m.firstAt as number, cpuUs: m.cpuUs as number });
    };
    c.on('message', on);
  });
}

const round = (x: number): number => Math.round(x * 100) / 100;

const rows: Row[] = [];
for (const n of steps) {
  for (const mode of modes) {
    const r = await step(n, mode);
    rows.push(r);
    console.log(`${String(n).padStart(5)} servers  ${mode.padEnd(9)}  sent in ${r.sendMs} ms, first arrival ${r.firstMs} ms, to all: median ${String(r.allMs).padStart(8)} ms (max ${r.maxMs})  sender CPU/fanout ${String(r.cpuUs).padStart(7)} µs (kernel ${r.sysUs})  servers' CPU/fanout ${r.serverCpuUs} µs  connects ${r.connects}  datagrams ${r.datagrams}${r.mode === 'multicast' ? `  receivers: gaps ${r.gaps} repaired ${r.recovered} lost ${r.lost}` : ''}`);
  }
  const u = rows.find((r) => r.n === n && r.mode === 'unicast');
  const m = rows.find((r) => r.n === n && r.mode === 'multicast');
  if (u && m) console.log(`${String(n).padStart(5)} servers  multicast: out of the sender ${round(u.sendMs / m.sendMs)}× sooner, reaches all ${round(u.allMs / m.allMs)}× sooner; sender CPU ${round(u.cpuUs / m.cpuUs)}× less (user CPU ${round((u.cpuUs - u.sysUs) / (m.cpuUs - m.sysUs))}×)`);
}
console.log(`RESULT ${JSON.stringify({ procs, probes, acks, rows })}`);
process.exit(0);
