/**
 * The contenders this package ships: one hybridbus contender per transport of the bus config
 * (id by scheme), `hybrid` (the router as configured) and the raw zeromq.js baseline. Other
 * contenders (raw amqplib, oslo.messaging, the amqp1 driver and raw rhea per intermediary)
 * register through `registerContender`.
 */
import net from 'node:net';
import { connect as amqpConnect } from 'amqplib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { maskUrl, type ConfigInput, type HybridbusConfig } from '@hybridbus/core';
import { PATTERN_OF, SCENARIOS, type Contender, type ProcessCommand, type Scenario } from './contender.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const node = (script: string): ProcessCommand => ({ command: process.execPath, args: [path.join(here, script)] });

/** Contender id for a transport URL's scheme. */
export function schemeId(url: string): string {
  const scheme = new URL(url).protocol.replace(/:$/, '');
  // amqp:// is AMQP 1.0, as in oslo (rabbit:// is RabbitMQ's 0-9-1).
  return scheme === 'amqp' || scheme === 'amqps' || scheme === 'amqp1' ? 'amqp1' : scheme;
}

/** The scenarios of one-way messages (the ones zmq:// acks). */
const ONE_WAY: readonly Scenario[] = ['cast', 'fanout', 'notify'];

/**
 * The raw baseline of each transport id. amqp1's depends on what carries its messages
 * (raw-rhea-direct, -proton, -rabbit, -router): its registered contenders name their own, and an
 * amqp:// transport of a --config is compared with raw rhea only in direct mode. rabbit's is
 * raw amqplib doing the driver's wire work (raw-amqplib-oslo), or, in a run without it, the
 * minimal raw-amqplib (BASELINE_FALLBACK).
 */
export const BASELINE_OF: Readonly<Record<string, string>> = { zmq: 'raw-zeromq', rabbit: 'raw-amqplib-oslo' };

/** The baseline used when a contender's own is not in the run. */
export const BASELINE_FALLBACK: Readonly<Record<string, string>> = { 'raw-amqplib-oslo': 'raw-amqplib', 'raw-zeromq-acked': 'raw-zeromq' };

/**
 * The baseline of a config's transport URL for a scenario (amqp1 in direct mode: raw-rhea-direct).
 * zmq:// acks one-way messages unless `acks=none`: those are compared with raw zeromq.js acking
 * them too (raw-zeromq-acked), fire-and-forget ones with PUSH/PULL.
 */
export function baselineOfUrl(url: string, scenario?: Scenario): string | undefined {
  const id = schemeId(url);
  if (id === 'zmq' && scenario !== undefined && ONE_WAY.includes(scenario) && new URL(url).searchParams.get('acks') !== 'none') return 'raw-zeromq-acked';
  if (id !== 'amqp1') return BASELINE_OF[id];
  const u = new URL(url);
  return u.host === '' || u.searchParams.get('mode') === 'direct' ? 'raw-rhea-direct' : undefined;
}

const LABELS: Readonly<Record<string, string>> = { zmq: 'hybridbus zmq-direct', rabbit: 'hybridbus rabbit-brokered', amqp1: 'hybridbus amqp1' };

/** The URL without its passwords, for the report: core's one masking rule. */
export function redactUrl(url: string): string {
  return maskUrl(url);
}

/** Can a TCP connection be opened? One line saying why not, or undefined. */
export function tcpProbe(what: string, host: string, port: number, timeoutMs = 2_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (why: string | undefined): void => {
      s.destroy();
      resolve(why);
    };
    s.setTimeout(timeoutMs, () => done(`${what}: no answer from ${host}:${port} in ${timeoutMs} ms`));
    s.once('connect', () => done(undefined));
    s.once('error', (e: NodeJS.ErrnoException) => done(`${what}: ${e.code ?? e.message} ${host}:${port}`));
  });
}

