/**
 * `hybridbus bench --scenario scale`: how the costs of zmq:// grow with the number of servers.
 *
 * Each step starts fresh: a hybridbus client process (its baseline fds and RSS taken), then
 * `procs` server processes hosting n servers between them (a Bus each, so n peers), spawned at
 * once. Measured: start-up (spawn → every server listening and registered), registration (spawn
 * → a lookup answers n records), one warm-up fanout (opens the n connections; fds and RSS are
 * taken after it), then `probes` single fanouts timed from send to the last arrival (servers
 * report wall-clock arrival times), and the name service's records and the client's lookups.
 * Then the same n as raw zeromq.js ROUTERs reached by one raw DEALER: the fd baseline.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, type Message } from '../lib/proc.js';
import { median } from '../lib/stats.js';
import type { ScaleFanoutPoint, ScalePoint, ScaleReport } from '../report/types.js';
import { tcpProbe } from '../engine/contenders.js';
import { pidListeningOn, portOf, processCpuMs } from '../lib/proc-cpu.js';
import { MULTICAST_MAX_N, multicastStep, multicastUnavailable } from './multicast.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER = path.join(here, 'server.js');
const CLIENT = path.join(here, 'client.js');

export const SCALE_DEFAULTS = { steps: [10, 100, 500, 1000], procs: 5, probes: 5 } as const;

export interface ScaleOptions {
  /** The zmq:// URL the servers and the client use (its matchmaker is the name service). */
  readonly url: string;
  readonly steps: readonly number[];
  /** Server processes the servers are spread over (at most one per server). */
  readonly procs: number;
  /** Timed fanouts per step (after one warm-up). */
  readonly probes: number;
  /** Progress lines. */
  readonly note?: (line: string) => void;
  /** Spread each process's server start-ups over this many ms at random (a fleet booting); 0: back to back. */
  readonly jitterMs?: number;
  /** A rabbit:// URL: the same steps as a RabbitMQ fanout (servers on it, same topic), side by side. */
  readonly rabbitUrl?: string | undefined;
  /** Skip the raw zeromq.js baseline (it doubles a step's connections). */
  readonly noRaw?: boolean;
  /**
   * More clients on other URLs (same name service), fanning out to the same servers, their
   * probes interleaved with the main client's: like-with-like comparisons (multicast.ts).
   */
  readonly compare?: readonly string[];
}

/** One client's fanouts over a step: medians over the probes. */
export interface ClientFanouts {
  readonly completeMs: number;
  readonly sendMs: number;
  readonly senderCpuMs: number;
  /** The server processes' CPU per fanout, summed (ms). */
  readonly serversCpuMs: number;
}

/**
 * Where multicast zmq joins the scale scenario: a step that starts n servers with multicast
 * fanout in a network namespace of its own (multicast.ts) and measures as the zmq step does.
 * benchScale() sets it when such a namespace can be made here; unset, its column says why.
 */
export const MULTICAST_SCALE: { step?: (o: ScaleOptions, n: number) => Promise<ScaleFanoutPoint>; unavailable?: string } = {};

/** A scale point with the optional extras this scenario measures. */
export interface ScalePointPlus extends ScalePoint {
  /** A raw zeromq.js DEALER reaching n raw ROUTERs: its fds per peer (issue 3's baseline). */
  readonly rawClientFdsPerPeer: number;
  readonly rawClientRssPerPeerKiB: number;
  /** hybridbus client fds per peer / raw fds per peer. */
  readonly fdRatio: number;
  /** Records the servers register (and refresh every TTL/3), summed over them. */
  readonly nsRegistered: number;
  /** Of the client's lookups, those that read the backend (not the cache). */
  readonly nsBackendReads: number;
  /** Polls of an uncached lookup until all n were seen (every 20 ms, or 20× a slow lookup's time up to 1 s). */
  readonly registerPolls: number;
  /** Warm-up fanout (connections opened on the way), send → last arrival. */
  readonly firstFanoutMs: number;
  /** Fastest and slowest timed fanout. */
  readonly fanoutMinMs: number;
  readonly fanoutMaxMs: number;
  /** RSS of the server processes, summed (KiB), once every server listens. */
  readonly serverRssKiB: number;
  /** Open fds of the server processes, summed, once every server listens (before any client). */
  readonly serverFds: number;
  /** Median of the timed fanouts' send time: from the cast until it resolved in the client. */
  readonly fanoutSendMs: number;
  /** The client's CPU per timed fanout (user + system, ms), median. */
  readonly senderCpuMsPerFanout: number;
  /** Name-service refresh writes per second (records / (ns_ttl / 3)). */
  readonly nsRefreshPerSec: number;
  /** CPU of the name-service backend (Redis, etcd) over the step, per second of it (ms/s); absent for local files. */
  readonly nsCpuMsPerSec?: number;
  /** The server processes' CPU per timed fanout, summed over them (ms), median. */
  readonly serversCpuMsPerFanout?: number;
  /** ScaleOptions.compare's clients, in its order. */
  readonly compared?: readonly ClientFanouts[];
}

