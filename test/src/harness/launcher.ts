/**
 * Real-server launcher for tests (in the spirit of nats.js's nst/src/launcher.ts).
 *
 * Starts throw-away Redis and RabbitMQ servers on free 127.0.0.1 ports, each
 * with a private temporary data directory, and tears them down again:
 *
 *   const redis = await startRedis();            // redis://127.0.0.1:PORT
 *   const rabbit = await startRabbitMQ();        // amqp://guest:guest@127.0.0.1:PORT/ (+ AMQP 1.0 on the same port)
 *   const sentinel = await startRedisSentinel(redis); // redis+sentinel://127.0.0.1:PORT/<masterName>
 *   ...
 *   await rabbit.restart();                      // same port, same node name, same mnesia dir
 *   await redis.kill();                          // SIGKILL ("crash"), data dir kept; restart() brings it back
 *   await redis.stop(); await rabbit.stop();     // graceful stop, whole process tree gone, data dir removed
 *
 * or, per test file / describe():
 *
 *   const servers = sharedServers({ redis: () => startRedis(), rabbit: () => startRabbitMQ() });
 *   test('x', () => use(servers.redis.url));
 *
 * Several servers together (a 3-node RabbitMQ cluster, Redis with a replica and Sentinels) are
 * in cluster.ts, built from these.
 *
 * Process model
 * - Every server is spawned detached (its own process group, pgid = pid). stop()
 *   sends SIGTERM to the group, waits up to a grace period, then SIGKILLs the
 *   group *and* every descendant (Erlang's helper processes such as
 *   erl_child_setup/inet_gethost run in their own sessions, so a group kill
 *   alone would not reach them). It resolves only when the spawned process has
 *   exited, no descendant is left (zombies don't count, see below) and the port
 *   can be bound again.
 * - stdout/stderr go to `<dataDir>/server.log`, never to the test output.
 * - Readiness is protocol-level: Redis must answer a RESP PING with +PONG; a
 *   Sentinel must answer SENTINEL get-master-addr-by-name with its master's address;
 *   RabbitMQ must answer the AMQP 0-9-1 protocol header with a connection.start
 *   method frame (an open port alone is not enough). RabbitMQ also opens its
 *   AMQP listener *before* its plugins (amqp1_0, ...) are started, so it
 *   additionally has to have logged "Server startup complete" for this boot.
 * - Failed starts reject with an error that includes the tail of the server's
 *   output; a start that lost a port race (EADDRINUSE) is retried on new ports.
 * - Cleanup on failure/interrupt: all servers of this process are kept in a
 *   registry. On process 'exit' they are SIGKILLed synchronously and their data
 *   directories removed; on SIGINT/SIGTERM/SIGHUP they are stopped (bounded
 *   wait) and the process exits with 128+signal (130/143/129). A second signal
 *   exits immediately (the 'exit' hook still kills everything). The handlers
 *   are installed once, lazily, when the first server is spawned. Nothing can
 *   clean up after a SIGKILL of the test process itself.
 * - epmd: the first Erlang node started on the machine starts the Erlang port
 *   mapper daemon (`epmd -daemon`, 127.0.0.1:4369 because ERL_EPMD_ADDRESS is
 *   set). It daemonizes out of our process tree, is shared by all nodes and is
 *   deliberately left running.
 * - Zombies: inside some containers PID 1 does not reap orphans, so the Erlang
 *   helpers stay around as zombies after the VM exits. Liveness checks read
 *   /proc and treat zombies as dead.
 *
 * Environment knobs
 * - HYBRIDBUS_TEST_KEEP_DATA=1   keep data directories (logs, mnesia) after stop/exit for debugging
 * - REDIS_SERVER_BIN, RABBITMQ_SERVER_BIN   override the server executables
 *
 * Only Node built-ins are used; everything listens on and talks to 127.0.0.1 only.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';

import {
  amqpConnectionStart,
  exchange,
  freePort,
  freePorts,
  isPortBindable,
  LOOPBACK,
  redisPing,
  waitFor,
} from './ports.js';

export { freePort } from './ports.js';

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

export type ServerKind = 'redis' | 'redis-sentinel' | 'rabbitmq';

export interface RunningServer {
  readonly kind: ServerKind;
  readonly host: '127.0.0.1';
  readonly port: number;
  /** redis://127.0.0.1:PORT, redis+sentinel://127.0.0.1:PORT/<masterName> or amqp://guest:guest@127.0.0.1:PORT/ */
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

