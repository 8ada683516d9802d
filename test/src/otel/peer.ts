/** The traced peer process (traced-peer.ts) from the test's side, and a list to wait on. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SpanRecord } from './sdk.js';

/** Items that arrive over time; `find` waits for the first that matches (or fails after `ms`). */
export class Arrivals<T> {
  readonly items: T[] = [];
  private waiters = new Set<() => void>();

  push = (item: T): void => {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  };

  find(what: string, pred: (item: T) => boolean, ms = 30_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.items.find(pred);
        if (found === undefined) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${what}: not there in ${ms} ms; got ${JSON.stringify(this.items, null, 1)}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }
}

export interface PeerSpec {
  readonly url: string;
  readonly topic: string;
  readonly inner: string;
  readonly notifyTopic: string;
}

type PeerMessage = { kind: 'span'; span: SpanRecord } | { kind: 'ready' } | { kind: 'tick'; n: number } | { kind: 'notified'; eventType: string };

const script = fileURLToPath(new URL('./traced-peer.js', import.meta.url));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export interface TracedPeer {
  /** The spans it recorded, as they ended. */
  readonly spans: Arrivals<SpanRecord>;
  /** What its endpoints reported (casts, notifications). */
  readonly reports: Arrivals<PeerMessage>;
  /** Ask it to close its bus and exit; SIGKILL if it has not in 15 s. */
  stop(): Promise<void>;
}

/** Fork a traced peer; resolves once its servers and listener are up. */
export function startTracedPeer(spec: PeerSpec): Promise<TracedPeer> {
  const proc = fork(script, [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(proc);
  const spans = new Arrivals<SpanRecord>();
  const reports = new Arrivals<PeerMessage>();
  const exited = new Promise<void>((resolve) => proc.once('exit', () => (children.delete(proc), resolve())));
  const peer: TracedPeer = {
    spans,
    reports,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      if (proc.connected) proc.send({ kind: 'exit' });
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the traced peer did not start in 60 s')), 60_000);
    proc.once('exit', (code) => reject(new Error(`the traced peer exited with ${code} before it was ready`)));
    proc.on('message', (m: PeerMessage) => {
      if (m.kind === 'span') spans.push(m.span);
      else reports.push(m);
      if (m.kind === 'ready') {
        clearTimeout(timer);
        resolve(peer);
      }
    });
  });
}
