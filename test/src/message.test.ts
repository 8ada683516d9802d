/** The oslo dict codec against the messages captured from real oslo.messaging (oslo-wire.md). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MalformedMessage, RemoteError } from '@hybridbus/core';
import { deserializeFailure, notificationFromOslo, envelope, notificationToOslo, osloTimestamp, replyFromOslo, requestFromOslo, requestToOslo, serializeFailure, unenvelope } from '@hybridbus/core/driver';

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
