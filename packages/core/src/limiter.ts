import { Semaphore } from './kit/semaphore.js';
import { isThenable } from './thenable.js';

/** Runs at most `max` tasks at once; the rest wait in arrival order. Tracks everything pending. */
export class Limiter {
  private readonly slots: Semaphore;
  private drained: Array<() => void> = [];
  // One bound function for every task's settlement: a server runs one task per message, so
  // per-task promises and closures were a measurable part of its time.
  private readonly settled = (): void => this.release();

  constructor(readonly max: number) {
    this.slots = new Semaphore(max);
  }

  /** Tasks started or queued and not yet settled. */
  get size(): number {
    return this.slots.inUse + this.slots.queued;
  }

  /**
   * Runs `task` now if a slot is free (synchronously), else when one frees up. A task that
   * returns no promise is over when it returns: its slot is free again at once.
   */
  run<T>(task: () => Promise<T>): Promise<T>;
  run<T>(task: () => Promise<T> | T): Promise<T> | T;
  run<T>(task: () => Promise<T> | T): Promise<T> | T {
    if (this.slots.tryAcquire()) return this.start(task);
    return this.slots.acquire().then(() => this.start(task));
  }

  /** Resolves once every task run so far has settled. */
  drain(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private start<T>(task: () => Promise<T> | T): Promise<T> | T {
    let out: Promise<T> | T;
    try {
      out = task();
    } catch (e) {
      this.release();
      return Promise.reject(e as Error);
    }
    if (!isThenable(out)) {
      this.release();
      return out;
    }
    out.then(this.settled, this.settled);
    return out as Promise<T>;
  }

  private release(): void {
    this.slots.release();
    if (this.size === 0 && this.drained.length > 0) {
      const waiters = this.drained;
      this.drained = [];
      for (const w of waiters) w();
    }
  }
}
