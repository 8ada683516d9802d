/**
 * zeromq.js allows one send in progress per socket (a second one fails with EBUSY): every
 * send of a socket goes through one of these, in order.
 */
export class SerialSend<T> {
  private queue: T[] = [];
  private running = false;
  private onIdle: (() => void) | undefined;

  constructor(
    private readonly send: (item: T) => Promise<void>,
    /** A send that failed: its item is dropped (the callers' protocols recover from loss). */
    private readonly failed: (err: unknown) => void,
  ) {}

  get length(): number {
    return this.queue.length;
  }

  push(item: T): void {
    this.queue.push(item);
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        // Swap the queue out rather than shift() item by item (O(n) each).
        const batch = this.queue;
        this.queue = [];
        for (const item of batch) {
          try {
            await this.send(item);
          } catch (err) {
            this.failed(err);
          }
        }
      }
    } finally {
      this.running = false;
      this.onIdle?.();
    }
  }

  /** Resolves when nothing is queued or running, or after `ms`. */
  idle(ms: number): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.onIdle = done;
    });
  }

  clear(): void {
    this.queue = [];
  }
}
