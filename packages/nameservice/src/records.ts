/**
 * Name-service records: validation, the canonical form backends store, options and defaults;
 * shared by every backend (base.ts and the backends).
 */
import { ConfigError } from '@hybridbus/core';
import type { HostRecord, NameServiceOptions } from './types.js';

/** Defaults: a dead server's records linger at most 30 s; a lookup hits the backend at most every 5 s per key. */
export const NAME_SERVICE_DEFAULTS = { ttlMs: 30_000, cacheMs: 5_000 } as const satisfies NameServiceOptions;

/** A record as a backend returned it, with when its owner last (re)registered or refreshed it (ms epoch). */
export interface SeenRecord {
  readonly record: HostRecord;
  readonly refreshedAt: number;
}

/** One (key, record) pair this process registers; `member` is the record's canonical JSON. */
export interface Registration {
  readonly key: string;
  readonly record: HostRecord;
  readonly member: string;
}

// host:port, host being a name, an IPv4 address or a bracketed IPv6 address.
const ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[^\s:/@[\]]+):(\d{1,5})$/;

/** Why `address` is not a usable "host:port", or undefined if it is. */
export function addressProblem(address: unknown): string | undefined {
  if (typeof address !== 'string') return `address must be a "host:port" string, got ${JSON.stringify(address) ?? String(address)}`;
  const m = ADDRESS.exec(address);
  const port = m ? Number(m[1]) : 0;
  if (!m || port < 1 || port > 65535) return `address ${JSON.stringify(address)} is not "host:port" (port 1-65535)`;
  return undefined;
}

/** Validates and copies a record (dropping unknown fields); returns a problem string instead if it is invalid. */
export function toHostRecord(value: unknown): HostRecord | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `a record must be an object like {"address": "host:port"}, got ${JSON.stringify(value)}`;
  }
  const v = value as Record<string, unknown>;
  const problem = addressProblem(v['address']);
  if (problem) return problem;
  for (const field of ['publicKey', 'pool', 'multicast'] as const) {
    if (v[field] !== undefined && typeof v[field] !== 'string') return `${field} must be a string, got ${JSON.stringify(v[field])}`;
  }
  const wire = v['wire'];
  if (wire !== undefined && !(Number.isSafeInteger(wire) && (wire as number) > 0)) return `wire must be a positive integer, got ${JSON.stringify(wire)}`;
  const record: { address: string; publicKey?: string; pool?: string; multicast?: string; wire?: number } = { address: v['address'] as string };
  if (v['publicKey'] !== undefined) record.publicKey = v['publicKey'] as string;
  if (v['pool'] !== undefined) record.pool = v['pool'] as string;
  if (v['multicast'] !== undefined) record.multicast = v['multicast'] as string;
  if (wire !== undefined) record.wire = wire as number;
  return Object.freeze(record);
}

/** The record as JSON with a fixed field order and no undefined fields: equal records give equal strings. */
export function canonicalRecord(record: HostRecord): string {
  // Fields added later go last and only when set: records without them keep their earlier canonical form.
  return JSON.stringify({ address: record.address, pool: record.pool, publicKey: record.publicKey, multicast: record.multicast, wire: record.wire });
}

/** Parses a canonical record read back from a backend; undefined if it is not one. */
export function parseRecord(json: string): HostRecord | undefined {
  try {
    const r = toHostRecord(JSON.parse(json));
    return typeof r === 'string' ? undefined : r;
  } catch {
    return undefined;
  }
}

/** Checks ttlMs/cacheMs; the problems name the `matchmaker` option they belong to. */
export function resolveOptions(options: Partial<NameServiceOptions>): { ttlMs: number; cacheMs: number } {
  const ttlMs = options.ttlMs ?? NAME_SERVICE_DEFAULTS.ttlMs;
  const cacheMs = options.cacheMs ?? NAME_SERVICE_DEFAULTS.cacheMs;
  const problems: string[] = [];
  if (!Number.isFinite(ttlMs) || ttlMs < 30) problems.push(`matchmaker ttlMs: ${ttlMs} is not valid; expected milliseconds >= 30`);
  if (!Number.isFinite(cacheMs) || cacheMs < 0) problems.push(`matchmaker cacheMs: ${cacheMs} is not valid; expected milliseconds >= 0`);
  if (problems.length) throw new ConfigError(problems);
  return { ttlMs, cacheMs };
}

export const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The records of a lookup answer by notification pool, in the answer's order (a record without
 * a pool is in pool ""): what a notifier sends one copy to each of.
 */
export function recordsByPool(records: readonly HostRecord[]): Map<string, HostRecord[]> {
  const pools = new Map<string, HostRecord[]>();
  for (const r of records) {
    const pool = r.pool ?? '';
    const members = pools.get(pool);
    if (members) members.push(r);
    else pools.set(pool, [r]);
  }
  return pools;
}
