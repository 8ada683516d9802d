/**
 * RedisNameService: a registry shared by many hosts, in Redis (plain or behind Sentinel).
 *
 * Layout: one sorted set per key, `hb:ns:<key>`; member = the record's canonical JSON, score = its
 * expiry (ms epoch), so records expire one by one (a per-set TTL would keep a dead server alive as
 * long as any other server on the key refreshes). `hb:ns-keys` is the set of keys, for list().
 * Owners re-ZADD every ttl/3; readers prune expired members (ZREMRANGEBYSCORE) as they read.
 * Every register/unregister (and a prune or refresh that changed a set) PUBLISHes the key on
 * `hb:ns:changes`; a second, subscriber connection turns that into cache invalidation and onChange.
 *
 * Outages: commands fail fast while disconnected (no offline queue, a command timeout), lookups
 * then answer from the (stale) cache, and on reconnect this process re-registers its records at once
 * (Redis may have come back empty) and treats every known key as changed (events were missed).
 * Scores use each host's clock: hosts are assumed to be NTP-synced to well within the TTL.
 */
import { Redis, type RedisOptions } from 'ioredis';

import { ConfigError, maskUrl, MessageDeliveryFailure } from '@hybridbus/core';

import { BaseNameService, errorMessage, parseRecord, type Registration, type SeenRecord } from './base.js';
import type { NameServiceOptions } from './types.js';

export interface RedisNameServiceOptions extends Partial<NameServiceOptions> {
  /** How long register()/lookup() wait for the very first connection, ms (default 5000). */
  readonly connectTimeoutMs?: number | undefined;
  /** Bound on each Redis command, ms (default 2000). */
  readonly commandTimeoutMs?: number | undefined;
}

const KEY_PREFIX = 'hb:ns:';
const KEY_INDEX = 'hb:ns-keys'; // not under KEY_PREFIX, so no name service key can collide with it
export const REDIS_CHANGES_CHANNEL = 'hb:ns:changes';

// Prune and read one key atomically; a key left without members leaves the index in the same step,
// so it cannot race with a register (which adds member and index entry in one MULTI).
// KEYS: the sorted set, the index; ARGV: now (ms), the key. Returns {pruned, {member, score, ...}}.
const READ_SCRIPT = `
local pruned = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return {pruned, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')}
`;

export const REDIS_FORM = 'redis://[[user]:<password>@]host[:port][/db]';
export const SENTINEL_FORM = 'redis+sentinel://host[:port][,host[:port]...]/<masterName>[?password=...&sentinelPassword=...&db=N]';

/** The URL with passwords replaced by "***", for logs and error messages: core's one rule (maskUrl). */
export function redactUrl(url: string): string {
  return maskUrl(url);
}

