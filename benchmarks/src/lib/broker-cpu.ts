/**
 * The CPU time of a broker on this host (RabbitMQ's beam.smp, the Proton broker, qdrouterd):
 * the process listening on the contender's URL port, found through /proc (Linux), readable only
 * when it runs as our user — as the brokers `npm run bench:all` starts do (a system broker of
 * another user gives no figure). Its utime + stime from /proc/<pid>/stat, in µs; the kernel counts
 * in clock ticks (10 ms at 100 Hz), so a window should be a second or more.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Socket inodes listening on `port` (TCP, IPv4 and IPv6). */
function listeningInodes(port: number): Set<string> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const out = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT; st 0A is LISTEN; the inode is the 10th field.
      if (f[1]?.endsWith(`:${hex}`) && f[3] === '0A' && f[9]) out.add(f[9]);
    }
  }
  return out;
}

/** The pid of the process listening on `port`, if it is readable (our user's); undefined otherwise. */
export function listenerPid(port: number): number | undefined {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return undefined;
  const wanted = new Set([...inodes].map((i) => `socket:[${i}]`));
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (wanted.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) return Number(pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

/** User + system CPU of `pid` so far, in µs; undefined once it is gone. */
export function processCpuUs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) in parentheses: utime and stime are 14 and 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) / clockTicks()) * 1e6;
  } catch {
    return undefined;
  }
}

/** The local broker a contender's URL names (loopback host with a port): its pid, or undefined. */
export function brokerPidOf(url: string | undefined): number | undefined {
  if (!url || process.platform !== 'linux') return undefined;
  try {
    const u = new URL(url);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    if (!u.port || !['127.0.0.1', 'localhost', '::1', '0.0.0.0'].includes(host)) return undefined;
    return listenerPid(Number(u.port));
  } catch {
    return undefined;
  }
}
