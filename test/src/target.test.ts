import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidTarget, Target, validateTarget, versionIsCompatible } from '@hybridbus/core';

test('targets are validated per role', () => {
  assert.ok(validateTarget({ topic: 't' }, 'rpc-client'));
  assert.ok(validateTarget({ topic: 't', fanout: true }, 'rpc-client'));
  assert.throws(() => validateTarget({ topic: 't', fanout: true }, 'rpc-call'), /a call cannot be used with fanout/);
  assert.throws(() => validateTarget({ server: 's' }, 'rpc-client'), /requires a topic/);
  assert.throws(() => validateTarget({ topic: 't' }, 'rpc-server'), /requires a server/);
  assert.throws(() => validateTarget({ topic: 't', server: 's', fanout: true }, 'rpc-server'), InvalidTarget);
  assert.throws(() => validateTarget({ exchange: 'e' }, 'listener'), /requires a topic/);
  assert.throws(() => validateTarget({ topic: 't' }, 'endpoint'), /only namespace, version/);
  assert.throws(() => validateTarget({ topic: 'has space' }, 'rpc-client'), /topic must be a non-empty string/);
  assert.throws(() => validateTarget({ topic: '' }, 'rpc-client'), /topic must be/);
  assert.throws(() => validateTarget({ topic: 't', server: 'a/b' }, 'rpc-client'), /server must be/);
  assert.throws(() => validateTarget({ version: '1' }, 'endpoint'), /version must look like "1.0"/);
  assert.throws(() => validateTarget({ version: 'v1.0' }, 'endpoint'), (e: unknown) => e instanceof InvalidTarget && e.code === 'HB_INVALID_TARGET');
  assert.ok(validateTarget({ version: '1.2.3', namespace: null }, 'endpoint'));
});

test('Target.with replaces only the given fields; targets are immutable', () => {
  const t = new Target({ topic: 't', version: '1.0' });
  const u = t.with({ server: 's', version: undefined });
  assert.equal(u.server, 's');
  assert.equal(u.version, '1.0');
  assert.equal(t.server, undefined);
  assert.throws(() => Object.assign(t, { topic: 'x' }), TypeError);
  assert.equal(String(u), '<Target topic="t", server="s", version="1.0">');
});

test("version compatibility follows oslo's rules", () => {
  const cases: Array<[string, string, boolean]> = [
    ['1.2', '1.0', true],
    ['1.2', '1.2', true],
    ['1.2', '1.3', false],
    ['1.2', '2.0', false],
    ['2.0', '1.9', false],
    ['1.2.3', '1.2.2', true],
    ['1.2.3', '1.2.4', false],
    ['1.2', '1.2.1', false],
    ['1.3', '1.2.9', true],
  ];
  for (const [impl, req, ok] of cases) assert.equal(versionIsCompatible(impl, req), ok, `${impl} serves ${req}`);
});
