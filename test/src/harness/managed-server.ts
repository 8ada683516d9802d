/**
 * One server process under the test launcher (launcher.ts): the RunningServer every kind
 * (redis.ts, sentinel.ts, rabbitmq.ts, proton-broker.ts, qdrouterd.ts) is, started until it answers its protocol, stopped,
 * killed and restarted on the same port and data dir, its log tail in errors. The processes
 * themselves (spawn, process-tree kill, cleanup on exit and signals) are process.ts's.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { isPortBindable, LOOPBACK, waitFor } from './ports.js';
import { endProcessTree, keepData, killTreeSync, spawnDetached, track, tracked, untrack, type Cleanable, type ExitState, type Spawned } from './process.js';

export type ServerKind = 'redis' | 'redis-sentinel' | 'rabbitmq' | 'proton-broker' | 'qdrouterd' | 'etcd';

export interface RunningServer {
  readonly kind: ServerKind;
  readonly host: '127.0.0.1';
  readonly port: number;
  /**
   * redis://127.0.0.1:PORT, redis+sentinel://127.0.0.1:PORT/<masterName>, amqp://guest:guest@127.0.0.1:PORT/
   * (RabbitMQ), amqp://127.0.0.1:PORT (an AMQP 1.0 Proton broker or qdrouterd: SASL ANONYMOUS, no user)
   * or etcd://127.0.0.1:PORT (an etcd member's client port)
   */
  readonly url: string;
  /** Private (0700) temporary directory holding all server state and logs. */
  readonly dataDir: string;
  /** Captured stdout+stderr of the server process. */
  readonly logFile: string;
  /** pid of the spawned process (also its process-group id); undefined when not running. */
  readonly pid: number | undefined;
  /** True between a successful (re)start and stop()/kill()/an unexpected exit. */
  readonly running: boolean;
  /** Milliseconds the last (re)start took until the server answered its protocol. */
  readonly startupMs: number;
  /** Graceful stop of the whole process tree, then removes dataDir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL of the whole process tree (a crash); keeps dataDir and port for restart(). */
  kill(): Promise<void>;
  /** Graceful stop (if running), keeping dataDir and port, then start again and wait until it answers. */
  restart(): Promise<void>;
  /** Last `maxBytes` of the captured server output. */
  logTail(maxBytes?: number): string;
}

export interface StartOptions {
  /** Use this port instead of a free one (no retry on EADDRINUSE then). */
  port?: number;
  /** Give up starting after this long (default: Redis, Proton brokers and qdrouterd 15 s, RabbitMQ 90 s). */
  startTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL in stop()/restart() (default: RabbitMQ 15 s, the others 5 s). */
  stopGraceMs?: number;
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  /**
   * Server executable (default from REDIS_SERVER_BIN/RABBITMQ_SERVER_BIN/QDROUTERD_BIN, then well-known paths,
   * then PATH; a Proton broker's is its own, see ProtonBrokerOptions).
   */
  binary?: string;
}

// ---------------------------------------------------------------------------
// Generic managed server
// ---------------------------------------------------------------------------

export interface LaunchSpec {
  readonly kind: ServerKind;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Called right before every spawn (e.g. to remember log offsets). */
  readonly beforeLaunch?: () => void;
  /** One readiness attempt; true once the server fully answers its protocol. */
  readonly probe: (port: number) => Promise<boolean>;
  readonly probeName: string;
  readonly probeIntervalMs: number;
  readonly startTimeoutMs: number;
  readonly stopGraceMs: number;
  /** Other log files worth showing in error messages (besides server.log). */
  readonly extraLogs: () => string[];
}

class LaunchError extends Error {
  override readonly name = 'LaunchError';
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
  }
}

// RabbitMQ says `dist_port_already_used` when its Erlang distribution port was taken.
const ADDRESS_IN_USE = /eaddrinuse|address already in use|dist_port_already_used/i;

/** Whether a server's log says a port it was given was taken (then a retry on new ports may work). */
export function saysAddressInUse(log: string): boolean {
  return ADDRESS_IN_USE.test(log);
}