/** ioredis options for a redis:// or redis+sentinel:// URL; throws ConfigError naming `matchmaker`. */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const bad = (why: string, form: string): never => {
    throw new ConfigError([`matchmaker: ${JSON.stringify(redactUrl(url))} ${why}; expected ${form}`]);
  };
  const parseDb = (db: string | null | undefined, form: string): number | undefined => {
    if (db === null || db === undefined || db === '') return undefined;
    if (!/^\d{1,5}$/.test(db)) bad(`has database ${JSON.stringify(db)}, not a number`, form);
    return Number(db);
  };

  if (url.startsWith('redis+sentinel:')) {
    const m = /^redis\+sentinel:\/\/([^/?#]+)\/([^/?#]+)\/?(?:\?([^#]*))?$/.exec(url);
    if (!m) return bad('is not a Sentinel URL', SENTINEL_FORM);
    const sentinels = m[1]!.split(',').map((hostPort) => {
      const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(hostPort);
      if (!hp) return bad(`has sentinel address ${JSON.stringify(hostPort)}, not host[:port]`, SENTINEL_FORM);
      return { host: hp[1]!.replace(/^\[(.*)\]$/, '$1'), port: hp[2] === undefined ? 26379 : Number(hp[2]) };
    });
    const query = new URLSearchParams(m[3] ?? '');
    for (const k of query.keys()) {
      if (!['password', 'sentinelPassword', 'db'].includes(k)) bad(`has unknown parameter "${k}"`, SENTINEL_FORM);
    }
    const options: RedisOptions = { sentinels, name: decodeURIComponent(m[2]!) };
    const password = query.get('password');
    const sentinelPassword = query.get('sentinelPassword');
    const db = parseDb(query.get('db'), SENTINEL_FORM);
    if (password) options.password = password;
    if (sentinelPassword) options.sentinelPassword = sentinelPassword;
    if (db !== undefined) options.db = db;
    return options;
  }

  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return bad('is not a URL', REDIS_FORM);
  }
  if (parsed.protocol !== 'redis:') bad(`has scheme "${parsed.protocol}"`, REDIS_FORM);
  if (!parsed.hostname) bad('has no host', REDIS_FORM);
  if (parsed.search || parsed.hash) bad('has a query or fragment', REDIS_FORM);
  const options: RedisOptions = {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port ? Number(parsed.port) : 6379,
  };
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  const db = parseDb(parsed.pathname.replace(/^\//, ''), REDIS_FORM);
  if (db !== undefined) options.db = db;
  return options;
}

export class RedisNameService extends BaseNameService {
  readonly kind = 'redis';
  /** The URL without passwords. */
  readonly url: string;
  private readonly main: Redis;
  /**
   * The subscriber connection, made on first need (a lookup, list, onChange or ready()): a
   * process that only registers, as a server does, never subscribes. Otherwise every
   * registration is published to every server of the fleet: N² messages at start-up and twice
   * the connections (measured in benchmarks/zmq-findings.md, "Scale").
   */
  private sub: Redis | undefined;
  private subscribed: Promise<unknown> | undefined;
  private readonly subOptions: RedisOptions;
  private readonly onError: (err: Error) => void;
  private readonly firstConnect: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  private lastError: string | undefined;

  constructor(url: string, options: RedisNameServiceOptions = {}) {
    super(options);
    this.url = redactUrl(url);
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    const common: RedisOptions = {
      ...redisOptionsFromUrl(url),
      connectionName: 'hybridbus-nameservice',
      connectTimeout: Math.min(connectTimeoutMs, 10_000),
      // Reconnect quickly and forever: re-registering soon after Redis returns matters more than backoff.
      retryStrategy: (times) => Math.min(50 * times, 1000),
    };
    this.main = new Redis({
      ...common,
      enableOfflineQueue: false, // fail at once while disconnected: the cache answers instead
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 1,
      commandTimeout: options.commandTimeoutMs ?? 2000,
    });
    // The subscriber does queue: SUBSCRIBE waits for the connection, and ioredis resubscribes after reconnects.
    this.subOptions = { ...common, maxRetriesPerRequest: null, autoResubscribe: true };

    this.firstConnect = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no connection to ${this.url} within ${connectTimeoutMs} ms${this.lastError ? `: ${this.lastError}` : ''}`)),
        connectTimeoutMs,
      );
      timer.unref();
      this.main.once('ready', () => {
        clearTimeout(timer);
        resolve();
        // From now on every 'ready' is a reconnect: Redis may have lost our records (restart without
        // persistence, Sentinel failover to a replica that never had them), so write them again now.
        this.main.on('ready', () => {
          this.noteBackendOk();
          void this.serial(() => this.refresh());
        });
      });
    });
    this.firstConnect.catch(() => undefined); // callers see it through connected()

    this.onError = (err: Error): void => {
      this.lastError = err.message;
      if (!this.closed) this.noteBackendError(err, 'connection');
    };
    this.main.on('error', this.onError);

    this.timer = setInterval(() => void this.serial(() => this.refresh()), Math.max(10, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  /** Resolves once connected and subscribed to change events (so no later change is missed). */
  async ready(): Promise<void> {
    await this.connected();
    await this.subscribe();
  }

  override onChange(listener: (key: string) => void): () => void {
    void this.subscribe();
    return super.onChange(listener);
  }

  /** Subscribe to change events, once (see `sub`). */
  private subscribe(): Promise<unknown> {
    if (this.subscribed) return this.subscribed;
    const sub = (this.sub = new Redis(this.subOptions));
    sub.on('error', this.onError);
    sub.on('message', (channel: string, key: string) => {
      if (channel === REDIS_CHANGES_CHANNEL) this.changed(key);
    });
    sub.once('ready', () => {
      // Events published while the subscriber was away are lost: everything we know may have changed.
      sub.on('ready', () => this.changedAll());
    });
    this.subscribed = sub.subscribe(REDIS_CHANGES_CHANNEL);
    this.subscribed.catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'name service: SUBSCRIBE failed'));
    return this.subscribed;
  }

  protected async fetch(key: string): Promise<readonly SeenRecord[]> {
    // Not awaited: a lookup must not wait on the subscriber (it fails fast while Redis is down).
    void this.subscribe();
    await this.connected();
    const now = Date.now();
    const reply = await this.main.eval(READ_SCRIPT, 2, KEY_PREFIX + key, KEY_INDEX, now, key);
    const [pruned, flat] = reply as [number, string[]];
    if (pruned > 0) this.publish([key]); // others should drop the dead records now, not after their cache expires
    return this.toSeen(flat);
  }

  protected async fetchAll(): Promise<ReadonlyMap<string, readonly SeenRecord[]>> {
    void this.subscribe();
    await this.connected();
    const keys = await this.main.smembers(KEY_INDEX);
    const now = Date.now();
    const pipeline = this.main.pipeline();
    for (const key of keys) pipeline.eval(READ_SCRIPT, 2, KEY_PREFIX + key, KEY_INDEX, now, key);
    const replies = results(await pipeline.exec());
    const all = new Map<string, readonly SeenRecord[]>();
    keys.forEach((key, i) => {
      const [, flat] = replies[i] as [number, string[]];
      all.set(key, this.toSeen(flat));
    });
    return all;
  }

  protected write(regs: readonly Registration[]): Promise<void> {
    return this.serial(async () => {
      try {
        await this.connected();
        const expiry = Date.now() + this.ttlMs;
        const multi = this.main.multi();
        for (const r of regs) multi.zadd(KEY_PREFIX + r.key, expiry, r.member).sadd(KEY_INDEX, r.key);
        for (const key of new Set(regs.map((r) => r.key))) multi.publish(REDIS_CHANGES_CHANNEL, key);
        results(await multi.exec());
      } catch (err) {
        throw new MessageDeliveryFailure(
          `name service (redis) could not register ${regs[0]?.record.address} at ${this.url}: ${errorMessage(err)} ` +
            '(it stays registered here and is written as soon as Redis answers)',
          { cause: err },
        );
      }
    });
  }

  /** Best effort: records that cannot be removed now expire by TTL, so this never fails. */
  protected remove(regs: readonly Registration[]): Promise<void> {
    return this.bestEffortRemove(async () => {
      if (!this.isReady) throw new Error(`not connected to ${this.url}`);
      const multi = this.main.multi();
      for (const r of regs) multi.zrem(KEY_PREFIX + r.key, r.member);
      for (const key of new Set(regs.map((r) => r.key))) multi.publish(REDIS_CHANGES_CHANNEL, key);
      results(await multi.exec());
    });
  }

  protected async shutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.drained();
    this.main.disconnect();
    this.sub?.disconnect();
  }

  // -- internals -----------------------------------------------------------

  private get isReady(): boolean {
    return this.main.status === 'ready';
  }

  /** Waits for the first connection (bounded); afterwards fails at once while disconnected. */
  private async connected(): Promise<void> {
    if (this.isReady) return;
    await this.firstConnect;
    if (!this.isReady) {
      throw new Error(`not connected to ${this.url} (${this.main.status}${this.lastError ? `: ${this.lastError}` : ''})`);
    }
  }

  /** Re-adds our records with a new expiry; a record that was missing (pruned, or Redis lost it) is announced. */
  private async refresh(): Promise<void> {
    const regs = this.allRegistrations();
    if (this.closed || regs.length === 0 || !this.isReady) return;
    try {
      const expiry = Date.now() + this.ttlMs;
      const multi = this.main.multi();
      for (const r of regs) multi.zadd(KEY_PREFIX + r.key, expiry, r.member).sadd(KEY_INDEX, r.key);
      const replies = results(await multi.exec());
      const readded = regs.filter((_, i) => replies[2 * i] === 1).map((r) => r.key);
      if (readded.length) this.publish([...new Set(readded)]);
    } catch (err) {
      this.noteBackendError(err, 'refresh');
    }
  }

  private publish(keys: readonly string[]): void {
    const pipeline = this.main.pipeline();
    for (const key of keys) pipeline.publish(REDIS_CHANGES_CHANNEL, key);
    pipeline.exec().catch(() => undefined); // a lost announcement only delays others until their cache expires
  }

  private toSeen(flat: readonly string[]): SeenRecord[] {
    const out: SeenRecord[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const record = parseRecord(flat[i]!);
      // The score is the owner's last refresh + TTL; we assume the owner uses our TTL.
      if (record) out.push({ record, refreshedAt: Number(flat[i + 1]) - this.ttlMs });
    }
    return out;
  }
}

/** The replies of a MULTI/pipeline, throwing the first command error. */
function results(replies: [error: Error | null, result: unknown][] | null): unknown[] {
  if (!replies) throw new Error('Redis transaction aborted');
  return replies.map(([err, result]) => {
    if (err) throw err;
    return result;
  });
}
