/**
 * The bus configuration's schema: a convict schema with a doc and default for every key, the
 * formats that check values (transport URLs are checked by the driver of their scheme), and the
 * reference table README shows. Loading is config/load.ts.
 */
import convict from 'convict';
import { driverFor, PATTERNS, registeredSchemes, type Pattern } from '../driver.js';
import { ConfigError } from '../errors.js';

export interface HybridbusConfig {
  /** Named transports: name → URL. */
  readonly transports: Readonly<Record<string, string>>;
  /** Which transport carries each pattern. */
  readonly patterns: Readonly<Record<Pattern, string>>;
  /** Per-topic overrides of `patterns`. */
  readonly topics: Readonly<Record<string, Readonly<Partial<Record<Pattern, string>>>>>;
  readonly controlExchange: string;
  readonly rpc: {
    readonly timeout: number;
    readonly callMonitorTimeout: number;
    readonly maxConcurrency: number;
    readonly accessPolicy: 'default' | 'explicit';
  };
  readonly notifications: { readonly topics: readonly string[]; readonly retry: number };
  readonly log: { readonly level: string };
}

export type ConfigInput = {
  readonly [K in keyof HybridbusConfig]?: HybridbusConfig[K] extends string | readonly unknown[]
    ? HybridbusConfig[K]
    : HybridbusConfig[K] extends Readonly<Record<string, string>>
      ? HybridbusConfig[K]
      : Partial<HybridbusConfig[K]>;
};


const NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJsonIfString(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/**
 * A transport URL: well formed, a scheme some imported driver registered, options that driver
 * accepts. Checked per transport by the loader (config/load.ts), so that a problem names that
 * transport and shows its value alone.
 */
export function checkTransportUrl(url: unknown): void {
  // The caller shows the value (masked): the messages say what is wrong and the expected form.
  if (typeof url !== 'string') throw new Error('must be a URL string such as "zmq://" or "rabbit://host:5672/"');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('is not a well-formed URL; expected one such as "zmq://" or "rabbit://host:5672/"');
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  const driver = driverFor(scheme);
  if (!driver) {
    const known = registeredSchemes().map((s) => `${s}:`).join(', ') || 'none';
    throw new Error(`unknown scheme "${scheme}:": no driver is registered for it (registered: ${known}); import the driver's package, e.g. "@hybridbus/zmq-direct"`);
  }
  try {
    driver.checkUrl?.(parsed);
  } catch (e) {
    // A driver's ConfigError lists its problems; say them without its "invalid config" header.
    throw new Error(e instanceof ConfigError ? e.problems.join('; ') : (e as Error).message);
  }
}

convict.addFormat({
  name: 'transport-map',
  coerce: parseJsonIfString,
  validate(value: unknown) {
    if (!isPlainObject(value)) {
      throw new Error('must be an object mapping transport names to URLs, e.g. {"direct": "zmq://"}');
    }
    // Each URL is checked by the loader (checkTransportUrl), one problem per transport.
    for (const name of Object.keys(value)) {
      if (!NAME.test(name)) throw new Error(`transport name ${JSON.stringify(name)} must match ${NAME}`);
    }
  },
});

convict.addFormat({
  name: 'topic-overrides',
  coerce: parseJsonIfString,
  validate(value: unknown) {
    if (!isPlainObject(value)) throw new Error('must be an object mapping topics to {pattern: transport}, e.g. {"scheduler": {"cast": "broker"}}');
    for (const [topic, map] of Object.entries(value)) {
      if (!isPlainObject(map)) throw new Error(`topic "${topic}" must map patterns to transport names, e.g. {"cast": "broker"}`);
      for (const [pattern, name] of Object.entries(map)) {
        if (!(PATTERNS as readonly string[]).includes(pattern)) {
          throw new Error(`topic "${topic}": unknown pattern "${pattern}" (expected one of ${PATTERNS.join(', ')})`);
        }
        if (typeof name !== 'string') throw new Error(`topic "${topic}": pattern "${pattern}" must name a transport`);
      }
    }
  },
});

convict.addFormat({
  name: 'ms',
  coerce: (v: unknown) => (typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v),
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
      throw new Error('must be a non-negative integer number of milliseconds');
    }
  },
});

convict.addFormat({
  name: 'call-timeout',
  coerce: (v: unknown) => (typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v),
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new Error('must be a positive integer number of milliseconds (a call always has a timeout; 0 would time out at once)');
    }
  },
});

convict.addFormat({
  name: 'positive-int',
  coerce: (v: unknown) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v),
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new Error('must be a positive integer');
  },
});

convict.addFormat({
  name: 'retry',
  coerce: (v: unknown) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v),
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < -1) {
      throw new Error('must be an integer: -1 (retry forever), 0 (no retry) or a positive count');
    }
  },
});

