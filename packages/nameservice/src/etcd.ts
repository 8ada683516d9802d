/**
 * EtcdNameService: a registry shared by many hosts, in etcd (v3 API, one node or a cluster).
 *
 * Client: the `etcd3` npm package (gRPC, the v3 API etcd's own clients use). It gives leases with
 * their keep-alive stream, prefix watches that resume after a reconnect, and fails over between
 * the members it is given; cockatiel (its fault-handling library) is used, as its documentation
 * shows, to fail fast while etcd is away so that lookups fall back to the cache at once.
 *
 * Layout: one etcd key per (name service key, record, registering process):
 * `<prefix><encodeURIComponent(key)>/<instance>/<encodeURIComponent(record)>`, its value the record's
 * JSON plus `registeredAt` (ms epoch). Every key of a process is attached to that process's lease,
 * whose TTL is ttlMs rounded up to whole seconds (etcd's unit); the library keeps it alive, so a
 * process that dies takes its records with it within a TTL, one record at a time, and two processes
 * registering the same record each keep their own copy. A lease etcd lost (expired while the
 * process could not reach it, or etcd came back without it) is granted again and every record put
 * again. unregister() deletes; close() revokes the lease, or with `unregister: false` stops keeping
 * it alive so the records expire as if the process had crashed.
 *
 * Change events: a watch on the prefix, made on first need (a lookup, list, onChange or ready(); a
 * process that only registers never watches), turns every put/delete (lease expiry included) into
 * cache invalidation and onChange; after the watch reconnects every known key counts as changed.
 * Outages: reads have a short deadline and fail fast, lookups then answer from the (stale) cache;
 * writes wait as long as etcd itself would before it gives up on them (writeTimeoutMs).
 */
import { randomBytes } from 'node:crypto';

import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry, type IBackoff } from 'cockatiel';
import { Etcd3, isRecoverableError, type IOptions, type Lease, type Watcher } from 'etcd3';

import { ConfigError, maskUrl, MessageDeliveryFailure } from '@hybridbus/core';

import { BaseNameService, errorMessage, toHostRecord, type Registration, type SeenRecord } from './base.js';
import type { CloseOptions, NameServiceOptions } from './types.js';

export const ETCD_FORM = 'etcd://host[:port][,host[:port]...][/prefix][?username=...&password=...]';
const DEFAULT_PORT = 2379;
const DEFAULT_PREFIX = 'hybridbus/ns/';

export interface EtcdNameServiceOptions extends Partial<NameServiceOptions> {
  /** Bound on each etcd read (and on connecting), ms (default 2000): a lookup then answers from the cache. */
  readonly commandTimeoutMs?: number | undefined;
  /**
   * Bound on each etcd write (put, delete, lease grant and revoke), ms. With one member, default
   * 7000 (etcd's own request timeout with its default election timeout): a write etcd has not
   * answered may still land, and one abandoned sooner is repeated on top of it, which under load
   * doubles the work etcd is behind on (benchmarks/zmq-findings.md, "Scale"). With several, default
   * commandTimeoutMs: a write to a member that is gone fails over to the next one sooner.
   */
  readonly writeTimeoutMs?: number | undefined;
}

const WRITES: ReadonlySet<string> = new Set(['KV.put', 'KV.deleteRange', 'KV.txn', 'Lease.leaseGrant', 'Lease.leaseRevoke']);

export interface EtcdSpec {
  /** "http://host:port" of each member. */
  readonly hosts: readonly string[];
  /** Every key lives under it; ends in "/". */
  readonly prefix: string;
  readonly auth?: { readonly username: string; readonly password: string } | undefined;
}

