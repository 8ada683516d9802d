/**
 * What every name service backend shares: record validation and canonical form, the lookup
 * cache (which keeps answering, stale, while the backend is down), forget(), change listeners,
 * stats and the close() sequence. A backend supplies fetch()/fetchAll() and the writes.
 */
import {
  ConfigError,
  defaultLogger,
  HybridbusError,
  MessageDeliveryFailure,
  TransportClosed,
  type Logger,
} from '@hybridbus/core';

import type { CloseOptions, HostRecord, LookupOptions, NameService, NameServiceOptions, NameServiceStats } from './types.js';
import { canonicalRecord, errorMessage, resolveOptions, toHostRecord, type Registration, type SeenRecord } from './records.js';

export * from './records.js';

interface CacheEntry {
  readonly records: readonly SeenRecord[];
  /** When the backend read that produced it started; 0 once a change event made it stale. */
  fetchedAt: number;
}

export abstract class BaseNameService implements NameService {
  abstract readonly kind: string;
  protected readonly ttlMs: number;
  protected readonly cacheMs: number;
  protected closed = false;
  /** key → canonical record → record: what this process registers and keeps refreshing. */
  protected readonly registrations = new Map<string, Map<string, HostRecord>>();

  private readonly givenLogger: Logger | undefined;
  private ownLogger: Logger | undefined;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<readonly SeenRecord[]>>();
  /** address → when forget() was called. */
  private readonly forgotten = new Map<string, number>();
  private readonly listeners = new Set<{ readonly fn: (key: string) => void }>();
  private backendDown = false;
  /** Why the backend is down, while it is (see `unreachable`). */
  private outage: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private counts = { lookups: 0, cacheHits: 0, backendErrors: 0 };
  /** When the backend last came back after an outage (ms epoch). */
  private recoveredAt = 0;

  constructor(options: Partial<NameServiceOptions>) {
    ({ ttlMs: this.ttlMs, cacheMs: this.cacheMs } = resolveOptions(options));
    this.givenLogger = options.logger;
  }

  /** The backend's current records of `key` (expired ones left out). */
  protected abstract fetch(key: string): Promise<readonly SeenRecord[]>;
  /** Every key with live records. */
  protected abstract fetchAll(): Promise<ReadonlyMap<string, readonly SeenRecord[]>>;
  /** Stores the registrations in the backend and tells other instances. */
  protected abstract write(regs: readonly Registration[]): Promise<void>;
  /** Removes the registrations from the backend and tells other instances. */
  protected abstract remove(regs: readonly Registration[]): Promise<void>;
  /**
   * Stops timers, watchers and connections (registrations are already dealt with). `options` are
   * close()'s, for backends whose records outlive their connection only on request (etcd's lease).
   */
  protected abstract shutdown(options: CloseOptions): Promise<void>;

  protected get logger(): Logger {
    this.ownLogger ??= (this.givenLogger ?? defaultLogger()).child({ component: 'nameservice', nameservice: this.kind });
    return this.ownLogger;
  }

  get unreachable(): string | undefined {
    return this.closed ? undefined : this.outage;
  }

  get stats(): NameServiceStats {
    let registered = 0;
    for (const members of this.registrations.values()) registered += members.size;
    return { ...this.counts, registered };
  }

  async register(keys: readonly string[], record: HostRecord): Promise<void> {
    this.assertOpen('register');
    const regs = this.registrationsOf(keys, record);
    for (const r of regs) {
      let members = this.registrations.get(r.key);
      if (!members) this.registrations.set(r.key, (members = new Map()));
      members.set(r.member, r.record);
    }
    await this.write(regs);
  }

  async unregister(keys: readonly string[], record: HostRecord): Promise<void> {
    this.assertOpen('unregister');
    const regs = this.registrationsOf(keys, record);
    for (const r of regs) {
      const members = this.registrations.get(r.key);
      members?.delete(r.member);
      if (members?.size === 0) this.registrations.delete(r.key);
    }
    await this.remove(regs);
  }

  cached(key: string, options?: LookupOptions): readonly HostRecord[] | undefined {
    const cached = this.cache.get(key);
    if (this.closed || !cached || Date.now() - cached.fetchedAt >= this.cacheMs) return undefined;
    this.counts.lookups++;
    this.counts.cacheHits++;
    return this.visible(cached.records, options?.includeForgotten);
  }

