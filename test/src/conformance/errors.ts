/** Conformance cases: remote errors, timeouts, aborts and messages nobody can receive. */
import assert from 'node:assert/strict';
import { CallAborted, ConfigError, MessageUndeliverable, MessagingTimeout, RemoteError, remoteError } from '@hybridbus/core';
import { deferred, recordingLogger } from '../util.js';
import { ctx, type ConformanceCase } from './case.js';

export const ERROR_CASES: readonly ConformanceCase[] = [
  {
    name: 'remote errors carry class, module, message and traceback; the server keeps serving',
    pattern: 'call',
    async run({ topic, newBus }) {
      class QuotaExceeded extends Error {
        override name = 'QuotaExceeded';
        readonly module = 'nova.exception';
      }
      const logger = recordingLogger();
      const bus = await newBus({ logger });
      const server = bus.rpcServer({ topic, server: 's' }, [
        {
          expectedExceptions: [QuotaExceeded],
          quota: () => {
            throw new QuotaExceeded('quota exceeded for cores');
          },
          boom: async () => {
            throw new TypeError('boom');
          },
          ok: () => 1,
        },
      ]);
      await server.start();
      const client = (await newBus()).rpcClient({ topic });
      await assert.rejects(client.call(ctx, 'quota'), (e: unknown) => {
        assert.ok(e instanceof RemoteError);
        assert.equal(e.code, 'HB_REMOTE');
        assert.equal(e.remoteClass, 'QuotaExceeded');
        assert.equal(e.remoteModule, 'nova.exception');
        assert.equal(e.remoteMessage, 'quota exceeded for cores');
        assert.ok(e.remoteTraceback.some((l) => l.includes('quota exceeded')));
        return true;
      });
      await assert.rejects(client.call(ctx, 'boom'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'TypeError');
      assert.equal(await client.call(ctx, 'ok'), 1);
      // Expected exceptions are part of the API: not logged as server faults.
      const errors = logger.records.filter((r) => r.level === 'error').map((r) => String((r.obj as { method?: string }).method));
      assert.deepEqual(errors, ['boom']);
      await server.stop();
    },
  },
  {
    name: 'an endpoint chooses the remote class its caller sees: remoteError(class, message, { module, args, kwargs })',
    pattern: 'call',
    async run({ topic, newBus }) {
      const logger = recordingLogger();
      const bus = await newBus({ logger });
      const server = bus.rpcServer({ topic, server: 's' }, [
        {
          expectedExceptions: [RemoteError],
          flavor: (_c: unknown, a: { name: string }) => {
            throw remoteError('ValueError', `no flavor ${a.name}`, { module: 'builtins' });
          },
          lookup: () => {
            throw remoteError('InstanceNotFound', 'Instance i-1 could not be found.', { module: 'nova.exception', args: [], kwargs: { instance_id: 'i-1' } });
          },
          plain: () => {
            throw remoteError('Conflict', 'busy');
          },
        },
      ]);
      await server.start();
      const client = (await newBus()).rpcClient({ topic });
      const sees = (cls: string, module: string, message: string, args: unknown[], kwargs: object) => (e: unknown): boolean => {
        assert.ok(e instanceof RemoteError, String(e));
        assert.equal(e.code, 'HB_REMOTE');
        assert.deepEqual([e.remoteClass, e.remoteModule, e.remoteMessage, e.remoteArgs, e.remoteKwargs], [cls, module, message, args, kwargs]);
        return true;
      };
      await assert.rejects(client.call(ctx, 'flavor', { name: 'm1.huge' }), sees('ValueError', 'builtins', 'no flavor m1.huge', ['no flavor m1.huge'], {}));
      // args default to [message] when none are given (an empty list counts as none).
      await assert.rejects(client.call(ctx, 'lookup'), sees('InstanceNotFound', 'nova.exception', 'Instance i-1 could not be found.', ['Instance i-1 could not be found.'], { instance_id: 'i-1' }));
      await assert.rejects(client.call(ctx, 'plain'), sees('Conflict', 'hybridbus', 'busy', ['busy'], {}));
      assert.deepEqual(logger.records.filter((r) => r.level === 'error'), [], 'listed in expectedExceptions: not a server fault');
      assert.throws(() => remoteError('not a class', 'x'), (e: unknown) => e instanceof ConfigError && /remoteError class/.test(e.message));
      assert.throws(() => remoteError('X', 'x', { module: 'no spaces allowed' }), ConfigError);
      await server.stop();
    },
  },
  {
    name: 'a result JSON cannot encode fails the call with a RemoteError; the server keeps serving',
    pattern: 'call',
    async run({ topic, newBus }) {
      const bus = await newBus({ logger: recordingLogger() });
      const server = bus.rpcServer({ topic, server: 's' }, [{ big: () => 10n, ok: () => 1 }]);
      await server.start();
      const client = (await newBus()).rpcClient({ topic });
      await assert.rejects(client.call(ctx, 'big'), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'TypeError' && /BigInt/.test(e.remoteMessage));
      assert.equal(await client.call(ctx, 'ok'), 1);
      await server.stop();
    },
  },
  {
    name: 'a call times out with MessagingTimeout; an AbortSignal aborts it with CallAborted',
    pattern: 'call',
    async run({ topic, newBus, startServer }) {
      const release = deferred();
      await startServer(topic, 's', [{ slow: () => release.promise.then(() => 'late'), fast: () => 'fast' }]);
      const client = (await newBus()).rpcClient({ topic }, { timeout: 200 });
      const t0 = Date.now();
      await assert.rejects(client.call(ctx, 'slow'), (e: unknown) => e instanceof MessagingTimeout && e.code === 'HB_TIMEOUT');
      assert.ok(Date.now() - t0 < 5_000);
      const ac = new AbortController();
      const p = client.call(ctx, 'slow', {}, { signal: ac.signal, timeout: 10_000 });
      ac.abort(new Error('user gave up'));
      await assert.rejects(p, (e: unknown) => e instanceof CallAborted && (e.cause as Error).message === 'user gave up');
      await assert.rejects(client.call(ctx, 'slow', {}, { signal: AbortSignal.abort() }), CallAborted);
      release.resolve();
      assert.equal(await client.call(ctx, 'fast'), 'fast');
    },
  },
  {
    name: 'a call, cast or fanout to a topic nobody serves fails fast with MessageUndeliverable (or, where the backend cannot tell, a call times out)',
    pattern: 'call',
    topicPrefix: 'nobody',
    async run({ backend, topic, t, newBus }) {
      const within = backend.noServerTimeout ?? 500;
      if (backend.noServer === 'timeout') {
        const client = (await newBus()).rpcClient({ topic }, { timeout: within });
        await assert.rejects(client.call(ctx, 'x'), MessagingTimeout);
        return t.diagnostic(`${backend.name} cannot tell that nobody serves a topic: only the call's timeout was checked`);
      }
      // A timeout far beyond `within`: failing in time is the transport telling, not the timer.
      const client = (await newBus()).rpcClient({ topic }, { timeout: 60_000 });
      const sends: Array<[string, () => Promise<unknown>]> = [
        ['call', () => client.call(ctx, 'x')],
        ['cast', () => client.cast(ctx, 'x')],
        ['cast to a server', () => client.prepare({ server: 'gone' }).cast(ctx, 'x')],
        ['fanout', () => client.prepare({ fanout: true }).cast(ctx, 'x')],
      ];
      for (const [what, send] of sends) {
        const t0 = Date.now();
        await assert.rejects(send(), (e: unknown) => {
          assert.ok(e instanceof MessageUndeliverable, `${what}: expected MessageUndeliverable, got ${String(e)}`);
          return true;
        });
        assert.ok(Date.now() - t0 < within, `${what} failed after ${Date.now() - t0} ms (expected within ${within} ms)`);
      }
    },
  },
];