/** Parses an etcd:// spec; throws ConfigError naming `matchmaker` (with the password masked). */
export function parseEtcdUrl(url: string): EtcdSpec {
  const bad = (why: string): never => {
    throw new ConfigError([`matchmaker: ${JSON.stringify(maskUrl(url))} ${why}; expected ${ETCD_FORM}`]);
  };
  const m = /^etcd:\/\/([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/.exec(url);
  if (!m) return bad(url.startsWith('etcd://') ? 'has a fragment' : 'is not an etcd:// URL');
  if (m[1] === '') bad('has no host');
  if (m[1]!.includes('@')) bad('has credentials before the host (give them as ?username=...&password=...)');
  const hosts = m[1]!.split(',').map((hostPort) => {
    const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(hostPort);
    const port = hp?.[2] === undefined ? DEFAULT_PORT : Number(hp[2]);
    if (!hp || port < 1 || port > 65535) return bad(`has member address ${JSON.stringify(hostPort)}, not host[:port]`);
    return `http://${hp[1]}:${port}`;
  });
  let prefix = DEFAULT_PREFIX;
  const path = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (path !== '') {
    try {
      prefix = `${decodeURIComponent(path)}/`;
    } catch {
      bad(`has prefix ${JSON.stringify(path)}, not valid percent-encoding`);
    }
  }
  const query = new URLSearchParams(m[3] ?? '');
  for (const k of query.keys()) if (k !== 'username' && k !== 'password') bad(`has unknown parameter "${k}"`);
  const username = query.get('username');
  const password = query.get('password');
  if ((username === null) !== (password === null)) bad('needs both username and password, or neither');
  return { hosts, prefix, auth: username !== null && password !== null ? { username, password } : undefined };
}

/** An etcd3 client: reads bounded by commandTimeoutMs, writes by writeTimeoutMs. */
function newClient(spec: EtcdSpec, commandTimeoutMs: number, writeTimeoutMs: number): Etcd3 {
  const etcdOptions: IOptions = {
    hosts: [...spec.hosts],
    dialTimeout: commandTimeoutMs,
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: Date.now() + (WRITES.has(`${ctx.service}.${ctx.method}`) ? writeTimeoutMs : commandTimeoutMs) },
    faultHandling: {
      // Try each member once per call, and skip a failing member briefly rather than for 5 s.
      global: retry(handleWhen(isRecoverableError), { maxAttempts: spec.hosts.length }),
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
      // As etcd3's documentation (and its default) has it; its declared type is the backoff's step, not its factory.
      watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }) as unknown as IBackoff<unknown>,
    },
  };
  if (spec.auth) etcdOptions.auth = { ...spec.auth };
  return new Etcd3(etcdOptions);
}

export class EtcdNameService extends BaseNameService {
  readonly kind = 'etcd';
  /** The URL without passwords. */
  readonly url: string;
  private readonly client: Etcd3;
  private readonly prefix: string;
  /** This process's part of its keys: a process's copy of a record is its own. */
  private readonly instance = randomBytes(8).toString('hex');
  private readonly leaseTtlSeconds: number;
  /** The prefix watch, made on first need (see watch()). */
  private watcher: Watcher | undefined;
  private watching: Promise<void> | undefined;
  private lease: Lease | undefined;
  private regrantTimer: NodeJS.Timeout | undefined;
  /** Some put failed: put everything again once etcd answers. */
  private unwritten = false;
  /** etcd keys unregistered while etcd did not answer: deleted once it does. */
  private readonly undeleted = new Set<string>();
  private watchDisconnected = false;

  constructor(url: string, options: EtcdNameServiceOptions = {}) {
    super(options);
    this.url = maskUrl(url);
    const spec = parseEtcdUrl(url);
    this.prefix = spec.prefix;
    this.leaseTtlSeconds = Math.max(1, Math.ceil(this.ttlMs / 1000));
    const commandTimeoutMs = options.commandTimeoutMs ?? 2000;
    this.client = newClient(spec, commandTimeoutMs, options.writeTimeoutMs ?? (spec.hosts.length > 1 ? commandTimeoutMs : 7000));
  }

  /** Resolves once the watch is established (so no later change is missed). */
  async ready(): Promise<void> {
    await this.watch();
  }

  override onChange(listener: (key: string) => void): () => void {
    void this.watch();
    return super.onChange(listener);
  }

