/**
 * `hybridbus bench`: every contender side by side in one run. Rounds are interleaved (each
 * round runs every scenario for every contender, the contender order alternating from round to
 * round) so that drift on the machine hits all alike; figures are the medians of the rounds and
 * ratios the medians of per-round ratios to the raw baseline measured in the same round.
 *
 * Every measurement starts fresh server and client processes (contender.ts has the protocol);
 * this file does all the timing arithmetic, so every contender is measured the same way.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, maskSecrets, type HybridbusConfig } from '@hybridbus/core';
// The bench's configs name these transports: loading them needs their drivers.
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import '@hybridbus/amqp1';
import cliProgress from 'cli-progress';
import { Child, type Message } from '../lib/proc.js';
import { median } from '../lib/stats.js';
import { brokerPidOf, processCpuUs } from '../lib/broker-cpu.js';
import type { BenchReport, Cell, CpuPerMsg, ContenderInfo, LatencyDistribution, MetricInfo, Summary } from '../report/types.js';
import { writeReportFiles } from '../report/html.js';
import { SCENARIOS, type ClientSpec, type Contender, type Scenario, type ServerSpec } from './contender.js';
import { BASELINE_FALLBACK, hybridbusContenders, rawZeromq, rawZeromqAcked, registeredContenders, schemeId, type RegisteredOptions } from './contenders.js';
import { meanSize, payloadSpec, type PayloadOption } from './payload.js';
import { benchScale, renderScaleTable, SCALE_DEFAULTS } from '../scale/run.js';

export const DEFAULT_RABBIT_URL = 'rabbit://guest:guest@127.0.0.1:5672/';

export interface BenchOptions {
  /** Bus config file; none: embedded zmq:// (private name service) plus RabbitMQ at rabbitUrl if reachable. */
  readonly config?: string | undefined;
  readonly rabbitUrl: string;
  /** An AMQP 1.0 queue broker for amqp1-proton / raw-rhea-proton (amqp://host:port); none: those are skipped. */
  readonly protonUrl?: string | undefined;
  /** A qdrouterd for amqp1-router / raw-rhea-router (amqp://host:port); none: those are skipped. */
  readonly routerUrl?: string | undefined;
  /** Contender ids to run (default: all known). */
  readonly contenders?: readonly string[] | undefined;
  /** Scenarios (default: all but scale). */
  readonly scenarios: readonly (Scenario | 'scale')[];
  readonly rounds: number;
  readonly payload: PayloadOption;
  /** Measured time of the throughput, cast, fanout-rate and notify measurements. */
  readonly durationMs: number;
  /** Warm-up time before those. */
  readonly warmupMs: number;
  /** Sequential calls before the latency measurement (the JIT needs ~10,000 for a stable p99). */
  readonly warmupCalls: number;
  /** Sequential calls measured for latency. */
  readonly latencyCalls: number;
  readonly inflight: readonly number[];
  /** Client processes for throughput, cast and notify. */
  readonly clients: number;
  /** Server processes for the call scenarios. */
  readonly servers: number;
  readonly fanoutServers: readonly number[];
  /** Single fanouts timed for `fanout.N.complete`. */
  readonly fanoutProbes: number;
  /** Pin clients and servers to different CPUs with taskset. */
  readonly pin: boolean;
  readonly json: string;
  readonly html: string;
  /** The command line, for the report. */
  readonly command: string;
  /** Where the table and notes go (default stdout / stderr). */
  readonly out?: (line: string) => void;
  readonly note?: (line: string) => void;
  /** The scale scenario (../scale/run.ts): server counts, server processes, timed fanouts per step. */
  readonly scaleSteps?: readonly number[] | undefined;
  readonly scaleProcs?: number | undefined;
  readonly scaleProbes?: number | undefined;
  readonly scaleJitter?: number | undefined;
  /** Write a V8 CPU profile of every Node child (server and client) into this directory. */
  readonly cpuProf?: string | undefined;
}

export const DEFAULTS = {
  rounds: 3,
  payload: 100 as PayloadOption,
  durationMs: 2_000,
  warmupMs: 1_000,
  warmupCalls: 10_000,
  latencyCalls: 10_000,
  inflight: [16, 256],
  clients: 1,
  servers: 1,
  fanoutServers: [1, 10, 100],
  fanoutProbes: 20,
} as const;

