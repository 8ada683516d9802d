/** Small shared pieces of the fault scenarios. */
import fs from 'node:fs';
import { waitFor } from '../harness/ports.js';
import { tempDir } from '../util.js';
import type { Ledger, Need } from './types.js';
import type { ProcGroup } from './procs.js';

/** A private directory for zmq's local name service: scenarios never see each other's servers. */
export const nsDir = (): string => tempDir('hb-faults-ns-');

/** Waits for a condition on the ledger (which grows as child processes report), bounded. */
export function until(what: string, cond: () => boolean, timeoutMs: number): Promise<true> {
  return waitFor(() => cond() || undefined, { timeoutMs, intervalMs: 20, what });
}

/** Resolves once `ok` sends resolved (the flow is under way), or throws with what is known. */
export async function warmedUp(ledger: Ledger, ok: number, timeoutMs = 20_000): Promise<void> {
  await until(`${ok} sends to resolve (have ${ledger.ok.size}, failed ${ledger.failed.size})`, () => ledger.ok.size >= ok, timeoutMs).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; first failures: ${JSON.stringify(Object.values(ledger.exampleErrors()).slice(0, 3))}`);
  });
}

/** "a; b; c" without the empty parts. */
export const note = (...parts: Array<string | false | undefined>): string => parts.filter(Boolean).join('; ');

/** Crash reasons and counts of log lines of a group, for the note. */
export function crashNote(g: ProcGroup): string | undefined {
  const c = g.crashes();
  return c.length ? `crashes: ${c.join(' | ')}` : undefined;
}

const executable = (paths: string[]): boolean =>
  paths.some((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

/** Why a scenario needing `needs` cannot run here, or undefined if it can (same binaries launcher.ts looks for). */
export function missing(needs: readonly Need[]): string | undefined {
  const onPath = (name: string): string[] => (process.env['PATH'] ?? '').split(':').filter(Boolean).map((d) => `${d}/${name}`);
  const rabbit = executable([process.env['RABBITMQ_SERVER_BIN'] ?? '', '/usr/lib/rabbitmq/bin/rabbitmq-server', '/usr/lib/rabbitmq/sbin/rabbitmq-server', ...onPath('rabbitmq-server')]);
  const redis = executable([process.env['REDIS_SERVER_BIN'] ?? '', '/usr/bin/redis-server', ...onPath('redis-server')]);
  for (const n of needs) {
    if ((n === 'rabbitmq' || n === 'cluster') && !rabbit) return `needs ${n}: rabbitmq-server not found (scripts/install-deps.sh installs it)`;
    if ((n === 'redis' || n === 'sentinel') && !redis) return `needs ${n}: redis-server not found (scripts/install-deps.sh installs it)`;
  }
  return undefined;
}

/** One message per error class the senders saw, shortened, for the note. */
export function errorsNote(ledger: Ledger, max = 160): string | undefined {
  const ex = Object.entries(ledger.exampleErrors());
  return ex.length ? `e.g. ${ex.map(([k, v]) => `${k}: ${v.slice(0, max)}`).join(' / ')}` : undefined;
}