  /**
   * Watches the prefix, once, on first need (a lookup, list, onChange or ready()): a process that
   * only registers, as a server does, never watches. Otherwise every registration is sent to every
   * server of the fleet: N² events at start-up, which at 1,000 servers kept the server processes
   * too busy to meet their etcd deadlines (benchmarks/zmq-findings.md, "Scale").
   */
  private watch(fromRevision?: string): Promise<void> {
    if (this.watching) return this.watching;
    if (this.closed) return Promise.resolve(); // its client is closed: nothing to watch with
    // create() resolves only once etcd acknowledges the watch and gives no handle to cancel it
    // before: a name service closed while etcd was never reached would leave the library retrying
    // (and the process running) for ever. watcher() is create() without that wait (its doc comment).
    const builder = this.client.watch().prefix(this.prefix);
    const watcher = (fromRevision === undefined ? builder : builder.startRevision(fromRevision)).watcher();
    this.watcher = watcher;
    this.watching = new Promise<void>((resolve) => {
      watcher.once('connected', () => resolve());
      watcher.once('error', () => resolve());
    });
    const onEvent = (kv: { key: Buffer }): void => {
      const key = this.keyOf(kv.key.toString());
      if (key !== undefined) this.changed(key);
    };
    watcher.on('put', onEvent);
    watcher.on('delete', onEvent);
    // A dropped watch stream is not an outage by itself (with several members it moves to another):
    // the calls that fail (lookups, puts, a lost lease) say when etcd is really away.
    watcher.on('disconnected', (err) => {
      this.watchDisconnected = true;
      if (!this.closed) this.logger.debug({ err: errorMessage(err) }, 'name service: etcd watch disconnected; reconnecting');
    });
    let first = true;
    watcher.on('connected', () => {
      const wasDown = this.watchDisconnected;
      this.watchDisconnected = false;
      if (wasDown) this.reconnected();
      // An answer read concurrently with the first, but served before it, may have missed a change.
      else if (first) this.staleAll();
      first = false;
    });
    watcher.on('error', (err) => {
      if (!this.closed) this.logger.warn({ err: errorMessage(err) }, 'name service: etcd watch failed; changes are seen by cache expiry only');
    });
    return this.watching;
  }

  protected async fetch(key: string): Promise<readonly SeenRecord[]> {
    const kvs = await this.read(this.keyPrefix(key));
    return [...kvs.values()].flatMap((value) => this.toSeen(value));
  }

  protected async fetchAll(): Promise<ReadonlyMap<string, readonly SeenRecord[]>> {
    const kvs = await this.read(this.prefix);
    const all = new Map<string, SeenRecord[]>();
    for (const [etcdKey, value] of kvs) {
      const key = this.keyOf(etcdKey);
      if (key === undefined) continue;
      let records = all.get(key);
      if (!records) all.set(key, (records = []));
      records.push(...this.toSeen(value));
    }
    return all;
  }

  protected write(regs: readonly Registration[]): Promise<void> {
    return this.serial(async () => {
      try {
        await this.put(regs);
      } catch (err) {
        this.unwritten = true;
        throw new MessageDeliveryFailure(
          `name service (etcd) could not register ${regs[0]?.record.address} at ${this.url}: ${errorMessage(err)} ` +
            '(it stays registered here and is written as soon as etcd answers)',
          { cause: err },
        );
      }
    });
  }

  protected remove(regs: readonly Registration[]): Promise<void> {
    // Our live lease would keep a record that failed to go for ever: it is deleted once etcd answers.
    for (const r of regs) this.undeleted.add(this.recordKey(r));
    return this.bestEffortRemove(async () => {
      try {
        await this.deleteUndeleted();
      } catch (err) {
        this.scheduleRewrite();
        throw err;
      }
    }, 'they are deleted as soon as etcd answers (or go with the lease)');
  }

  protected async shutdown(options: CloseOptions): Promise<void> {
    clearTimeout(this.regrantTimer);
    await this.drained();
    const lease = this.lease;
    this.lease = undefined;
    if (lease && options.unregister === false) lease.release(); // the records expire by TTL
    else if (lease) await lease.revoke().catch(() => undefined); // already gone, or expires by TTL
    // Not awaited: cancelling an established watch waits for etcd's answer, which may never come.
    this.watcher?.cancel().catch(() => undefined);
    this.client.close();
  }

  // -- internals -----------------------------------------------------------

