/**
 * zmq:// transport options, all from the URL's query string, e.g.
 * `zmq://?matchmaker=redis://127.0.0.1:6379&acks=true&curve=true`. Every option is checked
 * here; a bad one is a ConfigError naming the option, the value and the expected form.
 */
import { ConfigError } from '@hybridbus/core';
import { readFileSync } from 'node:fs';
import { multicastEndpoint, multicastGroups, multicastInterface, multicastKey, OptionProblem, type MulticastOptions } from './multicast/config.js';

export interface ZmqOptions {
  /** Name service: "local", "local:/dir", "static:{json}", "static:@file", "redis://...", "redis+sentinel://...", "etcd://...". */
  readonly matchmaker: string;
  readonly bindHost: string;
  /** Host clients are told to connect to (default: bindHost). */
  readonly advertiseHost: string;
  /** Port range to bind in; [0, 0] = an ephemeral port. */
  readonly portRange: readonly [number, number];
  /** ZMTP heartbeats: interval, and how long a client waits for a silent server before dropping it (ms). */
  readonly heartbeatInterval: number;
  readonly heartbeatTimeout: number;
  /** A peer that has not completed its handshake in this long is skipped (ms). */
  readonly connectTimeout: number;
  /** Idle connections are closed after this long (ms). */
  readonly idleTtl: number;
  /** Connections kept at most (an fd budget); the least recently used idle one goes first. */
  readonly poolMax: number;
  /**
   * Messages waiting for a slot in a full pool at most (all peers busy: a fanout to more than
   * pool_max peers cycles through them). Beyond that, or when no slot opens for
   * connect_timeout, sends fail with QueueFull.
   */
  readonly poolQueue: number;
  /**
   * New connections with their handshake under way at most: more wait their turn (as for a pool
   * slot), so a fanout to thousands of new peers does not start thousands of handshakes at once,
   * each then racing its connect_timeout and the heartbeats on two busy cores.
   */
  readonly connectBurst: number;
  /** Topics whose connections are never closed for idleness. */
  readonly hotTopics: ReadonlySet<string>;
  /** Larger frames are refused when sent and dropped when received (bytes). */
  readonly maxMessageSize: number;
  /** Messages waiting for one peer at most; beyond that sends fail with QueueFull. */
  readonly maxQueued: number;
  /**
   * Requests a server has taken off its socket and not finished, at most: beyond that it stops
   * reading, ZeroMQ's and TCP's buffers fill, and senders' queues push back (QueueFull).
   */
  readonly serverBacklog: number;
  /**
   * When casts, fanouts and notifications resolve: "handled" (the receiving endpoint finished),
   * "received" (the receiving process took it off the socket), or "none" (handed to ZeroMQ).
   * With an ack they are retried until one comes, and receivers drop duplicates.
   */
  readonly acks: 'handled' | 'received' | 'none';
  readonly ackTimeout: number;
  readonly ackRetries: number;
  /** How long a receiver remembers message ids to drop duplicates (ms). */
  readonly dedupTtl: number;
  /** Message ids a receiver remembers at most (memory bound); the oldest go first. */
  readonly dedupMax: number;
  /** Name-service record lifetime and lookup cache (ms). */
  readonly nsTtl: number;
  readonly nsCache: number;
  readonly curve: CurveOptions | undefined;
  /** A notification nobody listens to: "error" (MessageUndeliverable) or "drop" (counted). */
  readonly notifyUnrouted: 'error' | 'drop';
  /** Fanouts go out once, by UDP multicast (a RADIO; one UDP socket per receiving process), to servers that joined the topic's group. */
  readonly multicast: MulticastOptions | undefined;
}

export interface CurveOptions {
  readonly publicKey: string;
  readonly secretKey: string;
  /** Client public keys a server accepts; undefined = any client holding a keypair. */
  readonly allowedClients: ReadonlySet<string> | undefined;
}

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

type Parser<T> = (raw: string, key: string) => T;

function fail(key: string, raw: string, expected: string): never {
  throw new ConfigError([`zmq:// option "${key}": ${JSON.stringify(raw)} is invalid; expected ${expected}`]);
}

const int =
  (min: number, what = `an integer ≥ ${min}`): Parser<number> =>
  (raw, key) => {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw) || n < min) fail(key, raw, what);
    return n;
  };
const bool: Parser<boolean> = (raw, key) => (['true', '1', 'yes'].includes(raw) ? true : ['false', '0', 'no'].includes(raw) ? false : fail(key, raw, 'true or false'));
const text: Parser<string> = (raw, key) => (raw !== '' ? raw : fail(key, raw, 'a non-empty string'));

