/**
 * Loading the bus configuration: defaults < a JSON/YAML file < HYBRIDBUS_* environment
 * variables < explicit overrides. Every invalid input fails at load with the key, the bad value
 * and the expected form (the schema and its formats are config/schema.ts).
 */
import convict from 'convict';
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import YAML from 'yaml';
import { defaultTransportUrl, PATTERNS } from '../driver.js';
import { ConfigError } from '../errors.js';
import { checkTransportUrl, isLeaf, isPlainObject, schema, type ConfigInput, type HybridbusConfig, type SchemaNode } from './schema.js';

/**
 * HYBRIDBUS_* variables that are not configuration: the project's tools read them, and the
 * loader accepts them (any other HYBRIDBUS_* variable that is not a config key's is rejected, so
 * a misspelt one does not pass unnoticed). Documented under these names in README.
 */
export const NON_CONFIG_VARIABLES: Readonly<Record<string, string>> = {
  HYBRIDBUS_BENCH_RABBIT_URL: '`hybridbus bench`: the RabbitMQ of the default config (--rabbit-url)',
  HYBRIDBUS_TEST_KEEP_DATA: "the test launcher (test/src/harness): keep the servers' data directories after they stop",
};

/** Keys present in `input` but absent from the schema. */
function unknownKeys(input: unknown, node: SchemaNode, prefix = ''): string[] {
  if (!isPlainObject(input)) return [];
  const problems: string[] = [];
  for (const [k, v] of Object.entries(input)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const child = node[k];
    if (!isPlainObject(child)) {
      problems.push(`${key}: unknown key (value ${JSON.stringify(v)}); expected one of: ${Object.keys(node).map((c) => (prefix ? `${prefix}.${c}` : c)).join(', ')}`);
    } else if (!isLeaf(child)) {
      problems.push(...unknownKeys(v, child, key));
    }
  }
  return problems;
}

function flatten(input: Record<string, unknown>, node: SchemaNode, prefix = ''): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  for (const [k, v] of Object.entries(input)) {
    const child = node[k] as SchemaNode;
    const key = prefix ? `${prefix}.${k}` : k;
    if (isLeaf(child) || !isPlainObject(v)) out.push([key, v]);
    else out.push(...flatten(v, child, key));
  }
  return out;
}

/**
 * convict says "key: problem: value was X" (but leaves out falsy values); one problem a line,
 * each ending with where its value was set (`origin`), so that the fix is clear.
 */
function convictProblems(e: unknown, valueOf: (key: string) => unknown, origin: (key: string) => string): string[] {
  return String((e as Error).message)
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const key = /^([\w.]+): /.exec(line)?.[1];
      if (key === undefined) return line;
      return `${line.includes('value was') ? line : `${line}: value was ${JSON.stringify(valueOf(key))}`}${origin(key)}`;
    });
}

/** Every transport URL checked on its own: a problem names the transport and shows only its URL. */
function transportProblems(transports: unknown, origin: string): string[] {
  if (!isPlainObject(transports)) return [];
  const problems: string[] = [];
  for (const [name, url] of Object.entries(transports)) {
    try {
      checkTransportUrl(url);
    } catch (e) {
      problems.push(`transports.${name}: ${(e as Error).message}: value was ${JSON.stringify(url)}${origin}`);
    }
  }
  return problems;
}

/** Cross-key rule: every pattern (and topic override) names a declared transport. */
function referenceProblems(cfg: HybridbusConfig): string[] {
  const declared = Object.keys(cfg.transports);
  const expect = `expected one of the declared transports: ${declared.join(', ')}`;
  const problems: string[] = [];
  for (const p of PATTERNS) {
    if (!declared.includes(cfg.patterns[p])) {
      problems.push(`patterns.${p}: "${cfg.patterns[p]}" is not a declared transport; ${expect}`);
    }
  }
  for (const [topic, map] of Object.entries(cfg.topics)) {
    for (const [p, name] of Object.entries(map)) {
      if (!declared.includes(name)) problems.push(`topics.${topic}.${p}: "${name}" is not a declared transport; ${expect}`);
    }
  }
  return problems;
}

export interface LoadConfigOptions {
  /** A JSON or YAML file (by extension: .json, .yml, .yaml). */
  readonly file?: string | undefined;
  /** Defaults to process.env; only HYBRIDBUS_* variables are read. */
  readonly env?: NodeJS.ProcessEnv | undefined;
  /** Applied last, over the file and the environment. */
  readonly overrides?: ConfigInput | undefined;
}

function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError([`cannot read config file: ${(e as Error).message}`], file);
  }
  const ext = extname(file).toLowerCase();
  if (!['.json', '.yml', '.yaml'].includes(ext)) {
    throw new ConfigError([`config file must end in .json, .yml or .yaml, got "${ext || '(none)'}"`], file);
  }
  try {
    return ext === '.json' ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw new ConfigError([`cannot parse ${ext === '.json' ? 'JSON' : 'YAML'}: ${(e as Error).message}`], file);
  }
}

