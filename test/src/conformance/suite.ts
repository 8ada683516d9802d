/**
 * One conformance suite that every driver (and the hybrid router) passes, after Watermill's
 * pubsub tests (pubsub/tests/test_pubsub.go): a table of named cases, each with the pattern it
 * is about and the capabilities it needs, run by one loop against each backend. A case is
 * skipped only when the transport its pattern is routed to lacks a capability it needs (with
 * the router, the call transport's capabilities say nothing about notifications).
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import { Bus, type BusOptions, type ConfigInput } from '@hybridbus/core';
import { freshTopic } from '../util.js';
import { skipReason, type BackendUnderTest, type ConformanceCase, type ConformanceEnv } from './case.js';
import { ERROR_CASES } from './errors.js';
import { HEALTH_CASES } from './health.js';
import { MONITORING_CASES } from './monitoring.js';
import { NOTIFICATION_CASES } from './notifications.js';
import { RPC_CASES } from './rpc.js';
import { SERVER_CASES } from './server.js';
import { VERSION_CASES } from './versions.js';

export { ctx, skipReason, type BackendUnderTest, type Capability, type ConformanceCase, type ConformanceEnv } from './case.js';

/** Every case, in the order they run. */
export const CASES: readonly ConformanceCase[] = [
  ...RPC_CASES,
  ...VERSION_CASES,
  ...ERROR_CASES,
  ...SERVER_CASES,
  ...MONITORING_CASES,
  ...NOTIFICATION_CASES,
  ...HEALTH_CASES,
];

/** The cases cut into runs of one group (or none); a group split over two runs is a mistake in the table. */
export function byGroup(cases: readonly ConformanceCase[]): Array<{ group: string | undefined; cases: ConformanceCase[] }> {
  const runs: Array<{ group: string | undefined; cases: ConformanceCase[] }> = [];
  for (const c of cases) {
    const last = runs.at(-1);
    if (last && last.group === c.group) {
      last.cases.push(c);
      continue;
    }
    if (c.group !== undefined && runs.some((r) => r.group === c.group)) {
      throw new Error(`conformance: the cases of group "${c.group}" must stand together ("${c.name}" does not)`);
    }
    runs.push({ group: c.group, cases: [c] });
  }
  return runs;
}

/**
 * Runs one case on a fresh topic, or skips it when the transport `probe` routes its pattern to
 * lacks a capability it needs: then `run` is never called and node:test reports a skip, not a pass.
 */
export async function runCase(
  c: ConformanceCase,
  probe: Pick<Bus, 'route' | 'transport'>,
  t: Pick<TestContext, 'skip'>,
  env: (topic: string) => ConformanceEnv,
): Promise<void> {
  const topic = freshTopic(c.topicPrefix);
  const reason = skipReason(probe, topic, c.pattern, c.needs ?? []);
  if (reason !== undefined) return t.skip(reason);
  await c.run(env(topic));
}

/** Runs `cases` (all of them by default) against `backend`, each as a test of its own. */
export function conformance(backend: BackendUnderTest, cases: readonly ConformanceCase[] = CASES): void {
  describe(`conformance: ${backend.name}`, () => {
    const buses: Bus[] = [];
    const shared = new Map<string, Promise<unknown>>();
    let probe: Bus;

    const newBus = async (options?: BusOptions, config: ConfigInput = backend.config()): Promise<Bus> => {
      const bus = await Bus.create(config, options);
      buses.push(bus);
      return bus;
    };

    before(async () => {
      await backend.setup?.();
      probe = await newBus();
    });
    after(async () => {
      await Promise.allSettled(buses.map((b) => b.close()));
      await backend.teardown?.();
    });

    const env = (t: TestContext, topic: string): ConformanceEnv => ({
      backend,
      topic,
      t,
      newBus,
      startServer: async (topic, server, endpoints, opts = {}) => {
        const bus = await newBus();
        const s = bus.rpcServer({ topic, server }, endpoints, opts);
        await s.start();
        return { bus, server: s };
      },
      shared: <T>(key: string, make: () => Promise<T>): Promise<T> => {
        if (!shared.has(key)) shared.set(key, make());
        return shared.get(key) as Promise<T>;
      },
    });

    for (const { group, cases: members } of byGroup(cases)) {
      const register = (): void => {
        for (const c of members) test(c.name, (t) => runCase(c, probe, t, (topic) => env(t, topic)));
      };
      if (group === undefined) register();
      else describe(group, register);
    }
  });
}
