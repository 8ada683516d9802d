/**
 * The name service (oslo's "matchmaker") shared by the direct (brokerless) drivers: a server
 * registers the "host:port" it listens on under its keys, a client looks a key up and connects.
 * createNameService() builds one from a spec string (zmq://'s `matchmaker` option):
 *
 *   local                          one host, no server: a registry directory in the tmp dir (default)
 *   local:/abs/dir                 the same in another (absolute, so every process finds it) directory
 *   static:{"<key>": ["host:port", ...]}    fixed hosts, inline JSON
 *   static:@/path/hosts.yaml       fixed hosts from a .json, .yaml or .yml file (relative to the cwd)
 *   redis://[[user]:password@]host[:port][/db]
 *   redis+sentinel://host[:port][,host[:port]...]/<masterName>[?password=...&sentinelPassword=...&db=N]
 *   etcd://host[:port][,host[:port]...][/prefix][?username=...&password=...]   etcd v3 (a node or a
 *                                  cluster's members; port 2379, prefix "hybridbus/ns" by default)
 *
 * Defaults (NAME_SERVICE_DEFAULTS): ttlMs 30000 (a dead server lingers at most that long, owners
 * refresh every ttlMs/3), cacheMs 5000 (a lookup asks the backend at most that often per key;
 * change events clear the cache sooner).
 */
import fs from 'node:fs';
import path from 'node:path';

import { ConfigError } from '@hybridbus/core';
import YAML from 'yaml';

import { errorMessage } from './base.js';
import { ETCD_FORM, EtcdNameService } from './etcd.js';
import { LocalNameService } from './local.js';
import { REDIS_FORM, RedisNameService, redactUrl, SENTINEL_FORM } from './redis.js';
import { parseStaticHosts, StaticNameService } from './static.js';
import type { NameService, NameServiceOptions } from './types.js';

export type { CloseOptions, HostRecord, LookupOptions, NameService, NameServiceOptions, NameServiceStats } from './types.js';
export { NAME_SERVICE_DEFAULTS } from './base.js';
export { recordsByPool } from './records.js';
export { defaultLocalDir, LocalNameService, type LocalNameServiceOptions } from './local.js';
export { StaticNameService, type StaticHostEntry, type StaticHosts, type StaticNameServiceOptions } from './static.js';
export { redactUrl, RedisNameService, type RedisNameServiceOptions } from './redis.js';
export { EtcdNameService, parseEtcdUrl, type EtcdNameServiceOptions, type EtcdSpec } from './etcd.js';

const FORMS = [
  'local',
  'local:/absolute/dir',
  'static:{"<key>": ["host:port", ...]}',
  'static:@/path/to/hosts.json|.yaml|.yml',
  REDIS_FORM,
  SENTINEL_FORM,
  ETCD_FORM,
];

function badSpec(spec: unknown, why: string): ConfigError {
  const shown = typeof spec === 'string' ? JSON.stringify(redactUrl(spec)) : String(spec);
  return new ConfigError([`matchmaker: ${shown} ${why}; expected one of: ${FORMS.join(', ')}`]);
}

/** Builds the name service a spec string names; throws ConfigError (naming `matchmaker`) for a bad spec. */
export function createNameService(spec: string, options: Partial<NameServiceOptions> = {}): NameService {
  if (typeof spec !== 'string' || spec.trim() === '') throw badSpec(spec, 'is empty');
  if (spec === 'local') return new LocalNameService(options);
  if (spec.startsWith('local:')) {
    const dir = spec.slice('local:'.length);
    if (!path.isAbsolute(dir)) throw badSpec(spec, 'needs an absolute directory (all processes must find the same one)');
    return new LocalNameService({ ...options, dir });
  }
  if (spec.startsWith('static:')) {
    const rest = spec.slice('static:'.length);
    if (rest.startsWith('@')) {
      const file = path.resolve(rest.slice(1));
      return new StaticNameService(parseStaticHosts(readStaticFile(spec, file), file), { ...options, source: file });
    }
    let map: unknown;
    try {
      map = JSON.parse(rest);
    } catch (err) {
      throw badSpec(spec, `has a static map that is not valid JSON (${errorMessage(err)})`);
    }
    return new StaticNameService(parseStaticHosts(map), options);
  }
  if (spec.startsWith('redis://') || spec.startsWith('redis+sentinel://')) return new RedisNameService(spec, options);
  if (spec.startsWith('etcd:')) return new EtcdNameService(spec, options);
  throw badSpec(spec, 'is not a name service spec');
}

/** Parsed but unchecked: StaticNameService validates the shape. */
function readStaticFile(spec: string, file: string): unknown {
  const ext = path.extname(file).toLowerCase();
  if (!['.json', '.yaml', '.yml'].includes(ext)) throw badSpec(spec, `names a file ending in "${ext || '(none)'}", not .json, .yaml or .yml`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw badSpec(spec, `names a file that cannot be read (${errorMessage(err)})`);
  }
  try {
    return ext === '.json' ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw badSpec(spec, `names a file that is not valid ${ext === '.json' ? 'JSON' : 'YAML'} (${errorMessage(err)})`);
  }
}
