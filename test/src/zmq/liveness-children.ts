/** Forks liveness-child.js (servers) and load-client.js (flooding clients) for zmq-liveness.test.ts. */
import { fork, type ChildProcess } from 'node:child_process';
import type { ConfigInput } from '@hybridbus/core';
import { fileURLToPath } from 'node:url';
import type { LoadResult } from './load-client.js';

export type { LoadResult } from './load-client.js';

export interface Report {
  kind: 'started' | 'done';
  method: string;
  server: string;
  i?: number;
}

export interface LiveChild {
  readonly proc: ChildProcess;
  readonly address: string;
  readonly pid: number;
  /** Every "started"/"done" this child reported, in order. */
  readonly reports: Report[];
  /** Resolves with the first report after now that `match` accepts (rejects after ms). */
  next(match: (r: Report) => boolean, ms?: number): Promise<Report>;
  /** Resolves once `n` reports (so far, in all) match (rejects after ms). */
  count(match: (r: Report) => boolean, n: number, ms?: number): Promise<void>;
  counters(ms?: number): Promise<Record<string, number>>;
  tally(ms?: number): Promise<Record<string, number[]>>;
  freeze(): void;
  thaw(): void;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) {
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
});

const exited = (proc: ChildProcess): boolean => proc.exitCode !== null || proc.signalCode !== null;

/**
 * Kill and wait for the exit AND the end of the IPC channel: what the child wrote to it before
 * dying has then been read (its reports are complete).
 */
function killer(proc: ChildProcess) {
  return async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const gone = exited(proc) ? Promise.resolve() : new Promise<void>((res) => proc.once('exit', () => res()));
    const disconnected = proc.connected ? new Promise<void>((res) => proc.once('disconnect', () => res())) : Promise.resolve();
    if (!exited(proc)) {
      proc.kill(signal);
      if (signal === 'SIGKILL') proc.kill('SIGCONT');
    }
    await Promise.all([gone, disconnected]);
    children.delete(proc);
  };
}

/** An answer to a request sent to the child, of the kind it names. */
function ask<T>(proc: ChildProcess, kind: string, answer: string, field: string, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (proc.off('message', on), reject(new Error(`child ${proc.pid} did not answer "${kind}" in ${ms} ms`))), ms);
    const on = (m: Record<string, unknown>): void => {
      if (m['kind'] !== answer) return;
      clearTimeout(timer);
      proc.off('message', on);
      resolve(m[field] as T);
    };
    proc.on('message', on);
    proc.send({ kind });
  });
}

const serverScript = fileURLToPath(new URL('./liveness-child.js', import.meta.url));
const clientScript = fileURLToPath(new URL('./load-client.js', import.meta.url));

/** Fork a process hosting RPC servers; resolves once they all listen. */
export function startServers(config: ConfigInput, servers: Array<{ topic: string; server: string }>): Promise<LiveChild> {
  const proc = fork(serverScript, [JSON.stringify({ config, servers })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(proc);
  const reports: Report[] = [];
  const waiters = new Set<(r: Report) => void>();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child server did not start in 15 s')), 15_000);
    proc.once('exit', (code, signal) => reject(new Error(`child server exited (${code ?? signal}) before it was ready`)));
    proc.on('message', (m: Record<string, unknown>) => {
      if (m['kind'] === 'started' || m['kind'] === 'done') {
        const r = m as unknown as Report;
        reports.push(r);
        for (const w of [...waiters]) w(r);
      } else if (m['kind'] === 'ready') {
        clearTimeout(timer);
        resolve({
          proc,
          address: m['address'] as string,
          pid: m['pid'] as number,
          reports,
          next: (match, ms = 10_000) =>
            new Promise((res, rej) => {
              const t = setTimeout(() => (waiters.delete(w), rej(new Error(`no matching report from child ${proc.pid} in ${ms} ms`))), ms);
              const w = (r: Report): void => {
                if (!match(r)) return;
                clearTimeout(t);
                waiters.delete(w);
                res(r);
              };
              waiters.add(w);
            }),
          count: (match, n, ms = 10_000) =>
            new Promise((res, rej) => {
              let seen = reports.filter(match).length;
              if (seen >= n) return res();
              const t = setTimeout(() => (waiters.delete(w), rej(new Error(`only ${seen} of ${n} matching reports from child ${proc.pid} in ${ms} ms`))), ms);
              const w = (r: Report): void => {
                if (!match(r) || ++seen < n) return;
                clearTimeout(t);
                waiters.delete(w);
                res();
              };
              waiters.add(w);
            }),
          counters: (ms = 5_000) => ask(proc, 'counters', 'counters', 'counters', ms),
          tally: (ms = 10_000) => ask(proc, 'tally', 'tally', 'tally', ms),
          freeze: () => void proc.kill('SIGSTOP'),
          thaw: () => void (exited(proc) || proc.kill('SIGCONT')),
          kill: killer(proc),
        });
      }
    });
  });
}

export interface LoadClient {
  readonly proc: ChildProcess;
  /** Start sending; resolves with the summary once everything settled (or settleMs passed). */
  go(ms: number): Promise<LoadResult>;
  kill(): Promise<void>;
}

/** Fork a flooding client (load-client.ts); resolves once it is connected and waiting for go(). */
export function startLoadClient(spec: { config: ConfigInput; topic: string; id: string; durationMs: number; callTimeoutMs: number; settleMs: number }): Promise<LoadClient> {
  const proc = fork(clientScript, [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(proc);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('load client did not start in 15 s')), 15_000);
    proc.once('exit', (code, signal) => reject(new Error(`load client exited (${code ?? signal}) before it was ready`)));
    proc.on('message', (m: { kind?: string }) => {
      if (m.kind !== 'ready') return;
      clearTimeout(timer);
      resolve({
        proc,
        go: (ms) => ask<LoadResult>(proc, 'go', 'result', 'result', ms),
        kill: killer(proc),
      });
    });
  });
}
