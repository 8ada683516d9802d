/**
 * Child processes of a fault scenario, seen from the campaign: fork child.ts with a role, wait
 * for it to be ready, talk to it over IPC, signal it, and tell a crash from a death we caused.
 *
 * A crash is an exit nobody asked for: a signal this side did not send (SIGABRT from a libzmq
 * assertion, SIGSEGV), a non-zero exit code, or any exit before we sent `exit`. Every signal
 * sent goes through `signal()`, which remembers it. Output (stdout and stderr) is kept, the
 * last 64 KiB, for crash reasons and for counting log lines (e.g. EBUSY send failures).
 *
 * Every process forked here is SIGKILLed when the campaign process exits, and `killAll()`
 * ends the current ones (the runner's watchdog uses it to unblock a stuck scenario).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LedgerEvents } from './types.js';

const script = fileURLToPath(new URL('./child.js', import.meta.url));
const live = new Set<Proc>();
process.on('exit', () => {
  for (const p of live) p.proc.kill('SIGKILL');
});

/** SIGKILL every child forked so far that still runs (recorded as sent, so not a crash). */
export function killAll(): void {
  for (const p of [...live]) p.signal('SIGKILL');
}

export interface ChildMessage {
  kind: string;
  [k: string]: unknown;
}

const OUTPUT_KEEP = 64 * 1024;