/**
 * A value, or "@path" to read it from a file (for keys that should not sit in a URL). A
 * 40-character Z85 key may itself start with "@", so that is never taken for a path.
 */
function fromFile(raw: string, key: string): string {
  if (!raw.startsWith('@') || Z85_KEY.test(raw)) return raw;
  try {
    return readFileSync(raw.slice(1), 'utf8').trim();
  } catch (e) {
    return fail(key, raw, `a readable file (${(e as Error & { code?: string }).code ?? 'unreadable'})`);
  }
}

/** A multicast/config.ts check as a Parser. */
const checked =
  <T>(check: (raw: string) => T | OptionProblem): Parser<T> =>
  (raw, key) => {
    const v = check(raw);
    return v instanceof OptionProblem ? fail(key, v.hide ? `<${raw.length} characters, hidden>` : raw, v.expected) : v;
  };

const z85: Parser<string> = (raw, key) => {
  const v = fromFile(raw, key);
  // Never echo what might be a secret key.
  return Z85_KEY.test(v) ? v : fail(key, raw.startsWith('@') ? `${raw} (contents)` : `<${raw.length} characters, hidden>`, 'a 40-character Z85 CURVE key (see curveKeyPair())');
};

const KNOWN = {
  matchmaker: text,
  bind_host: text,
  advertise_host: text,
  port: int(0, 'a port number 0–65535 (0 = ephemeral)'),
  port_range: ((raw, key) => {
    const m = /^(\d+)-(\d+)$/.exec(raw);
    const [lo, hi] = [Number(m?.[1]), Number(m?.[2])];
    if (!m || lo < 1 || hi > 65535 || lo > hi) fail(key, raw, 'LOW-HIGH with 1 ≤ LOW ≤ HIGH ≤ 65535');
    return [lo, hi] as const;
  }) as Parser<readonly [number, number]>,
  heartbeat_interval: int(0),
  heartbeat_timeout: int(0),
  connect_timeout: int(1),
  idle_ttl: int(1),
  pool_max: int(1),
  pool_queue: int(1),
  connect_burst: int(1),
  hot_topics: ((raw) => new Set(raw.split(',').filter(Boolean))) as Parser<ReadonlySet<string>>,
  max_message_size: int(64),
  max_queued: int(1),
  server_backlog: int(1),
  acks: ((raw, key) => {
    const v = ['true', '1', 'yes', 'handled'].includes(raw) ? 'handled' : ['false', '0', 'no', 'none'].includes(raw) ? 'none' : raw === 'received' ? 'received' : undefined;
    return v ?? fail(key, raw, '"handled" (or true), "received", or "none" (or false)');
  }) as Parser<'handled' | 'received' | 'none'>,
  ack_timeout: int(1),
  ack_retries: int(0),
  dedup_ttl: int(1),
  dedup_max: int(1),
  ns_ttl: int(100),
  ns_cache: int(0),
  curve: bool,
  curve_public_key: z85,
  curve_secret_key: z85,
  curve_allowed_clients: ((raw, key) => new Set(fromFile(raw, key).split(/[\s,]+/).filter(Boolean).map((k) => z85(k, key)))) as Parser<ReadonlySet<string>>,
  notify_unrouted: ((raw, key) => (raw === 'error' || raw === 'drop' ? raw : fail(key, raw, '"error" or "drop"'))) as Parser<'error' | 'drop'>,
  multicast: checked(multicastEndpoint),
  multicast_interface: checked(multicastInterface),
  multicast_ttl: ((raw, key) => (/^\d{1,3}$/.test(raw) && Number(raw) <= 255 ? Number(raw) : fail(key, raw, 'hops 0–255'))) as Parser<number>,
  multicast_key: checked(multicastKey),
  multicast_window: ((raw, key) => (/^\d+$/.test(raw) && Number(raw) >= 16 && Number(raw) <= 65536 ? Number(raw) : fail(key, raw, 'datagrams 16–65536'))) as Parser<number>,
  multicast_heartbeat: int(10, 'milliseconds ≥ 10'),
  multicast_rcvbuf: int(1024, 'bytes ≥ 1024'),
  multicast_groups: checked(multicastGroups),
} satisfies Record<string, Parser<unknown>>;

type Known = typeof KNOWN;
type Parsed = { [K in keyof Known]?: ReturnType<Known[K]> };

