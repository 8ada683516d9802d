/**
 * The process side of the test launcher (launcher.ts): spawning a server detached in its own
 * process group with its output in a log file, ending its whole process tree (group and
 * descendants, zombies counting as dead, read from /proc), and the registry of this process's
 * servers with the 'exit' and SIGINT/SIGTERM/SIGHUP hooks that clean them up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

import { waitFor } from './ports.js';

// ---------------------------------------------------------------------------
// Process-table helpers (Linux /proc with a portable fallback)
// ---------------------------------------------------------------------------

interface ProcEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  readonly state: string;
}

function readProc(pid: number): ProcEntry | null | undefined {
  // undefined: /proc unusable; null: no such process
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return fs.existsSync('/proc/self/stat') ? null : undefined;
    return undefined;
  }
  // "pid (comm) state ppid pgrp ..." — comm may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { pid, state: fields[0] ?? '?', ppid: Number(fields[1]), pgid: Number(fields[2]) };
}

function readProcTable(): ProcEntry[] | undefined {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return undefined;
  }
  const out: ProcEntry[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const e = readProc(Number(name));
    if (e) out.push(e);
  }
  return out;
}

const isDeadState = (state: string): boolean => state === 'Z' || state === 'X' || state === 'x';

/** True if `pid` exists and is not a zombie. */
export function isProcessAlive(pid: number): boolean {
  const e = readProc(pid);
  if (e === null) return false;
  if (e !== undefined) return !isDeadState(e.state);
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Live (non-zombie) members of process group `pgid` plus all live descendants of `root`. */
export function processTree(root: number): number[] {
  const table = readProcTable();
  if (!table) return isProcessAlive(root) ? [root] : [];
  const live = table.filter((e) => !isDeadState(e.state));
  const result = new Set<number>();
  for (const e of live) if (e.pid === root || e.pgid === root) result.add(e.pid);
  // descendants (by ppid) of anything already in the set, to a fixed point
  let grew = true;
  while (grew) {
    grew = false;
    for (const e of live) {
      if (!result.has(e.pid) && result.has(e.ppid)) {
        result.add(e.pid);
        grew = true;
      }
    }
  }
  return [...result];
}

function groupAlive(pgid: number): boolean {
  const table = readProcTable();
  if (table) return table.some((e) => e.pgid === pgid && !isDeadState(e.state));
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalQuietly(target: number, signal: NodeJS.Signals): void {
  try {
    process.kill(target, signal);
  } catch {
    /* ESRCH: already gone */
  }
}

/** SIGKILL, at once and synchronously, to the group of `pid` and every live descendant (for process 'exit'). */
export function killTreeSync(pid: number): void {
  const tree = processTree(pid);
  signalQuietly(-pid, 'SIGKILL');
  for (const p of tree) signalQuietly(p, 'SIGKILL');
}

// ---------------------------------------------------------------------------
// Spawning and ending a process tree
// ---------------------------------------------------------------------------

export interface ExitState {
  done: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  error: Error | undefined;
}

/** A child spawned by spawnDetached() and what is known of its exit. */
export interface Spawned {
  readonly child: ChildProcess;
  readonly exit: ExitState;
}

/**
 * Spawns `command` detached (its own process group, pgid = pid) in `cwd`, its stdout and stderr
 * appended to `logFile` after a line saying what starts. The child is unref'd: a forgotten server
 * must not keep the test process alive (the 'exit' hook kills it).
 */
export function spawnDetached(command: string, args: readonly string[], opts: { cwd: string; env: NodeJS.ProcessEnv; logFile: string }): Spawned {
  fs.appendFileSync(
    opts.logFile,
    `\n===== [test launcher] ${new Date().toISOString()} starting: ${command} ${args.map((a) => JSON.stringify(a)).join(' ')}\n`,
  );
  const fd = fs.openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
  const exit: ExitState = { done: false, code: null, signal: null, error: undefined };
  child.once('exit', (code, signal) => {
    exit.done = true;
    exit.code = code;
    exit.signal = signal;
  });
  child.once('error', (err) => {
    exit.done = true;
    exit.error = err;
  });
  child.unref();
  return { child, exit };
}

/**
 * Ends the process tree of `spawned` (`kind` names it in errors). graceful: SIGTERM to the group,
 * SIGKILL after `graceMs`; otherwise SIGKILL straight away. Resolves once the process exited and
 * no member of its group nor any descendant is alive.
 */
export async function endProcessTree({ child, exit }: Spawned, kind: string, graceful: boolean, graceMs: number): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  child.ref(); // keep the event loop alive until it is really gone
  const known = new Set<number>([pid, ...processTree(pid)]);
  const allGone = (): boolean => exit.done && !groupAlive(pid) && [...known].every((p) => !isProcessAlive(p));

  let gone = allGone();
  if (!gone && graceful) {
    signalQuietly(-pid, 'SIGTERM');
    gone = await waitFor(allGone, { timeoutMs: graceMs, intervalMs: 25, what: 'graceful exit' }).then(
      () => true,
      () => false,
    );
  }
  if (!gone) {
    for (const p of processTree(pid)) known.add(p);
    signalQuietly(-pid, 'SIGKILL');
    for (const p of known) signalQuietly(p, 'SIGKILL');
    await waitFor(allGone, {
      timeoutMs: 10_000,
      intervalMs: 25,
      what: `${kind} process tree of pid ${pid} to die after SIGKILL`,
    });
  }
}

// ---------------------------------------------------------------------------
// Registry and process-level cleanup hooks (installed once)
// ---------------------------------------------------------------------------

export interface Cleanable {
  /** Synchronous last-resort cleanup for process 'exit'. */
  cleanupSync(): void;
  /** Bounded asynchronous shutdown for SIGINT/SIGTERM. */
  shutdownForSignal(): Promise<void>;
}

interface Registry {
  readonly servers: Set<Cleanable>;
  handlersInstalled: boolean;
  counter: number;
}

// Shared through globalThis so that two copies of this module (e.g. src and
// dist both imported) still use one registry and one set of handlers.
const REGISTRY_KEY = Symbol.for('hybridbus.test.launcher.registry');
const registry: Registry = ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] as Registry | undefined) ??
  ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] = { servers: new Set(), handlersInstalled: false, counter: 0 } as Registry);

