/**
 * Child processes for the benchmarks: each server and each measuring client runs in its own
 * process, talking to the parent over the IPC channel. A child can be started under a raised
 * fd limit (`bash -c 'ulimit -n N; exec node ...'`; Node itself cannot raise it) and with extra
 * node flags (e.g. --cpu-prof).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

export interface Message {
  readonly kind: string;
  readonly [field: string]: unknown;
}

export interface SpawnOptions {
  /** Raise the child's soft fd limit to at least this (through bash `ulimit -n`). */
  readonly minFds?: number | undefined;
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  readonly nodeFlags?: readonly string[] | undefined;
  /** Name in error messages. */
  readonly name: string;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** The soft fd limit a child of this process starts with. */
export function softFdLimit(): number {
  const out = execFileSync('bash', ['-c', 'ulimit -Sn'], { encoding: 'utf8' }).trim();
  return out === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(out);
}

export class Child {
  private readonly inbox: Message[] = [];
  private readonly waiters: Array<{ kind: string; resolve: (m: Message) => void; reject: (e: Error) => void }> = [];
  private exited: Error | undefined;

  private constructor(
    readonly proc: ChildProcess,
    readonly name: string,
  ) {
    live.add(proc);
    proc.on('message', (m: Message) => {
      if (m.kind === 'error') {
        this.failAll(new Error(`${name}: ${String(m['message'])}`));
        return;
      }
      const i = this.waiters.findIndex((w) => w.kind === m.kind);
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(m);
      else this.inbox.push(m);
    });
    // A write to a child that is gone (EPIPE) is emitted here: its waiters hear it, not the process.
    proc.on('error', (e) => this.failAll(new Error(`${name}: ${e.message}`)));
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      this.failAll(new Error(`${name} exited (${signal ?? code})`));
    });
  }

  private failAll(err: Error): void {
    this.exited ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  static start(script: string, spec: unknown, options: SpawnOptions): Child {
    const nodeArgs = [...(options.nodeFlags ?? []), script, JSON.stringify(spec)];
    const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
    let proc: ChildProcess;
    if (options.minFds !== undefined && softFdLimit() < options.minFds) {
      // The IPC channel is an inherited fd (NODE_CHANNEL_FD), so it survives bash's exec.
      const raise = `ulimit -n ${options.minFds} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`;
      proc = spawn('bash', ['-c', raise, process.execPath, ...nodeArgs], { stdio });
    } else {
      proc = spawn(process.execPath, nodeArgs, { stdio });
    }
    return new Child(proc, options.name);
  }

  /**
   * Any program speaking the bench protocol (see ../engine/contender.ts): `command args...
   * <spec-json>`, with Node's IPC channel in JSON mode, which a non-Node child reads and
   * writes as JSON lines on the fd in NODE_CHANNEL_FD.
   */
  static spawnCommand(command: string, args: readonly string[], spec: unknown, options: { name: string; env?: Readonly<Record<string, string>> | undefined; minFds?: number | undefined }): Child {
    let argv = [command, ...args, JSON.stringify(spec)];
    if (options.minFds !== undefined && softFdLimit() < options.minFds) {
      // As in start(): the IPC fd survives bash's exec.
      argv = ['bash', '-c', `ulimit -n ${options.minFds} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`, ...argv];
    }
    const proc = spawn(argv[0] as string, argv.slice(1), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
      env: { ...process.env, ...options.env },
    });
    const child = new Child(proc, options.name);
    // A command that cannot start (ENOENT) emits 'error', not always 'exit'.
    proc.on('error', (e) => child.failAll(new Error(`${options.name}: ${e.message}`)));
    return child;
  }

  /** The next message of `kind` from the child (queued ones first). */
  next(kind: string, timeoutMs = 60_000): Promise<Message> {
    const i = this.inbox.findIndex((m) => m.kind === kind);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as Message);
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const w = this.waiters.findIndex((x) => x.resolve === done);
        if (w >= 0) this.waiters.splice(w, 1);
        reject(new Error(`${this.name}: no "${kind}" message in ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (m: Message): void => {
        clearTimeout(timer);
        resolve(m);
      };
      this.waiters.push({ kind, resolve: done, reject: (e) => (clearTimeout(timer), reject(e)) });
    });
  }

  send(m: Message): void {
    // A child that is gone: its waiters hear why, and the write error must not crash the parent.
    this.proc.send(m, (err) => {
      if (err) this.failAll(new Error(`${this.name}: cannot send "${m.kind}" (${err.message}); exit ${this.proc.exitCode ?? this.proc.signalCode ?? 'pending'}`));
    });
  }

  /** Ask the child to exit; kill it if it has not within `graceMs`. */
  async stop(graceMs = 2_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    try {
      this.proc.send({ kind: 'exit' });
    } catch {
      // channel already closed
    }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }
}

/** In a child: send a message to the parent. */
export function toParent(m: Message): void {
  process.send?.(m);
}

const fromParentInbox: Message[] = [];
const fromParentWaiters: Array<{ kind: string; resolve: (m: Message) => void }> = [];
let listening = false;

/** In a child: the next message of `kind` from the parent (none is missed, however early it came). */
export function fromParent(kind: string): Promise<Message> {
  if (!listening) {
    listening = true;
    process.on('message', (m: Message) => {
      const i = fromParentWaiters.findIndex((w) => w.kind === m.kind);
      if (i >= 0) fromParentWaiters.splice(i, 1)[0]?.resolve(m);
      else fromParentInbox.push(m);
    });
  }
  const i = fromParentInbox.findIndex((m) => m.kind === kind);
  if (i >= 0) return Promise.resolve(fromParentInbox.splice(i, 1)[0] as Message);
  return new Promise((resolve) => fromParentWaiters.push({ kind, resolve }));
}

/** In a child: report a crash to the parent instead of dying silently. */
export function reportErrors(): void {
  const fail = (e: unknown): void => {
    toParent({ kind: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    setTimeout(() => process.exit(1), 100);
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
}