export interface RedisServer extends RunningServer {
  readonly kind: 'redis';
}

export interface RedisSentinelServer extends RunningServer {
  readonly kind: 'redis-sentinel';
  /** Name of the monitored master (the path of `url`). */
  readonly masterName: string;
  /** The Redis server it monitors. */
  readonly master: RunningServer;
}

export interface RabbitMQServer extends RunningServer {
  readonly kind: 'rabbitmq';
  /** Erlang node name, e.g. hb1234x1r0f3a@localhost; kept across restart(). */
  readonly nodeName: string;
  /** Erlang distribution port (RABBITMQ_DIST_PORT). */
  readonly distPort: number;
  /** Enabled plugins. */
  readonly plugins: readonly string[];
  /** Runs `rabbitmqctl -n <node> ...args` against this node (same HOME/cookie); resolves with stdout. */
  ctl(args: readonly string[], opts?: { timeoutMs?: number }): Promise<string>;
}

export interface StartOptions {
  /** Use this port instead of a free one (no retry on EADDRINUSE then). */
  port?: number;
  /** Give up starting after this long (default: Redis 15 s, RabbitMQ 90 s). */
  startTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL in stop()/restart() (default: Redis 5 s, RabbitMQ 15 s). */
  stopGraceMs?: number;
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  /** Server executable (default from REDIS_SERVER_BIN/RABBITMQ_SERVER_BIN, then well-known paths, then PATH). */
  binary?: string;
}

export interface RedisOptions extends StartOptions {
  /** Enable AOF persistence (default false; RDB snapshots are always off). */
  appendonly?: boolean;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
}

export interface RedisSentinelOptions extends StartOptions {
  /** Master name (default 'hbmaster'). */
  masterName?: string;
  /** Extra sentinel.conf lines, e.g. ['sentinel down-after-milliseconds hbmaster 1000']. */
  config?: string[];
  /** Sentinels that must agree the master is down before a failover (default 1). */
  quorum?: number;
}

export interface RabbitMQOptions extends StartOptions {
  /** Plugins to enable (default ['rabbitmq_amqp1_0']; pass [] for none). */
  plugins?: string[];
  /** Extra rabbitmq.conf (new-style sysctl format) settings, e.g. { 'heartbeat': 5 }. */
  config?: Record<string, string | number | boolean>;
  /** Contents for advanced.config (Erlang terms), if needed. */
  advancedConfig?: string;
  /** Node name prefix (default 'hb'); a unique suffix and @localhost are appended. */
  nodeNamePrefix?: string;
  /**
   * Erlang cookie, written to `<dataDir>/.erlang.cookie` (HOME is the data dir) before the first
   * start, so nodes given the same cookie can form a cluster (cluster.ts); default: Erlang
   * creates a random one per node.
   */
  erlangCookie?: string;
}

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

// ---------------------------------------------------------------------------
// Registry and process-level cleanup hooks (installed once)
// ---------------------------------------------------------------------------

interface Cleanable {
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

const keepData = (): boolean => /^(1|true|yes)$/i.test(process.env['HYBRIDBUS_TEST_KEEP_DATA'] ?? '');

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

/** Servers started by this process and not yet stopped (including killed ones awaiting restart). */
export function activeServers(): RunningServer[] {
  return [...registry.servers].filter((s): s is Cleanable & RunningServer => s instanceof ManagedServer);
}

/** Stops every server started by this process (e.g. in a global after()). */
export async function stopAllServers(): Promise<void> {
  await Promise.allSettled([...registry.servers].map((s) => s.shutdownForSignal()));
}

// ---------------------------------------------------------------------------
// Generic managed server
// ---------------------------------------------------------------------------

interface ExitState {
  done: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  error: Error | undefined;
}

interface LaunchSpec {
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

const ADDRESS_IN_USE = /eaddrinuse|address already in use/i;

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

function readFrom(file: string, offset: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= offset) return '';
      const buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
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

class ManagedServer implements RunningServer, Cleanable {
  readonly host = LOOPBACK;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exit: ExitState = { done: true, code: null, signal: null, error: undefined };
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
    return this.child && !this.exit.done ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && !this.exit.done;
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
        this.disposed = true;
        registry.servers.delete(this);
        await this.removeDataDir();
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
    registry.servers.add(this);
    installProcessHandlers();
    await this.launch();
  }

