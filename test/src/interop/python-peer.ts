/**
 * The real Python oslo.messaging peer (oslo_peer.py, beside this file's source) as a child
 * process of an interop test: Debian's python3-oslo.messaging under /usr/bin/python3.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3'; // Debian's, where python3-oslo.messaging lives (not a pyenv one)
const PEER = fileURLToPath(new URL('../../src/interop/oslo_peer.py', import.meta.url));

/** Whether Debian's Python can import all of `modules` (e.g. oslo_messaging; pyngus and proton for amqp://). */
export function pythonHas(...modules: string[]): boolean {
  return fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', `import ${modules.join(', ')}`], { stdio: 'ignore', timeout: 30_000 }).status === 0;
}

export type Line = Record<string, unknown>;

/** One Python process; its stdout JSON lines are collected, stderr kept for failure messages. */
export class PythonPeer {
  readonly lines: Line[] = [];
  private stderr = '';
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly events = new EventEmitter();
  private exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;

  /** `args`: MODE TRANSPORT_URL TOPIC [ARG]; `env`: added to this process's environment. */
  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(PYTHON, [PEER, ...args], { stdio: 'pipe', env: { ...process.env, ...env } });
    createInterface({ input: this.child.stdout }).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l) as Line);
        this.events.emit('change');
      } catch {
        this.stderr += `[stdout] ${l}\n`;
      }
    });
    this.child.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-8000)));
    this.exited = new Promise((resolve) =>
      this.child.on('close', (code) => {
        this.exitCode = code;
        this.events.emit('change');
        resolve(code);
      }),
    );
  }

  /** The last 8000 characters the peer wrote to stderr. */
  get stderrTail(): string {
    return this.stderr;
  }

  /** The first line matching `pred`, waiting up to `ms`; fails at once if the peer exits without one. */
  line(pred: (l: Line) => boolean, ms = 20_000): Promise<Line> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.lines.find(pred);
        const why = found ? undefined : this.exitCode !== undefined ? `exited (code ${this.exitCode})` : undefined;
        if (!found && !why) return;
        clearTimeout(timer);
        this.events.off('change', check);
        if (found) resolve(found);
        else fail(why!);
      };
      const fail = (why: string): void =>
        reject(new Error(`python peer: no matching line, ${why}; got ${JSON.stringify(this.lines)}\nstderr:\n${this.stderr}`));
      const timer = setTimeout(() => {
        this.events.off('change', check);
        fail(`not in ${ms} ms`);
      }, ms);
      this.events.on('change', check);
      check();
    });
  }

  result(op: string): Promise<Line> {
    return this.line((l) => l['event'] === 'result' && l['op'] === op);
  }

  /** Close stdin (the peer stops cleanly), then make sure it is gone. */
  async stop(): Promise<void> {
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}
