/** Child processes hosting an amqp1 server (child-server.ts), killed by the tests. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ChildServer {
  readonly proc: ChildProcess;
  /** Resolves when a `hang` call has reached the child. */
  hung(): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const script = fileURLToPath(new URL('./child-server.js', import.meta.url));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export function startChild(url: string, topic: string, server: string): Promise<ChildServer> {
  const proc = fork(script, [JSON.stringify({ url, topic, server })], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  children.add(proc);
  let onHang: (() => void) | undefined;
  const hang = new Promise<void>((resolve) => (onHang = resolve));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child server did not start in 15 s')), 15_000);
    proc.once('exit', (code) => reject(new Error(`child server exited with ${code} before it was ready`)));
    proc.on('message', (m: { kind: string }) => {
      if (m.kind === 'hang') onHang?.();
      if (m.kind !== 'ready') return;
      clearTimeout(timer);
      resolve({
        proc,
        hung: () => hang,
        kill: (signal = 'SIGKILL') =>
          new Promise<void>((res) => {
            children.delete(proc);
            if (proc.exitCode !== null || proc.signalCode !== null) return res();
            proc.once('exit', () => res());
            proc.kill(signal);
          }),
      });
    });
  });
}