const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;
const wallMs = (): number => performance.timeOrigin + performance.now();
let seq = 0;
const freshTopic = (): string => `scale${process.pid}x${Date.now().toString(36)}n${seq++}`;

/** Why this URL's name service cannot be used here, or undefined. */
export async function scaleProbe(url: string): Promise<string | undefined> {
  const mm = new URL(url).searchParams.get('matchmaker') ?? 'local';
  if (!/^rediss?:\/\//.test(mm)) return undefined;
  const u = new URL(mm);
  return tcpProbe('redis name service', u.hostname || '127.0.0.1', Number(u.port || 6379));
}

/** Split n server names over at most `procs` processes. */
function spread(n: number, procs: number): string[][] {
  const p = Math.max(1, Math.min(procs, n));
  const out: string[][] = Array.from({ length: p }, () => []);
  for (let i = 0; i < n; i++) out[i % p]?.push(`s${i}`);
  return out;
}

/** A process hosting or reaching k peers: a few fds each, and room to spare. */
const fdsFor = (k: number): number => Math.max(4096, 8 * k + 1024);

async function stopAll(children: readonly Child[]): Promise<void> {
  await Promise.allSettled(children.map((c) => c.stop(5_000)));
}

/** The name-service backend's process (Redis, etcd), found by the port it listens on; undefined for local files. */
function nsBackendPid(url: string): number | undefined {
  const mm = new URL(url).searchParams.get('matchmaker') ?? 'local';
  if (/^rediss?:\/\//.test(mm)) return pidListeningOn(portOf(mm, 6379));
  if (/^etcd:\/\//.test(mm)) return pidListeningOn(portOf(mm.replace(/^etcd:/, 'http:'), 2379));
  return undefined;
}

async function hbStep(o: ScaleOptions & { note: (line: string) => void }, n: number): Promise<Omit<ScalePointPlus, 'rawClientFdsPerPeer' | 'rawClientRssPerPeerKiB' | 'fdRatio'>> {
  const topic = freshTopic();
  const groups = spread(n, o.procs);
  const children: Child[] = [];
  const nsPid = nsBackendPid(o.url);
  const ns0 = nsPid !== undefined ? processCpuMs(nsPid) : NaN;
  const step0 = wallMs();
  try {
    const client = Child.start(CLIENT, { role: 'hb', url: o.url, topic, peers: n }, { name: `scale client (${n})`, minFds: fdsFor(n), nodeFlags: ['--expose-gc'] });
    children.push(client);
    const others = (o.compare ?? []).map((url, i) => Child.start(CLIENT, { role: 'hb', url, topic, peers: n }, { name: `scale client ${i + 2} (${n})`, minFds: fdsFor(n) }));
    children.push(...others);
    const base = await client.next('ready', 60_000);
    await Promise.all(others.map((c) => c.next('ready', 60_000)));

    const t0 = wallMs();
    const servers = groups.map((servers, p) => Child.start(SERVER, { role: 'hb', url: o.url, topic, servers, jitterMs: o.jitterMs ?? 0 }, { name: `scale server ${p} (${servers.length} of ${n})`, minFds: fdsFor(servers.length) }));
    children.push(...servers);
    client.send({ kind: 'await', n });
    const timeout = 60_000 + 200 * n;
    const [readies, seen] = await Promise.all([Promise.all(servers.map((s) => s.next('ready', timeout))), client.next('seen', timeout)]);
    const startupMs = Math.max(...readies.map((r) => Number(r['at']))) - t0;
    const retries = readies.reduce((a, r) => a + Number(r['retries'] ?? 0), 0);
    if (retries > 0) o.note(`scale: ${n}: ${retries} server start(s) retried after a registration timeout`);
    const registerMs = Number(seen['at']) - t0;

    const sends: number[] = [];
    const cpus: number[] = [];
    const serverCpus: number[] = [];
    const serversCpu = async (): Promise<number> => {
      servers.forEach((x) => x.send({ kind: 'mark' }));
      return (await Promise.all(servers.map((x) => x.next('marked', 30_000)))).reduce((a, m) => a + Number(m['cpuMs']), 0);
    };
    // The server processes' CPU while idle (ms per ms): timers, ZMTP heartbeats of every
    // connection, name-service refreshes; taken off each fanout's figure below.
    let idleRate = 0;
    const measureIdle = async (): Promise<number> => {
      const c0 = await serversCpu();
      const t0 = wallMs();
      await new Promise((r) => setTimeout(r, 1000));
      return Math.max(0, (await serversCpu()) - c0) / (wallMs() - t0);
    };
    const fanout = async (from: Child = client): Promise<{ ms: number; sendMs: number; cpuMs: number; serversCpuMs: number }> => {
      const s = seq++;
      // The server processes' CPU just before the cast and once all have it: the fanout's receive
      // cost, less what they spend idle over as long.
      const cpu0 = await serversCpu();
      const at0 = wallMs();
      from.send({ kind: 'fanout', seq: s });
      const sent = await from.next('sent', timeout);
      const c = sent['counters'] as Record<string, number>;
      const why = `${String(sent['hosts'])} of ${n} registered after the fanout; the client's counters: ${JSON.stringify(c)}`;
      if (sent['error']) throw new Error(`fanout ${s} to ${n} servers failed: ${String(sent['error'])} (${why})`);
      servers.forEach((x) => x.send({ kind: 'expect', seq: s }));
      const got = await Promise.all(servers.map((x) => x.next('reached', 30_000 + 50 * n))).catch((e: Error) => {
        throw new Error(`${e.message} (${why})`);
      });
      const serversCpuMs = got.reduce((a, g) => a + Number(g['cpuMs']), 0) - cpu0 - idleRate * (wallMs() - at0);
      return { ms: Math.max(...got.map((g) => Number(g['lastAt']))) - Number(sent['startedAt']), sendMs: Number(sent['resolvedAt']) - Number(sent['startedAt']), cpuMs: Number(sent['cpuMs']), serversCpuMs };
    };
    const firstFanoutMs = (await fanout()).ms;
    // The other clients' warm-ups (their connections, their senders' sockets).
    for (const other of others) await fanout(other);
    idleRate = await measureIdle();
    client.send({ kind: 'measure' });
    const after = await client.next('measured', 60_000);
    const times: number[] = [];
    const theirs = others.map(() => [] as Array<{ ms: number; sendMs: number; cpuMs: number; serversCpuMs: number }>);
    for (let i = 0; i < o.probes; i++) {
      const r = await fanout();
      times.push(r.ms);
      sends.push(r.sendMs);
      cpus.push(r.cpuMs);
      serverCpus.push(r.serversCpuMs);
      for (const [k, other] of others.entries()) theirs[k]?.push(await fanout(other));
    }
    const idleAfter = await measureIdle();
    o.note(`scale: ${n}: server processes idle at ${round(idleRate * 1000, 0)} ms/s before the probes, ${round(idleAfter * 1000, 0)} ms/s after (taken off each fanout's server CPU)`);
    const compared = theirs.map((rs): ClientFanouts => ({
      completeMs: round(median(rs.map((r) => r.ms))),
      sendMs: round(median(rs.map((r) => r.sendMs))),
      senderCpuMs: round(median(rs.map((r) => r.cpuMs))),
      serversCpuMs: round(median(rs.map((r) => r.serversCpuMs))),
    }));
    client.send({ kind: 'measure' });
    const end = await client.next('measured', 60_000);
    const nsCpuMsPerSec = nsPid !== undefined ? round((processCpuMs(nsPid) - ns0) / ((wallMs() - step0) / 1000), 1) : NaN;

    const fdDelta = Number(after['fds']) - Number(base['fds']);
    const rssDelta = Number(after['rssKiB']) - Number(base['rssKiB']);
    return {
      n,
      procs: groups.length,
      startupMs: round(startupMs, 1),
      registerMs: round(registerMs, 1),
      fanoutCompleteMs: round(median(times)),
      clientFds: Number(after['fds']),
      clientFdsPerPeer: round(fdDelta / n),
      clientRssKiB: Number(after['rssKiB']),
      clientRssPerPeerKiB: round(rssDelta / n, 2),
      nsRecords: Number(end['records']),
      nsLookups: Number(end['lookups']),
      nsRegistered: readies.reduce((a, r) => a + Number(r['registered']), 0),
      nsBackendReads: Number(end['lookups']) - Number(end['cacheHits']),
      registerPolls: Number(seen['polls']),
      firstFanoutMs: round(firstFanoutMs),
      fanoutMinMs: round(Math.min(...times)),
      fanoutMaxMs: round(Math.max(...times)),
      serverRssKiB: readies.reduce((a, r) => a + Number(r['rssKiB']), 0),
      serverFds: readies.reduce((a, r) => a + Number(r['fds']), 0),
      fanoutSendMs: round(median(sends)),
      senderCpuMsPerFanout: round(median(cpus)),
      nsRefreshPerSec: round(Number(end['records']) / (nsTtlOf(o.url) / 3000), 1),
      ...(Number.isFinite(nsCpuMsPerSec) ? { nsCpuMsPerSec } : {}),
      serversCpuMsPerFanout: round(median(serverCpus)),
      ...(others.length > 0 ? { compared } : {}),
    };
  } finally {
    await stopAll(children);
  }
}

async function rawStep(o: ScaleOptions, n: number): Promise<{ fdsPerPeer: number; rssPerPeerKiB: number }> {
  const children: Child[] = [];
  try {
    const servers = spread(n, o.procs).map((g, p) => Child.start(SERVER, { role: 'raw', count: g.length }, { name: `scale raw server ${p}`, minFds: fdsFor(g.length) }));
    children.push(...servers);
    const client = Child.start(CLIENT, { role: 'raw', peers: n }, { name: `scale raw client (${n})`, minFds: fdsFor(n), nodeFlags: ['--expose-gc'] });
    children.push(client);
    const endpoints = (await Promise.all(servers.map((s) => s.next('ready', 60_000 + 50 * n)))).flatMap((m: Message) => m['endpoints'] as string[]);
    const base = await client.next('ready', 60_000);
    client.send({ kind: 'connect', endpoints });
    const r = await client.next('connected', 60_000 + 50 * n);
    return { fdsPerPeer: round((Number(r['fds']) - Number(base['fds'])) / n), rssPerPeerKiB: round((Number(r['rssKiB']) - Number(base['rssKiB'])) / n, 2) };
  } finally {
    await stopAll(children);
  }
}

/** The same fanout through RabbitMQ: n RpcServers on `rabbitUrl` (a fanout queue each), one publish per fanout. */
async function rabbitStep(o: ScaleOptions & { rabbitUrl: string }, n: number): Promise<ScaleFanoutPoint> {
  const topic = freshTopic();
  const groups = spread(n, o.procs);
  const children: Child[] = [];
  const brokerPid = pidListeningOn(portOf(o.rabbitUrl.replace(/^rabbit:/, 'amqp:'), 5672));
  try {
    const client = Child.start(CLIENT, { role: 'hb', url: o.rabbitUrl, topic, peers: n }, { name: `scale rabbit client (${n})`, minFds: 4096 });
    children.push(client);
    await client.next('ready', 60_000);
    const timeout = 60_000 + 200 * n;
    const servers = groups.map((servers, p) => Child.start(SERVER, { role: 'fan', url: o.rabbitUrl, topic, servers, jitterMs: o.jitterMs ?? 0 }, { name: `scale rabbit server ${p} (${servers.length} of ${n})`, minFds: 4096 }));
    children.push(...servers);
    await Promise.all(servers.map((s) => s.next('ready', timeout)));
    const fanout = async (): Promise<{ ms: number; cpuMs: number; brokerMs: number }> => {
      const s = seq++;
      const b0 = brokerPid !== undefined ? processCpuMs(brokerPid) : NaN;
      servers.forEach((x) => x.send({ kind: 'expect', seq: s }));
      client.send({ kind: 'fanout', seq: s });
      const sent = await client.next('sent', timeout);
      if (sent['error']) throw new Error(`rabbit fanout ${s} to ${n} servers failed: ${String(sent['error'])}`);
      const got = await Promise.all(servers.map((x) => x.next('reached', 30_000 + 50 * n)));
      return { ms: Math.max(...got.map((g) => Number(g['lastAt']))) - Number(sent['startedAt']), cpuMs: Number(sent['cpuMs']), brokerMs: processCpuMs(brokerPid ?? -1) - b0 };
    };
    await fanout(); // warm-up
    const probes: Array<{ ms: number; cpuMs: number; brokerMs: number }> = [];
    for (let i = 0; i < o.probes; i++) probes.push(await fanout());
    // The broker's CPU is read in clock ticks (10 ms): summed over the probes, then divided.
    const brokerCpuMs = probes.reduce((a, p) => a + p.brokerMs, 0) / probes.length;
    return { contender: 'rabbit', n, completeMs: round(median(probes.map((p) => p.ms))), senderCpuMs: round(median(probes.map((p) => p.cpuMs))), ...(Number.isFinite(brokerCpuMs) ? { brokerCpuMs: round(brokerCpuMs) } : {}) };
  } finally {
    await stopAll(children);
  }
}

/** Run every step; a step that fails is reported in `errors` and the next one still runs. */
export async function runScale(o: ScaleOptions): Promise<{ report: ScaleReport; errors: string[] }> {
  const note = o.note ?? (() => undefined);
  const points: ScalePointPlus[] = [];
  const fanouts: ScaleFanoutPoint[] = [];
  const errors: string[] = [];
  const failed = (what: string, n: number, e: unknown): void => {
    errors.push(`${what} scale ${n}: ${(e as Error).message.split('\n')[0]}`);
    note(`scale: ${what} ${n} failed: ${(e as Error).message.split('\n')[0]}`);
  };
  for (const n of o.steps) {
    try {
      note(`scale: ${n} servers over ${Math.min(o.procs, n)} processes`);
      const hb = await hbStep({ ...o, note }, n);
      const raw = o.noRaw ? { fdsPerPeer: NaN, rssPerPeerKiB: NaN } : await rawStep(o, n);
      points.push({ ...hb, rawClientFdsPerPeer: raw.fdsPerPeer, rawClientRssPerPeerKiB: raw.rssPerPeerKiB, fdRatio: raw.fdsPerPeer > 0 ? round(hb.clientFdsPerPeer / raw.fdsPerPeer) : NaN });
      fanouts.push({ contender: 'zmq', n, completeMs: hb.fanoutCompleteMs, senderCpuMs: hb.senderCpuMsPerFanout });
    } catch (e) {
      failed('zmq', n, e);
    }
    if (o.rabbitUrl) {
      try {
        note(`scale: RabbitMQ fanout to ${n} servers`);
        fanouts.push(await rabbitStep({ ...o, rabbitUrl: o.rabbitUrl }, n));
      } catch (e) {
        failed('rabbit', n, e);
      }
    }
    if (MULTICAST_SCALE.step && n <= MULTICAST_MAX_N) {
      try {
        note(`scale: multicast zmq fanout to ${n} servers (in a network namespace)`);
        fanouts.push(await MULTICAST_SCALE.step(o, n));
      } catch (e) {
        failed('zmq-multicast', n, e);
      }
    }
  }
  const notes = scaleNotes(points, o);
  if (!MULTICAST_SCALE.step) notes.push(`multicast zmq: no column here — ${MULTICAST_SCALE.unavailable ?? 'not asked for'}.`);
  else notes.push(`multicast zmq: run in a network namespace of its own (unshare -n, loopback multicast) with its own redis-server as the name service, up to ${MULTICAST_MAX_N} servers; unicast zmq measured there too, to the same servers.`);
  for (const m of fanouts) {
    const u = m.sameServers?.unicast;
    if (m.contender !== 'zmq-multicast' || !u) continue;
    notes.push(`multicast zmq at ${m.n}: all have it after ${f(m.completeMs, 2)} ms vs unicast zmq ${f(u.completeMs, 2)} ms to the same servers (${f(u.completeMs / m.completeMs, 2)}× sooner); sender CPU ${f(m.senderCpuMs, 2)} ms (without acks ${f(m.sameServers?.multicastNoAcks.senderCpuMs ?? NaN, 2)}) vs ${f(u.senderCpuMs, 2)} ms; servers' CPU per fanout ${f(m.serversCpuMs ?? NaN, 1)} ms (${f(((m.serversCpuMs ?? NaN) * 1000) / m.n, 0)} µs per server; unicast ${f((u.serversCpuMs * 1000) / m.n, 0)} µs).`);
  }
  return { report: { contender: 'zmq', points, notes, fanouts }, errors };
}

/** The zmq:// URL's name-service TTL (ms). */
function nsTtlOf(url: string): number {
  const t = new URL(url).searchParams.get('ns_ttl');
  return t ? Number(t) : 30_000;
}

/** Least-squares slope and intercept of y over x. */
function fit(xs: readonly number[], ys: readonly number[]): { slope: number; at: (x: number) => number } {
  const k = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / k;
  const my = ys.reduce((a, b) => a + b, 0) / k;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < k; i++) {
    sxy += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    sxx += ((xs[i] as number) - mx) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  return { slope, at: (x) => my + slope * (x - mx) };
}

const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: d }) : '–');