/** `--quick`: a short run for the README's main command and the tests. */
export const QUICK = {
  rounds: 1,
  durationMs: 500,
  warmupMs: 300,
  warmupCalls: 1_000,
  latencyCalls: 2_000,
  fanoutServers: [1, 10],
  fanoutProbes: 5,
} as const;

/** Tiny settings for tests that only check a contender runs every scenario (seconds, not minutes). */
export const TINY = {
  ...QUICK,
  payload: 100 as PayloadOption,
  durationMs: 150,
  warmupMs: 50,
  warmupCalls: 100,
  latencyCalls: 200,
  inflight: [16],
  fanoutServers: [2],
  fanoutProbes: 2,
  pin: false,
} as const;

/** Server processes a fanout to N servers is spread over. */
const FANOUT_PROCS = 4;

/**
 * Stated targets for the ratio to the baseline, by metric id: issue 16's (they replace the
 * zmq-direct and rabbit-brokered issues' own). zmq:// one-way targets are against PUSH/PULL,
 * which acks nothing: they apply to zmq-noack; acked zmq:// is shown beside raw zeromq.js
 * acking the same way (raw-zeromq-acked), without a stated target.
 */
function targetsFor(metric: string): MetricInfo['targets'] {
  const t: Record<string, Record<string, { op: '<=' | '>='; ratio: number }>> = {
    'latency.p50': { zmq: { op: '<=', ratio: 1.3 }, rabbit: { op: '<=', ratio: 1.1 } },
    'throughput.16': { zmq: { op: '>=', ratio: 1.0 }, rabbit: { op: '>=', ratio: 0.9 } },
    'throughput.256': { zmq: { op: '>=', ratio: 1.5 }, rabbit: { op: '>=', ratio: 0.9 } },
    cast: { 'zmq-noack': { op: '>=', ratio: 1.5 }, rabbit: { op: '>=', ratio: 0.9 } },
    notify: { 'zmq-noack': { op: '>=', ratio: 0.9 }, rabbit: { op: '>=', ratio: 0.9 } },
    'fanout.100.rate': { 'zmq-noack': { op: '>=', ratio: 0.9 } },
  };
  // amqp1 against raw rhea through the same intermediary: p50 within 1.2×, throughput ≥ 0.9×.
  const amqp1 = { 'latency.p50': { op: '<=', ratio: 1.2 }, 'throughput.16': { op: '>=', ratio: 0.9 }, 'throughput.256': { op: '>=', ratio: 0.9 }, cast: { op: '>=', ratio: 0.9 }, notify: { op: '>=', ratio: 0.9 } } as const;
  const a = (amqp1 as Record<string, { op: '<=' | '>='; ratio: number }>)[metric];
  if (a) for (const via of ['direct', 'proton', 'rabbit', 'router']) t[metric] = { ...t[metric], [`amqp1-${via}`]: a };
  return t[metric];
}

function metricsOf(o: BenchOptions, scenarios: readonly Scenario[]): MetricInfo[] {
  const m: MetricInfo[] = [];
  const add = (id: string, scenario: Scenario, label: string, unit: string, better: 'lower' | 'higher'): void => {
    const targets = targetsFor(id);
    m.push({ id, scenario, label, unit, better, ...(targets ? { targets } : {}) });
  };
  for (const s of scenarios) {
    if (s === 'latency') for (const p of ['p50', 'p90', 'p99', 'max']) add(`latency.${p}`, s, `call latency ${p}`, 'µs', 'lower');
    if (s === 'throughput') for (const n of o.inflight) add(`throughput.${n}`, s, `call throughput, ${n} in flight`, 'calls/s', 'higher');
    if (s === 'cast') add('cast', s, 'cast throughput (received)', 'msgs/s', 'higher');
    if (s === 'fanout') {
      for (const n of o.fanoutServers) {
        add(`fanout.${n}.rate`, s, `fanout to ${n} servers, deliveries`, 'deliveries/s', 'higher');
        add(`fanout.${n}.complete`, s, `fanout to ${n} servers, until all have it`, 'ms', 'lower');
      }
    }
    if (s === 'notify') add('notify', s, 'notifications to a pool (received)', 'msgs/s', 'higher');
  }
  return m;
}

