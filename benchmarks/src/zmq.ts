/**
 * hybridbus zmq-direct against raw zeromq.js, side by side in one run (`npm run bench:zmq`).
 *
 * Every measurement runs a fresh server process and a fresh client process (zmq-server.ts,
 * zmq-client.ts), which warms up before it measures. Rounds are interleaved (each round runs
 * every scenario for both backends, the backend order alternating from round to round) so that
 * drift on the machine hits both alike; the table shows the median of the rounds.
 *
 * Output: a table on stdout and the full results (every round, plus the HdrHistograms of the
 * latency runs) in bench-results/zmq.json. `--help` lists the knobs.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as zmq from 'zeromq';
import { Child, softFdLimit, type Message } from './lib/proc.js';
import { median } from './lib/stats.js';

const HELP = `Usage: npm run bench:zmq -- [options]

  --rounds N           interleaved rounds; the median is reported        (default 3)
  --scenarios LIST     latency,throughput,cast,fds                        (default all)
  --payload BYTES      payload size                                       (default 100)
  --latency-count N    sequential calls measured per round                (default 5000)
  --latency-warmup N   sequential calls before measuring (JIT still compiles after 1000) (default 10000)
  --inflight LIST      in-flight levels for call throughput               (default 16,256)
  --warmup-ms MS       call throughput warm-up per measurement            (default 1000)
  --duration-ms MS     call throughput measured time per measurement      (default 2000)
  --cast-ms MS         time the cast sender sends (the server may take longer to receive it all) (default 1000)
  --cast-window N      hybridbus casts kept in flight (raw PUSH: 1 send at a time) (default 256)
  --cast-warmup N      casts sent (and received) before measuring         (default 20000)
  --peers N            peers for the fd scenario                          (default 500)
  --peer-procs N       processes hosting those peers                      (default 5)
  --fd-concurrency N   hybridbus calls in flight while reaching the peers (default 50)
  --out FILE           JSON results                                       (default bench-results/zmq.json)
  --cpu-prof           write a CPU profile of every child to <out dir>/profiles
  --help
`;

const { values: flags } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    scenarios: { type: 'string', default: 'latency,throughput,cast,fds' },
    payload: { type: 'string', default: '100' },
    'latency-count': { type: 'string', default: '5000' },
    'latency-warmup': { type: 'string', default: '10000' },
    inflight: { type: 'string', default: '16,256' },
    'warmup-ms': { type: 'string', default: '1000' },
    'duration-ms': { type: 'string', default: '2000' },
    'cast-ms': { type: 'string', default: '1000' },
    'cast-window': { type: 'string', default: '256' },
    'cast-warmup': { type: 'string', default: '20000' },
    peers: { type: 'string', default: '500' },
    'peer-procs': { type: 'string', default: '5' },
    'fd-concurrency': { type: 'string', default: '50' },
    out: { type: 'string', default: 'bench-results/zmq.json' },
    'cpu-prof': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (flags.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function int(name: keyof typeof flags, min = 1): number {
  const raw = String(flags[name]);
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min) {
    process.stderr.write(`--${name}: ${JSON.stringify(raw)} is not an integer ≥ ${min}\n\n${HELP}`);
    process.exit(2);
  }
  return n;
}
const ints = (name: keyof typeof flags): number[] =>
  String(flags[name])
    .split(',')
    .filter(Boolean)
    .map((x) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n < 1) {
        process.stderr.write(`--${name}: ${JSON.stringify(x)} is not a positive integer\n`);
        process.exit(2);
      }
      return n;
    });

const SCENARIOS = ['latency', 'throughput', 'cast', 'fds'] as const;
type Scenario = (typeof SCENARIOS)[number];
const scenarios = new Set(String(flags.scenarios).split(',').filter(Boolean));
for (const s of scenarios) {
  if (!(SCENARIOS as readonly string[]).includes(s)) {
    process.stderr.write(`--scenarios: unknown "${s}"; expected some of ${SCENARIOS.join(',')}\n`);
    process.exit(2);
  }
}
const want = (s: Scenario): boolean => scenarios.has(s);

const cfg = {
  rounds: int('rounds'),
  payload: int('payload'),
  latencyCount: int('latency-count'),
  latencyWarmup: int('latency-warmup', 0),
  inflight: ints('inflight'),
  warmupMs: int('warmup-ms', 0),
  durationMs: int('duration-ms'),
  castMs: int('cast-ms'),
  castWindow: int('cast-window'),
  castWarmup: int('cast-warmup'),
  peers: int('peers'),
  peerProcs: int('peer-procs'),
  fdConcurrency: int('fd-concurrency'),
  out: path.resolve(String(flags.out)),
  cpuProf: flags['cpu-prof'] === true,
};

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER = path.join(here, 'zmq-server.js');
const CLIENT = path.join(here, 'zmq-client.js');
const nsDir = mkdtempSync(path.join(os.tmpdir(), 'hb-bench-ns-'));
const hbUrl = `zmq://?matchmaker=local:${nsDir}`;
const profDir = path.join(path.dirname(cfg.out), 'profiles');
/** fds a process hosting or reaching `n` peers may need, with room to spare. */
const fdsFor = (n: number): number => Math.max(4096, 4 * n + 512);
let topicSeq = 0;
/** A topic per measurement: a server that is gone never shadows the next one. */
const freshTopic = (): string => `bench${process.pid}n${topicSeq++}`;

