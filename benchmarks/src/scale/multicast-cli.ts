/**
 * The scale scenario's multicast step alone (multicast.ts), without the host-network columns:
 *
 *   node benchmarks/dist/scale/multicast-cli.js [steps=10,100,1000] [procs=10] [probes=7] [jitterMs=0]
 *
 * Per step, in a network namespace of its own with its own redis-server: time until all have a
 * fanout and the sender's CPU, for multicast (acks=handled), unicast zmq and multicast without
 * acks to the same servers; the server processes' CPU per fanout. One JSON line per step.
 */
import os from 'node:os';
import { multicastStep, multicastUnavailable } from './multicast.js';

const [steps = '10,100,1000', procs = '10', probes = '7', jitterMs = '0'] = process.argv.slice(2);
const why = multicastUnavailable();
if (why) {
  console.error(`no multicast step here: ${why}`);
  process.exit(2);
}
for (const n of steps.split(',').map(Number)) {
  const load = os.loadavg()[0]?.toFixed(1);
  const t0 = Date.now();
  const r = await multicastStep({ n, procs: Number(procs), probes: Number(probes), jitterMs: Number(jitterMs) }, (l) => console.error(l));
  console.log(JSON.stringify({ ...r, at: new Date(t0).toISOString(), loadBefore: Number(load), loadAfter: Number(os.loadavg()[0]?.toFixed(1)), wallS: (Date.now() - t0) / 1000 }));
}
