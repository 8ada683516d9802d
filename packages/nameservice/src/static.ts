/**
 * StaticNameService: the hosts of each key come from configuration (a map key → ["host:port", ...]),
 * for deployments that want no registry at all. register() stores nothing; it only warns when the
 * map does not list the server, because then no client will ever find it. forget() still applies,
 * so a dead host is skipped for ttlMs and then tried again.
 */
import { ConfigError } from '@hybridbus/core';

import { BaseNameService, canonicalRecord, toHostRecord, type Registration, type SeenRecord } from './base.js';
import type { HostRecord, NameServiceOptions } from './types.js';

/** "host:port", or a full record (to give a public key or a notification pool). */
export type StaticHostEntry = string | HostRecord;
export type StaticHosts = Readonly<Record<string, readonly StaticHostEntry[]>>;

export interface StaticNameServiceOptions extends Partial<NameServiceOptions> {
  /** Where the map came from (e.g. its file), for error messages. */
  readonly source?: string | undefined;
}

const EXPECTED = 'expected a map of key → array of "host:port" strings or {"address": "host:port", "publicKey"?, "pool"?, "multicast"?, "wire"?} records';

/** Validates a configured map (parsed JSON or YAML, so untrusted in shape); throws ConfigError naming `matchmaker`. */
export function parseStaticHosts(value: unknown, source?: string): ReadonlyMap<string, readonly HostRecord[]> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError([`matchmaker: static map is ${JSON.stringify(value) ?? String(value)}; ${EXPECTED}`], source);
  }
  const problems: string[] = [];
  const hosts = new Map<string, HostRecord[]>();
  for (const [key, entries] of Object.entries(value)) {
    if (!Array.isArray(entries)) {
      problems.push(`matchmaker: static key ${JSON.stringify(key)} has ${JSON.stringify(entries)}; ${EXPECTED}`);
      continue;
    }
    const records: HostRecord[] = [];
    entries.forEach((entry: unknown, i) => {
      const r = toHostRecord(typeof entry === 'string' ? { address: entry } : entry);
      if (typeof r === 'string') problems.push(`matchmaker: static key ${JSON.stringify(key)}, entry ${i}: ${r}; ${EXPECTED}`);
      else records.push(r);
    });
    hosts.set(key, records);
  }
  if (problems.length) throw new ConfigError(problems, source);
  return hosts;
}

export class StaticNameService extends BaseNameService {
  readonly kind = 'static';
  private readonly hosts: ReadonlyMap<string, readonly SeenRecord[]>;

  constructor(hosts: StaticHosts | ReadonlyMap<string, readonly StaticHostEntry[]>, options: StaticNameServiceOptions = {}) {
    super(options);
    const parsed = parseStaticHosts(hosts instanceof Map ? Object.fromEntries(hosts) : hosts, options.source);
    // Configured records are never refreshed, so a forget() only ends by its timeout.
    this.hosts = new Map([...parsed].map(([key, records]) => [key, records.map((record) => ({ record, refreshedAt: -Infinity }))]));
  }

  protected async fetch(key: string): Promise<readonly SeenRecord[]> {
    return this.hosts.get(key) ?? [];
  }

  protected async fetchAll(): Promise<ReadonlyMap<string, readonly SeenRecord[]>> {
    return this.hosts;
  }

  protected async write(regs: readonly Registration[]): Promise<void> {
    for (const { key, record, member } of regs) {
      const listed = (this.hosts.get(key) ?? []).map((s) => s.record).filter((r) => r.address === record.address);
      if (listed.length === 0) {
        this.logger.warn(
          { key, address: record.address },
          `static matchmaker does not list ${record.address} under "${key}": no client will find this server there`,
        );
      } else if (!listed.some((r) => canonicalRecord({ ...r, wire: record.wire }) === member)) {
        this.logger.warn(
          { key, registered: record, configured: listed },
          `static matchmaker lists ${record.address} under "${key}" with a different public key or pool`,
        );
      }
    }
  }

  protected async remove(): Promise<void> {
    // nothing is stored
  }

  protected async shutdown(): Promise<void> {
    // no timers, no connections
  }
}