type Backend = 'hb' | 'raw';
const BACKENDS: readonly Backend[] = ['hb', 'raw'];
const LABEL: Record<Backend, string> = { hb: 'hybridbus zmq-direct', raw: 'raw zeromq.js' };

function start(script: string, spec: Record<string, unknown>, name: string, minFds?: number, flags: string[] = []): Child {
  const nodeFlags = [...flags, ...(cfg.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${name}.cpuprofile`] : [])];
  return Child.start(script, spec, { name, nodeFlags, minFds });
}

const log = (s: string): void => void process.stderr.write(`${s}\n`);

/** "records/batch" of the hybridbus client's sends, from its counters. */
const batching = (r: Message): string => {
  const c = r['counters'] as Record<string, number> | undefined;
  return c?.['batches'] ? `  [client sent ${(c['records']! / c['batches']).toFixed(1)} records/batch]` : '';
};

// ---- one measurement ------------------------------------------------------------------------

interface Cell {
  readonly round: number;
  readonly scenario: string;
  readonly backend: Backend;
  readonly value: number;
  /** CPU time the hypervisor took from this VM during the measurement (% of all CPU time). */
  readonly stealPct: number | undefined;
  readonly data: Record<string, unknown>;
}
const cells: Cell[] = [];

/** /proc/stat totals: [steal, all] jiffies (undefined off Linux). */
function cpuTicks(): [number, number] | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    return [f[7] ?? 0, f.reduce((a, b) => a + b, 0)];
  } catch {
    return undefined;
  }
}
let cellTicks: [number, number] | undefined;
const cellStart = (): void => void (cellTicks = cpuTicks());
const cellSteal = (): number | undefined => {
  const now = cpuTicks();
  if (!now || !cellTicks || now[1] === cellTicks[1]) return undefined;
  return Math.round((1000 * (now[0] - cellTicks[0])) / (now[1] - cellTicks[1])) / 10;
};
const stealNote = (pct: number | undefined): string => (pct !== undefined && pct >= 5 ? `  (cpu steal ${pct}%)` : '');

async function withServer<T>(backend: Backend, role: 'echo' | 'sink', name: string, body: (server: Child, target: Record<string, unknown>) => Promise<T>): Promise<T> {
  const topic = freshTopic();
  cellStart();
  // A counting server reports the memory it still holds after a full GC.
  const flags = role === 'sink' ? ['--expose-gc'] : [];
  const server = start(SERVER, backend === 'hb' ? { role: 'hb', url: hbUrl, topic } : { role: role === 'echo' ? 'raw-echo' : 'raw-pull' }, `${name}-server`, undefined, flags);
  try {
    const ready = await server.next('ready', 30_000);
    const target = backend === 'hb' ? { backend, url: hbUrl, topic } : { backend, endpoint: ready['endpoint'] };
    return await body(server, target);
  } finally {
    await server.stop();
  }
}

async function runClient(spec: Record<string, unknown>, name: string, during?: (client: Child) => Promise<Record<string, unknown>>): Promise<Message> {
  const client = start(CLIENT, spec, `${name}-client`);
  try {
    const extra = during ? await during(client) : {};
    return { ...(await client.next('result', 120_000)), ...extra };
  } finally {
    await client.stop();
  }
}

async function latencyCell(round: number, backend: Backend): Promise<void> {
  const name = `latency-r${round}-${backend}`;
  const r = await withServer(backend, 'echo', name, (_s, target) =>
    runClient({ ...target, scenario: 'latency', payload: cfg.payload, warmup: cfg.latencyWarmup, count: cfg.latencyCount }, name),
  );
  const lat = r['latency'] as { p50: number; p90: number; p99: number; max: number };
  const stealPct = cellSteal();
  for (const p of ['p50', 'p90', 'p99', 'max'] as const) {
    cells.push({ round, scenario: `latency.${p}`, backend, value: lat[p], stealPct, data: p === 'p50' ? { latency: lat, histogram: r['histogram'], counters: r['counters'] } : {} });
  }
  log(`  latency     ${backend.padEnd(3)} p50 ${lat.p50} µs  p90 ${lat.p90}  p99 ${lat.p99}  max ${lat.max}${batching(r)}${stealNote(stealPct)}`);
}

async function throughputCell(round: number, backend: Backend, inflight: number): Promise<void> {
  const name = `throughput${inflight}-r${round}-${backend}`;
  const r = await withServer(backend, 'echo', name, (_s, target) =>
    runClient({ ...target, scenario: 'throughput', payload: cfg.payload, inflight, warmupMs: cfg.warmupMs, durationMs: cfg.durationMs }, name),
  );
  const rate = r['rate'] as number;
  const stealPct = cellSteal();
  cells.push({ round, scenario: `throughput.${inflight}`, backend, value: rate, stealPct, data: { ops: r['ops'], seconds: r['seconds'], counters: r['counters'] } });
  log(`  call tput   ${backend.padEnd(3)} ${String(inflight).padStart(3)} in flight: ${Math.round(rate)} calls/s, client cpu ${Number(r['clientCpuUsPerOp']).toFixed(1)} µs/call${batching(r)}${stealNote(stealPct)}`);
}

async function castCell(round: number, backend: Backend): Promise<void> {
  const name = `cast-r${round}-${backend}`;
  const r = await withServer(backend, 'sink', name, (server, target) =>
    runClient({ ...target, scenario: 'cast', payload: cfg.payload, window: cfg.castWindow, warmupCount: cfg.castWarmup, durationMs: cfg.castMs }, name, async (client) => {
      // Warm-up: everything sent is received before the measured phase starts.
      const warmed = await client.next('warmed', 60_000);
      server.send({ kind: 'expect', n: warmed['sent'], reset: true });
      await server.next('reached', 60_000);
      client.send({ kind: 'measure' });
      const sent = await client.next('sent', cfg.castMs + 60_000);
      server.send({ kind: 'expect', n: sent['sent'], reset: false });
      const reached = await server.next('reached', 120_000);
      client.send({ kind: 'done' });
      // How long after the sender finished the last message arrived (both wall clocks, one host).
      const drainLagMs = (reached['lastAt'] as number) - (sent['endedAt'] as number);
      return { received: reached['count'], receiveSeconds: reached['seconds'], drainLagMs, serverRssMB: reached['rssMB'], serverHeapUsedMB: reached['heapUsedMB'] };
    }),
  );
  // n arrivals span n-1 intervals from the first to the last.
  const rate = ((r['received'] as number) - 1) / (r['receiveSeconds'] as number);
  const stealPct = cellSteal();
  const drainLagMs = r['drainLagMs'] as number;
  cells.push({ round, scenario: 'cast', backend, value: rate, stealPct, data: { received: r['received'], receiveSeconds: r['receiveSeconds'], sendRate: r['sendRate'], drainLagMs, serverRssMB: r['serverRssMB'], serverHeapUsedMB: r['serverHeapUsedMB'], counters: r['counters'] } });
  log(
    `  cast tput   ${backend.padEnd(3)} ${Math.round(rate)} msgs/s received; sender handed over ${Math.round(r['sendRate'] as number)}/s, the last arrived ${(Math.max(0, drainLagMs) / 1000).toFixed(2)} s after it stopped; server rss ${String(r['serverRssMB'])} MB, heap retained ${String(r['serverHeapUsedMB'])} MB${batching(r)}${stealNote(stealPct)}`,
  );
}

async function fdsCell(backend: Backend): Promise<void> {
  const name = `fds-${backend}`;
  const topic = freshTopic();
  const perProc = Math.ceil(cfg.peers / cfg.peerProcs);
  const hosts: Child[] = [];
  try {
    const t0 = Date.now();
    const ready: Message[] = [];
    // Started one after the other: a few hundred servers registering at once crowd 2 cores.
    for (let p = 0; p * perProc < cfg.peers; p++) {
      const n = Math.min(perProc, cfg.peers - p * perProc);
      const servers = Array.from({ length: n }, (_, i) => `s${p * perProc + i}`);
      const spec = backend === 'hb' ? { role: 'hb-many', url: hbUrl, topic, servers } : { role: 'raw-many', count: n };
      const host = start(SERVER, spec, `${name}-server${p}`, fdsFor(n));
      hosts.push(host);
      ready.push(await host.next('ready', 120_000));
    }
    log(`  fds         ${backend.padEnd(3)} ${cfg.peers} peers up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // hybridbus: reach each server by name (prepare({server})); raw: one DEALER to every endpoint.
    const spec =
      backend === 'hb'
        ? { backend, url: hbUrl, topic, servers: Array.from({ length: cfg.peers }, (_, i) => `s${i}`), endpoints: [] }
        : { backend, endpoint: '', servers: [], endpoints: ready.flatMap((m) => m['endpoints'] as string[]) };
    const client = start(CLIENT, { ...spec, scenario: 'fds', payload: cfg.payload, concurrency: cfg.fdConcurrency }, `${name}-client`, fdsFor(cfg.peers), [
      // Counted (and reported) by the client rather than printed once per connection.
      '--no-warnings',
    ]);
    let r: Message;
    try {
      r = await client.next('result', 120_000);
    } finally {
      await client.stop();
    }
    if (r['reached'] !== cfg.peers) throw new Error(`${name}: reached ${String(r['reached'])} of ${cfg.peers} peers`);
    const { kind: _kind, ...data } = r;
    cells.push({ round: 0, scenario: 'fds', backend, value: r['perPeer'] as number, stealPct: undefined, data });
    const b = r['before'] as { total: number };
    const a = r['after'] as { total: number; byKind: Record<string, number> };
    const warnings = r['warnings'] as Record<string, number>;
    log(`  fds         ${backend.padEnd(3)} ${b.total} → ${a.total} open fds: ${(r['perPeer'] as number).toFixed(3)} per peer ${JSON.stringify(a.byKind)}`);
    for (const [w, n] of Object.entries(warnings)) log(`  fds         ${backend.padEnd(3)} process warning ×${n}: ${w}`);
  } finally {
    await Promise.allSettled(hosts.map((h) => h.stop(5_000)));
  }
}

// ---- the run --------------------------------------------------------------------------------

const limit = softFdLimit();
log(`zmq benchmark: ${cfg.rounds} round(s), ${cfg.payload}-byte payloads, ${os.cpus().length} CPUs, fd limit ${limit}${want('fds') && limit < fdsFor(cfg.peers) ? ` (fd scenario children get ${fdsFor(cfg.peers)} via ulimit)` : ''}`);
log(`name service: local:${nsDir}`);
const started = Date.now();
try {
  for (let round = 1; round <= cfg.rounds; round++) {
    const order: Backend[] = round % 2 ? ['hb', 'raw'] : ['raw', 'hb'];
    log(`round ${round}/${cfg.rounds} (${order.join(' first, then ')})`);
    if (want('latency')) for (const b of order) await latencyCell(round, b);
    if (want('throughput')) for (const n of cfg.inflight) for (const b of order) await throughputCell(round, b, n);
    if (want('cast')) for (const b of order) await castCell(round, b);
  }
  // Counting fds is exact, not noisy: once per backend.
  if (want('fds')) {
    log('fds per peer');
    for (const b of BACKENDS) await fdsCell(b);
  }
} finally {
  rmSync(nsDir, { recursive: true, force: true });
}
const elapsed = (Date.now() - started) / 1000;

// ---- the report -----------------------------------------------------------------------------

interface Row {
  readonly metric: string;
  readonly unit: string;
  readonly scenario: string;
  /** hb/raw must be ≤ (max) or ≥ (min) this; none = informational. */
  readonly target?: { readonly op: '≤' | '≥'; readonly ratio: number };
  readonly digits: number;
}
const rows: Row[] = [];
if (want('latency')) {
  rows.push(
    { metric: 'call latency p50', unit: 'µs', scenario: 'latency.p50', target: { op: '≤', ratio: 1.05 }, digits: 1 },
    { metric: 'call latency p90', unit: 'µs', scenario: 'latency.p90', digits: 1 },
    { metric: 'call latency p99', unit: 'µs', scenario: 'latency.p99', target: { op: '≤', ratio: 1.5 }, digits: 1 },
    { metric: 'call latency max', unit: 'µs', scenario: 'latency.max', digits: 1 },
  );
}
if (want('throughput')) {
  for (const n of cfg.inflight) {
    const target = n === 16 ? { op: '≥' as const, ratio: 1.3 } : n === 256 ? { op: '≥' as const, ratio: 2.0 } : undefined;
    rows.push({ metric: `call throughput, ${n} in flight`, unit: 'calls/s', scenario: `throughput.${n}`, ...(target ? { target } : {}), digits: 0 });
  }
}
if (want('cast')) rows.push({ metric: 'cast throughput (received)', unit: 'msgs/s', scenario: 'cast', target: { op: '≥', ratio: 1.0 }, digits: 0 });
if (want('fds')) rows.push({ metric: `client fds per peer (${cfg.peers} peers)`, unit: 'fds', scenario: 'fds', target: { op: '≤', ratio: 1.1 }, digits: 3 });

const summary = rows.map((row) => {
  const of = (b: Backend): number[] => cells.filter((c) => c.scenario === row.scenario && c.backend === b).map((c) => c.value);
  const hb = median(of('hb'));
  const raw = median(of('raw'));
  const ratio = hb / raw;
  const pass = row.target === undefined ? undefined : row.target.op === '≤' ? ratio <= row.target.ratio : ratio >= row.target.ratio;
  return { ...row, hb, raw, ratio, pass, rounds: { hb: of('hb'), raw: of('raw') } };
});

const stealOf = (b: Backend): string => {
  const xs = cells.filter((c) => c.backend === b && c.stealPct !== undefined && !c.scenario.startsWith('latency.p9') && c.scenario !== 'latency.max');
  return xs.length ? median(xs.map((c) => c.stealPct as number)).toFixed(1) : 'n/a';
};
const fmt = (x: number, digits: number): string => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');
const table: string[][] = [
  ['metric', 'unit', LABEL.hb, LABEL.raw, 'hb/raw', 'target', 'verdict'],
  ...summary.map((s) => [
    s.metric,
    s.unit,
    fmt(s.hb, s.digits),
    fmt(s.raw, s.digits),
    `${fmt(s.ratio, 2)}×`,
    s.target ? `${s.target.op} ${s.target.ratio.toFixed(2)}×` : '',
    s.pass === undefined ? '' : s.pass ? 'PASS' : 'FAIL',
  ]),
];
const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
const line = (r: string[]): string => r.map((c, i) => (i >= 2 && i <= 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
const out: string[] = [
  '',
  `hybridbus zmq-direct vs raw zeromq.js — ${cfg.payload}-byte payloads, median of ${cfg.rounds} interleaved round(s) (fds: one exact count)`,
  '',
  line(table[0]!),
  widths.map((w) => '-'.repeat(w)).join('  '),
  ...table.slice(1).map(line),
  '',
  'per round (hb | raw):',
  ...summary.map((s) => `  ${s.metric.padEnd(widths[0]!)}  ${s.rounds.hb.map((x) => fmt(x, s.digits)).join(', ')} | ${s.rounds.raw.map((x) => fmt(x, s.digits)).join(', ')}`),
  '',
  `cpu steal by the hypervisor during the measurements (median of cells): hybridbus ${stealOf('hb')}%, raw ${stealOf('raw')}% — tails (p99, max) are sensitive to it`,
  `${summary.filter((s) => s.pass === true).length} of ${summary.filter((s) => s.pass !== undefined).length} targets met; run took ${elapsed.toFixed(0)} s; results in ${path.relative(process.cwd(), cfg.out)}`,
];
process.stdout.write(`${out.join('\n')}\n`);

const require = createRequire(import.meta.url);
const gitHead = (): string | undefined => {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
};
mkdirSync(path.dirname(cfg.out), { recursive: true });
writeFileSync(
  cfg.out,
  `${JSON.stringify(
    {
      benchmark: 'zmq',
      date: new Date().toISOString(),
      git: gitHead(),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}`, fdLimit: limit },
      versions: { zeromqJs: (require('zeromq/package.json') as { version: string }).version, libzmq: zmq.version },
      config: { ...cfg, out: undefined },
      elapsedSeconds: elapsed,
      summary: summary.map(({ digits: _d, ...s }) => s),
      cells,
    },
    null,
    2,
  )}\n`,
);
process.exit(0);
