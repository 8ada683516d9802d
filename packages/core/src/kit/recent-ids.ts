/**
 * Message ids a receiver remembers, to drop duplicates (oslo's `_unique_id`): bounded by count
 * (the oldest are forgotten first, and counted) and optionally by age. Each id carries a value,
 * so a receiver can remember what it answered (zmq's "handled" vs "still working").
 */
export interface RecentIdsOptions {
  /** Ids remembered at most. */
  readonly max: number;
  /** Forget an id this long after it was first seen (ms); default: only by count. */
  readonly ttlMs?: number | undefined;
}

interface Entry<V> {
  value: V;
  readonly expires: number;
}

export class RecentIds<V = true> {
  /** Insertion order is arrival order, and (one TTL for all) expiry order. */
  private readonly ids = new Map<string, Entry<V>>();
  private readonly max: number;
  private readonly ttlMs: number;
  /** Ids forgotten before their time because the bound was reached. */
  evicted = 0;

  constructor(options: RecentIdsOptions) {
    if (!Number.isInteger(options.max) || options.max < 1) throw new RangeError(`RecentIds max must be a positive integer, got ${options.max}`);
    this.max = options.max;
    this.ttlMs = options.ttlMs ?? Infinity;
  }

  get size(): number {
    return this.ids.size;
  }

  /** The value remembered for `id`, if it is still remembered. */
  get(id: string): V | undefined {
    const e = this.ids.get(id);
    if (!e) return undefined;
    if (e.expires > Date.now()) return e.value;
    this.ids.delete(id);
    return undefined;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  /** Remember `id` (a known id keeps its place and age, and takes the new value). */
  set(id: string, value: V): void {
    const known = this.ids.get(id);
    if (known) {
      known.value = value;
      return;
    }
    const now = Date.now();
    for (const [old, e] of this.ids) {
      if (e.expires > now && this.ids.size < this.max) break;
      if (e.expires > now) this.evicted++;
      this.ids.delete(old);
    }
    this.ids.set(id, { value, expires: this.ttlMs === Infinity ? Infinity : now + this.ttlMs });
  }
}

/** RecentIds of plain ids. */
export class SeenIds extends RecentIds<true> {
  add(id: string): void {
    this.set(id, true);
  }
}