/** HYBRIDBUS_TEST_KEEP_DATA=1: data directories (logs, mnesia) stay after stop/exit, for debugging. */
export const keepData = (): boolean => /^(1|true|yes)$/i.test(process.env['HYBRIDBUS_TEST_KEEP_DATA'] ?? '');

function installProcessHandlers(): void {
  if (registry.handlersInstalled) return;
  registry.handlersInstalled = true;

  process.on('exit', () => {
    for (const s of [...registry.servers]) {
      try {
        s.cleanupSync();
      } catch {
        /* best effort */
      }
    }
  });

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = 128 + (os.constants.signals[signal] ?? 0);
    if (signalled) process.exit(code); // second signal: don't wait any more ('exit' hook kills)
    signalled = true;
    const servers = [...registry.servers];
    if (servers.length > 0) {
      process.stderr.write(`[test launcher] ${signal}: stopping ${servers.length} test server(s)\n`);
    }
    const all = Promise.allSettled(servers.map((s) => s.shutdownForSignal()));
    const bound = new Promise((r) => setTimeout(r, 20_000).unref());
    void Promise.race([all, bound]).finally(() => process.exit(code));
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
}

/** Cleaned up on exit and on a signal from now on; the hooks are installed with the first. */
export function track(server: Cleanable): void {
  registry.servers.add(server);
  installProcessHandlers();
}

/** Stopped for good: nothing left to clean up. */
export function untrack(server: Cleanable): void {
  registry.servers.delete(server);
}

/** Servers of this process not yet stopped (including killed ones awaiting restart). */
export function tracked(): Cleanable[] {
  return [...registry.servers];
}

/** 1, 2, ...: numbers servers apart within this process (RabbitMQ node names). */
export function nextServerNumber(): number {
  return ++registry.counter;
}
