/** Count this process's TCP connections, from /proc: what a pool's fd budget is about. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

function ownSocketInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** Established TCP connections of this process whose remote port is in `ports`. */
export function connectionsTo(ports: ReadonlySet<number>): number {
  const mine = ownSocketInodes();
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const [remote, state, inode] = [cols[2], cols[3], cols[9]];
      if (!remote || state !== '01' || !inode || !mine.has(inode)) continue;
      if (ports.has(parseInt(remote.split(':')[1] ?? '0', 16))) n++;
    }
  }
  return n;
}

/** All open fds of this process. */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** A loopback TCP server that accepts connections and never speaks ZMTP: a peer whose handshake never completes. */
export async function silentPeer(): Promise<{ readonly port: number; close(): void }> {
  const server = createServer(() => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => void server.close() };
}
