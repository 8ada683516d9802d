/**
 * Inside the network namespace multicast.ts made: a private redis-server on the namespace's own
 * loopback as the name service, n servers with multicast fanout on it, and three clients fanning
 * out to those same servers in turn (multicast with the default acks, unicast zmq, multicast
 * without acks). Its figures as one JSON line on stdout (progress on stderr). Never run on the
 * host's network.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MulticastSpec } from './multicast.js';
import { runScale } from './run.js';

const spec = JSON.parse(process.argv[2] as string) as MulticastSpec;
const dir = mkdtempSync(path.join(os.tmpdir(), 'hb-scale-mcast-ns-'));
// Nothing else listens in this namespace: Redis's default port is free. No persistence.
const redis = spawn('redis-server', ['--bind', '127.0.0.1', '--port', '6379', '--dir', dir, '--save', '', '--appendonly', 'no', '--maxclients', '20000', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
try {
  await new Promise<void>((resolve, reject) => {
    let out = '';
    redis.once('error', reject);
    redis.once('exit', (c) => reject(new Error(`redis-server exited ${c}: ${out.trim().split('\n').pop() ?? ''}`)));
    redis.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
  });
  redis.stdout.resume();
  // The default pool (1,024: it holds every server up to 1,000 and cycles above, as the host-network
  // 10,000 step does) and 10 s to connect: with pool_max=20000 a fanout to 10,000 failed with some
  // servers' connections never completing (benchmarks/zmq-findings.md, "Scale").
  const ns = 'zmq://?matchmaker=redis://127.0.0.1:6379&connect_timeout=10000';
  const mcast = `${ns}&multicast=udp://239.192.0.1:5555&multicast_interface=lo`;
  const r = await runScale({ url: mcast, compare: [ns, `${mcast}&acks=none`], steps: [spec.n], procs: spec.procs, probes: spec.probes, jitterMs: spec.jitterMs, noRaw: true, note: (l) => process.stderr.write(`${l}\n`) });
  const p = r.report.points[0] as { fanoutCompleteMs: number; senderCpuMsPerFanout: number; serversCpuMsPerFanout?: number; compared?: Array<{ completeMs: number; senderCpuMs: number; serversCpuMs: number }> } | undefined;
  const [unicast, multicastNoAcks] = p?.compared ?? [];
  process.stdout.write(`${JSON.stringify(p && unicast && multicastNoAcks ? { completeMs: p.fanoutCompleteMs, senderCpuMs: p.senderCpuMsPerFanout, serversCpuMs: p.serversCpuMsPerFanout, sameServers: { unicast, multicastNoAcks } } : { error: r.errors.join('; ') || 'no point' })}\n`);
} finally {
  redis.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