function tailOfFile(file: string, maxBytes: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, maxBytes);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

export class ManagedServer implements RunningServer, Cleanable {
  readonly host = LOOPBACK;
  readonly logFile: string;
  private proc: Spawned | undefined;
  private lastStartupMs = 0;
  private disposed = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly kind: ServerKind,
    readonly port: number,
    readonly url: string,
    readonly dataDir: string,
    protected readonly spec: LaunchSpec,
  ) {
    this.logFile = path.join(dataDir, 'server.log');
  }

  get pid(): number | undefined {
    return this.proc && !this.proc.exit.done ? this.proc.child.pid : undefined;
  }

  get running(): boolean {
    return this.proc !== undefined && !this.proc.exit.done;
  }

  get startupMs(): number {
    return this.lastStartupMs;
  }

  logTail(maxBytes = 4000): string {
    const parts = [this.logFile, ...this.spec.extraLogs()]
      .map((f) => [f, tailOfFile(f, maxBytes)] as const)
      .filter(([, text]) => text.trim() !== '')
      .map(([f, text]) => `--- ${f} (tail) ---\n${text.trimEnd()}`);
    return parts.join('\n') || `(no output captured in ${this.logFile})`;
  }

  // -- lifecycle -----------------------------------------------------------

  stop(): Promise<void> {
    return this.serial(async () => {
      if (this.disposed) return;
      try {
        await this.terminate(true);
      } finally {
        await this.dispose();
      }
    });
  }

  kill(): Promise<void> {
    return this.serial(async () => {
      this.assertUsable('kill');
      await this.terminate(false);
    });
  }

  restart(): Promise<void> {
    return this.serial(async () => {
      this.assertUsable('restart');
      await this.terminate(true);
      await this.launch();
    });
  }

  /** First start; used by the start* factories. */
  async start(): Promise<void> {
    track(this);
    await this.launch();
  }

  cleanupSync(): void {
    const pid = this.proc?.child.pid;
    if (pid !== undefined && !this.proc?.exit.done) killTreeSync(pid);
    this.disposed = true;
    untrack(this);
    if (!keepData()) {
      try {
        fs.rmSync(this.dataDir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
      } catch {
        /* best effort */
      }
    }
  }

  async shutdownForSignal(): Promise<void> {
    // Deliberately not queued behind a restart() in progress: that launch will
    // notice the exit and fail on its own.
    try {
      await this.terminate(true, Math.min(this.spec.stopGraceMs, 5_000));
    } finally {
      await this.dispose();
    }
  }

  // -- internals -----------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private assertUsable(op: string): void {
    if (this.disposed) throw new Error(`${this.kind} on port ${this.port}: ${op}() after stop()`);
  }

  /** Stopped for good: out of the registry, data dir removed (unless kept). */
  private async dispose(): Promise<void> {
    this.disposed = true;
    untrack(this);
    await this.removeDataDir();
  }

  private async removeDataDir(): Promise<void> {
    if (keepData()) return;
    await fsp.rm(this.dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }

  private describeExit(e: ExitState): string {
    if (e.error) return `could not spawn ${this.spec.command}: ${e.error.message}`;
    return `the server process exited early (${e.signal ? `signal ${e.signal}` : `code ${e.code}`})`;
  }

  private async launch(): Promise<void> {
    const { command, args, env, kind } = this.spec;
    const t0 = performance.now();
    this.spec.beforeLaunch?.();
    const proc = spawnDetached(command, args, { cwd: this.dataDir, env, logFile: this.logFile });
    const { exit } = proc;
    this.proc = proc;

    try {
      await waitFor(async () => (exit.done ? false : this.spec.probe(this.port)), {
        timeoutMs: this.spec.startTimeoutMs,
        intervalMs: this.spec.probeIntervalMs,
        what: `${kind} on ${LOOPBACK}:${this.port} to answer ${this.spec.probeName}`,
        abort: () => (exit.done ? this.describeExit(exit) : undefined),
      });
    } catch (err) {
      await this.terminate(false, 0, false).catch(() => undefined);
      const tail = this.logTail(6000);
      const msg = `failed to start ${kind}: ${(err as Error).message}\n${tail}`;
      throw new LaunchError(msg, saysAddressInUse(tail.slice(-6000)));
    }
    this.lastStartupMs = Math.round(performance.now() - t0);
  }

  /**
   * Ends the process tree. graceful: SIGTERM to the group, SIGKILL after the
   * grace period; otherwise SIGKILL straight away. Resolves once the process
   * exited, no descendant is alive and (if waitForPort) the port is bindable again.
   */
  private async terminate(graceful: boolean, graceMs = this.spec.stopGraceMs, waitForPort = true): Promise<void> {
    const proc = this.proc;
    if (proc?.child.pid === undefined) {
      this.proc = undefined;
      return;
    }
    await endProcessTree(proc, this.kind, graceful, graceMs);
    this.proc = undefined;
    if (!waitForPort) return;
    await waitFor(() => isPortBindable(this.port), {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: `port ${this.port} to be free after ${this.kind} exited`,
    });
  }
}

