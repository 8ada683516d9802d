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
  readonly id: string;
  value: V;
  readonly expires: number;
}

/** Arrival order is compacted once this many entries at its front are gone, and they are half of it. */
const COMPACT_AT = 1024;

export class RecentIds<V = true> {
  private readonly ids = new Map<string, Entry<V>>();
  /**
   * Entries in arrival order, which (one TTL for all) is expiry order too; from `head` on, some
   * already forgotten by get(). Not the Map's own order: a Map iterator made to find the oldest
   * walks every hole earlier deletions left (V8 keeps them until it rehashes), and at 100,000
   * ids that cost 30-100 µs per new id.
   */
  private order: Array<Entry<V> | undefined> = [];
  private head = 0;
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

  /** A new value for `id` if it is still remembered (its place and age unchanged); false if it is not. */
  update(id: string, value: V): boolean {
    const e = this.ids.get(id);
    if (e) e.value = value;
    return e !== undefined;
  }

  /** Remember `id` (a known id keeps its place and age, and takes the new value). */
  set(id: string, value: V): void {
    const known = this.ids.get(id);
    if (known) {
      known.value = value;
      return;
    }
    const now = Date.now();
    this.forgetOld(now);
    const e = { id, value, expires: this.ttlMs === Infinity ? Infinity : now + this.ttlMs };
    this.ids.set(id, e);
    this.order.push(e);
  }

  /** Forget the expired ids, and the oldest while full. */
  private forgetOld(now: number): void {
    const { order, ids } = this;
    while (this.head < order.length) {
      const e = order[this.head] as Entry<V>;
      const live = ids.get(e.id) === e;
      if (live && e.expires > now && ids.size < this.max) break;
      if (live) {
        if (e.expires > now) this.evicted++;
        ids.delete(e.id);
      }
      order[this.head++] = undefined;
    }
    if (this.head >= COMPACT_AT && this.head * 2 >= order.length) {
      this.order = order.slice(this.head);
      this.head = 0;
    }
  }
}

/** RecentIds of plain ids. */
export class SeenIds extends RecentIds<true> {
  add(id: string): void {
    this.set(id, true);
  }
}