/**
 * Marks `p` handled: a scenario asks for a message early (e.g. `finished`) and may fail before
 * awaiting it; the rejection when its processes are then stopped must not be "unhandled" and
 * end the campaign. Whoever awaits `p` still gets the rejection.
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export class Proc {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The child's `ready` message (its bound address, pid, ...). */
  ready: ChildMessage = { kind: 'none' };
  private readonly signalsSent = new Set<string>();
  private exitRequested = false;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;
  private output = '';
  /** Lines of output matching each of `countLines` (counted as they arrive, not from the tail). */
  readonly lineCounts = new Map<string, number>();
  private readonly waiters = new Set<{ kind: string; resolve: (m: ChildMessage) => void }>();
  private readonly eventHandlers: Array<(ev: LedgerEvents) => void> = [];

  private constructor(
    readonly name: string,
    readonly role: string,
    spec: Record<string, unknown>,
    execArgv: string[],
    private readonly countLines: Record<string, RegExp>,
  ) {
    this.proc = fork(script, [JSON.stringify({ ...spec, role, name })], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      execArgv,
      env: { ...process.env, HYBRIDBUS_LOG_LEVEL: process.env['HYBRIDBUS_LOG_LEVEL'] ?? 'warn' },
    });
    this.pid = this.proc.pid ?? -1;
    live.add(this);
    const keep = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      this.output = (this.output + text).slice(-OUTPUT_KEEP);
      for (const [label, re] of Object.entries(this.countLines)) {
        for (const line of text.split('\n')) if (re.test(line)) this.lineCounts.set(label, (this.lineCounts.get(label) ?? 0) + 1);
      }
    };
    this.proc.stdout?.on('data', keep);
    this.proc.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        // Whoever waits for a message will not get it now.
        for (const w of [...this.waiters]) w.resolve({ kind: 'exited', code, signal });
        this.waiters.clear();
        resolve();
      });
    });
    this.proc.on('message', (m: ChildMessage) => {
      if (m.kind === 'events') for (const h of this.eventHandlers) h(m as unknown as LedgerEvents);
      for (const w of [...this.waiters]) {
        if (w.kind === m.kind) {
          this.waiters.delete(w);
          w.resolve(m);
        }
      }
    });
  }

  /**
   * Forks child.ts as `role` and resolves once it says `ready` (rejects, with its output, if it
   * exits first or takes longer than `timeoutMs`).
   */
  static async start(
    name: string,
    role: string,
    spec: Record<string, unknown>,
    opts: { execArgv?: string[]; countLines?: Record<string, RegExp>; onEvents?: (ev: LedgerEvents) => void; timeoutMs?: number } = {},
  ): Promise<Proc> {
    const p = new Proc(name, role, spec, opts.execArgv ?? [], opts.countLines ?? {});
    if (opts.onEvents) p.eventHandlers.push(opts.onEvents);
    const m = await p.next('ready', opts.timeoutMs ?? 30_000).catch(async (err: unknown) => {
      p.signal('SIGKILL');
      await p.exited;
      throw new Error(`${name} (${role}) did not start: ${(err as Error).message}\n${p.tail(3000)}`);
    });
    p.ready = m;
    return p;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Why this process counts as crashed, or undefined if it does not (yet). */
  get crashReason(): string | undefined {
    const e = this.exit;
    if (!e) return undefined;
    if (e.signal !== null) return this.signalsSent.has(e.signal) ? undefined : `${this.name}: killed by ${e.signal}, not sent by the campaign`;
    if (e.code !== 0) return `${this.name}: exit code ${e.code}`;
    return this.exitRequested ? undefined : `${this.name}: exited unasked`;
  }

  /** The first line of output that looks like the reason of a crash (an assertion, an uncaught error). */
  crashLine(): string | undefined {
    const lines = this.output.split('\n');
    return lines.find((l) => /Assertion failed|Abort|FATAL|Segmentation|Uncaught|Error:/i.test(l))?.trim().slice(0, 200);
  }

  tail(bytes = 2000): string {
    return this.output.slice(-bytes);
  }

  onEvents(h: (ev: LedgerEvents) => void): void {
    this.eventHandlers.push(h);
  }

  /** The next message of `kind`; rejects after `timeoutMs`, or if the process exits first. */
  next(kind: string, timeoutMs: number): Promise<ChildMessage> {
    if (!this.alive) return handled(Promise.reject(new Error(`${this.name} has exited (${JSON.stringify(this.exit)})`)));
    return handled(new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`${this.name}: no "${kind}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const w = {
        kind,
        resolve: (m: ChildMessage) => {
          clearTimeout(timer);
          if (m.kind === 'exited') reject(new Error(`${this.name} exited (code ${String(m['code'])}, signal ${String(m['signal'])}) while we waited for "${kind}"`));
          else resolve(m);
        },
      };
      this.waiters.add(w);
    }));
  }

  send(m: Record<string, unknown>): void {
    if (this.alive && this.proc.connected) this.proc.send(m);
  }

  /** Sends `cmd` and waits for the child's answer (a message of kind `<cmd>:done`). */
  async request(cmd: string, timeoutMs: number, extra: Record<string, unknown> = {}): Promise<ChildMessage> {
    const answer = this.next(`${cmd}:done`, timeoutMs);
    this.send({ cmd, ...extra });
    return answer;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.alive) return;
    this.signalsSent.add(sig);
    this.proc.kill(sig);
  }

  async kill9(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }

  /** Asks the child to close its bus and exit; SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.alive) return;
    this.exitRequested = true;
    this.send({ cmd: 'exit' });
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** The processes of one scenario: started together, counted together, always cleaned up. */
export class ProcGroup {
  readonly procs: Proc[] = [];

  async start(...args: Parameters<typeof Proc.start>): Promise<Proc> {
    const p = await Proc.start(...args);
    this.procs.push(p);
    return p;
  }

  crashes(): string[] {
    return this.procs.flatMap((p) => {
      const why = p.crashReason;
      if (!why) return [];
      const line = p.crashLine();
      return [line ? `${why} (${line})` : why];
    });
  }

  lineCount(label: string): number {
    return this.procs.reduce((n, p) => n + (p.lineCounts.get(label) ?? 0), 0);
  }

  /** Stops every process still running (graceful, then SIGKILL). */
  async stopAll(graceMs = 10_000): Promise<void> {
    await Promise.allSettled(this.procs.map((p) => p.stop(graceMs)));
  }
}
