/**
 * Core's diagnostics channels (packages/core/src/diagnostics.ts): a subscriber to a message's
 * `end` alone sees it, as README's example does; nothing is published to nobody.
 */
import diagnostics from 'node:diagnostics_channel';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bus, type RpcDispatchEvent, type RpcSendEvent } from '@hybridbus/core';

test('a subscriber to end alone gets each call and dispatch, with its duration', async () => {
  const bus = await Bus.create({ transports: { default: 'memory://diag-end' } });
  const calls: RpcSendEvent[] = [];
  const dispatched: RpcDispatchEvent[] = [];
  const onCall = (e: unknown): void => void calls.push(e as RpcSendEvent);
  const onDispatch = (e: unknown): void => void dispatched.push(e as RpcDispatchEvent);
  diagnostics.subscribe('hybridbus:rpc:call:end', onCall);
  diagnostics.subscribe('hybridbus:rpc:dispatch:end', onDispatch);
  try {
    const server = bus.rpcServer({ topic: 'diag', server: 's' }, [{ echo: (_c: unknown, a: unknown) => a }]);
    await server.start();
    assert.deepEqual(await bus.rpcClient({ topic: 'diag' }).call({}, 'echo', { x: 1 }), { x: 1 });
    await server.stop();
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.method, 'echo');
    assert.equal(typeof calls[0]?.durationMs, 'number');
    assert.equal(dispatched.length, 1);
    assert.equal(dispatched[0]?.outcome, 'ok');
  } finally {
    diagnostics.unsubscribe('hybridbus:rpc:call:end', onCall);
    diagnostics.unsubscribe('hybridbus:rpc:dispatch:end', onDispatch);
    await bus.close();
  }
});
