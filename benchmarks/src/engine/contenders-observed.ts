/**
 * Issue 14's question, answered in one interleaved run: what does observability cost?
 * - `zmq-observed`: zmq:// with OpenTelemetry tracing (a real SDK recording every span, exported
 *   in batches to an exporter that only counts them) and Prometheus metrics registered, in the
 *   client and the servers; its ratio is against `zmq` (the same code with nobody subscribed).
 *   `zmq-observed-1pct` is the same with a 1 % parent-based sampler, as production runs tracing.
 *   `zmq-otel-sdk`, `zmq-traced`, `zmq-traced-1pct` and `zmq-metrics` split that cost (observe.ts).
 * - `zmq-before`: zmq:// from another checkout (HYBRIDBUS_BENCH_BEFORE=<its root>, built), for
 *   "with observability off, within noise of the code before it"; its ratio is against `zmq`.
 * Both are opt-in: they run only when --contenders names them.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Contender } from './contender.js';
import { registerContender } from './contenders.js';
import type { ObserveMode } from './observe.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The `zmq` contender's transport: the run's private local name service (no stale records of other runs). */
const zmqConfig = (nsDir: string | undefined): Record<string, unknown> => ({
  transports: { default: nsDir ? `zmq://?matchmaker=local:${nsDir}` : 'zmq://' },
  log: { level: 'error' },
});

const VARIANTS: ReadonlyArray<readonly [id: string, mode: ObserveMode, label: string]> = [
  ['zmq-observed', 'both', 'tracing (every span recorded) + metrics on'],
  ['zmq-observed-1pct', 'both-sampled', 'tracing (1 % of traces sampled) + metrics on'],
  ['zmq-otel-sdk', 'sdk', 'an OTel SDK registered, hybridbus tracing off'],
  ['zmq-traced', 'tracing', 'tracing on, every span recorded'],
  ['zmq-traced-1pct', 'sampled', 'tracing on, 1 % of traces sampled'],
  ['zmq-metrics', 'metrics', 'metrics on'],
];
for (const [id, mode, label] of VARIANTS) {
  registerContender(id, ({ nsDir }): Contender => {
    const child = { command: process.execPath, args: [path.join(here, 'child-hybridbus.js')] };
    return {
      info: { id, label: `hybridbus zmq-direct, ${label}`, kind: 'hybridbus', url: 'zmq://' },
      scenarios: ['latency', 'throughput', 'cast', 'fanout', 'notify'],
      data: { config: zmqConfig(nsDir), observe: mode },
      probe: async () => undefined,
      server: () => child,
      client: () => child,
      baseline: () => 'zmq',
      optIn: true,
    };
  });
}

registerContender('zmq-before', ({ nsDir }): Contender => {
  const root = process.env['HYBRIDBUS_BENCH_BEFORE'];
  const script = root ? path.join(root, 'benchmarks/dist/engine/child-hybridbus.js') : '';
  const child = { command: process.execPath, args: [script] };
  return {
    info: { id: 'zmq-before', label: 'hybridbus zmq-direct, the checkout in HYBRIDBUS_BENCH_BEFORE', kind: 'hybridbus', url: 'zmq://' },
    scenarios: ['latency', 'throughput', 'cast', 'fanout', 'notify'],
    data: { config: zmqConfig(nsDir) },
    probe: async () => (!root ? 'zmq-before: set HYBRIDBUS_BENCH_BEFORE to a built checkout' : existsSync(script) ? undefined : `zmq-before: ${script} not found (build that checkout: npx tsc -b)`),
    server: () => child,
    client: () => child,
    baseline: () => 'zmq',
    optIn: true,
  };
});