  cleanupSync(): void {
    const pid = this.child?.pid;
    if (pid !== undefined && !this.exit.done) {
      const tree = processTree(pid);
      signalQuietly(-pid, 'SIGKILL');
      for (const p of tree) signalQuietly(p, 'SIGKILL');
    }
    this.disposed = true;
    registry.servers.delete(this);
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
      this.disposed = true;
      registry.servers.delete(this);
      await this.removeDataDir();
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

  private async removeDataDir(): Promise<void> {
    if (keepData()) return;
    await fsp.rm(this.dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }

  private describeExit(): string {
    const e = this.exit;
    if (e.error) return `could not spawn ${this.spec.command}: ${e.error.message}`;
    return `the server process exited early (${e.signal ? `signal ${e.signal}` : `code ${e.code}`})`;
  }

  private async launch(): Promise<void> {
    const { command, args, env, kind } = this.spec;
    const t0 = performance.now();
    this.spec.beforeLaunch?.();
    fs.appendFileSync(
      this.logFile,
      `\n===== [test launcher] ${new Date().toISOString()} starting: ${command} ${args.map((a) => JSON.stringify(a)).join(' ')}\n`,
    );
    const fd = fs.openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, { cwd: this.dataDir, env, detached: true, stdio: ['ignore', fd, fd] });
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
    child.unref(); // a forgotten server must not keep the test process alive; the 'exit' hook kills it
    this.child = child;
    this.exit = exit;

    try {
      await waitFor(async () => (exit.done ? false : this.spec.probe(this.port)), {
        timeoutMs: this.spec.startTimeoutMs,
        intervalMs: this.spec.probeIntervalMs,
        what: `${kind} on ${LOOPBACK}:${this.port} to answer ${this.spec.probeName}`,
        abort: () => (exit.done ? this.describeExit() : undefined),
      });
    } catch (err) {
      await this.terminate(false, 0, false).catch(() => undefined);
      const tail = this.logTail(6000);
      const msg = `failed to start ${kind}: ${(err as Error).message}\n${tail}`;
      throw new LaunchError(msg, ADDRESS_IN_USE.test(tail.slice(-6000)));
    }
    this.lastStartupMs = Math.round(performance.now() - t0);
  }

  /**
   * Ends the process tree. graceful: SIGTERM to the group, SIGKILL after the
   * grace period; otherwise SIGKILL straight away. Resolves once the process
   * exited, no descendant is alive and (if waitForPort) the port is bindable again.
   */
  private async terminate(graceful: boolean, graceMs = this.spec.stopGraceMs, waitForPort = true): Promise<void> {
    const child = this.child;
    const pid = child?.pid;
    if (!child || pid === undefined) {
      this.child = undefined;
      return;
    }
    child.ref(); // keep the event loop alive until it is really gone
    const exit = this.exit;
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
        what: `${this.kind} process tree of pid ${pid} to die after SIGKILL`,
      });
    }
    this.child = undefined;
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

function findExecutable(candidates: readonly (string | undefined)[], name: string): string {
  const pathDirs = (process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean);
  const all = [...candidates, ...pathDirs.map((d) => path.join(d, name))];
  for (const c of all) {
    if (!c) continue;
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  throw new Error(
    `${name} not found (looked at ${all.filter(Boolean).join(', ')}); run scripts/install-deps.sh or set the *_SERVER_BIN env var`,
  );
}

async function makeDataDir(kind: ServerKind): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `hybridbus-${kind}-`));
}

