/**
 * The "multicast zmq" column of the scale scenario: the same zmq fanout step with servers and
 * client on `multicast=udp://…` (one datagram per fanout), run only inside a network
 * namespace this makes (`unshare -n`, loopback up with a multicast route), never on the host's
 * network. Redis or etcd on the host's loopback cannot be reached from there, so the step starts
 * its own redis-server (Debian's) on the namespace's loopback and uses the Redis name service;
 * unicast zmq fanout is measured there too, to the same servers (multicast-inner.ts).
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ScaleFanoutPoint } from '../report/types.js';

const INNER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'multicast-inner.js');
export const NETNS_SETUP = 'ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo';
/** The largest step the scale scenario runs here (the host's two cores, not the name service, are the limit); multicast-cli.js runs any. */
export const MULTICAST_MAX_N = 2000;

/** Why a namespace with loopback multicast cannot be made here, or undefined. */
export function multicastUnavailable(): string | undefined {
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', NETNS_SETUP], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return `cannot run unshare: ${r.error.message}`;
  if (r.status !== 0) return `cannot make a network namespace with multicast on loopback (unshare -n: ${(r.stderr || `exit ${r.status}`).trim()})`;
  const redis = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (redis.error || redis.status !== 0) return 'no redis-server on PATH (the namespace\'s name service; Debian: apt-get install redis-server)';
  return undefined;
}

export interface MulticastSpec {
  readonly n: number;
  readonly procs: number;
  readonly probes: number;
  readonly jitterMs: number;
}

/** One step in a namespace of its own: time until all n have a multicast fanout, the sender's CPU per fanout, and the same for unicast zmq and multicast without acks to the same servers. */
export async function multicastStep(spec: MulticastSpec, note: (line: string) => void): Promise<ScaleFanoutPoint> {
  const child = spawn('unshare', ['-n', '--', 'sh', '-c', `${NETNS_SETUP} && exec "$0" "$1" "$2"`, process.execPath, INNER, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n').filter(Boolean)) note(`  (netns) ${line}`);
  });
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  const last = out.trim().split('\n').pop() ?? '';
  const r = JSON.parse(last === '' ? '{}' : last) as Partial<ScaleFanoutPoint> & { error?: string };
  if (code !== 0 || r.completeMs === undefined || r.senderCpuMs === undefined) throw new Error(r.error ?? `the namespace's run exited ${code}`);
  return { contender: 'zmq-multicast', n: spec.n, completeMs: r.completeMs, senderCpuMs: r.senderCpuMs, serversCpuMs: r.serversCpuMs, sameServers: r.sameServers };
}