/**
 * A full AMQP handshake: a broker that answers TCP may still refuse the login or the vhost, and
 * the driver retries those as if they were transient, so the bench would wait for nothing.
 */
async function amqpProbe(u: URL, host: string, port: number): Promise<string | undefined> {
  try {
    const conn = await amqpConnect(
      {
        protocol: u.protocol === 'amqps:' ? 'amqps' : 'amqp',
        hostname: host,
        port,
        username: decodeURIComponent(u.username) || 'guest',
        password: decodeURIComponent(u.password) || 'guest',
        vhost: decodeURIComponent(u.pathname.slice(1)) || '/',
      },
      { timeout: 5_000 },
    );
    await conn.close();
    return undefined;
  } catch (e) {
    // amqplib's messages carry the broker's reason, e.g. "... 403 (ACCESS-REFUSED) with message ...".
    return `rabbit: ${host}:${port}: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** Why a transport URL cannot be benchmarked here, or undefined. */
export async function probeUrl(url: string): Promise<string | undefined> {
  const u = new URL(url);
  const id = schemeId(url);
  if (id === 'memory') return 'memory: in-process only; it cannot carry messages between processes';
  // amqp1 in direct mode has no intermediary to reach (its name service is local or Redis).
  if (id === 'amqp1' && u.host === '') {
    const mm = u.searchParams.get('matchmaker') ?? 'local';
    if (!/^redis(\+sentinel)?:/.test(mm)) return undefined;
    const r = new URL(mm);
    return tcpProbe('amqp1 name service (redis)', r.hostname || '127.0.0.1', Number(r.port) || 6379);
  }
  if (id === 'rabbit' || id === 'amqp1') {
    // Several hosts may be listed ("h1:5672,h2:5672"): the first one is enough to run.
    const first = (u.host.split(',')[0] ?? '').split(':');
    const host = first[0] || '127.0.0.1';
    const port = Number(first[1]) || (u.protocol === 'amqps:' ? 5671 : 5672);
    const tcp = await tcpProbe(id, host, port);
    // TLS settings live in the driver's query options; the handshake probe is for plain AMQP.
    if (tcp || id !== 'rabbit' || u.protocol === 'amqps:') return tcp;
    return amqpProbe(u, host, port);
  }
  if (id === 'zmq') {
    const mm = u.searchParams.get('matchmaker') ?? 'local';
    if (/^redis(\+sentinel)?:/.test(mm)) {
      const r = new URL(mm);
      return tcpProbe('zmq name service (redis)', r.hostname || '127.0.0.1', Number(r.port) || 6379);
    }
  }
  return undefined;
}

/** `url` with one more query option. */
function withQuery(url: string, key: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(key, value);
  return u.href;
}

/** A hybridbus contender driving the public Bus API with `config`. */
function hybridbusContender(id: string, label: string, url: string | undefined, config: ConfigInput, baseline: (s: Scenario) => string | undefined, urls: readonly string[], scenarios: readonly Scenario[] = SCENARIOS): Contender {
  return {
    info: { id, label, kind: 'hybridbus', ...(url ? { url: redactUrl(url) } : {}) },
    scenarios,
    data: { config: { ...config, log: { level: 'error' } } },
    probe: async () => {
      for (const u of urls) {
        const why = await probeUrl(u);
        if (why) return why;
      }
      return undefined;
    },
    server: () => node('child-hybridbus.js'),
    client: () => node('child-hybridbus.js'),
    baseline,
  };
}

/**
 * The hybridbus contenders of a loaded config: one per transport (the first of each scheme),
 * each carrying every pattern, plus `hybrid` when the config routes patterns to more than one
 * transport.
 */
export function hybridbusContenders(config: HybridbusConfig): Contender[] {
  const out: Contender[] = [];
  const seen = new Set<string>();
  for (const url of Object.values(config.transports)) {
    const id = schemeId(url);
    if (seen.has(id)) continue;
    seen.add(id);
    const cfg: ConfigInput = { transports: { default: url }, rpc: config.rpc, notifications: config.notifications, controlExchange: config.controlExchange };
    out.push(hybridbusContender(id, LABELS[id] ?? `hybridbus ${id}`, url, cfg, (s) => baselineOfUrl(url, s), [url]));
    // zmq:// acks one-way messages once handled by default; fire-and-forget is the opt-in for
    // speed, measured beside it on the one-way scenarios.
    if (id === 'zmq' && !new URL(url).searchParams.has('acks')) {
      const noack = withQuery(url, 'acks', 'none');
      const one: ConfigInput = { ...cfg, transports: { default: noack } };
      out.push(hybridbusContender('zmq-noack', 'hybridbus zmq-direct, acks=none', noack, one, () => BASELINE_OF[id], [noack], ONE_WAY));
    }
  }
  const used = [...new Set(Object.values(config.patterns))];
  if (used.length > 1) {
    const routes = Object.entries(config.patterns)
      .map(([p, t]) => `${p}→${schemeId(config.transports[t] as string)}`)
      .join(' ');
    const cfg: ConfigInput = { transports: config.transports, patterns: config.patterns, topics: config.topics, rpc: config.rpc, notifications: config.notifications, controlExchange: config.controlExchange };
    // Each pattern is compared with the raw baseline of the transport that carries it.
    const baseline = (s: Scenario): string | undefined => baselineOfUrl(config.transports[config.patterns[PATTERN_OF[s]]] as string, s);
    out.push(hybridbusContender('hybrid', `hybridbus router (${routes})`, undefined, cfg, baseline, used.map((t) => config.transports[t] as string)));
  }
  return out;
}

/** A raw zeromq.js contender (child-raw-zeromq.js), with or without acks on one-way messages. */
function rawZeromqContender(info: Contender['info'], scenarios: readonly Scenario[], data: Contender['data']): Contender {
  return { info, scenarios, data, probe: async () => undefined, server: () => node('child-raw-zeromq.js'), client: () => node('child-raw-zeromq.js'), baseline: () => undefined };
}

/** Raw zeromq.js: DEALER/ROUTER, PUSH/PULL; fanout as one PUSH per server. */
export const rawZeromq = rawZeromqContender({ id: 'raw-zeromq', label: 'raw zeromq.js', kind: 'raw' }, SCENARIOS, {});

/** Raw zeromq.js acking every one-way message (DEALER/ROUTER, a sequence number back): what zmq:// does by default. */
export const rawZeromqAcked = rawZeromqContender({ id: 'raw-zeromq-acked', label: 'raw zeromq.js, acked', kind: 'raw' }, ONE_WAY, { acks: true });

/** What a registered contender is made from: the servers the bench uses. */
export interface RegisteredOptions {
  /** The RabbitMQ (rabbit://) the bench uses; undefined when none is configured. */
  readonly rabbitUrl: string | undefined;
  /** An AMQP 1.0 queue broker (amqp://host:port), e.g. Proton's C++ example broker. */
  readonly protonUrl?: string | undefined;
  /** A qdrouterd (amqp://host:port). */
  readonly routerUrl?: string | undefined;
  /** A private directory for a local name service (removed after the run). */
  readonly nsDir?: string | undefined;
}

/** Contenders added by other modules (raw amqplib, oslo.messaging, amqp1 and raw rhea), by id. */
const registered = new Map<string, (opts: RegisteredOptions) => Contender>();

/**
 * Add a contender. `make` gets the servers the bench uses (undefined when none is configured),
 * so e.g. a raw amqplib or an oslo.messaging contender can reach the same broker.
 */
export function registerContender(id: string, make: (opts: RegisteredOptions) => Contender): void {
  registered.set(id, make);
}

export function registeredContenders(opts: RegisteredOptions): Contender[] {
  return [...registered.values()].map((make) => make(opts));
}