convict.addFormat({
  name: 'name-list',
  coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v),
  validate(value: unknown) {
    if (!Array.isArray(value) || value.length === 0 || !value.every((s) => typeof s === 'string' && /^[^\s/#*]+$/.test(s))) {
      throw new Error('must be a non-empty list of topic names (comma-separated in the environment)');
    }
  },
});

convict.addFormat({
  name: 'transport-name',
  validate(value: unknown) {
    if (typeof value !== 'string' || !NAME.test(value)) throw new Error('must be the name of a transport declared under "transports"');
  },
});

convict.addFormat({
  name: 'nonempty-string',
  validate(value: unknown) {
    if (typeof value !== 'string' || value === '') throw new Error('must be a non-empty string');
  },
});

const patternKey = (p: Pattern, fallback: string): convict.SchemaObj => ({
  doc: `Transport that carries ${p === 'notify' ? 'notifications' : `RPC ${p}s`}.`,
  format: 'transport-name',
  default: fallback,
  env: `HYBRIDBUS_PATTERNS_${p.toUpperCase()}`,
});

export const schema = {
  transports: {
    doc: 'Named transports: name → URL. The scheme picks the driver (one of those imported: zmq, rabbit, amqp/amqps (AMQP 1.0, as in oslo), memory); the query string holds driver options, checked by the driver at load. Empty: one transport "default", the embedded default of the imported drivers (zmq:// with @hybridbus/zmq-direct).',
    format: 'transport-map',
    default: {} as Record<string, string>,
    env: 'HYBRIDBUS_TRANSPORTS',
  },
  patterns: {
    call: patternKey('call', 'default'),
    cast: patternKey('cast', 'default'),
    fanout: patternKey('fanout', 'default'),
    notify: patternKey('notify', 'default'),
  },
  topics: {
    doc: 'Per-topic overrides of `patterns`, e.g. {"scheduler": {"cast": "broker"}}.',
    format: 'topic-overrides',
    default: {} as Record<string, Record<string, string>>,
    env: 'HYBRIDBUS_TOPICS',
  },
  controlExchange: {
    doc: "Default exchange for targets without one (oslo's control_exchange).",
    format: 'nonempty-string',
    default: 'openstack',
    env: 'HYBRIDBUS_CONTROL_EXCHANGE',
  },
  rpc: {
    timeout: {
      doc: "Default call timeout in ms (oslo's rpc_response_timeout); at least 1.",
      format: 'call-timeout',
      default: 60_000,
      env: 'HYBRIDBUS_RPC_TIMEOUT',
    },
    callMonitorTimeout: {
      doc: 'Fail a call when the server sends no heartbeat for this many ms; 0 turns call monitoring off.',
      format: 'ms',
      default: 0,
      env: 'HYBRIDBUS_RPC_CALL_MONITOR_TIMEOUT',
    },
    maxConcurrency: {
      doc: "Requests (or notifications) a server (or listener) handles at once (oslo's executor_thread_pool_size).",
      format: 'positive-int',
      default: 64,
      env: 'HYBRIDBUS_RPC_MAX_CONCURRENCY',
    },
    accessPolicy: {
      doc: 'Which endpoint methods are callable remotely: "default" (public methods; never names starting with "_") or "explicit" (only those listed in the endpoint\'s `exposed`).',
      format: ['default', 'explicit'],
      default: 'default',
      env: 'HYBRIDBUS_RPC_ACCESS_POLICY',
    },
  },
  notifications: {
    topics: {
      doc: 'Topics a notifier sends to.',
      format: 'name-list',
      default: ['notifications'],
      env: 'HYBRIDBUS_NOTIFICATIONS_TOPICS',
    },
    retry: {
      doc: 'Connection retries when sending a notification: -1 forever, 0 none, n at most n.',
      format: 'retry',
      default: -1,
      env: 'HYBRIDBUS_NOTIFICATIONS_RETRY',
    },
  },
  log: {
    level: {
      doc: 'Log level of the default (pino) logger.',
      format: LOG_LEVELS,
      default: 'warn',
      env: 'HYBRIDBUS_LOG_LEVEL',
    },
  },
};

export type SchemaNode = Record<string, unknown>;
export const isLeaf = (n: SchemaNode): boolean => 'default' in n;

/** A markdown table of every key: the config reference in README is generated from this. */
export function configReference(): string {
  const rows: string[] = ['| key | environment | default | description |', '|---|---|---|---|'];
  const walk = (node: SchemaNode, prefix: string): void => {
    for (const [k, child] of Object.entries(node)) {
      const c = child as SchemaNode;
      const key = prefix ? `${prefix}.${k}` : k;
      if (isLeaf(c)) {
        const doc = String(c['doc']).replaceAll('|', '\\|');
        const format = Array.isArray(c['format']) ? ` One of: ${(c['format'] as string[]).map((f) => `\`${f}\``).join(', ')}.` : '';
        rows.push(`| \`${key}\` | \`${String(c['env'])}\` | \`${JSON.stringify(c['default'])}\` | ${doc}${format} |`);
      } else walk(c, key);
    }
  };
  walk(schema as unknown as SchemaNode, '');
  return rows.join('\n');
}