async function startWithRetry<S extends ManagedServer>(
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

/** Starts a private redis-server on a free 127.0.0.1 port; resolves once it answers PING. */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const binary = opts.binary ?? findExecutable([process.env['REDIS_SERVER_BIN'], '/usr/bin/redis-server'], 'redis-server');
  return startWithRetry('redis', opts.port, async (dataDir) => {
    const port = opts.port ?? (await freePort());
    const args = [
      '--port', String(port),
      '--bind', LOOPBACK,
      '--protected-mode', 'yes',
      '--dir', dataDir,
      '--save', '',
      '--appendonly', opts.appendonly ? 'yes' : 'no',
      '--daemonize', 'no',
      '--logfile', '', // log to stdout, which goes to server.log
      ...(opts.args ?? []),
    ];
    const spec: LaunchSpec = {
      kind: 'redis',
      command: binary,
      args,
      env: { ...process.env, ...opts.env },
      probe: async (p) => {
        const reply = await redisPing(p, 1000);
        return reply === '+PONG' || (reply?.startsWith('-NOAUTH') ?? false);
      },
      probeName: 'PING with +PONG',
      probeIntervalMs: 20,
      startTimeoutMs: opts.startTimeoutMs ?? 15_000,
      stopGraceMs: opts.stopGraceMs ?? 5_000,
      extraLogs: () => [],
    };
    return new ManagedServer('redis', port, `redis://${LOOPBACK}:${port}`, dataDir, spec) as ManagedServer & RedisServer;
  });
}

/** The master address a Sentinel reports for `name` ("host:port"), or null if it has none / does not answer. */
async function sentinelMasterAddr(port: number, name: string, timeoutMs = 1000): Promise<string | null> {
  const args = ['SENTINEL', 'get-master-addr-by-name', name];
  const req = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  const reply = /^\*2\r\n\$\d+\r\n([^\r]*)\r\n\$\d+\r\n(\d+)\r\n/;
  const { data } = await exchange(port, req, (b) => reply.test(b.toString('latin1')) || /^(-|\*-1\r\n|\*0\r\n)/.test(b.toString('latin1')), timeoutMs);
  const m = reply.exec(data.toString('latin1'));
  return m ? `${m[1]}:${m[2]}` : null;
}

class ManagedRedisSentinel extends ManagedServer implements RedisSentinelServer {
  declare readonly kind: 'redis-sentinel';
  constructor(
    port: number,
    dataDir: string,
    spec: LaunchSpec,
    readonly masterName: string,
    readonly master: RunningServer,
  ) {
    super('redis-sentinel', port, `redis+sentinel://${LOOPBACK}:${port}/${masterName}`, dataDir, spec);
  }
}

/**
 * Starts a Redis Sentinel (`redis-server <conf> --sentinel`) on a free 127.0.0.1 port that monitors
 * `master` under `masterName` with quorum `opts.quorum` (default 1); resolves once it reports the master's address. Its
 * config file lives in its own data dir (Sentinel rewrites it). Stop it before its master.
 */
export async function startRedisSentinel(master: RunningServer, opts: RedisSentinelOptions = {}): Promise<RedisSentinelServer> {
  const binary = opts.binary ?? findExecutable([process.env['REDIS_SERVER_BIN'], '/usr/bin/redis-server'], 'redis-server');
  const masterName = opts.masterName ?? 'hbmaster';
  const masterAddr = `${LOOPBACK}:${master.port}`;
  return startWithRetry('redis-sentinel', opts.port, async (dataDir) => {
    const port = opts.port ?? (await freePort());
    const configFile = path.join(dataDir, 'sentinel.conf');
    await fsp.writeFile(
      configFile,
      [
        '# generated by test/src/harness/launcher.ts (Sentinel rewrites this file)',
        `port ${port}`,
        `bind ${LOOPBACK}`,
        'daemonize no',
        `dir ${dataDir}`,
        'logfile ""',
        `sentinel monitor ${masterName} ${LOOPBACK} ${master.port} ${opts.quorum ?? 1}`,
        ...(opts.config ?? []),
        '',
      ].join('\n'),
    );
    const spec: LaunchSpec = {
      kind: 'redis-sentinel',
      command: binary,
      args: [configFile, '--sentinel'],
      env: { ...process.env, ...opts.env },
      probe: async (p) => (await sentinelMasterAddr(p, masterName)) === masterAddr,
      probeName: `SENTINEL get-master-addr-by-name ${masterName} with ${masterAddr}`,
      probeIntervalMs: 20,
      startTimeoutMs: opts.startTimeoutMs ?? 15_000,
      stopGraceMs: opts.stopGraceMs ?? 5_000,
      extraLogs: () => [],
    };
    return new ManagedRedisSentinel(port, dataDir, spec, masterName, master);
  });
}

