/** Conformance cases: which endpoint serves (namespaces, versions, the version cap) and what may be called. */
import assert from 'node:assert/strict';
import { RemoteError, VersionCapError, type Bus } from '@hybridbus/core';
import { freshTopic } from '../util.js';
import { ctx, inGroup, type ConformanceCase, type ConformanceEnv } from './case.js';

const VERSIONS = 'namespaces and versions';

/** One server with versioned endpoints, shared by the group's cases, and a bus to call it from. */
const versioned = (env: ConformanceEnv): Promise<{ topic: string; bus: Bus }> =>
  env.shared(VERSIONS, async () => {
    const topic = freshTopic();
    await env.startServer(topic, 's', [
      { target: { namespace: 'compute', version: '1.2', legacyNamespaces: ['nova'] }, get: () => 'compute-1.2', only12: () => 'x' },
      { target: { version: '2.1' }, get: () => 'default-2.1' },
      { target: { namespace: 'compute', version: '1.5' }, other: () => 'compute-1.5' },
    ]);
    return { topic, bus: await env.newBus() };
  });

/** A call to the versioned server, as a function of the target's fields. */
const caller = async (env: ConformanceEnv) => {
  const { topic, bus } = await versioned(env);
  return (fields: { namespace?: string; version?: string }, method = 'get') => bus.rpcClient({ topic, ...fields }).call(ctx, method);
};

const rejectsWith = async (p: Promise<unknown>, cls: string, text: RegExp) => {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RemoteError, `expected RemoteError, got ${String(e)}`);
    assert.equal(e.remoteClass, cls);
    assert.equal(e.remoteModule, 'oslo_messaging.rpc.dispatcher');
    assert.match(e.remoteMessage, text);
    return true;
  });
};

class Api {
  hidden = 'not a method';
  ping(): string {
    return 'pong';
  }
  _secret(): string {
    return 'leaked';
  }
  __proto_like(): string {
    return 'leaked';
  }
}

export const VERSION_CASES: readonly ConformanceCase[] = [
  ...inGroup(VERSIONS, 'call', [
    {
      name: 'the first endpoint with the namespace, a compatible version and the method serves',
      async run(env) {
        const call = await caller(env);
        assert.equal(await call({ namespace: 'compute', version: '1.0' }), 'compute-1.2');
        assert.equal(await call({ namespace: 'compute', version: '1.2' }), 'compute-1.2');
        assert.equal(await call({ namespace: 'nova', version: '1.1' }), 'compute-1.2');
        assert.equal(await call({ version: '2.0' }), 'default-2.1');
        assert.equal(await call({ namespace: 'compute', version: '1.4' }, 'other'), 'compute-1.5');
      },
    },
    {
      name: 'a newer minor or another major is UnsupportedVersion; a missing method is NoSuchMethod',
      async run(env) {
        const call = await caller(env);
        await rejectsWith(call({ namespace: 'compute', version: '1.6' }), 'UnsupportedVersion', /version 1\.6/);
        await rejectsWith(call({ version: '3.0' }), 'UnsupportedVersion', /version 3\.0/);
        await rejectsWith(call({ namespace: 'nosuch' }), 'UnsupportedVersion', /version 1\.0/);
        await rejectsWith(call({ namespace: 'compute', version: '1.4' }, 'nope'), 'NoSuchMethod', /nope/);
        // compatible endpoints (1.2 and 1.5) exist but only the 1.2 one has only12: 1.3 skips it
        await rejectsWith(call({ namespace: 'compute', version: '1.3' }, 'only12'), 'NoSuchMethod', /only12/);
      },
    },
    {
      name: 'a version above the version cap is refused before sending',
      async run(env) {
        const { topic, bus } = await versioned(env);
        const client = bus.rpcClient({ topic, namespace: 'compute', version: '1.2' }, { versionCap: '1.1' });
        assert.equal(client.canSendVersion(), false);
        assert.equal(client.canSendVersion('1.1'), true);
        await assert.rejects(client.call(ctx, 'get'), VersionCapError);
        await assert.rejects(client.cast(ctx, 'get'), VersionCapError);
        assert.equal(await client.prepare({ version: '1.1' }).call(ctx, 'get'), 'compute-1.2');
      },
    },
  ]),
  ...inGroup('access policy', 'call', [
    {
      name: 'names starting with "_", inherited Object methods and non-functions are never callable',
      async run({ topic, newBus, startServer }) {
        await startServer(topic, 's', [new Api()]);
        const client = (await newBus()).rpcClient({ topic });
        assert.equal(await client.call(ctx, 'ping'), 'pong');
        for (const m of ['_secret', '__proto_like', 'constructor', 'toString', 'hasOwnProperty', 'hidden', 'target']) {
          await assert.rejects(client.call(ctx, m), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'NoSuchMethod', m);
        }
      },
    },
    {
      name: 'the explicit policy allows only the methods an endpoint lists in `exposed`',
      async run({ topic, newBus, startServer }) {
        const endpoint = { exposed: ['open', '_sneaky'], open: () => 'ok', closed: () => 'leaked', _sneaky: () => 'leaked' };
        await startServer(topic, 's', [endpoint], { accessPolicy: 'explicit' });
        const client = (await newBus()).rpcClient({ topic });
        assert.equal(await client.call(ctx, 'open'), 'ok');
        for (const m of ['closed', '_sneaky']) {
          await assert.rejects(client.call(ctx, m), (e: unknown) => e instanceof RemoteError && e.remoteClass === 'NoSuchMethod');
        }
      },
    },
  ]),
];
