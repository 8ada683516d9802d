/** Conformance cases: notifiers and (batch) notification listeners, their filters, pools and requeue. */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { channels, REQUEUE, type BatchMessage, type Context, type NotificationMetadata, type NotifyDispatchEvent } from '@hybridbus/core';
import { Collector, freshTopic } from '../util.js';
import { ctx, inGroup, type ConformanceCase } from './case.js';

export const NOTIFICATION_CASES: readonly ConformanceCase[] = inGroup('notifications', 'notify', [
  {
    name: 'a notification reaches the endpoint method of its priority with all its fields',
    topicPrefix: 'notif',
    async run({ topic, newBus }) {
      const got = new Collector<{ priority: string; c: Context; publisherId: string; eventType: string; payload: unknown; metadata: NotificationMetadata }>();
      const rec = (priority: string) => (c: Context, publisherId: string, eventType: string, payload: unknown, metadata: NotificationMetadata) =>
        void got.push({ priority, c, publisherId, eventType, payload, metadata });
      const lbus = await newBus();
      const listener = lbus.notificationListener([{ topic }], [{ info: rec('info'), error: rec('error'), sample: rec('sample') }]);
      await listener.start();
      const notifier = (await newBus()).notifier({ publisherId: 'compute.node-7', topics: [topic] });
      await notifier.info(ctx, 'compute.instance.create.end', { state: 'active' });
      await notifier.error(ctx, 'compute.instance.create.error', { code: 500 });
      await notifier.prepare({ publisherId: 'compute.node-8' }).sample(ctx, 'cpu.util', 0.5);
      const items = await got.until(3);
      const byPriority = Object.fromEntries(items.map((i) => [i.priority, i]));
      assert.deepEqual(Object.keys(byPriority).sort(), ['error', 'info', 'sample']);
      const info = byPriority['info'] as (typeof items)[number];
      assert.deepEqual(info.c, ctx);
      assert.equal(info.publisherId, 'compute.node-7');
      assert.equal(info.eventType, 'compute.instance.create.end');
      assert.deepEqual(info.payload, { state: 'active' });
      assert.match(info.metadata.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.match(info.metadata.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
      assert.equal(info.metadata.redelivered, false);
      assert.equal(byPriority['sample']?.publisherId, 'compute.node-8');
      await listener.stop();
    },
  },
  {
    name: 'a notifier with several topics sends to each',
    topicPrefix: 'n1',
    async run({ topic: t1, newBus }) {
      const t2 = freshTopic('n2');
      const got = new Collector<string>();
      const lbus = await newBus();
      const l1 = lbus.notificationListener([{ topic: t1 }], [{ warn: () => void got.push(t1) }]);
      const l2 = lbus.notificationListener([{ topic: t2 }], [{ warn: () => void got.push(t2) }]);
      await l1.start();
      await l2.start();
      await (await newBus()).notifier({ publisherId: 'p', topics: [t1, t2] }).warn(ctx, 'e', {});
      assert.deepEqual([...(await got.until(2))].sort(), [t1, t2].sort());
      await l1.stop();
      await l2.stop();
    },
  },
  {
    // Traces and metrics name a notification's destination from this (packages/observability).
    name: 'a listener of several topics is told which topic each notification was sent to',
    topicPrefix: 'nt1',
    async run({ topic: t1, newBus }) {
      const t2 = freshTopic('nt2');
      const seen = new Collector<{ topic: string | undefined; eventType: string }>();
      const onDispatch = (e: unknown): void => {
        const d = e as NotifyDispatchEvent;
        if (d.notification.eventType.startsWith('which.topic.')) seen.push({ topic: d.topic, eventType: d.notification.eventType });
      };
      diagnostics.subscribe(channels.notifyDispatch.start.name, onDispatch);
      try {
        const lbus = await newBus();
        const listener = lbus.notificationListener([{ topic: t1 }, { topic: t2 }], [{ info: () => undefined, warn: () => undefined }]);
        await listener.start();
        const nbus = await newBus();
        await nbus.notifier({ publisherId: 'p', topics: [t1] }).info(ctx, 'which.topic.one', {});
        await nbus.notifier({ publisherId: 'p', topics: [t2] }).warn(ctx, 'which.topic.two', {});
        const got = [...(await seen.until(2))].sort((a, b) => a.eventType.localeCompare(b.eventType));
        assert.deepEqual(got, [
          { topic: t1, eventType: 'which.topic.one' },
          { topic: t2, eventType: 'which.topic.two' },
        ]);
        await listener.stop();
      } finally {
        diagnostics.unsubscribe(channels.notifyDispatch.start.name, onDispatch);
      }
    },
  },
  {
    name: 'filter rules select by publisher id, event type, context and metadata',
    topicPrefix: 'filter',
    async run({ topic, newBus }) {
      const got = new Collector<string>();
      const lbus = await newBus();
      const listener = lbus.notificationListener([{ topic }], [
        { filterRule: { eventType: 'compute\\.' }, info: (_c, _p, e) => void got.push(`compute:${e}`) },
        { filterRule: { publisherId: /^api\./, context: { user_id: 'admin' } }, info: (_c, p, e) => void got.push(`api:${p}:${e}`) },
        { filterRule: { metadata: { messageId: 'no-such-id' } }, info: () => void got.push('never') },
        { info: (_c, _p, e) => void got.push(`all:${e}`) },
      ]);
      await listener.start();
      const bus = await newBus();
      await bus.notifier({ publisherId: 'api.1', topics: [topic] }).info({ user_id: 'admin' }, 'compute.x', {});
      await bus.notifier({ publisherId: 'api.2', topics: [topic] }).info({ user_id: 'bob' }, 'image.y', {});
      await bus.notifier({ publisherId: 'other', topics: [topic] }).info({ user_id: 'admin' }, 'network.z', {});
      const items = await got.until(5);
      assert.deepEqual([...items].sort(), ['all:compute.x', 'all:image.y', 'all:network.z', 'api:api.1:compute.x', 'compute:compute.x'].sort());
      await listener.stop();
      assert.equal(got.items.length, 5);
    },
  },
  {
    name: 'pools: every pool gets each notification, one member of a pool handles it',
    needs: ['pools'],
    topicPrefix: 'pool',
    async run({ topic, newBus }) {
      const got = new Collector<string>();
      const listeners = [];
      for (const [pool, member] of [['billing', 'b1'], ['billing', 'b2'], ['audit', 'a1']] as const) {
        const bus = await newBus();
        const l = bus.notificationListener([{ topic }], [{ info: (_c, _p, _e, payload) => void got.push(`${pool}/${member}/${(payload as { i: number }).i}`) }], { pool });
        await l.start();
        listeners.push(l);
      }
      const notifier = (await newBus()).notifier({ publisherId: 'p', topics: [topic] });
      for (let i = 0; i < 10; i++) await notifier.info(ctx, 'e', { i });
      await got.until(20);
      await Promise.all(listeners.map((l) => l.stop()));
      const perPool = (pool: string) => got.items.filter((s) => s.startsWith(`${pool}/`)).map((s) => Number(s.split('/')[2])).sort((a, b) => a - b);
      assert.deepEqual(perPool('billing'), [...Array(10).keys()]);
      assert.deepEqual(perPool('audit'), [...Array(10).keys()]);
    },
  },
  {
    name: 'several endpoints: each is called in order, sync or async, and one that fails stops the rest',
    topicPrefix: 'endpoints',
    async run({ topic, newBus }) {
      const got = new Collector<string>();
      const bus = await newBus();
      const listener = bus.notificationListener([{ topic }], [
        { info: (_c, _p, e) => void got.push(`a:${e}`) },
        {
          info: async (_c, _p, e) => {
            await Promise.resolve();
            got.push(`b:${e}`);
            if (e === 'async.fails') throw new Error('endpoint b fails');
          },
        },
        {
          info: (_c, _p, e) => {
            got.push(`c:${e}`);
            if (e === 'sync.fails') throw new Error('endpoint c fails');
          },
        },
        { info: (_c, _p, e) => void got.push(`d:${e}`) },
      ]);
      await listener.start();
      const notifier = (await newBus()).notifier({ publisherId: 'p', topics: [topic] });
      for (const e of ['ok', 'async.fails', 'sync.fails', 'after']) await notifier.info(ctx, e, {});
      await got.until(13);
      await listener.stop();
      const seen = (e: string) => got.items.filter((s) => s.endsWith(`:${e}`));
      assert.deepEqual(seen('ok'), ['a:ok', 'b:ok', 'c:ok', 'd:ok']);
      assert.deepEqual(seen('async.fails'), ['a:async.fails', 'b:async.fails'], 'a rejection stops the endpoints after it');
      assert.deepEqual(seen('sync.fails'), ['a:sync.fails', 'b:sync.fails', 'c:sync.fails'], 'a throw stops the endpoints after it');
      assert.deepEqual(seen('after'), ['a:after', 'b:after', 'c:after', 'd:after'], 'the listener goes on after a failing endpoint');
    },
  },
  {
    name: 'requeue: an endpoint that returns REQUEUE gets the notification again',
    needs: ['requeue'],
    topicPrefix: 'requeue',
    async run({ topic, newBus }) {
      const got = new Collector<string>();
      const redelivered: boolean[] = [];
      let first = true;
      const bus = await newBus();
      const listener = bus.notificationListener([{ topic }], [
        {
          info: (_c, _p, e, _payload, metadata) => {
            got.push(e);
            redelivered.push(metadata.redelivered);
            if (first) {
              first = false;
              return REQUEUE;
            }
            return undefined;
          },
        },
      ], { allowRequeue: true });
      await listener.start();
      await (await newBus()).notifier({ publisherId: 'p', topics: [topic] }).info(ctx, 'retry.me', {});
      assert.deepEqual(await got.until(2), ['retry.me', 'retry.me']);
      assert.deepEqual(redelivered, [false, true], 'the requeued copy comes back marked redelivered');
      await listener.stop();
    },
  },
  {
    name: 'batch listening: endpoints get lists by size, and the rest after the batch timeout',
    topicPrefix: 'batch',
    async run({ topic, newBus }) {
      const batches = new Collector<BatchMessage[]>();
      const bus = await newBus();
      const listener = bus.batchNotificationListener([{ topic }], [{ info: (ms) => void batches.push([...ms]) }], { batchSize: 5, batchTimeout: 200 });
      await listener.start();
      const notifier = (await newBus()).notifier({ publisherId: 'p', topics: [topic] });
      // Sent together: with acks on "handled" (zmq://), each notification resolves only once its
      // batch has been handled, so awaiting them one by one would wait out the batch timeout each.
      await Promise.all([...Array(12).keys()].map((i) => notifier.info(ctx, 'e', { i })));
      const got = await batches.until(3);
      assert.deepEqual(got.map((b) => b.length), [5, 5, 2]);
      assert.deepEqual(got.flat().map((m) => (m.payload as { i: number }).i).sort((a, b) => a - b), [...Array(12).keys()]);
      assert.deepEqual(got[0]?.[0]?.ctxt, ctx);
      await listener.stop();
    },
  },
]);
