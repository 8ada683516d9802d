/**
 * Conformance cases: every driver's stats() and health() (the contract's figures, read by
 * metrics and health probes), checked on the transport that carries calls for the topic.
 */
import assert from 'node:assert/strict';
import type { Bus, Driver, DriverStats } from '@hybridbus/core';
import { deferred } from '../util.js';
import { ctx, inGroup, type ConformanceCase } from './case.js';

/** The driver carrying calls on `topic` (with a router: the call transport). */
const callDriver = (bus: Bus, topic: string): Driver => bus.transport(bus.route(topic, 'call'));

const FIELDS = ['connections', 'pendingCalls', 'queued', 'unacked', 'retried', 'reconnects', 'dropped'] as const satisfies ReadonlyArray<keyof DriverStats>;

export const HEALTH_CASES: readonly ConformanceCase[] = inGroup('health and stats', 'call', [
  {
    name: 'health is connected once a server and a client have started and a call worked',
    async run({ topic, newBus, startServer }) {
      const { bus: sbus } = await startServer(topic, 's', [{ ping: () => 'pong' }]);
      const cbus = await newBus();
      assert.equal(await cbus.rpcClient({ topic }).call(ctx, 'ping'), 'pong');
      for (const [who, bus] of [['server', sbus], ['client', cbus]] as const) {
        const h = callDriver(bus, topic).health();
        assert.equal(h.state, 'connected', `${who}: ${h.state} (${h.reason})`);
        assert.equal(h.reason, undefined);
        const all = bus.health();
        assert.equal(all.state, 'connected', `${who}'s bus: ${JSON.stringify(all.transports)}`);
      }
    },
  },
  {
    name: 'stats().pendingCalls counts a call in flight and is 0 again once it is answered',
    async run({ topic, newBus, startServer }) {
      const started = deferred();
      const release = deferred<string>();
      await startServer(topic, 's', [{ hold: () => (started.resolve(), release.promise) }]);
      const cbus = await newBus();
      const driver = callDriver(cbus, topic);
      assert.equal(driver.stats().pendingCalls, 0);
      const call = cbus.rpcClient({ topic }, { timeout: 30_000 }).call(ctx, 'hold');
      await started.promise;
      assert.equal(driver.stats().pendingCalls, 1);
      release.resolve('done');
      assert.equal(await call, 'done');
      assert.equal(driver.stats().pendingCalls, 0);
    },
  },
  {
    name: 'stats() after traffic: connections > 0, every figure a non-negative integer',
    async run({ topic, newBus, startServer }) {
      await startServer(topic, 's', [{ ping: () => 'pong' }]);
      const cbus = await newBus();
      const client = cbus.rpcClient({ topic });
      assert.equal(await client.call(ctx, 'ping'), 'pong');
      await client.cast(ctx, 'ping');
      const stats = callDriver(cbus, topic).stats();
      assert.ok(stats.connections > 0, `connections: ${stats.connections}`);
      for (const f of FIELDS) assert.ok(Number.isInteger(stats[f]) && stats[f] >= 0, `${f}: ${stats[f]}`);
      for (const [k, v] of Object.entries(stats.extra ?? {})) assert.ok(Number.isFinite(v), `extra.${k}: ${v}`);
      // The bus reports the same figures under the transport's name.
      const name = cbus.route(topic, 'call');
      assert.equal(cbus.stats()[name]?.connections, stats.connections);
    },
  },
  {
    name: 'health is down (with a reason) and no connection is open after close()',
    async run({ topic, newBus, startServer }) {
      await startServer(topic, 's', [{ ping: () => 'pong' }]);
      const cbus = await newBus();
      const driver = callDriver(cbus, topic);
      assert.equal(await cbus.rpcClient({ topic }).call(ctx, 'ping'), 'pong');
      await cbus.close();
      const h = driver.health();
      assert.equal(h.state, 'down');
      assert.ok(h.reason, 'down says why');
      assert.equal(cbus.health().state, 'down');
      assert.equal(driver.stats().connections, 0);
    },
  },
]);
