/** Small helpers with no broker in them. */

/** The last `max` ids seen, oldest evicted first: de-duplication on oslo's `_unique_id`. */
export class RecentIds {
  private readonly ids = new Set<string>();
  /** Insertion order, as a ring: evicting through the Set's iterator allocated one per message. */
  private readonly ring: Array<string | undefined>;
  private next = 0;
  constructor(private readonly max: number) {
    this.ring = new Array<string | undefined>(max).fill(undefined);
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string): void {
    if (this.ids.has(id)) return;
    const oldest = this.ring[this.next];
    if (oldest !== undefined) this.ids.delete(oldest);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.max;
    this.ids.add(id);
  }
}

/** A counting semaphore: the bounded window of unconfirmed publishes. */
export class Window {
  private used = 0;
  private readonly waiters: Array<() => void> = [];
  constructor(readonly size: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Take a slot if one is free and nobody waits for one. */
  tryAcquire(): boolean {
    if (this.used >= this.size || this.waiters.length > 0) return false;
    this.used++;
    return true;
  }

  /** Wait for a slot (FIFO); rejects with `signal.reason` if aborted while waiting. */
  async acquire(signal?: AbortSignal): Promise<void> {
    if (this.tryAcquire()) return;
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        this.used++;
        resolve();
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(grant);
    });
  }

  release(): void {
    this.used--;
    const next = this.waiters.shift();
    if (next) next();
  }
}

/**
 * Stops a send once its result no longer matters (a call that has its answer). The AbortSignal
 * is only built if the send has to wait for something: one per call showed in profiles.
 */
export class SendStop {
  private controller: AbortController | undefined;
  /** Why the send was stopped, once it has been. */
  reason: Error | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  stop(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** `p`, or `signal.reason` as soon as the signal aborts (the work behind `p` is not stopped). */
export function raceSignal<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return raceSignal(
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => clearTimeout(t), { once: true });
    }),
    signal,
  );
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