/** What 10,000 nodes would need, from the measured growth; one line each, each with its figure. */
export function scaleNotes(points: readonly ScalePointPlus[], o: Pick<ScaleOptions, 'url' | 'procs' | 'probes'>): string[] {
  if (points.length === 0) return ['no step completed: nothing to extrapolate from'];
  const last = points[points.length - 1] as ScalePointPlus;
  const ns = points.map((p) => p.n);
  const big = 10_000;
  const ttl = nsTtlOf(o.url);
  const mm = new URL(o.url).searchParams.get('matchmaker') ?? 'local';
  const fds = fit(ns, points.map((p) => p.clientFds));
  const rss = fit(ns, points.map((p) => p.clientRssKiB));
  const fan = fit(ns, points.map((p) => p.fanoutCompleteMs));
  const send = fit(ns, points.map((p) => p.fanoutSendMs));
  const start = fit(ns, points.map((p) => p.startupMs));
  const reg = fit(ns, points.map((p) => p.registerMs));
  const srv = fit(ns, points.map((p) => p.serverRssKiB));
  const srvFds = fit(ns, points.map((p) => p.serverFds));
  const prev = points.length >= 2 ? (points[points.length - 2] as ScalePointPlus) : undefined;
  /** Growth exponent between the last two steps: y ∝ n^k. */
  const expo = (y: (p: ScalePointPlus) => number): number => (prev && y(prev) > 0 && y(last) > 0 ? Math.log(y(last) / y(prev)) / Math.log(last.n / prev.n) : NaN);
  const recordsPerServer = last.nsRecords / last.n;
  const raw500 = points.find((p) => p.n === 500) ?? last;
  const lines: string[] = [];
  lines.push(
    `client fds: ${f(fds.slope, 3)} per peer (fit over n=${ns.join(',')}: ${f(fds.at(0), 0)} + ${f(fds.slope, 3)}·n; raw zeromq.js ${f(last.rawClientFdsPerPeer, 3)} at ${last.n}) → ~${f(fds.at(big), 0)} open fds at 10,000 peers: ulimit -n ≥ ~${f(Math.ceil((fds.at(big) * 1.25) / 1024) * 1024, 0)} for the client, and pool_max (default 1024) raised above 10,000 or every fanout churns connections (LRU closes and reopens them).`,
  );
  lines.push(
    `issue 3 target (client fds per peer ≤ 1.1× raw at 500 peers)${raw500.n === 500 ? '' : ' — no 500 step here; the largest'}: ${raw500.n} peers: hybridbus ${f(raw500.clientFdsPerPeer, 3)}, raw ${f(raw500.rawClientFdsPerPeer, 3)} → ${f(raw500.fdRatio, 3)}× ${raw500.fdRatio <= 1.1 ? 'met' : 'MISSED'}.`,
  );
  lines.push(
    rss.slope > 0
      ? `client RSS: ${f(rss.slope, 1)} KiB per peer (fit; ${f(last.clientRssPerPeerKiB, 1)} KiB/peer measured at ${last.n}, raw ${f(last.rawClientRssPerPeerKiB, 1)}) → ~${f(rss.at(big) / 1024, 0)} MiB for a client reaching 10,000 peers (zmq pipes and the per-peer pool entry; the pool's idle_ttl, default 60 s, frees idle ones only after a minute).`
      : `client RSS: no growth measurable over these steps (fit ${f(rss.slope, 1)} KiB per peer; GC and JIT noise dominate below a few hundred peers): run larger steps to extrapolate.`,
  );
  const flat = (what: string, slope: number, unit: string): string => `${what}: no growth measurable over n=${ns.join(',')} (fit ${f(slope, 3)} ${unit}); noise dominates at these sizes: run larger steps to extrapolate.`;
  if (srv.slope <= 0) lines.push(flat('server RSS', srv.slope, 'KiB per server'));
  else lines.push(
    `servers: ${f(srv.slope, 0)} KiB RSS per in-process server (fit; a Bus each; ${f(last.serverRssKiB / 1024, 0)} MiB for ${last.n} over ${last.procs} processes) → ~${f((srv.slope * big) / 1024 / 1024, 1)} GiB to host 10,000 on one box; each server is its own ROUTER, so a process hosting k servers needs zeromq context.maxSockets ≥ k (default 1023, the bench raises it) and ${f(srvFds.slope, 2)} fds per server (fit over the server processes' fds, before any client; +1 per client connected) → ulimit -n ≥ ~${f(Math.ceil((srvFds.slope * big * 1.25) / 1024) * 1024, 0)} if one process hosted 10,000.`,
  );
  lines.push(
    `name service: ${f(recordsPerServer, 2)} records per server (${last.nsRecords} at ${last.n}) → ${f(recordsPerServer * big, 0)} records at 10,000; refreshed every TTL/3 = ${f(ttl / 3000, 1)} s → ~${f((recordsPerServer * big) / (ttl / 3000), 0)} refresh writes/s (${mm.split(':')[0]}), and a fanout lookup that misses the cache reads all ${f(big, 0)} records of the topic key.`,
  );
  lines.push(
    `client lookups: ${last.nsLookups} lookups for ${1 + o.probes} fanouts at ${last.n} (${last.nsBackendReads} read the backend, the rest hit the ${'ns_cache'} cache) — one per fanout, independent of n; at 10,000 servers the cost is the size of each backend read, not the count.`,
  );
  if (fan.slope <= 0) lines.push(flat('fanout completion', fan.slope, 'ms per peer'));
  else lines.push(
    `fanout: ${f(fan.slope * 1000, 1)} µs per peer (fit; ${f(last.fanoutCompleteMs, 1)} ms median to all ${last.n}, of which ${f(last.fanoutSendMs, 1)} ms until the client's cast resolved — the sender alone: ${f(send.slope * 1000, 1)} µs per peer, ~${f(send.at(big), 0)} ms at 10,000; first fanout with connects ${f(last.firstFanoutMs, 1)} ms) → ~${f(fan.at(big), 0)} ms for one fanout to 10,000 as N sequential sends from one client if linear${Number.isFinite(expo((p) => p.fanoutCompleteMs)) ? `, but it grew as n^${f(expo((p) => p.fanoutCompleteMs), 2)} from ${prev?.n} to ${last.n} (receivers share ${os.cpus().length} CPUs) → ~${f((last.fanoutCompleteMs * (big / last.n) ** expo((p) => p.fanoutCompleteMs)) / 1000, 1)} s if that held` : ''}; a broker (one publish, the broker copies) or a PUB/SUB or multicast tree (log fan-out, e.g. 100 relays × 100) keeps the sender's cost constant.`,
  );
  if (start.slope <= 0) lines.push(flat('start-up', start.slope, 'ms per server'));
  else lines.push(
    `start-up: ${f(start.slope, 2)} ms per server (fit; ${f(last.startupMs, 0)} ms for ${last.n} over ${last.procs} processes, registration seen after ${f(last.registerMs, 0)} ms) → ~${f(start.at(big) / 1000, 1)} s for 10,000 started at once: a startup storm of ${f(recordsPerServer * big, 0)} registrations; jitter the start (spread over seconds) and stagger the TTL refreshes so they do not stay in phase.`,
  );
  if (reg.slope <= 0) lines.push(flat('registration', reg.slope, 'ms per server'));
  else lines.push(`registration seen by a client: ${f(reg.slope, 2)} ms per server (fit over the steps; ${last.registerPolls} uncached polls (every 20 ms, slower as lookups grow) at ${last.n}, each reading every record of the key).`);
  lines.push(`measured on ${os.cpus().length} CPUs, loopback, servers over ${o.procs} processes: extrapolations are linear fits over the steps and ignore contention that appears only at 10,000.`);
  return lines;
}

