/**
 * A counting semaphore with FIFO waiters: the one bounded-concurrency primitive. Core's
 * Limiter runs tasks through it (a server's maxConcurrency); drivers hold slots directly (a
 * window of unconfirmed publishes).
 */
export class Semaphore {
  private used = 0;
  // An array read from `head`, compacted now and then: shift() is O(n), and a backlog of tens
  // of thousands made it a server's main cost.
  private waiting: Array<(() => void) | undefined> = [];
  private head = 0;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`concurrency must be a positive integer, got ${size}`);
  }

  get inUse(): number {
    return this.used;
  }

  /** Waiting for a slot. */
  get queued(): number {
    return this.waiting.length - this.head;
  }

  /** Take a slot if one is free and nobody waits for one. */
  tryAcquire(): boolean {
    if (this.used >= this.size || this.queued > 0) return false;
    this.used++;
    return true;
  }

  /** Wait for a slot (FIFO); rejects with `signal.reason` if aborted while waiting. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(grant, this.head);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal?.reason);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(grant);
    });
  }

  /** Give a slot back: the next waiter gets it directly. */
  release(): void {
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
    this.used--;
  }
}
