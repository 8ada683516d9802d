/** The oslo dict codec against the messages captured from real oslo.messaging (oslo-wire.md). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MalformedMessage, RemoteError } from '@hybridbus/core';
import type { RpcRequest } from '@hybridbus/core/driver';
import { contextKeyCacheSizes, deserializeFailure, messageId, uniqueId, notificationFromCompact, notificationFromOslo, notificationToCompact, requestFromCompact, requestToCompact, envelope, notificationToOslo, osloTimestamp, replyFromOslo, requestFromOslo, requestToOslo, serializeFailure, unenvelope } from '@hybridbus/core/driver';

const capturedCast =
  '{"oslo.version": "2.0", "oslo.message": "{\\"method\\": \\"echo\\", \\"args\\": {\\"arg\\": \\"\\\\u00e9\\"}, \\"namespace\\": \\"test\\", \\"version\\": \\"1.2\\", \\"_unique_id\\": \\"8a57b953e95e4e7aa5ec12cbb5cc96ad\\", \\"_context_user_id\\": \\"u\\"}"}';

test('a captured oslo cast decodes, and re-encodes to the same fields', () => {
  const inner = unenvelope(capturedCast);
  const req = requestFromOslo(inner);
  assert.deepEqual(req, { method: 'echo', args: { arg: 'é' }, namespace: 'test', version: '1.2', context: { user_id: 'u' }, uniqueId: '8a57b953e95e4e7aa5ec12cbb5cc96ad' });
  assert.deepEqual(requestToOslo(req), inner);
  const outer = JSON.parse(envelope(inner)) as Record<string, string>;
  assert.equal(outer['oslo.version'], '2.0');
  assert.deepEqual(JSON.parse(outer['oslo.message'] as string), inner);
});

test('bare JSON objects are accepted as envelope 1.0; other envelope majors and junk are MalformedMessage', () => {
  assert.deepEqual(unenvelope('{"method": "m", "args": {}}'), { method: 'm', args: {} });
  assert.throws(() => unenvelope('{"oslo.version": "3.0", "oslo.message": "{}"}'), /unsupported envelope version "3.0"/);
  assert.throws(() => unenvelope('not json'), MalformedMessage);
  assert.throws(() => unenvelope('[1]'), MalformedMessage);
  assert.throws(() => unenvelope('{"oslo.version": "2.0", "oslo.message": "{bad"}'), /"oslo.message" is not JSON/);
  assert.throws(() => requestFromOslo({ args: {} }), /field "method" must be a string/);
  assert.throws(() => requestFromOslo({ method: 'm', args: [] }), /field "args" must be an object/);
});

test('replies need `failure` and `ending`, as the Python client does', () => {
  assert.deepEqual(replyFromOslo({ result: 42, failure: null, ending: true, _msg_id: 'x' }), { result: 42, failure: null, ending: true });
  assert.throws(() => replyFromOslo({ result: 42, ending: true }), /field "failure"/);
  assert.throws(() => replyFromOslo({ result: 42, failure: null }), /field "ending"/);
});

test("failures use oslo's format both ways", () => {
  const captured = JSON.stringify({ class: 'ValueError', module: 'builtins', message: 'boom', tb: ['Traceback (most recent call last):\n', 'ValueError: boom\n'], args: ['boom'], kwargs: {} });
  const e = deserializeFailure(captured);
  assert.ok(e instanceof RemoteError);
  assert.equal(e.remoteClass, 'ValueError');
  assert.equal(e.remoteModule, 'builtins');
  assert.equal(e.remoteMessage, 'boom');
  assert.deepEqual(e.remoteArgs, ['boom']);
  class Conflict extends Error {
    override name = 'Conflict';
    module = 'nova.exception';
  }
  const f = JSON.parse(serializeFailure(new Conflict('taken'))) as Record<string, unknown>;
  assert.deepEqual(Object.keys(f).sort(), ['args', 'class', 'kwargs', 'message', 'module', 'tb']);
  assert.equal(f['class'], 'Conflict');
  assert.equal(f['module'], 'nova.exception');
  assert.deepEqual(f['args'], ['taken']);
  assert.ok((f['tb'] as string[]).every((l) => l.endsWith('\n')));
  // A RemoteError passed on keeps the original class.
  assert.equal(JSON.parse(serializeFailure(e))['class'], 'ValueError');
  assert.equal(deserializeFailure('not json').remoteClass, 'UnknownError');
});

test('notifications: upper-case priority, dashed message id and oslo timestamp on the wire', () => {
  const captured = {
    message_id: '46777e8f-4895-4de9-9212-daccf5c7ad67',
    publisher_id: 'py.node1',
    event_type: 'compute.instance.create.end',
    priority: 'INFO',
    payload: { token: 'CAP2', seq: 1, state: 'active' },
    timestamp: '2026-11-22 01:49:21.374120',
    _unique_id: '0c4960038acb486d9a4735db04aeca58',
    _context_user_id: 'u-interop',
  };
  const n = notificationFromOslo(captured);
  assert.equal(n.priority, 'info');
  assert.deepEqual(n.context, { user_id: 'u-interop' });
  assert.deepEqual(notificationToOslo(n), captured);
  assert.throws(() => notificationFromOslo({ ...captured, priority: 'LOUD' }), /unknown notification priority "LOUD"/);
  assert.equal(osloTimestamp(new Date('2026-11-22T01:49:21.374Z')), '2026-11-22 01:49:21.374000');
});

test('an OpenStack-sized context crosses the oslo dict intact; keys from the network keep the key caches bounded', () => {
  const context = { user_id: 'u', project_id: 'p', domain_id: null, is_admin: false, roles: ['member', 'reader'], request_id: 'req-1', service_catalog: [], _odd: 1, contextual: 'x', '': 'empty' };
  const req = { method: 'm', args: { a: 1 }, namespace: undefined, version: '1.0', context, uniqueId: 'id' };
  const d = requestToOslo(req);
  assert.equal(d['_context_user_id'], 'u');
  assert.equal(d['_context_'], 'empty');
  assert.deepEqual(requestFromOslo(JSON.parse(JSON.stringify(d))).context, context);
  // Keys that look like context keys but are not: left out.
  assert.deepEqual(requestFromOslo({ method: 'm', _unique_id: 'i', _contextual: 1, _context: 2, __context_x: 3 }).context, {});
  // A key named __proto__ arrives as a key of the context, not as its prototype.
  const proto = requestFromOslo(JSON.parse('{"method": "m", "_context___proto__": {"polluted": true}}')).context;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(Object.keys(proto), ['__proto__']);
  assert.equal((proto as Record<string, unknown>)['polluted'], undefined);
  // Thousands of distinct keys: every one decodes, the caches stop at their bound.
  const many: Record<string, unknown> = { method: 'm' };
  for (let i = 0; i < 10_000; i++) many[`_context_k${i}`] = i;
  const got = requestFromOslo(many).context as Record<string, unknown>;
  assert.equal(Object.keys(got).length, 10_000);
  assert.equal(got['k9999'], 9999);
  const sizes = contextKeyCacheSizes();
  assert.ok(sizes.stripped <= sizes.max && sizes.prefixed <= sizes.max, JSON.stringify(sizes));
  assert.equal(sizes.stripped, sizes.max);
});

test('the compact form hands over the same request and notification as oslo\'s dict, and names what is wrong with a bad one', () => {
  const wire = <T>(v: T): unknown => JSON.parse(JSON.stringify(v));
  const requests: RpcRequest[] = [
    { method: 'm', args: {}, context: {}, uniqueId: 'u' },
    { method: 'm', args: { a: [1, { b: null }], s: 'é' }, namespace: 'ns', version: '1.2', context: { user_id: 'u', roles: ['r'], x: undefined }, uniqueId: 'u2', trace: { traceparent: '00-aa-bb-01' } },
    { method: 'm', args: { n: 1 }, namespace: null, context: { '': 1, __proto__x: 2 }, uniqueId: '', trace: {} },
  ];
  for (const r of requests) assert.deepEqual(requestFromCompact(wire(requestToCompact(r))), requestFromOslo(wire(requestToOslo(r))), JSON.stringify(r));
  const notifications = [
    { messageId: 'id', publisherId: 'p', eventType: 'e', priority: 'info' as const, payload: { a: 1 }, timestamp: osloTimestamp(), context: { user_id: 'u' }, uniqueId: 'u' },
    { messageId: 'id', publisherId: 'p', eventType: 'e', priority: 'critical' as const, payload: undefined, timestamp: 't', context: {}, uniqueId: 'u', trace: { traceparent: '00-aa-bb-01' } },
  ];
  for (const n of notifications) assert.deepEqual(notificationFromCompact(wire(notificationToCompact(n))), notificationFromOslo(wire(notificationToOslo(n))), JSON.stringify(n));
  for (const [bad, why] of [
    [{}, /must be a JSON array of 6 or 7 items/],
    [['m', {}, null, null, 'u'], /6 or 7 items/],
    [['m', [], null, null, 'u', {}], /compact args must be an object, got \[\]/],
    [['m', {}, 3, null, 'u', {}], /compact namespace must be a string or null, got 3/],
    [['m', {}, null, null, 'u', null], /compact context must be an object, got null/],
  ] as const) assert.throws(() => requestFromCompact(bad), (e: unknown) => e instanceof MalformedMessage && why.test(e.message));
  assert.throws(() => notificationFromCompact(['id', 'p', 'e', 'LOUD', null, 't', 'u', {}]), /unknown notification priority "LOUD"/);
  assert.throws(() => notificationFromCompact(['id', 'p', 'e', 'info', null, 't', 'u', []]), /compact context must be an object/);
});

test('messageId() gives distinct ids in uuid4 form (version 4, RFC 4122 variant)', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 100_000; i++) {
    const id = messageId();
    if (i % 997 === 0) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 100_000);
});

test('uniqueId() gives distinct 32-hex-digit ids, across the counter\'s 4,096-id steps', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 100_000; i++) {
    const id = uniqueId();
    if (i % 997 === 0 || i % 4096 < 2) assert.match(id, /^[0-9a-f]{32}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 100_000);
});
