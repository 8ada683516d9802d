import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh directory under the OS temp dir, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A promise with its resolve/reject in hand. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Collects values; `until(n)` resolves once n have arrived (or rejects after `ms`). */
export class Collector<T> {
  readonly items: T[] = [];
  private waiters: Array<{ n: number; resolve: () => void }> = [];

  push = (item: T): void => {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => (this.items.length >= w.n ? (w.resolve(), false) : true));
  };

  until(n: number, ms = 10_000): Promise<T[]> {
    if (this.items.length >= n) return Promise.resolve(this.items);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${this.items.length} of ${n} arrived in ${ms} ms`)), ms);
      this.waiters.push({ n, resolve: () => (clearTimeout(timer), resolve(this.items)) });
    });
  }
}

/** A topic name no other test uses, so tests can share a server. */
export function freshTopic(prefix = 't'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A logger that records what it is told, by level. */
export function recordingLogger(): RecordingLogger {
  const records: Array<{ level: string; obj: object; msg: string | undefined }> = [];
  const at = (level: string) => (obj: object, msg?: string) => void records.push({ level, obj, msg });
  const logger: RecordingLogger = {
    records,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: () => logger,
  };
  return logger;
}

export interface RecordingLogger {
  readonly records: Array<{ level: string; obj: object; msg: string | undefined }>;
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child(): RecordingLogger;
}