/** With targets of the transport that carries each pattern, for the hybrid router. */
function withHybridTargets(metrics: MetricInfo[], config: HybridbusConfig): MetricInfo[] {
  const pattern = { latency: 'call', throughput: 'call', cast: 'cast', fanout: 'fanout', notify: 'notify', scale: 'call' } as const;
  return metrics.map((m) => {
    const carrier = schemeId(config.transports[config.patterns[pattern[m.scenario]]] as string);
    const t = m.targets?.[carrier];
    return t ? { ...m, targets: { ...m.targets, hybrid: t } } : m;
  });
}

function machine(): BenchReport['machine'] {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

const hasTaskset = (): boolean => {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

interface Raw {
  readonly metric: string;
  readonly value: number;
  readonly cpu?: CpuPerMsg;
}

let profSeq = 0;
/** `zmq.throughput.client.0.7.cpuprofile`: contender, scenario, role and process, then a sequence. */
const profName = (child: string): string => `${child.replace(/ /g, '.')}.${profSeq++}.cpuprofile`;

let topicSeq = 0;
/** A topic per measurement: a server that is gone never shadows the next one. */
const freshTopic = (): string => `bench${process.pid}x${Date.now().toString(36)}n${topicSeq++}`;

class Measurement {
  readonly servers: Child[] = [];
  readonly clients: Child[] = [];
  private readonly serverHosts: number[] = [];

  constructor(
    private readonly c: Contender,
    private readonly scenario: Scenario,
    private readonly payload: ClientSpec['payload'],
    private readonly cpus: { client?: string; server?: string },
    private readonly profDir: string | undefined,
    private readonly brokerPid: number | undefined,
  ) {}

  private spawn(role: 'client' | 'server', cmd: { command: string; args: readonly string[]; env?: Readonly<Record<string, string>> }, spec: ServerSpec | ClientSpec, name: string): Child {
    const cpu = role === 'client' ? this.cpus.client : this.cpus.server;
    // Node flags go to Node children only (the oslo child is Python). NODE_OPTIONS refuses
    // --cpu-prof, hence the command line.
    const prof = this.profDir && cmd.command === process.execPath ? [`--cpu-prof`, `--cpu-prof-dir=${this.profDir}`, `--cpu-prof-name=${profName(name)}`] : [];
    // taskset execs the command, which inherits the IPC channel's fd.
    const [command, args] = cpu ? ['taskset', ['-c', cpu, cmd.command, ...prof, ...cmd.args]] : [cmd.command, [...prof, ...cmd.args]];
    // A few sockets and fds per server hosted or reached (a Bus each), with room to spare.
    const peers = spec.role === 'server' ? spec.servers.length : spec.serverCount;
    return Child.spawnCommand(command, args, spec, { name, env: cmd.env, minFds: 16 * peers + 512 });
  }

  /** Start `procs` server processes hosting `names` between them, then the clients. */
  async start(names: readonly string[], procs: number, clients: number): Promise<void> {
    const topic = freshTopic();
    const base = { scenario: this.scenario, contender: this.c.info.id, topic, payload: this.payload, data: this.c.data };
    const per = Math.ceil(names.length / procs);
    const endpoints: string[] = [];
    for (let p = 0; p * per < names.length; p++) {
      const servers = names.slice(p * per, (p + 1) * per);
      const spec: ServerSpec = { ...base, role: 'server', process: p, servers };
      this.servers.push(this.spawn('server', this.c.server(spec), spec, `${this.c.info.id} ${this.scenario} server ${p}`));
      this.serverHosts.push(servers.length);
    }
    // One after the other: many servers registering at once crowd 2 cores.
    for (const s of this.servers) endpoints.push(...(((await s.next('ready', 120_000))['endpoints'] as string[] | undefined) ?? []));
    for (let p = 0; p < clients; p++) {
      const spec: ClientSpec = { ...base, role: 'client', process: p, endpoints, serverCount: names.length };
      this.clients.push(this.spawn('client', this.c.client(spec), spec, `${this.c.info.id} ${this.scenario} client ${p}`));
    }
    await Promise.all(this.clients.map((c) => c.next('ready', 60_000)));
  }

  /** Send a command to every client; their `done` replies. */
  async command(m: Message, timeoutMs: number): Promise<Message[]> {
    for (const c of this.clients) c.send(m);
    return Promise.all(this.clients.map((c) => c.next('done', timeoutMs)));
  }

  /** CPU µs so far of the server processes and of the broker (undefined: none, or not readable). */
  async cpuUs(): Promise<{ server: number; broker: number | undefined }> {
    for (const s of this.servers) s.send({ kind: 'cpu' });
    const r = await Promise.all(this.servers.map((s) => s.next('cpu', 30_000)));
    const broker = this.brokerPid === undefined ? undefined : processCpuUs(this.brokerPid);
    return { server: r.reduce((a, m) => a + Number(m['us']), 0), broker };
  }

  /** Wait until server process i has counted `perServer × its servers` one-way messages. */
  async reached(perServer: number, reset: boolean, timeoutMs: number): Promise<Message[]> {
    this.servers.forEach((s, i) => s.send({ kind: 'expect', n: perServer * (this.serverHosts[i] ?? 1), reset }));
    try {
      return await Promise.all(this.servers.map((s) => s.next('reached', timeoutMs)));
    } catch (e) {
      // `expect 0` answers at once with the count so far: say how far delivery got.
      let got = '';
      try {
        this.servers.forEach((s) => s.send({ kind: 'expect', n: 0, reset: false }));
        const now = await Promise.all(this.servers.map((s) => s.next('reached', 5_000)));
        got = `; ${now.reduce((a, m) => a + Number(m['count']), 0)} arrived`;
      } catch {
        // the servers are gone: the first error says why
      }
      const want = this.serverHosts.reduce((a, k) => a + perServer * k, 0);
      throw new Error(`${(e as Error).message} (expected ${want} deliveries${got}: some were lost or are stuck)`);
    }
  }

  async stop(): Promise<void> {
    // A child writes its profile on exit, which takes a while for a long run.
    const graceMs = this.profDir ? 30_000 : 2_000;
    await Promise.allSettled([...this.clients, ...this.servers].map((c) => c.stop(graceMs)));
  }
}

const sum = (ms: readonly Message[], k: string): number => ms.reduce((a, m) => a + Number(m[k]), 0);
const perMsg = (us: number, n: number): number => Math.round((us / Math.max(1, n)) * 10) / 10;
type CpuSample = Awaited<ReturnType<Measurement['cpuUs']>>;
/** Per message: the client's µs, and the servers' and the broker's between two samples. */
function cpuPer(clientUs: number, s0: CpuSample, s1: CpuSample, n: number): CpuPerMsg {
  const broker = s0.broker !== undefined && s1.broker !== undefined ? perMsg(s1.broker - s0.broker, n) : undefined;
  return { client: perMsg(clientUs, n), server: perMsg(s1.server - s0.server, n), ...(broker !== undefined ? { broker } : {}) };
}

/** One scenario for one contender in one round: its figures. */
async function measure(o: BenchOptions, c: Contender, scenario: Scenario, payload: ClientSpec['payload'], cpus: { client?: string; server?: string }, hist: (h: Array<[number, number]>) => void, brokerPid: number | undefined): Promise<Raw[]> {
  const out: Raw[] = [];
  const deliverTimeout = o.durationMs * 20 + 30_000;
  const run = async (names: readonly string[], procs: number, clients: number, body: (m: Measurement) => Promise<void>): Promise<void> => {
    const m = new Measurement(c, scenario, payload, cpus, o.cpuProf, brokerPid);
    try {
      await m.start(names, procs, clients);
      await body(m);
    } finally {
      await m.stop();
    }
  };
  const serverNames = (n: number): string[] => Array.from({ length: n }, (_, i) => `s${i}`);

  if (scenario === 'latency') {
    await run(serverNames(o.servers), o.servers, 1, async (m) => {
      await m.command({ kind: 'latency', count: o.warmupCalls }, 600_000);
      const s0 = await m.cpuUs();
      const [r] = await m.command({ kind: 'latency', count: o.latencyCalls }, 600_000);
      const s1 = await m.cpuUs();
      const h = (r?.['histogram'] ?? []) as Array<[number, number]>;
      hist(h);
      const at = (p: number): number => h.find(([q]) => q === p)?.[1] ?? NaN;
      const cpu = cpuPer(Number(r?.['cpuUs']), s0, s1, o.latencyCalls);
      for (const [id, p] of [['p50', 50], ['p90', 90], ['p99', 99], ['max', 100]] as const) out.push({ metric: `latency.${id}`, value: at(p), cpu });
    });
  } else if (scenario === 'throughput') {
    await run(serverNames(o.servers), o.servers, o.clients, async (m) => {
      for (const n of o.inflight) {
        const inflight = Math.ceil(n / o.clients);
        await m.command({ kind: 'throughput', inflight, durationMs: o.warmupMs }, deliverTimeout);
        const s0 = await m.cpuUs();
        const r = await m.command({ kind: 'throughput', inflight, durationMs: o.durationMs }, deliverTimeout);
        const s1 = await m.cpuUs();
        const ops = sum(r, 'ops');
        const seconds = Math.max(...r.map((x) => Number(x['seconds'])));
        out.push({ metric: `throughput.${n}`, value: ops / seconds, cpu: cpuPer(sum(r, 'cpuUs'), s0, s1, ops) });
      }
    });
  } else if (scenario === 'cast' || scenario === 'notify') {
    // Counted on receipt: from the first send until the last message has arrived.
    await run(serverNames(1), 1, o.clients, async (m) => {
      const warm = await m.command({ kind: 'send', durationMs: o.warmupMs }, deliverTimeout);
      await m.reached(sum(warm, 'ops'), true, deliverTimeout);
      const s0 = await m.cpuUs();
      const r = await m.command({ kind: 'send', durationMs: o.durationMs }, deliverTimeout);
      const sent = sum(r, 'ops');
      const [got] = await m.reached(sent, false, deliverTimeout);
      const s1 = await m.cpuUs();
      const startedAt = Math.min(...r.map((x) => Number(x['startedAt'])));
      const seconds = (Number(got?.['lastAt']) - startedAt) / 1000;
      out.push({ metric: scenario, value: sent / seconds, cpu: cpuPer(sum(r, 'cpuUs'), s0, s1, sent) });
    });
  } else if (scenario === 'fanout') {
    for (const n of o.fanoutServers) {
      await run(serverNames(n), Math.min(n, FANOUT_PROCS), 1, async (m) => {
        const warm = await m.command({ kind: 'send', durationMs: o.warmupMs }, deliverTimeout);
        await m.reached(sum(warm, 'ops'), true, deliverTimeout);
        // Completion: one fanout at a time, from its send until the last server has it.
        const complete: number[] = [];
        for (let i = 0; i < o.fanoutProbes; i++) {
          const [r] = await m.command({ kind: 'send', count: 1 }, 60_000);
          const got = await m.reached(1, true, 60_000);
          complete.push(Math.max(...got.map((g) => Number(g['lastAt']))) - Number(r?.['startedAt']));
        }
        const s0 = await m.cpuUs();
        const r = await m.command({ kind: 'send', durationMs: o.durationMs }, deliverTimeout);
        const sent = sum(r, 'ops');
        const got = await m.reached(sent, false, deliverTimeout);
        const s1 = await m.cpuUs();
        const deliveries = sum(got, 'count');
        const seconds = (Math.max(...got.map((g) => Number(g['lastAt']))) - Number(r[0]?.['startedAt'])) / 1000;
        const cpu = cpuPer(sum(r, 'cpuUs'), s0, s1, deliveries);
        out.push({ metric: `fanout.${n}.rate`, value: deliveries / seconds, cpu });
        out.push({ metric: `fanout.${n}.complete`, value: Math.round(median(complete) * 1000) / 1000 });
      });
    }
  }
  return out;
}

/** The default config: zmq:// with a private name service, RabbitMQ if reachable, the router between them. */
function defaultConfig(rabbitUrl: string, nsDir: string): HybridbusConfig {
  return loadConfig({
    env: {},
    overrides: {
      transports: { zmq: `zmq://?matchmaker=local:${nsDir}`, rabbit: rabbitUrl },
      patterns: { call: 'zmq', cast: 'zmq', fanout: 'rabbit', notify: 'rabbit' },
    },
  });
}

/** Every contender a run on `config` considers, in order, before any is probed. */
function contendersOf(config: HybridbusConfig, servers: RegisteredOptions): Contender[] {
  return [...hybridbusContenders(config), rawZeromq, rawZeromqAcked, ...registeredContenders(servers)];
}

/**
 * The contenders a run without --config considers (the embedded zmq:// and RabbitMQ at
 * `rabbitUrl`): what `hybridbus bench --help` lists, from the same list the run uses.
 */
export function defaultContenders(rabbitUrl: string = DEFAULT_RABBIT_URL): Array<{ id: string; label: string }> {
  const nsDir = path.join(os.tmpdir(), 'hb-bench-ns');
  return contendersOf(defaultConfig(rabbitUrl, nsDir), { rabbitUrl, nsDir }).map((c) => ({ id: c.info.id, label: c.info.label }));
}

/** What the table's `cpu µs/msg c/s` column holds (the table, `bench --help` and README say it). */
export const CPU_COLUMN_NOTE =
  'median: a rate (per second, higher is better) or a latency (µs, ms); cpu µs/msg c/s/b: a cost, CPU time (user + system) per message in microseconds of the client processes / the server processes / the broker (when the bench can read its process: one it started), median over the rounds; a fanout counts per delivery';

/** Format a figure for the table. */
const fmt = (v: number): string => (!Number.isFinite(v) ? '–' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v >= 10 ? v.toFixed(1) : v.toFixed(2));

export function renderTable(report: BenchReport): string {
  const rows: string[][] = [['metric', 'contender', 'median', 'unit', 'vs raw', 'target', 'cpu µs/msg c/s/b']];
  const byMetric = new Map(report.metrics.map((m) => [m.id, m]));
  for (const m of report.metrics) {
    for (const s of report.summaries.filter((x) => x.metric === m.id)) {
      const t = byMetric.get(s.metric)?.targets?.[s.contender];
      const ok = t && s.ratio !== undefined ? (t.op === '<=' ? s.ratio <= t.ratio : s.ratio >= t.ratio) : undefined;
      const target = t ? `${t.op}${t.ratio} ${ok === undefined ? '?' : ok ? 'ok' : 'MISS'}` : '';
      const cpu = s.cpuUsPerMsg ? `${fmt(s.cpuUsPerMsg.client ?? NaN)}/${fmt(s.cpuUsPerMsg.server ?? NaN)}${s.cpuUsPerMsg.broker !== undefined ? `/${fmt(s.cpuUsPerMsg.broker)}` : ''}` : '';
      const ratio = s.ratio !== undefined ? `${s.ratio.toFixed(2)}× ${s.baseline}` : s.baseline ? `– (no ${s.baseline})` : '';
      rows.push([m.id, s.contender, fmt(s.median), m.unit, ratio, target, cpu]);
    }
  }
  if (rows.length === 1) return '(no figures)';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const table = rows.map((r) => r.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
  const verdicts = rows.slice(1).map((r) => r[5] ?? '').filter(Boolean);
  const legend = rows.some((r) => r[6]) ? `\n\n${CPU_COLUMN_NOTE}` : '';
  const cannot = report.contenders
    .filter((c) => c.skipped === undefined)
    .flatMap((c) => Object.entries(c.unsupported ?? {}).map(([s, why]) => `not run: ${c.id} ${s} — ${why}`));
  const notes = cannot.length ? `\n${cannot.join('\n')}` : '';
  if (verdicts.length === 0) return `${table}${notes}${legend}`;
  const count = (suffix: string): number => verdicts.filter((v) => v.endsWith(suffix)).length;
  return `${table}${notes}${legend}\ntargets: ${count(' ok')} met, ${count(' MISS')} missed, ${count(' ?')} without their baseline in this run`;
}

/** Run the benchmark; writes the JSON (and HTML when the renderer is there) and returns the report. */
export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const out = o.out ?? ((l: string) => void process.stdout.write(`${l}\n`));
  const note = o.note ?? ((l: string) => void process.stderr.write(`${l}\n`));
  const startedAt = new Date().toISOString();
  const nsDir = mkdtempSync(path.join(os.tmpdir(), 'hb-bench-ns-'));
  try {
    const config = o.config ? loadConfig({ file: o.config }) : defaultConfig(o.rabbitUrl, nsDir);
    const rabbitUrl = Object.values(config.transports).find((u) => schemeId(u) === 'rabbit') ?? o.rabbitUrl;
    const all = contendersOf(config, { rabbitUrl, protonUrl: o.protonUrl, routerUrl: o.routerUrl, nsDir });
    if (o.contenders) {
      const unknown = o.contenders.filter((id) => !all.some((c) => c.info.id === id));
      if (unknown.length) throw new Error(`--contenders: unknown ${unknown.map((u) => `"${u}"`).join(', ')}; expected some of ${all.map((c) => c.info.id).join(',')}`);
    }
    const chosen = o.contenders ? all.filter((c) => o.contenders?.includes(c.info.id)) : all.filter((c) => c.optIn !== true);
    const scenarios = SCENARIOS.filter((s) => o.scenarios.includes(s));

    const infos: ContenderInfo[] = [];
    const running: Contender[] = [];
    // Nothing to measure (e.g. only `scale`): no need to reach any server.
    for (const c of scenarios.length ? chosen : []) {
      const why = await c.probe();
      const cannot = Object.fromEntries(Object.entries(c.unsupported ?? {}).filter(([s]) => scenarios.includes(s as Scenario)));
      const info = Object.keys(cannot).length ? { ...c.info, unsupported: cannot } : c.info;
      infos.push(why ? { ...info, skipped: why } : info);
      if (why) note(`skipped ${c.info.id} — ${why}`);
      else {
        running.push(c);
        for (const [s, reason] of Object.entries(cannot)) note(`${c.info.id} does not run ${s} — ${reason}`);
      }
    }

    // The local broker each contender goes through, when its process is readable (CPU per message).
    const brokers = new Map(running.map((c) => [c.info.id, brokerPidOf(c.info.url)] as const));
    for (const [id, pid] of brokers) if (pid !== undefined) note(`${id}: broker CPU from pid ${pid}`);
    const payload = payloadSpec(o.payload);
    if (o.cpuProf) mkdirSync(o.cpuProf, { recursive: true });
    const cores = os.cpus().length;
    const pin = o.pin && cores >= 2 && hasTaskset();
    if (o.pin && !pin) note('--pin: taskset or a second CPU is missing; not pinning');
    const cpus = pin ? { client: '0', server: String(Math.min(1, cores - 1)) } : {};

    const cells: Cell[] = [];
    const errors: string[] = [];
    const hists = new Map<string, Array<Array<[number, number]>>>();
    const units = o.rounds * scenarios.length * running.length;
    const bar = process.stderr.isTTY && units > 0 ? new cliProgress.SingleBar({ format: ' {bar} {value}/{total} {task}', stream: process.stderr, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : undefined;
    bar?.start(units, 0, { task: '' });
    // Without a terminal (CI logs, `| tee`) there is no bar: one line per scenario and round instead,
    // so a long run is never silent.
    const steps = o.rounds * scenarios.length;
    let step = 0;
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? running : [...running].reverse();
      for (const scenario of scenarios) {
        step++;
        const here = order.filter((c) => c.scenarios.includes(scenario)).map((c) => c.info.id);
        if (!bar && here.length) note(`[${step}/${steps}] round ${round + 1} of ${o.rounds}, ${scenario}: ${here.join(', ')}`);
        for (const c of order) {
          bar?.update({ task: `round ${round + 1} ${scenario} ${c.info.id}` });
          if (c.scenarios.includes(scenario)) {
            try {
              const raws = await measure(o, c, scenario, payload, cpus, (h) => hists.set(c.info.id, [...(hists.get(c.info.id) ?? []), h]), brokers.get(c.info.id));
              for (const r of raws) cells.push({ metric: r.metric, contender: c.info.id, round, value: r.value, ...(r.cpu ? { cpuUsPerMsg: r.cpu } : {}) });
            } catch (e) {
              errors.push(`${c.info.id} ${scenario} round ${round + 1}: ${maskSecrets((e as Error).message.split('\n')[0] ?? '')}`);
            }
          }
          bar?.increment();
        }
      }
    }
    bar?.stop();
    const scale = o.scenarios.includes('scale') ? await benchScale(config.transports, o, note) : undefined;
    errors.push(...(scale?.errors ?? []));
    for (const e of errors) note(`failed: ${e}`);
    if (o.cpuProf && o.scenarios.includes('scale')) note('--cpu-prof: the scale scenario is not profiled');
    if (o.cpuProf) note(`CPU profiles in ${o.cpuProf} (open one in Chrome DevTools' Performance panel, or VS Code)`);

    const metrics = withHybridTargets(metricsOf(o, scenarios), config);
    const summaries: Summary[] = [];
    for (const m of metrics) {
      for (const c of running) {
        const mine = cells.filter((x) => x.metric === m.id && x.contender === c.info.id);
        if (mine.length === 0) continue;
        const declared = c.baseline(m.scenario as Scenario);
        const baseline = declared !== undefined && !running.some((r) => r.info.id === declared) ? (BASELINE_FALLBACK[declared] ?? declared) : declared;
        const ratios = baseline
          ? mine.flatMap((x) => {
              const b = cells.find((y) => y.metric === m.id && y.contender === baseline && y.round === x.round);
              return b && b.value > 0 ? [x.value / b.value] : [];
            })
          : [];
        const cpuMed = (k: keyof CpuPerMsg): number | undefined => {
          const xs = mine.flatMap((x) => (x.cpuUsPerMsg?.[k] !== undefined ? [x.cpuUsPerMsg[k] as number] : []));
          return xs.length ? median(xs) : undefined;
        };
        const client = cpuMed('client');
        const server = cpuMed('server');
        const broker = cpuMed('broker');
        summaries.push({
          metric: m.id,
          contender: c.info.id,
          median: median(mine.map((x) => x.value)),
          rounds: mine.map((x) => x.value),
          ...(baseline ? { baseline } : {}),
          ...(ratios.length ? { ratio: Math.round(median(ratios) * 1000) / 1000 } : {}),
          ...(client !== undefined || server !== undefined ? { cpuUsPerMsg: { client, server, ...(broker !== undefined ? { broker } : {}) } } : {}),
        });
      }
    }
    // Each percentile's median over the rounds.
    const latency: LatencyDistribution[] = [...hists].map(([contender, hs]) => ({
      contender,
      percentiles: (hs[0] ?? []).map(([p], i) => [p, median(hs.map((h) => h[i]?.[1] ?? NaN))] as const),
    }));

    const report: BenchReport = {
      version: 1,
      title: 'hybridbus bench',
      command: o.command,
      startedAt,
      finishedAt: new Date().toISOString(),
      machine: machine(),
      settings: {
        rounds: o.rounds,
        payload: o.payload,
        payloadMeanBytes: meanSize(payload),
        durationMs: o.durationMs,
        warmupMs: o.warmupMs,
        warmupCalls: o.warmupCalls,
        latencyCalls: o.latencyCalls,
        inflight: o.inflight,
        clients: o.clients,
        servers: o.servers,
        fanoutServers: o.fanoutServers,
        fanoutProbes: o.fanoutProbes,
        fanoutProcesses: FANOUT_PROCS,
        pinned: pin,
        config: o.config ?? 'embedded default',
        ...(scale?.report ? { scaleSteps: o.scaleSteps ?? SCALE_DEFAULTS.steps, scaleProcs: o.scaleProcs ?? SCALE_DEFAULTS.procs, scaleProbes: o.scaleProbes ?? SCALE_DEFAULTS.probes, scaleJitter: o.scaleJitter ?? 0 } : {}),
      },
      contenders: infos,
      metrics,
      cells,
      summaries,
      ...(latency.length ? { latency } : {}),
      ...(scale?.report ? { scale: scale.report } : {}),
      ...(errors.length ? { errors } : {}),
    };

    await writeReportFiles(report, { json: o.json, html: o.html });
    if (report.summaries.length > 0 || !scale) {
      out(renderTable(report));
      out('');
    }
    if (scale?.report) out(`${renderScaleTable(scale.report)}\n\n${scale.report.notes.map((l) => `- ${l}`).join('\n')}\n`);
    out(`JSON: ${o.json}`);
    out(`HTML: ${o.html}`);
    return report;
  } finally {
    rmSync(nsDir, { recursive: true, force: true });
  }
}
