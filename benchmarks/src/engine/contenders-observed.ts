/**
 * Issue 14's question, answered in one interleaved run: what does observability cost?
 * - `zmq-observed`: zmq:// with OpenTelemetry tracing (a real SDK recording every span, exported
 *   in batches to an exporter that only counts them) and Prometheus metrics registered, in the
 *   client and the servers; its ratio is against `zmq` (the same code with nobody subscribed).
 * - `zmq-before`: zmq:// from another checkout (HYBRIDBUS_BENCH_BEFORE=<its root>, built), for
 *   "with observability off, within noise of the code before it"; its ratio is against `zmq`.
 * Both are opt-in: they run only when --contenders names them.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Contender } from './contender.js';
import { registerContender } from './contenders.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The `zmq` contender's transport: the run's private local name service (no stale records of other runs). */
const zmqConfig = (nsDir: string | undefined): Record<string, unknown> => ({
  transports: { default: nsDir ? `zmq://?matchmaker=local:${nsDir}` : 'zmq://' },
  log: { level: 'error' },
});

registerContender('zmq-observed', ({ nsDir }): Contender => {
  const child = { command: process.execPath, args: [path.join(here, 'child-hybridbus.js')] };
  return {
    info: { id: 'zmq-observed', label: 'hybridbus zmq-direct, tracing + metrics on', kind: 'hybridbus', url: 'zmq://' },
    scenarios: ['latency', 'throughput', 'cast', 'fanout', 'notify'],
    data: { config: zmqConfig(nsDir), observe: true },
    probe: async () => undefined,
    server: () => child,
    client: () => child,
    baseline: () => 'zmq',
    optIn: true,
  };
});

registerContender('zmq-before', ({ nsDir }): Contender => {
  const root = process.env['HYBRIDBUS_BENCH_BEFORE'];
  const script = root ? path.join(root, 'benchmarks/dist/engine/child-hybridbus.js') : '';
  const child = { command: process.execPath, args: [script] };
  return {
    info: { id: 'zmq-before', label: `hybridbus zmq-direct from ${root ?? '(HYBRIDBUS_BENCH_BEFORE unset)'}`, kind: 'hybridbus', url: 'zmq://' },
    scenarios: ['latency', 'throughput', 'cast', 'fanout', 'notify'],
    data: { config: zmqConfig(nsDir) },
    probe: async () => (!root ? 'zmq-before: set HYBRIDBUS_BENCH_BEFORE to a built checkout' : existsSync(script) ? undefined : `zmq-before: ${script} not found (build that checkout: npx tsc -b)`),
    server: () => child,
    client: () => child,
    baseline: () => 'zmq',
    optIn: true,
  };
});
