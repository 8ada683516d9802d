/** Conformance cases: calls, casts and fanouts reach the right servers with what was sent. */
import assert from 'node:assert/strict';
import { InvalidTarget, type Context, type Serializer } from '@hybridbus/core';
import { Collector } from '../util.js';
import { ctx, type ConformanceCase } from './case.js';

export const RPC_CASES: readonly ConformanceCase[] = [
  {
    name: 'call: arguments and context reach the endpoint, the result comes back',
    pattern: 'call',
    async run({ topic, newBus, startServer }) {
      await startServer(topic, 's1', [{ echo: (c: Context, args: Record<string, unknown>) => ({ c, args }) }]);
      const client = (await newBus()).rpcClient({ topic });
      const payload = { s: 'héllo ☃', n: [1, 2.5, null, true, false], nested: { k: 'v', empty: {} } };
      const r = await client.call<{ c: Context; args: Record<string, unknown> }>(ctx, 'echo', { arg: payload });
      assert.deepEqual(r.args, { arg: payload });
      assert.deepEqual(r.c, ctx);
    },
  },
  {
    name: 'cast: each message is handled by exactly one server of the topic',
    pattern: 'cast',
    async run({ topic, newBus, startServer }) {
      const seen = new Collector<string>();
      const endpoint = (name: string) => ({ tick: (_c: Context, a: { i: number }) => seen.push(`${name}:${a.i}`), ping: () => name });
      await startServer(topic, 'a', [endpoint('a')]);
      await startServer(topic, 'b', [endpoint('b')]);
      const client = (await newBus()).rpcClient({ topic });
      for (let i = 0; i < 20; i++) await client.cast(ctx, 'tick', { i });
      await seen.until(20);
      // A call to each server after the casts: a duplicate would have arrived by now.
      assert.equal(await client.prepare({ server: 'a' }).call(ctx, 'ping'), 'a');
      assert.equal(await client.prepare({ server: 'b' }).call(ctx, 'ping'), 'b');
      assert.equal(seen.items.length, 20);
      assert.deepEqual(new Set(seen.items.map((s) => s.split(':')[1])).size, 20);
    },
  },
  {
    name: 'call: load spreads over the servers of a topic; server targeting reaches only that server',
    pattern: 'call',
    async run({ topic, newBus, startServer }) {
      await startServer(topic, 'a', [{ who: () => 'a' }]);
      await startServer(topic, 'b', [{ who: () => 'b' }]);
      const client = (await newBus()).rpcClient({ topic });
      const anyServer = await Promise.all(Array.from({ length: 20 }, () => client.call<string>(ctx, 'who')));
      assert.deepEqual(new Set(anyServer), new Set(['a', 'b']));
      const targeted = await Promise.all(Array.from({ length: 10 }, () => client.prepare({ server: 'b' }).call<string>(ctx, 'who')));
      assert.deepEqual(targeted, Array(10).fill('b'));
    },
  },
  {
    name: 'fanout: a cast reaches every server of the topic once',
    pattern: 'fanout',
    needs: ['broadcast'],
    async run({ topic, newBus, startServer }) {
      const seen = new Collector<string>();
      for (const name of ['a', 'b', 'c']) {
        await startServer(topic, name, [{ refresh: (_c: Context, a: { n: number }) => seen.push(`${name}${a.n}`), ping: () => name }]);
      }
      const client = (await newBus()).rpcClient({ topic });
      await client.prepare({ fanout: true }).cast(ctx, 'refresh', { n: 1 });
      await client.prepare({ fanout: true }).cast(ctx, 'refresh', { n: 2 });
      await seen.until(6);
      for (const name of ['a', 'b', 'c']) await client.prepare({ server: name }).call(ctx, 'ping');
      assert.deepEqual([...seen.items].sort(), ['a1', 'a2', 'b1', 'b2', 'c1', 'c2']);
    },
  },
  {
    name: 'call with fanout, or a server target without a server, is rejected locally',
    pattern: 'call',
    async run({ topic, newBus }) {
      const bus = await newBus();
      const client = bus.rpcClient({ topic });
      await assert.rejects(client.prepare({ fanout: true }).call(ctx, 'x'), InvalidTarget);
      assert.throws(() => bus.rpcServer({ topic: 't' }, []), InvalidTarget);
      assert.throws(() => bus.rpcClient({ server: 's' }), InvalidTarget);
    },
  },
  {
    name: 'serializer hook: entities and context go through it both ways',
    pattern: 'call',
    async run({ topic, newBus }) {
      const serializer: Serializer = {
        serializeEntity: (_c, e) => (e instanceof Date ? { $date: e.toISOString() } : e),
        deserializeEntity: (_c, e) =>
          typeof e === 'object' && e !== null && '$date' in e ? new Date(String((e as { $date: string }).$date)) : e,
        serializeContext: (c) => ({ ...c, serialized: true }),
        deserializeContext: (c) => ({ ...c, deserialized: true }),
      };
      const sbus = await newBus({ serializer });
      const server = sbus.rpcServer({ topic, server: 's' }, [
        { later: (c: Context, a: { when: Date }) => (assert.ok(a.when instanceof Date), assert.equal(c['serialized'], true), assert.equal(c['deserialized'], true), new Date(a.when.getTime() + 1000)) },
      ]);
      await server.start();
      const client = (await newBus({ serializer })).rpcClient({ topic });
      const r = await client.call<Date>(ctx, 'later', { when: new Date('2026-01-01T00:00:00Z') });
      assert.ok(r instanceof Date);
      assert.equal(r.toISOString(), '2026-01-01T00:00:01.000Z');
      await server.stop();
    },
  },
];
