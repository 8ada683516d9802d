/** Runs at most `max` tasks at once; the rest wait in arrival order. Tracks everything pending. */
export class Limiter {
  private running = 0;
  // A ring-free queue: an array read from `head`, compacted now and then. shift() is O(n) and
  // a backlog of tens of thousands made it the server's main cost.
  private waiting: Array<(() => void) | undefined> = [];
  private head = 0;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`concurrency must be a positive integer, got ${max}`);
  }

  /** Tasks started or queued and not yet settled. */
  get size(): number {
    return this.pending.size;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    const p = this.acquire().then(async () => {
      try {
        return await task();
      } finally {
        this.release();
      }
    });
    this.pending.add(p);
    const forget = (): void => void this.pending.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Resolves once every task run so far has settled. */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private acquire(): Promise<void> {
    if (this.running < this.max) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    if (this.head < this.waiting.length) {
      const next = this.waiting[this.head] as () => void;
      this.waiting[this.head++] = undefined;
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting = this.waiting.slice(this.head);
        this.head = 0;
      }
      next();
    } else this.running--;
  }
}