  async lookup(key: string, options?: LookupOptions): Promise<readonly HostRecord[]> {
    this.assertOpen('lookup');
    const all = options?.includeForgotten;
    const hit = this.cached(key, options);
    if (hit) return hit;
    let records: readonly SeenRecord[];
    try {
      records = await this.fetchShared(key);
    } catch (err) {
      this.noteBackendError(err, `lookup of "${key}"`);
      const stale = this.cache.get(key);
      if (!stale) {
        throw new MessageDeliveryFailure(
          `name service (${this.kind}) cannot look up "${key}" and has no cached answer: ${errorMessage(err)}`,
          { cause: err },
        );
      }
      this.counts.lookups++;
      this.counts.backendErrors++;
      return this.visible(stale.records, all);
    }
    this.counts.lookups++;
    return this.visible(records, all);
  }

  forget(address: string): void {
    this.forgotten.set(address, Date.now());
  }

  onChange(listener: (key: string) => void): () => void {
    const entry = { fn: listener };
    this.listeners.add(entry);
    return () => void this.listeners.delete(entry);
  }

  async list(): Promise<ReadonlyMap<string, readonly HostRecord[]>> {
    this.assertOpen('list');
    const all = await this.fetchAll();
    const out = new Map<string, readonly HostRecord[]>();
    for (const key of [...all.keys()].sort()) {
      const records = sortRecords(all.get(key) ?? []);
      if (records.length) out.set(key, records.map((r) => r.record));
    }
    return out;
  }

  async close(options: CloseOptions = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const regs = this.allRegistrations();
    this.registrations.clear();
    try {
      if (options.unregister !== false && regs.length) await this.remove(regs);
    } catch (err) {
      // The records expire by TTL anyway; closing must not fail because the backend is away.
      this.logger.warn({ err: errorMessage(err) }, 'name service: could not unregister on close; records will expire by TTL');
    } finally {
      this.listeners.clear();
      await this.shutdown(options);
    }
  }

  // -- for backends --------------------------------------------------------

  /** A key's records changed (here or elsewhere): drop its cached answer and tell the listeners. */
  protected changed(key: string): void {
    if (this.closed) return;
    const entry = this.cache.get(key);
    if (entry) entry.fetchedAt = 0; // stale, but still good enough to answer while the backend is down
    this.inflight.delete(key); // an answer read before the change must not be cached
    for (const { fn } of [...this.listeners]) {
      try {
        fn(key);
      } catch (err) {
        this.logger.warn({ err: errorMessage(err), key }, 'name service: onChange listener threw');
      }
    }
  }

  /** Changes may have been missed (reconnect, unknown file event): treat every key we know of as changed. */
  protected changedAll(): void {
    for (const key of this.knownKeys()) this.changed(key);
  }

  /** Every cached answer may be out of date (read before change events began): read again when next asked, no event. */
  protected staleAll(): void {
    for (const entry of this.cache.values()) entry.fetchedAt = 0;
    this.inflight.clear(); // an answer being read now is kept as stale only (see fetchShared)
  }

  /** Keys this instance has looked up or registers. */
  protected knownKeys(): Set<string> {
    return new Set([...this.cache.keys(), ...this.registrations.keys()]);
  }

  /** Every (key, record) this process registers. */
  protected allRegistrations(): Registration[] {
    const regs: Registration[] = [];
    for (const [key, members] of this.registrations) {
      for (const [member, record] of members) regs.push({ key, record, member });
    }
    return regs;
  }

  protected isRegistered(reg: Registration): boolean {
    return this.registrations.get(reg.key)?.has(reg.member) ?? false;
  }

  /** Logs the first failure of an outage (warn) instead of every one. */
  protected noteBackendError(err: unknown, what: string): void {
    if (this.backendDown) return;
    this.backendDown = true;
    this.outage = `name service (${this.kind}) unreachable (${what}: ${errorMessage(err)}); lookups answer from the cache`;
    this.logger.warn({ err: errorMessage(err) }, `name service (${this.kind}) unavailable (${what}); lookups answer from the cache meanwhile`);
  }

  protected noteBackendOk(): void {
    if (!this.backendDown) return;
    this.backendDown = false;
    this.outage = undefined;
    this.recoveredAt = Date.now();
    this.logger.info({}, `name service (${this.kind}) available again`);
  }

