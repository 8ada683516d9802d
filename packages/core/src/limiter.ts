/** Runs at most `max` tasks at once; the rest wait in arrival order. Tracks everything pending. */
export class Limiter {
  private running = 0;
  // An array read from `head`, compacted now and then: shift() is O(n), and a backlog of tens
  // of thousands made it a server's main cost.
  private waiting: Array<(() => void) | undefined> = [];
  private head = 0;
  private drained: Array<() => void> = [];
  // One bound function for every task's settlement: a server runs one task per message, so
  // per-task promises and closures were a measurable part of its time.
  private readonly settled = (): void => this.release();

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`concurrency must be a positive integer, got ${max}`);
  }

  /** Tasks started or queued and not yet settled. */
  get size(): number {
    return this.running + this.waiting.length - this.head;
  }

  /** Runs `task` now if a slot is free (synchronously), else when one frees up. */
  run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running < this.max) {
      this.running++;
      return this.start(task);
    }
    return new Promise<T>((resolve, reject) => this.waiting.push(() => this.start(task).then(resolve, reject)));
  }

  /** Resolves once every task run so far has settled. */
  drain(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private start<T>(task: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    try {
      p = task();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(this.settled, this.settled);
    return p;
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
      return;
    }
    this.running--;
    if (this.running === 0 && this.drained.length > 0) {
      const waiters = this.drained;
      this.drained = [];
      for (const w of waiters) w();
    }
  }
}