  /**
   * The keys under `prefix` and their values. The first read starts the watch from just after its
   * revision, so no change after it is missed however late the watch connects; not awaited: a
   * lookup must not wait on the watch (it fails fast while etcd is away).
   */
  private async read(prefix: string): Promise<Map<string, string>> {
    const res = await this.client.getAll().prefix(prefix).exec();
    void this.watch(String(BigInt(res.header.revision) + 1n));
    return new Map(res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
  }

  private keyPrefix(key: string): string {
    return `${this.prefix}${encodeURIComponent(key)}/`;
  }

  private recordKey(r: Registration): string {
    return `${this.keyPrefix(r.key)}${this.instance}/${encodeURIComponent(r.member)}`;
  }

  /** The name service key an etcd key under the prefix belongs to. */
  private keyOf(etcdKey: string): string | undefined {
    if (!etcdKey.startsWith(this.prefix)) return undefined;
    const encoded = etcdKey.slice(this.prefix.length).split('/', 1)[0]!;
    try {
      return decodeURIComponent(encoded);
    } catch {
      return undefined;
    }
  }

  private toSeen(value: string): SeenRecord[] {
    try {
      const parsed = JSON.parse(value) as { registeredAt?: unknown };
      const record = toHostRecord(parsed);
      if (typeof record === 'string') return [];
      return [{ record, refreshedAt: typeof parsed.registeredAt === 'number' ? parsed.registeredAt : 0 }];
    } catch {
      return [];
    }
  }

  /** This process's lease, granted (again) on first use. */
  private currentLease(): Lease {
    if (this.lease) return this.lease;
    const lease = this.client.lease(this.leaseTtlSeconds);
    this.lease = lease;
    lease.on('lost', (err) => {
      if (this.closed || this.lease !== lease) return;
      this.lease = undefined;
      // Not an outage by itself (etcd may have answered "no such lease"); failing puts report one.
      this.logger.warn({ err: errorMessage(err) }, 'name service: etcd lease lost (expired or revoked); granting a new one and registering again');
      this.scheduleRewrite();
    });
    lease.on('keepaliveSucceeded', () => {
      this.noteBackendOk();
      if (this.unwritten || this.undeleted.size) this.scheduleRewrite(0);
    });
    // keepaliveFailed is left alone: the library retries (on another member if there is one); 'lost' is the outage.
    return lease;
  }

  /**
   * etcd answers again: events may have been missed (the watch resumes where it stopped, but not
   * across a compaction), puts may have failed meanwhile, and etcd may have come back without our
   * lease (restored from an old snapshot, or replaced): find out now rather than at the next keep-alive.
   */
  private reconnected(): void {
    this.noteBackendOk();
    this.changedAll();
    const lease = this.lease;
    if (!lease) {
      if (this.undeleted.size) this.scheduleRewrite(0);
      return;
    }
    lease.keepaliveOnce().then(
      (res) => {
        if (this.lease !== lease) return;
        if (Number(res.TTL) <= 0) {
          this.lease = undefined;
          lease.release();
          this.scheduleRewrite(0);
        } else if (this.unwritten || this.undeleted.size) {
          this.scheduleRewrite(0);
        }
      },
      () => {
        if (this.unwritten || this.undeleted.size) this.scheduleRewrite(); // tried again until it works
      },
    );
  }

  /** Puts the registrations under the lease (a new one if it was lost), all or none. */
  private async put(regs: readonly Registration[]): Promise<void> {
    const lease = this.currentLease();
    const registeredAt = Date.now();
    for (const r of regs) this.undeleted.delete(this.recordKey(r)); // registered again: not to be deleted
    await Promise.all(regs.map((r) => lease.put(this.recordKey(r)).value(JSON.stringify({ ...r.record, registeredAt }))));
  }

  /** Deletes the keys unregistered while etcd did not answer. */
  private async deleteUndeleted(): Promise<void> {
    const keys = [...this.undeleted];
    await Promise.all(keys.map((k) => this.client.delete().key(k).exec()));
    for (const k of keys) this.undeleted.delete(k);
  }

  /**
   * Soon catches etcd up with this process (after a lost lease, a failed put or a failed delete):
   * deletes what was unregistered, puts every registration again if needed; retries until it works.
   */
  private scheduleRewrite(delayMs = Math.min(500, Math.floor(this.ttlMs / 3))): void {
    if (this.closed || this.regrantTimer) return;
    this.regrantTimer = setTimeout(() => {
      this.regrantTimer = undefined;
      void this.serial(async () => {
        if (this.closed) return;
        const regs = this.allRegistrations();
        try {
          if (this.undeleted.size) await this.deleteUndeleted();
          if (regs.length && (this.unwritten || !this.lease)) await this.put(regs);
          this.unwritten = false;
          this.noteBackendOk();
        } catch (err) {
          if (regs.length) this.unwritten = true;
          this.noteBackendError(err, 'catching up after an outage');
          this.scheduleRewrite();
        }
      });
    }, delayMs);
    this.regrantTimer.unref();
  }
}
