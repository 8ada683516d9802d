/**
 * Inside the network namespace multicast.ts made: the zmq scale step with multicast fanout, its
 * figures as one JSON line on stdout (progress on stderr). Never run on the host's network.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MulticastSpec } from './multicast.js';
import { runScale } from './run.js';

const spec = JSON.parse(process.argv[2] as string) as MulticastSpec;
const dir = mkdtempSync(path.join(os.tmpdir(), 'hb-scale-mcast-ns-'));
const url = `zmq://?matchmaker=local:${dir}&pool_max=20000&multicast=udp://239.192.0.1:5555&multicast_interface=lo`;
try {
  const r = await runScale({ url, steps: [spec.n], procs: spec.procs, probes: spec.probes, jitterMs: spec.jitterMs, noRaw: true, note: (l) => process.stderr.write(`${l}\n`) });
  const p = r.report.points[0] as { fanoutCompleteMs: number; senderCpuMsPerFanout?: number } | undefined;
  process.stdout.write(`${JSON.stringify(p ? { completeMs: p.fanoutCompleteMs, senderCpuMs: p.senderCpuMsPerFanout } : { error: r.errors.join('; ') || 'no point' })}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