// ---------------------------------------------------------------------------
// Factories
// ---------------------------------------------------------------------------

/**
 * How to launch `command args` as `kind` when it starts in moments (Redis, Proton brokers,
 * qdrouterd): ready once `probe` says so (tried every 20 ms), 15 s to start and 5 s to stop unless
 * `opts` say otherwise; `env` and then `opts.env` over this process's environment.
 */
export function quickStartSpec(
  kind: ServerKind,
  command: string,
  args: string[],
  opts: StartOptions,
  probe: (port: number) => Promise<boolean>,
  probeName: string,
  env: NodeJS.ProcessEnv = {},
): LaunchSpec {
  return {
    kind,
    command,
    args,
    env: { ...process.env, ...env, ...opts.env },
    probe,
    probeName,
    probeIntervalMs: 20,
    startTimeoutMs: opts.startTimeoutMs ?? 15_000,
    stopGraceMs: opts.stopGraceMs ?? 5_000,
    extraLogs: () => [],
  };
}

/** True if `file` is a file this process may execute. */
export function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The first executable of `candidates`, then of `name` on PATH. */
export function findExecutable(candidates: readonly (string | undefined)[], name: string): string {
  const pathDirs = (process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean);
  const all = [...candidates, ...pathDirs.map((d) => path.join(d, name))];
  const found = all.find((c): c is string => !!c && isExecutableFile(c));
  if (found) return found;
  throw new Error(
    `${name} not found (looked at ${all.filter(Boolean).join(', ')}); run scripts/install-deps.sh or set the *_SERVER_BIN env var`,
  );
}

async function makeDataDir(kind: ServerKind): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `hybridbus-${kind}-`));
}

/** Builds a server in a fresh data dir and starts it; a start that lost a port race is tried again on new ports. */
export async function startWithRetry<S extends ManagedServer>(
  kind: ServerKind,
  fixedPort: number | undefined,
  build: (dataDir: string) => Promise<S>,
): Promise<S> {
  const attempts = fixedPort === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const dataDir = await makeDataDir(kind);
    const server = await build(dataDir);
    try {
      await server.start();
      return server;
    } catch (err) {
      await server.stop().catch(() => undefined);
      // another process grabbed the port between freePort() and the bind: try new ports
      if (err instanceof LaunchError && err.addressInUse && attempt < attempts) continue;
      throw err;
    }
  }
}

/** Servers started by this process and not yet stopped (including killed ones awaiting restart). */
export function activeServers(): RunningServer[] {
  return tracked().filter((s): s is Cleanable & RunningServer => s instanceof ManagedServer);
}

/** Stops every server started by this process (e.g. in a global after()). */
export async function stopAllServers(): Promise<void> {
  await Promise.allSettled(tracked().map((s) => s.shutdownForSignal()));
}
