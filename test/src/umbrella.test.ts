/** The `hybridbus` package: core's application API with every driver registered, as README's examples use it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Bus, ConfigError, loadConfig, registeredSchemes, type Context } from 'hybridbus';
import { freshTopic, tempDir } from './util.js';

test('one import: the embedded default needs no config, and every driver scheme is known', async () => {
  assert.deepEqual(registeredSchemes().sort(), ['amqp', 'amqp1', 'amqps', 'memory', 'rabbit', 'zmq']);
  assert.deepEqual(loadConfig({ env: {} }).transports, { default: 'zmq://' });
  // The config's options reach the driver's own checks.
  assert.throws(() => loadConfig({ env: {}, overrides: { transports: { default: 'rabbit://h/?nosuch=1' } } }), ConfigError);
  const bus = await Bus.create({ transports: { default: `zmq://?matchmaker=local:${tempDir('hb-umbrella-')}` } });
  try {
    const topic = freshTopic();
    await bus.rpcServer({ topic, server: 's' }, [{ hello: (_c: Context, a: { name: string }) => `hello ${a.name}` }]).start();
    assert.equal(await bus.rpcClient({ topic }).call({}, 'hello', { name: 'newcomer' }), 'hello newcomer');
  } finally {
    await bus.close();
  }
});