/** The scale scenario inside `hybridbus bench`: on the config's zmq:// transport, or skipped with one line. */
export async function benchScale(transports: Readonly<Record<string, string>>, o: { readonly scaleSteps?: readonly number[] | undefined; readonly scaleProcs?: number | undefined; readonly scaleProbes?: number | undefined; readonly scaleJitter?: number | undefined }, note: (line: string) => void): Promise<{ report?: ScaleReport; errors: string[] }> {
  const url = Object.values(transports).find((u) => /^zmq:/.test(u));
  const why = url ? await scaleProbe(url) : 'the config has no zmq:// transport';
  if (!url || why) {
    note(`skipped scale — ${why}`);
    return { errors: [] };
  }
  // RabbitMQ fanout beside it when the config has a reachable rabbit:// transport.
  const rabbit = Object.values(transports).find((u) => /^rabbits?:/.test(u));
  const rabbitWhy = rabbit ? await tcpProbe('RabbitMQ', new URL(rabbit).hostname || '127.0.0.1', Number(new URL(rabbit).port || 5672)) : 'the config has no rabbit:// transport';
  if (rabbitWhy) note(`scale: no RabbitMQ fanout column — ${rabbitWhy}`);
  // Multicast only inside a network namespace the step makes; never on this host's network.
  MULTICAST_SCALE.unavailable = multicastUnavailable();
  if (MULTICAST_SCALE.unavailable) note(`scale: no multicast zmq column — ${MULTICAST_SCALE.unavailable}`);
  else MULTICAST_SCALE.step = (so, n) => multicastStep({ n, procs: so.procs, probes: so.probes, jitterMs: so.jitterMs ?? 0 }, so.note ?? (() => undefined));
  return runScale({ url, steps: o.scaleSteps ?? SCALE_DEFAULTS.steps, procs: o.scaleProcs ?? SCALE_DEFAULTS.procs, probes: o.scaleProbes ?? SCALE_DEFAULTS.probes, jitterMs: o.scaleJitter ?? 0, rabbitUrl: rabbitWhy ? undefined : rabbit, note });
}

