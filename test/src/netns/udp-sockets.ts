/** Counting this process's UDP sockets on a port, for the multicast tests (one socket per process is the design). */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** UDP sockets of this process bound to `port` (its fds matched against /proc/self/net/udp). */
export function udpSockets(port: number): number {
  const mine = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) mine.add(m[1] as string);
    } catch {
      // closed meanwhile
    }
  }
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/self/net/udp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(hex) && mine.has(f[9] ?? '')).length;
}