/** Load, validate and freeze the configuration. Throws ConfigError. */
export function loadConfig(options: LoadConfigOptions = {}): HybridbusConfig {
  const source = options.file ?? 'defaults, environment and overrides';
  const fileData = options.file !== undefined ? readConfigFile(options.file) : undefined;
  if (fileData !== undefined && fileData !== null && !isPlainObject(fileData)) {
    throw new ConfigError(['the top level must be a mapping of keys to values'], source);
  }
  const unknown = [...unknownKeys(fileData, schema), ...unknownKeys(options.overrides, schema)];
  if (unknown.length) throw new ConfigError(unknown, source);

  // Layers are applied by hand with set(): convict's load() cannot merge into object-valued keys.
  const layers: Array<[ConfigSource, Array<[string, unknown]>]> = [
    ['file', isPlainObject(fileData) ? flatten(fileData, schema) : []],
    ['env', envLeaves(options.env ?? process.env)],
    ['override', flatten((options.overrides ?? {}) as Record<string, unknown>, schema)],
  ];
  const sources = new Map<string, ConfigSource>();
  // Where a key's value was set, named so that the fix is clear: the variable or the file.
  const origin = (key: string): string => {
    const layer = sources.get(key);
    if (layer === 'env') return ` (set by ${envNameOf(key)})`;
    if (layer === 'file') return ` (set in ${options.file})`;
    return '';
  };
  let conf: convict.Config<unknown> | undefined;
  const problems: string[] = [];
  try {
    conf = convict(schema as convict.Schema<unknown>, { env: {}, args: [] });
    for (const [layer, leaves] of layers) {
      for (const [key, value] of leaves) {
        conf.set(key as never, value as never);
        sources.set(key, layer);
      }
    }
    conf.validate({ allowed: 'strict' });
  } catch (e) {
    problems.push(...convictProblems(e, (key) => (conf?.has(key as never) ? conf.get(key as never) : undefined), origin));
  }
  if (conf) problems.push(...transportProblems(conf.get('transports' as never), origin('transports')));
  if (problems.length || !conf) throw new ConfigError(problems, source);
  const cfg = conf.getProperties() as unknown as HybridbusConfig;
  if (Object.keys(cfg.transports).length === 0) {
    const url = defaultTransportUrl();
    if (url === undefined) {
      throw new ConfigError(['transports: none configured, and no imported driver offers an embedded default; configure transports or import "@hybridbus/zmq-direct"'], source);
    }
    (cfg as { transports: Record<string, string> }).transports = { default: url };
  }
  const refs = referenceProblems(cfg);
  if (refs.length) throw new ConfigError(refs, source);
  deepFreeze(cfg);
  configSources.set(cfg, sources);
  return cfg;
}

export type ConfigSource = 'default' | 'file' | 'env' | 'override';
const configSources = new WeakMap<HybridbusConfig, ReadonlyMap<string, ConfigSource>>();

/** Where a loaded config's value for `key` (e.g. "rpc.timeout") came from. */
export function configSource(cfg: HybridbusConfig, key: string): ConfigSource {
  return configSources.get(cfg)?.get(key) ?? 'default';
}

/** Config key → its HYBRIDBUS_* variable, from the schema. */
const ENV_OF: ReadonlyMap<string, string> = (() => {
  const out = new Map<string, string>();
  const walk = (node: SchemaNode, prefix: string): void => {
    for (const [k, child] of Object.entries(node)) {
      const c = child as SchemaNode;
      const key = prefix ? `${prefix}.${k}` : k;
      if (isLeaf(c)) out.set(key, String(c['env']));
      else walk(c, key);
    }
  };
  walk(schema as unknown as SchemaNode, '');
  return out;
})();

const envNameOf = (key: string): string => ENV_OF.get(key) ?? key;

/** HYBRIDBUS_* variables named in the schema, as [key, raw string] leaves. */
function envLeaves(env: NodeJS.ProcessEnv): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  for (const [key, name] of ENV_OF) if (env[name] !== undefined) out.push([key, env[name]]);
  const known = [...ENV_OF.values()];
  // A misspelt variable would otherwise be ignored without a word.
  const unknown = Object.keys(env).filter((k) => k.startsWith('HYBRIDBUS_') && !known.includes(k) && !Object.hasOwn(NON_CONFIG_VARIABLES, k));
  if (unknown.length) {
    const others = Object.keys(NON_CONFIG_VARIABLES).join(', ');
    throw new ConfigError(unknown.map((k) => `${k}: unknown environment variable (value ${JSON.stringify(env[k])}); expected one of: ${known.join(', ')} (or, read by hybridbus's tools and not config: ${others})`), 'environment');
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