export function parseOptions(url: URL): ZmqOptions {
  if (url.host !== '' || (url.pathname !== '' && url.pathname !== '/')) {
    throw new ConfigError([`zmq:// URL ${JSON.stringify(url.href)}: put everything in the query string, e.g. zmq://?bind_host=10.0.0.5&matchmaker=redis://ns:6379`]);
  }
  const p: Parsed = {};
  for (const [key, raw] of url.searchParams) {
    // Own keys only: "?constructor=1" must be an unknown option, not Object's.
    const parse = Object.hasOwn(KNOWN, key) ? (KNOWN as Record<string, Parser<unknown>>)[key] : undefined;
    if (!parse) throw new ConfigError([`zmq:// option "${key}" is unknown; expected one of: ${Object.keys(KNOWN).join(', ')}`]);
    (p as Record<string, unknown>)[key] = parse(raw, key);
  }
  const bindHost = p.bind_host ?? '127.0.0.1';
  const portRange: readonly [number, number] = p.port_range ?? [p.port ?? 0, p.port ?? 0];
  if (p.port !== undefined && p.port > 65535) fail('port', String(p.port), 'a port number 0–65535');
  const heartbeatInterval = p.heartbeat_interval ?? 1000;
  let curve: CurveOptions | undefined;
  if (p.curve) {
    if (!p.curve_public_key || !p.curve_secret_key) {
      throw new ConfigError(['zmq:// option "curve=true" needs "curve_public_key" and "curve_secret_key" (Z85, or @file)']);
    }
    curve = { publicKey: p.curve_public_key, secretKey: p.curve_secret_key, allowedClients: p.curve_allowed_clients };
  } else if (p.curve_public_key || p.curve_secret_key || p.curve_allowed_clients) {
    throw new ConfigError(['zmq:// CURVE keys are set but "curve" is not true: add curve=true or remove the keys']);
  }
  const multicast = multicastOptions(p, curve !== undefined);
  return {
    matchmaker: p.matchmaker ?? 'local',
    bindHost,
    advertiseHost: p.advertise_host ?? (bindHost === '0.0.0.0' || bindHost === '*' ? '127.0.0.1' : bindHost),
    portRange,
    heartbeatInterval,
    heartbeatTimeout: p.heartbeat_timeout ?? heartbeatInterval * 3,
    connectTimeout: p.connect_timeout ?? 2000,
    idleTtl: p.idle_ttl ?? 60_000,
    poolMax: p.pool_max ?? 1024,
    poolQueue: p.pool_queue ?? 100_000,
    connectBurst: p.connect_burst ?? 256,
    hotTopics: p.hot_topics ?? new Set(),
    maxMessageSize: p.max_message_size ?? 16 * 1024 * 1024,
    maxQueued: p.max_queued ?? 10_000,
    serverBacklog: p.server_backlog ?? 10_000,
    acks: p.acks ?? 'handled',
    ackTimeout: p.ack_timeout ?? 1000,
    ackRetries: p.ack_retries ?? 5,
    dedupTtl: p.dedup_ttl ?? 60_000,
    dedupMax: p.dedup_max ?? 100_000,
    nsTtl: p.ns_ttl ?? 30_000,
    nsCache: p.ns_cache ?? 5_000,
    curve,
    notifyUnrouted: p.notify_unrouted ?? 'error',
    multicast,
  };
}

function multicastOptions(p: Parsed, curve: boolean): MulticastOptions | undefined {
  if (!p.multicast) {
    const stray = (['multicast_interface', 'multicast_ttl', 'multicast_key', 'multicast_window', 'multicast_heartbeat', 'multicast_rcvbuf', 'multicast_groups'] as const).filter((k) => p[k] !== undefined);
    if (stray.length) throw new ConfigError([`zmq:// option${stray.length > 1 ? 's' : ''} ${stray.map((k) => `"${k}"`).join(', ')} need "multicast" (e.g. multicast=udp://239.192.0.1:5555)`]);
    return undefined;
  }
  // CURVE secures TCP only: multicast datagrams would leave in clear and unauthenticated.
  if (curve && !p.multicast_key) {
    throw new ConfigError(['zmq:// option "multicast" with curve=true needs "multicast_key" (32 bytes, base64 or @file): CURVE does not cover UDP, so every datagram is sealed with that key instead']);
  }
  return {
    ...p.multicast,
    interface: p.multicast_interface,
    ttl: p.multicast_ttl ?? 1,
    key: p.multicast_key,
    window: p.multicast_window ?? 4096,
    heartbeat: p.multicast_heartbeat ?? 100,
    receiveBuffer: p.multicast_rcvbuf,
    groups: p.multicast_groups ?? new Map(),
  };
}