class ManagedRabbitMQ extends ManagedServer implements RabbitMQServer {
  declare readonly kind: 'rabbitmq';
  constructor(
    port: number,
    dataDir: string,
    spec: LaunchSpec,
    readonly nodeName: string,
    readonly distPort: number,
    readonly plugins: readonly string[],
    private readonly ctlPath: string,
  ) {
    super('rabbitmq', port, `amqp://guest:guest@${LOOPBACK}:${port}/`, dataDir, spec);
  }

  ctl(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    const env = this.spec.env;
    return new Promise((resolve, reject) => {
      execFile(
        this.ctlPath,
        ['-n', this.nodeName, ...args],
        { env, cwd: this.dataDir, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message}\n${stderr}`));
          else resolve(stdout);
        },
      );
    });
  }
}

function rabbitConfValue(v: string | number | boolean): string {
  return typeof v === 'string' ? v : String(v);
}

/**
 * Starts a private RabbitMQ node on a free 127.0.0.1 port (AMQP 0-9-1, plus
 * AMQP 1.0 on the same port via rabbitmq_amqp1_0 unless `plugins` says
 * otherwise); resolves once it answers the AMQP handshake with connection.start.
 */
export async function startRabbitMQ(opts: RabbitMQOptions = {}): Promise<RabbitMQServer> {
  // Debian's /usr/sbin/rabbitmq-server is a wrapper that `su`s to the rabbitmq
  // user, cd's to /var/lib/rabbitmq and redirects output to /var/log/rabbitmq
  // when run as root; the real start script lives in /usr/lib/rabbitmq/bin.
  const binary =
    opts.binary ??
    findExecutable(
      [process.env['RABBITMQ_SERVER_BIN'], '/usr/lib/rabbitmq/bin/rabbitmq-server', '/usr/lib/rabbitmq/sbin/rabbitmq-server'],
      'rabbitmq-server',
    );
  const ctlPath = path.join(path.dirname(binary), 'rabbitmqctl');
  const plugins = opts.plugins ?? ['rabbitmq_amqp1_0'];

  return startWithRetry('rabbitmq', opts.port, async (dataDir) => {
    const [p1, p2] = await freePorts(opts.port === undefined ? 2 : 1);
    const port = opts.port ?? p1!;
    const distPort = opts.port === undefined ? p2! : p1!;
    const n = ++registry.counter;
    const rand = Math.floor(Math.random() * 0xffff).toString(16).padStart(4, '0');
    const nodeName = `${opts.nodeNamePrefix ?? 'hb'}${process.pid}x${n}r${rand}@localhost`;

    const mnesiaBase = path.join(dataDir, 'mnesia');
    const logBase = path.join(dataDir, 'log');
    const confDir = path.join(dataDir, 'conf.d');
    await Promise.all([fsp.mkdir(mnesiaBase), fsp.mkdir(logBase), fsp.mkdir(confDir)]);
    const enabledPluginsFile = path.join(dataDir, 'enabled_plugins');
    await fsp.writeFile(enabledPluginsFile, `[${plugins.join(',')}].\n`);
    const configFile = path.join(dataDir, 'rabbitmq.conf');
    const conf: Record<string, string | number | boolean> = {
      'listeners.tcp.default': `${LOOPBACK}:${port}`,
      'loopback_users.guest': true,
      ...opts.config,
    };
    await fsp.writeFile(
      configFile,
      `# generated by test/src/harness/launcher.ts\n${Object.entries(conf)
        .map(([k, v]) => `${k} = ${rabbitConfValue(v)}`)
        .join('\n')}\n`,
    );
    const advancedConfigFile = path.join(dataDir, 'advanced.config');
    if (opts.advancedConfig !== undefined) await fsp.writeFile(advancedConfigFile, opts.advancedConfig);
    const confEnvFile = path.join(dataDir, 'rabbitmq-env.conf'); // empty: shields us from /etc/rabbitmq/rabbitmq-env.conf
    await fsp.writeFile(confEnvFile, '');
    // Erlang refuses a cookie file that others can read.
    if (opts.erlangCookie !== undefined) await fsp.writeFile(path.join(dataDir, '.erlang.cookie'), opts.erlangCookie, { mode: 0o400 });

    // Start from the caller's environment minus anything that would steer the broker elsewhere.
    const base: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (k.startsWith('RABBITMQ_') || k === 'NOTIFY_SOCKET' || k === 'ERL_EPMD_ADDRESS') continue;
      base[k] = v;
    }
    const loopbackDist = '-kernel inet_dist_use_interface {127,0,0,1}';
    const env: NodeJS.ProcessEnv = {
      ...base,
      HOME: dataDir, // own ~/.erlang.cookie
      ERL_EPMD_ADDRESS: LOOPBACK,
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_NODE_IP_ADDRESS: LOOPBACK,
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort), // default would be NODE_PORT+20000, which overflows for high ports
      RABBITMQ_MNESIA_BASE: mnesiaBase,
      RABBITMQ_LOG_BASE: logBase,
      RABBITMQ_ENABLED_PLUGINS_FILE: enabledPluginsFile,
      RABBITMQ_CONFIG_FILE: configFile,
      RABBITMQ_CONFIG_FILES: confDir, // default /etc/rabbitmq/conf.d
      RABBITMQ_ADVANCED_CONFIG_FILE: advancedConfigFile,
      RABBITMQ_CONF_ENV_FILE: confEnvFile,
      RABBITMQ_PID_FILE: path.join(dataDir, 'rabbitmq.pid'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: loopbackDist, // Erlang distribution listens on 127.0.0.1 only
      RABBITMQ_CTL_ERL_ARGS: loopbackDist,
      ...opts.env,
    };
    // Readiness: RabbitMQ starts its AMQP listener before the plugins (e.g.
    // amqp1_0) are up, so wait for the "Server startup complete" log line of
    // *this* boot (logs are appended across restarts, hence the offsets) and
    // then require a real connection.start on the AMQP port.
    const logsToWatch = [path.join(logBase, `${nodeName}.log`), path.join(dataDir, 'server.log')];
    const offsets = new Map<string, number>();
    const bootCompleted = (): boolean => logsToWatch.some((f) => /Server startup complete/.test(readFrom(f, offsets.get(f) ?? 0)));
    const spec: LaunchSpec = {
      kind: 'rabbitmq',
      command: binary,
      args: [],
      env,
      beforeLaunch: () => {
        for (const f of logsToWatch) offsets.set(f, fileSize(f));
      },
      probe: async (p) => bootCompleted() && (await amqpConnectionStart(p, 2000)) !== null,
      probeName: 'the AMQP 0-9-1 header with connection.start after "Server startup complete"',
      probeIntervalMs: 100,
      startTimeoutMs: opts.startTimeoutMs ?? 90_000,
      stopGraceMs: opts.stopGraceMs ?? 15_000,
      extraLogs: () => [path.join(logBase, `${nodeName}.log`)],
    };
    return new ManagedRabbitMQ(port, dataDir, spec, nodeName, distPort, plugins, ctlPath);
  }) as Promise<RabbitMQServer>;
}

// ---------------------------------------------------------------------------
// Sharing servers across the tests of a file / describe()
// ---------------------------------------------------------------------------

type Factories = Record<string, () => Promise<RunningServer>>;
export type SharedServers<F extends Factories> = { readonly [K in keyof F]: Awaited<ReturnType<F[K]>> };

/**
 * Registers before()/after() hooks in the current node:test scope (file or
 * describe) that start the given servers in parallel once and stop them at
 * the end. Returns an object whose properties are the running servers
 * (accessing one before it has started throws).
 *
 *   describe('rpc over rabbit', () => {
 *     const s = sharedServers({ rabbit: () => startRabbitMQ(), redis: () => startRedis() });
 *     test('call', async () => { ... s.rabbit.url ... });
 *   });
 */
export function sharedServers<F extends Factories>(factories: F): SharedServers<F> {
  const started = new Map<string, RunningServer>();
  const view = {} as SharedServers<F>;
  const keys = Object.keys(factories);
  for (const key of keys) {
    Object.defineProperty(view, key, {
      enumerable: true,
      get(): RunningServer {
        const s = started.get(key);
        if (!s) throw new Error(`sharedServers: '${key}' is not running (did its before() hook fail or not run yet?)`);
        return s;
      },
    });
  }
  const stopAll = async (): Promise<void> => {
    const servers = [...started.values()];
    started.clear();
    await Promise.all(servers.map((s) => s.stop()));
  };
  before(async () => {
    const results = await Promise.allSettled(keys.map((k) => factories[k]!()));
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') started.set(keys[i]!, r.value);
    });
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await stopAll();
      throw failed.reason;
    }
  });
  after(stopAll);
  return view;
}
