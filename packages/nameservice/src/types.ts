/**
 * The name service (oslo's "matchmaker") of the direct (brokerless) drivers: servers register
 * where they listen, clients look up the hosts of a key and connect to one. Keys are
 * "<exchange>/<topic>" and "<exchange>/<topic>.<server>" for RPC, and "notify:<exchange>/<topic>"
 * for notification listeners.
 */
import type { Logger } from '@hybridbus/core';

/** One place a server listens. */
export interface HostRecord {
  /** "host:port" a client connects to. */
  readonly address: string;
  /** The server's public key, for transports that authenticate servers by one (zmq://: CURVE, Z85). */
  readonly publicKey?: string | undefined;
  /** Notification listener pool; listeners without one share the pool "". */
  readonly pool?: string | undefined;
  /**
   * A multicast group the server joined for this key, so one datagram can reach it (zmq://:
   * "udp://[iface;]239.x.y.z:port#group" and, when datagrams are sealed, ";key=<key id>").
   */
  readonly multicast?: string | undefined;
  /**
   * The newest record format the server reads, when newer than the first (zmq://: 3, requests
   * and notifications in compact form, docs/wire.md). Senders use a format only with servers
   * whose records all say they read it; an older server's record has no such field.
   */
  readonly wire?: number | undefined;
}

export interface NameServiceStats {
  /** lookup() calls answered. */
  readonly lookups: number;
  /** Of those, answered from the cache without asking the backend. */
  readonly cacheHits: number;
  /** Records this process currently registers (and refreshes), counted per (key, record) pair. */
  readonly registered: number;
  /** Times the backend could not be reached and the cache answered. */
  readonly backendErrors: number;
}

export interface NameService {
  /** "local", "static", "redis" or "etcd". */
  readonly kind: string;
  /**
   * Register `record` under each key, kept alive (refreshed) until unregister() or close().
   * Records of a process that dies expire after the TTL, per record, not per key.
   */
  register(keys: readonly string[], record: HostRecord): Promise<void>;
  unregister(keys: readonly string[], record: HostRecord): Promise<void>;
  /** The live records of `key`; served from a cache, and from a stale cache while the backend is down. */
  lookup(key: string, options?: LookupOptions): Promise<readonly HostRecord[]>;
  /** lookup()'s answer when the cache has a fresh one, without waiting: the per-message path. */
  cached(key: string, options?: LookupOptions): readonly HostRecord[] | undefined;
  /**
   * Hide `address` from lookup answers (all keys, cached or fresh) because its connection died.
   * It shows again once the backend has it registered or refreshed after the forget(), or after
   * ttlMs at the latest (static records are never refreshed, so for them that is the only way).
   */
  forget(address: string): void;
  /** Called (soon) after any key's records change, by anyone. Returns an unsubscribe function. */
  onChange(listener: (key: string) => void): () => void;
  /** Every key and its live records (for `hybridbus nameservice ls`). */
  list(): Promise<ReadonlyMap<string, readonly HostRecord[]>>;
  readonly stats: NameServiceStats;
  /**
   * Why the backend cannot be reached now (lookups answer from the cache meanwhile), or
   * undefined while it can: from a failed backend call until the next that succeeds. Cheap (a
   * field), for health checks; never contains credentials.
   */
  readonly unreachable: string | undefined;
  /**
   * Unregister everything this process registered; stop timers and connections.
   * `unregister: false` leaves the records to expire by TTL, as if the process had crashed.
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface LookupOptions {
  /**
   * Keep addresses hidden by forget() in the answer: every registered server, for a message
   * that must reach them all (a fanout), where skipping one would lose its copy silently.
   */
  readonly includeForgotten?: boolean | undefined;
}

export interface CloseOptions {
  /** Remove this process's records from the backend (default true). */
  readonly unregister?: boolean | undefined;
}

export interface NameServiceOptions {
  /** Record lifetime without a refresh, ms. */
  readonly ttlMs: number;
  /** How long a lookup answer is reused without asking the backend (change events also clear it), ms. */
  readonly cacheMs: number;
  /** Where warnings (e.g. backend outages) go; defaults to core's defaultLogger(). */
  readonly logger?: Logger | undefined;
}
