import { fork, type ChildProcess } from 'node:child_process';
import type { ConfigInput } from '@hybridbus/core';
import { fileURLToPath } from 'node:url';

export interface ChildServer {
  readonly proc: ChildProcess;
  readonly address: string;
  readonly port: number;
  readonly pid: number;
  /** Every cast this child reported handling. */
  readonly records: Array<{ server: string; i: number }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const script = fileURLToPath(new URL('./child-server.js', import.meta.url));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Fork a process hosting RPC servers; resolves once they all listen. */
export function startChild(config: ConfigInput, servers: Array<{ topic: string; server: string }>, onRecord?: (r: { server: string; i: number }) => void): Promise<ChildServer> {
  const proc = fork(script, [JSON.stringify({ config, servers })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(proc);
  const records: Array<{ server: string; i: number }> = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child server did not start in 15 s')), 15_000);
    proc.once('exit', (code) => reject(new Error(`child server exited with ${code} before it was ready`)));
    proc.on('message', (m: { kind: string; address?: string; pid?: number; server?: string; i?: number }) => {
      if (m.kind === 'record') {
        const r = { server: m.server as string, i: m.i as number };
        records.push(r);
        onRecord?.(r);
      } else if (m.kind === 'ready') {
        clearTimeout(timer);
        resolve({
          proc,
          address: m.address as string,
          port: Number((m.address as string).split(':')[1]),
          pid: m.pid as number,
          records,
          kill: (signal = 'SIGKILL') =>
            new Promise<void>((res) => {
              if (proc.exitCode !== null || proc.signalCode !== null) return res();
              proc.once('exit', () => (children.delete(proc), res()));
              proc.kill(signal);
            }),
        });
      }
    });
  });
}
