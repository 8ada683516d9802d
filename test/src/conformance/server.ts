/** Conformance cases: an RPC server's lifecycle, its concurrency bound and its drain on stop(). */
import assert from 'node:assert/strict';
import { Collector, deferred } from '../util.js';
import { ctx, type ConformanceCase } from './case.js';

export const SERVER_CASES: readonly ConformanceCase[] = [
  {
    name: 'bounded concurrency: at most maxConcurrency requests run at once, all complete',
    pattern: 'call',
    async run({ topic, newBus, startServer }) {
      let running = 0;
      let peak = 0;
      const gate = new Collector<() => void>();
      await startServer(topic, 's', [
        {
          work: () =>
            new Promise<string>((resolve) => {
              running++;
              peak = Math.max(peak, running);
              gate.push(() => (running--, resolve('done')));
            }),
        },
      ], { maxConcurrency: 2 });
      const client = (await newBus()).rpcClient({ topic });
      const calls = Array.from({ length: 6 }, () => client.call(ctx, 'work'));
      // Keep two running at every step: a third would push the peak above 2.
      for (let i = 0; i < 6; i++) {
        await gate.until(Math.min(i + 2, 6));
        (gate.items[i] as () => void)();
      }
      assert.deepEqual(await Promise.all(calls), Array(6).fill('done'));
      assert.equal(peak, 2);
    },
  },
  {
    name: 'stop() drains: a call in flight still gets its reply, and stop waits for it',
    pattern: 'call',
    async run({ topic, newBus, startServer }) {
      const started = deferred();
      const release = deferred();
      const order: string[] = [];
      const { server } = await startServer(topic, 's', [
        { slow: async () => (started.resolve(), await release.promise, order.push('handled'), 'finished') },
      ]);
      const client = (await newBus()).rpcClient({ topic });
      const call = client.call(ctx, 'slow');
      await started.promise;
      const stopped = server.stop().then(() => order.push('stopped'));
      assert.equal(server.inFlight, 1);
      release.resolve();
      assert.equal(await call, 'finished');
      await stopped;
      assert.deepEqual(order, ['handled', 'stopped']);
      assert.equal(server.running, false);
    },
  },
];
