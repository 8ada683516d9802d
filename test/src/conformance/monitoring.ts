/** Conformance cases: call monitoring, where the transport carrying calls declares it. */
import assert from 'node:assert/strict';
import { CallMonitorTimeout, ConnectionLost } from '@hybridbus/core';
import { deferred } from '../util.js';
import { ctx, inGroup, type ConformanceCase } from './case.js';

export const MONITORING_CASES: readonly ConformanceCase[] = inGroup('call monitoring', 'call', [
  {
    name: 'heartbeats keep a long call alive past the monitor timeout',
    needs: ['callMonitor'],
    async run({ topic, newBus, startServer }) {
      // The first heartbeat must come within the monitor timeout of the call's start, delivery
      // included: 600 ms leaves room for a loaded machine; the call lasts 2.5 monitor timeouts.
      await startServer(topic, 's', [{ slow: () => new Promise((r) => setTimeout(() => r('done'), 1_500)) }]);
      const client = (await newBus()).rpcClient({ topic }, { callMonitorTimeout: 600, timeout: 10_000 });
      assert.equal(await client.call(ctx, 'slow'), 'done');
    },
  },
  {
    name: 'an endpoint that works synchronously for longer than a heartbeat interval, then awaits, is heartbeaten at once',
    needs: ['callMonitor'],
    async run({ topic, newBus, startServer }) {
      // Monitor 1,000 ms, so beats every 500 ms. 700 ms of synchronous work, then 700 ms awaited:
      // a beat owed since 500 ms must go when the work yields, not 500 ms after (at 1,200 ms the
      // caller's monitor has fired).
      const busy = (ms: number): void => {
        const end = performance.now() + ms;
        while (performance.now() < end);
      };
      await startServer(topic, 's', [
        {
          parse: () => {
            busy(700);
            return new Promise((r) => setTimeout(() => r('parsed'), 700));
          },
        },
      ]);
      const client = (await newBus()).rpcClient({ topic }, { callMonitorTimeout: 1_000, timeout: 10_000 });
      assert.equal(await client.call(ctx, 'parse'), 'parsed');
    },
  },
  {
    name: 'when the server dies mid-call the client fails early (CallMonitorTimeout, or ConnectionLost where the transport sees the peer go)',
    needs: ['callMonitor'],
    async run({ backend, topic, newBus, startServer }) {
      const started = deferred();
      const { bus } = await startServer(topic, 's', [{ hang: () => (started.resolve(), new Promise(() => undefined)) }]);
      // Not shorter: a request still on its way to the server after the monitor timeout failed
      // the call before the crash (seen at 300 ms on a loaded 2-core machine).
      const client = (await newBus()).rpcClient({ topic }, { callMonitorTimeout: 1_000, timeout: 30_000 });
      const t0 = Date.now();
      const call = client.call(ctx, 'hang');
      await started.promise;
      await backend.crash(bus);
      await assert.rejects(call, (e: unknown) => e instanceof CallMonitorTimeout || e instanceof ConnectionLost);
      assert.ok(Date.now() - t0 < 10_000, 'failed well before the 30 s timeout');
    },
  },
]);