/** A table of the points, for the terminal. */
export function renderScaleTable(report: ScaleReport): string {
  const head = ['n', 'procs', 'startup ms', 'register ms', 'fanout ms', 'client fds', 'fds/peer', 'raw fds/peer', 'RSS KiB', 'RSS/peer KiB', 'ns records', 'ns lookups', 'cpu ms/fanout', 'ns refresh/s', 'ns cpu ms/s'];
  const rows = report.points.map((p) => {
    const x = p as Partial<ScalePointPlus> & ScalePoint;
    return [p.n, p.procs, p.startupMs, p.registerMs, p.fanoutCompleteMs, p.clientFds, p.clientFdsPerPeer, x.rawClientFdsPerPeer ?? NaN, p.clientRssKiB, p.clientRssPerPeerKiB, p.nsRecords, p.nsLookups, x.senderCpuMsPerFanout ?? NaN, x.nsRefreshPerSec ?? NaN, x.nsCpuMsPerSec ?? NaN].map((v) => f(v, 3));
  });
  const table = (all: string[][]): string => {
    const widths = (all[0] ?? []).map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
    return all.map((r) => r.map((c, i) => c.padStart(widths[i] as number)).join('  ')).join('\n');
  };
  const fanouts = report.fanouts ?? [];
  if (fanouts.length === 0) return table([head, ...rows]);
  const at = (id: string, n: number, pick: (x: ScaleFanoutPoint) => number | undefined): string => {
    const x = fanouts.find((y) => y.contender === id && y.n === n);
    const v = x ? pick(x) : undefined;
    return v === undefined || !Number.isFinite(v) ? '-' : f(v, 3);
  };
  const side = [...new Set(fanouts.map((x) => x.n))].sort((a, b) => a - b).map((n) => [
    f(n, 0),
    at('zmq', n, (x) => x.completeMs), at('zmq', n, (x) => x.senderCpuMs),
    at('rabbit', n, (x) => x.completeMs), at('rabbit', n, (x) => x.senderCpuMs), at('rabbit', n, (x) => x.brokerCpuMs),
    at('zmq-multicast', n, (x) => x.completeMs), at('zmq-multicast', n, (x) => x.senderCpuMs),
    at('zmq-multicast', n, (x) => x.sameServers?.unicast.completeMs), at('zmq-multicast', n, (x) => x.sameServers?.unicast.senderCpuMs),
  ]);
  // The last two: unicast zmq to the multicast step's servers, in its namespace (like with like).
  const sideHead = ['n', 'zmq all ms', 'zmq cpu ms', 'rabbit all ms', 'rabbit cpu ms', 'broker cpu ms', 'mcast all ms', 'mcast cpu ms', 'ns unicast all ms', 'ns unicast cpu ms'];
  return `${table([head, ...rows])}\n\nfanout side by side (ms until all have it; CPU ms per fanout):\n${table([sideHead, ...side])}`;
}