  /**
   * Runs backend writes one at a time, in call order, so that a refresh that started before an
   * unregister() cannot write the record back after it was removed.
   */
  protected serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Runs a removal in the write queue. It never fails: records that cannot be removed now go later
   * (by TTL, or as `later` says), so a failure only warns.
   */
  protected bestEffortRemove(run: () => Promise<unknown>, later = 'the records will expire by TTL'): Promise<void> {
    return this.serial(async () => {
      try {
        await run();
      } catch (err) {
        this.logger.warn({ err: errorMessage(err) }, `name service: could not unregister; ${later}`);
      }
    });
  }

  /** Resolves once the writes queued so far are done. */
  protected drained(): Promise<unknown> {
    return this.queue;
  }

  // -- internals -----------------------------------------------------------

  private assertOpen(op: string): void {
    if (this.closed) throw new TransportClosed(`name service (${this.kind}) is closed: cannot ${op}`);
  }

  private registrationsOf(keys: readonly string[], record: HostRecord): Registration[] {
    const checked = toHostRecord(record);
    if (typeof checked === 'string') throw new HybridbusError(`name service: invalid record: ${checked}`);
    if (!Array.isArray(keys)) throw new HybridbusError('name service: keys must be an array of strings');
    const member = canonicalRecord(checked);
    return [...new Set(keys)].map((key) => {
      if (typeof key !== 'string' || key === '') throw new HybridbusError(`name service: invalid key ${JSON.stringify(key)}`);
      return { key, record: checked, member };
    });
  }

  /** One backend read per key at a time; concurrent lookups share it. */
  private fetchShared(key: string): Promise<readonly SeenRecord[]> {
    const running = this.inflight.get(key);
    if (running) return running;
    const startedAt = Date.now();
    const p: Promise<readonly SeenRecord[]> = this.fetch(key).then(
      (fetched) => {
        this.noteBackendOk();
        const records = sortRecords(this.withUnrefreshed(key, fetched));
        this.unforgetRefreshed(records);
        // Only cache it as fresh if no change event arrived meanwhile (changed() removes it from
        // inflight); otherwise it is still the best answer for an outage, kept as stale.
        if (this.inflight.get(key) === p) {
          this.inflight.delete(key);
          this.cache.set(key, { records, fetchedAt: startedAt });
        } else if ((this.cache.get(key)?.fetchedAt ?? 0) === 0) {
          this.cache.set(key, { records, fetchedAt: 0 });
        }
        return records;
      },
      (err: unknown) => {
        if (this.inflight.get(key) === p) this.inflight.delete(key);
        throw err;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  /**
   * A backend that comes back may have lost its data (a Redis restart without persistence)
   * and gets it back as owners re-register, within a TTL. Until then, records we knew before
   * the outage still count, or every server would vanish for a moment.
   */
  private withUnrefreshed(key: string, fetched: readonly SeenRecord[]): readonly SeenRecord[] {
    const before = this.cache.get(key);
    if (!before || Date.now() - this.recoveredAt >= this.ttlMs) return fetched;
    const have = new Set(fetched.map((r) => canonicalRecord(r.record)));
    return [...fetched, ...before.records.filter((r) => !have.has(canonicalRecord(r.record)))];
  }

  private unforgetRefreshed(records: readonly SeenRecord[]): void {
    if (this.forgotten.size === 0) return;
    for (const { record, refreshedAt } of records) {
      const at = this.forgotten.get(record.address);
      if (at !== undefined && refreshedAt >= at) this.forgotten.delete(record.address);
    }
  }

  private readonly plain = new WeakMap<readonly SeenRecord[], HostRecord[]>();
  private visible(records: readonly SeenRecord[], includeForgotten = false): readonly HostRecord[] {
    if (this.forgotten.size === 0 || includeForgotten) {
      // The common case, once per send: the same answer object until the records change.
      let out = this.plain.get(records);
      if (!out) this.plain.set(records, (out = records.map((r) => r.record)));
      return out;
    }
    const now = Date.now();
    const out: HostRecord[] = [];
    for (const { record } of records) {
      const at = this.forgotten.get(record.address);
      if (at !== undefined && now - at < this.ttlMs) continue;
      if (at !== undefined) this.forgotten.delete(record.address); // forgotten long enough: try it again
      out.push(record);
    }
    return out;
  }
}

/** Stable order (round-robin over it stays fair) and one entry per distinct record. */
function sortRecords(records: readonly SeenRecord[]): SeenRecord[] {
  const byMember = new Map<string, SeenRecord>();
  for (const r of records) {
    const member = canonicalRecord(r.record);
    const prev = byMember.get(member);
    if (!prev || r.refreshedAt > prev.refreshedAt) byMember.set(member, r);
  }
  return [...byMember.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
}
