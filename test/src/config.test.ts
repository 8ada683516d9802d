import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Bus, ConfigError, configReference, loadConfig, maskSecrets, maskUrl, NON_CONFIG_VARIABLES, type ConfigInput } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import { execFileSync } from 'node:child_process';
import { tempDir } from './util.js';

const dir = tempDir('hb-config-');
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

/** Asserts loading fails with a ConfigError whose message contains every fragment. */
function rejects(options: Parameters<typeof loadConfig>[0], ...fragments: string[]): void {
  assert.throws(
    () => loadConfig({ env: {}, ...options }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
      assert.equal(e.code, 'HB_CONFIG');
      for (const f of fragments) assert.ok(e.message.includes(f), `message lacks ${JSON.stringify(f)}:\n${e.message}`);
      return true;
    },
  );
}
const overrides = (o: unknown) => ({ overrides: o as ConfigInput });

test('defaults: the embedded transport carries every pattern', () => {
  const cfg = loadConfig({ env: {} });
  assert.deepEqual(cfg.transports, { default: 'zmq://' });
  assert.deepEqual(cfg.patterns, { call: 'default', cast: 'default', fanout: 'default', notify: 'default' });
  assert.equal(cfg.rpc.timeout, 60_000);
  assert.deepEqual(cfg.notifications.topics, ['notifications']);
  assert.ok(Object.isFrozen(cfg.rpc));
});

test('unknown keys are rejected with the key, the value and the keys expected there', () => {
  rejects(overrides({ trasnports: {} }), 'trasnports: unknown key', 'expected one of: transports, patterns');
  rejects(overrides({ rpc: { timout: 5 } }), 'rpc.timout: unknown key (value 5)', 'rpc.timeout');
  rejects({ file: file('unknown.yaml', 'patterns:\n  call: default\n  rpc: default\n') }, 'patterns.rpc: unknown key (value "default")', 'unknown.yaml');
});

test('a pattern (or topic override) mapped to an undeclared transport is rejected', () => {
  rejects(overrides({ patterns: { fanout: 'broker' } }), 'patterns.fanout: "broker" is not a declared transport', 'declared transports: default');
  rejects(overrides({ topics: { scheduler: { cast: 'nope' } } }), 'topics.scheduler.cast: "nope" is not a declared transport');
  rejects(overrides({ topics: { scheduler: { rpc: 'default' } } }), 'topics', 'unknown pattern "rpc"', 'call, cast, fanout, notify');
});

test('a malformed URL and an unknown scheme are rejected, naming the transport', () => {
  rejects(overrides({ transports: { default: 'not a url' } }), 'transports.default: is not a well-formed URL', 'value was "not a url"', 'expected one such as "zmq://"');
  rejects(overrides({ transports: { default: 'kafka://h:9092' } }), 'transports.default: unknown scheme "kafka:"', 'zmq:', 'rabbit:');
  rejects(overrides({ transports: [] }), 'transports:', 'object mapping transport names to URLs');
});

test("driver options are checked at load by the driver, naming the transport, the option, the value and the expected form", () => {
  rejects(overrides({ transports: { direct: 'zmq://?bogus_option=1' }, patterns: { call: 'direct', cast: 'direct', fanout: 'direct', notify: 'direct' } }), 'transports.direct: ', 'option "bogus_option" is unknown', 'expected one of: matchmaker');
  rejects(overrides({ transports: { default: 'zmq://?acks=maybe' } }), 'transports.default: ', 'acks', '"maybe"', '"handled"');
  rejects(overrides({ transports: { default: 'rabbit://h/?rabbit_qos_prefetch_count=-1' } }), 'transports.default: ', 'rabbit_qos_prefetch_count');
});

test('the embedded default comes from the imported drivers: none imported, none configured, a ConfigError says what to do', () => {
  assert.deepEqual(loadConfig({ env: {}, overrides: { transports: {} } }).transports, { default: 'zmq://' });
  const script = "import('@hybridbus/core').then((m) => { try { m.loadConfig({ env: {} }); console.log('loaded'); } catch (e) { console.log(e.message); } })";
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.match(out, /transports: none configured, and no imported driver offers an embedded default; configure transports or import "@hybridbus\/zmq-direct"/);
});

test('negative or non-integer timeouts and counts are rejected with the expected form', () => {
  rejects(overrides({ rpc: { timeout: -1 } }), 'rpc.timeout', 'positive integer number of milliseconds', 'value was -1');
  rejects(overrides({ rpc: { timeout: 0 } }), 'rpc.timeout', '0 would time out at once', 'value was 0');
  assert.equal(loadConfig({ env: {}, overrides: { rpc: { callMonitorTimeout: 0 } } }).rpc.callMonitorTimeout, 0, 'a monitor timeout of 0 means no monitor');
  rejects(overrides({ rpc: { callMonitorTimeout: 1.5 } }), 'rpc.callMonitorTimeout', 'value was 1.5');
  rejects(overrides({ rpc: { maxConcurrency: 0 } }), 'rpc.maxConcurrency: must be a positive integer', 'value was 0');
  rejects(overrides({ notifications: { retry: -2 } }), 'notifications.retry', '-1 (retry forever)');
  rejects(overrides({ rpc: { accessPolicy: 'open' } }), 'rpc.accessPolicy', '"default","explicit"', 'value was "open"');
});

test('environment variables are read and validated like any input', () => {
  const cfg = loadConfig({
    env: {
      HYBRIDBUS_TRANSPORTS: '{"direct":"zmq://","broker":"rabbit://guest:guest@127.0.0.1:5672/"}',
      HYBRIDBUS_PATTERNS_CALL: 'direct',
      HYBRIDBUS_PATTERNS_CAST: 'direct',
      HYBRIDBUS_PATTERNS_FANOUT: 'broker',
      HYBRIDBUS_PATTERNS_NOTIFY: 'broker',
      HYBRIDBUS_RPC_TIMEOUT: '1500',
      HYBRIDBUS_NOTIFICATIONS_TOPICS: 'notifications, audit',
      OTHER_VAR: 'ignored',
    },
  });
  assert.equal(cfg.patterns.fanout, 'broker');
  assert.equal(cfg.rpc.timeout, 1500);
  assert.deepEqual(cfg.notifications.topics, ['notifications', 'audit']);
  rejects({ env: { HYBRIDBUS_RPC_TIMEOUT: '-20' } }, 'rpc.timeout', 'value was -20');
  rejects({ env: { HYBRIDBUS_PATTERNS_CALL: 'ghost' } }, 'patterns.call: "ghost" is not a declared transport');
  rejects({ env: { HYBRIDBUS_RPC_TIMOUT: '5' } }, 'HYBRIDBUS_RPC_TIMOUT: unknown environment variable (value "5")', 'HYBRIDBUS_RPC_TIMEOUT');
  rejects({ env: { HYBRIDBUS_TRANSPORTS: '{not json' } }, 'transports: must be an object mapping transport names to URLs', 'value was "{not json"');
});

test("the project's own non-config variables are accepted; a misspelt config variable is still rejected", () => {
  const cfg = loadConfig({ env: { HYBRIDBUS_BENCH_RABBIT_URL: 'rabbit://guest:guest@127.0.0.1:5672/', HYBRIDBUS_TEST_KEEP_DATA: '1', HYBRIDBUS_RPC_TIMEOUT: '1500' } });
  assert.equal(cfg.rpc.timeout, 1500);
  for (const name of Object.keys(NON_CONFIG_VARIABLES)) assert.ok(readFileSync(new URL('../../README.md', import.meta.url), 'utf8').includes(name), `README documents ${name}`);
  rejects({ env: { HYBRIDBUS_RPC_TIMOUT: '5', HYBRIDBUS_TEST_KEEP_DATA: '1' } }, 'HYBRIDBUS_RPC_TIMOUT: unknown environment variable', 'not config: HYBRIDBUS_BENCH_RABBIT_URL, HYBRIDBUS_TEST_KEEP_DATA');
  rejects({ env: { HYBRIDBUS_TEST_KEEP_DAT: '1' } }, 'HYBRIDBUS_TEST_KEEP_DAT: unknown environment variable');
});

test('a bad value names the key and where it was set: the variable, or the file', () => {
  rejects({ env: { HYBRIDBUS_RPC_TIMEOUT: 'abc' } }, 'rpc.timeout: must be a positive integer number of milliseconds', 'value was "abc" (set by HYBRIDBUS_RPC_TIMEOUT)');
  rejects({ env: { HYBRIDBUS_RPC_MAX_CONCURRENCY: '0' } }, 'rpc.maxConcurrency', '(set by HYBRIDBUS_RPC_MAX_CONCURRENCY)');
  const bad = file('bad-timeout.yaml', 'rpc:\n  timeout: soon\n');
  rejects({ file: bad }, 'rpc.timeout', 'value was "soon"', `(set in ${bad})`);
});

test('a bad transport URL is reported alone, its password masked; no secret in any config error', () => {
  const secret = 's3cr3t-pw';
  const transports = { direct: 'zmq://', broker: `rabbit://guest:${secret}@127.0.0.1:notaport/`, other: `rabbit://admin:${secret}@h1:5672,admin:${secret}@h2:5672/` };
  for (const options of [overrides({ transports }), { env: { HYBRIDBUS_TRANSPORTS: JSON.stringify(transports) } }]) {
    assert.throws(
      () => loadConfig({ env: {}, ...options }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.ok(!e.message.includes(secret), `a password in:\n${e.message}`);
        const line = e.problems.find((p) => p.startsWith('transports.broker: '));
        assert.ok(line, e.message);
        assert.match(line, /value was "rabbit:\/\/guest:\*\*\*@127\.0\.0\.1:notaport\/"/);
        assert.ok(!line.includes('"direct"') && !line.includes('h2:5672'), `only that transport's value: ${line}`);
        return true;
      },
    );
  }
  rejects({ env: { HYBRIDBUS_TRANSPORTS: `{"a": "rabbit://u:${secret}@h/?x=1", ` } }, 'transports: must be an object', 'u:***@h');
  assert.throws(() => loadConfig({ env: { HYBRIDBUS_TRANSPORTS: `{"a": "rabbit://u:${secret}@h/", ` } }), (e: unknown) => !String((e as Error).message).includes(secret));
});

test('maskSecrets: user:*** in every URL of a text, oslo host lists, redis://:pw@, secret query options', () => {
  const cases: Array<[string, string]> = [
    ['rabbit://guest:guest@127.0.0.1:5672/', 'rabbit://guest:***@127.0.0.1:5672/'],
    ['redis://:pw@127.0.0.1:6379/0', 'redis://:***@127.0.0.1:6379/0'],
    ['rabbit://a:p1@h1:5672,b:p2@h2:5672/vh', 'rabbit://a:***@h1:5672,b:***@h2:5672/vh'],
    ['amqp://user@host/', 'amqp://user@host/'],
    ['rabbit://u:p@ss@h/', 'rabbit://u:***@h/'],
    ['{"broker":"rabbit://guest:guest@h:5672/"}', '{"broker":"rabbit://guest:***@h:5672/"}'],
    ['"{\\"b\\":\\"amqp://x:y@h\\"}"', '"{\\"b\\":\\"amqp://x:***@h\\"}"'],
    ['zmq://?matchmaker=redis://:pw@h:6379&curve_secret_key=abcdef&curve_public_key=pub', 'zmq://?matchmaker=redis://:***@h:6379&curve_secret_key=***&curve_public_key=pub'],
    ['redis+sentinel://h1:26379,h2:26379/m?password=p&sentinelPassword=q', 'redis+sentinel://h1:26379,h2:26379/m?password=***&sentinelPassword=***'],
    ['no url here: user:pass@host', 'no url here: user:pass@host'],
    ['expected redis://[[user]:<password>@]host[:port] or redis+sentinel://h/m?password=...', 'expected redis://[[user]:<password>@]host[:port] or redis+sentinel://h/m?password=...'],
  ];
  for (const [text, shown] of cases) {
    assert.equal(maskSecrets(text), shown, text);
    assert.equal(maskSecrets(shown), shown, 'idempotent');
  }
  assert.equal(maskUrl('rabbit://guest:guest@h/'), 'rabbit://guest:***@h/');
});

test('JSON and YAML files; precedence is defaults < file < environment < overrides', () => {
  const yaml = file(
    'bus.yaml',
    `transports:
  direct: zmq://
  broker: rabbit://guest:guest@127.0.0.1:5672/
patterns: { call: direct, cast: direct, fanout: broker, notify: broker }
topics:
  scheduler: { cast: broker }
rpc:
  timeout: 1000
  maxConcurrency: 8
`,
  );
  const fromYaml = loadConfig({ file: yaml, env: {} });
  assert.equal(fromYaml.topics['scheduler']?.cast, 'broker');
  assert.equal(fromYaml.rpc.timeout, 1000);
  const json = file('bus.json', JSON.stringify({ rpc: { timeout: 2000, maxConcurrency: 3 } }));
  const layered = loadConfig({ file: json, env: { HYBRIDBUS_RPC_TIMEOUT: '3000' }, overrides: { rpc: { maxConcurrency: 4 } } });
  assert.equal(layered.rpc.timeout, 3000, 'environment beats file');
  assert.equal(layered.rpc.maxConcurrency, 4, 'overrides beat file');
  assert.equal(loadConfig({ env: { HYBRIDBUS_RPC_TIMEOUT: '3000' }, overrides: { rpc: { timeout: 5 } } }).rpc.timeout, 5, 'overrides beat environment');
  rejects({ file: file('broken.yaml', 'rpc: [unclosed') }, 'broken.yaml', 'cannot parse YAML');
  rejects({ file: file('broken.json', '{"rpc": ') }, 'broken.json', 'cannot parse JSON');
  rejects({ file: join(dir, 'missing.yaml') }, 'cannot read config file');
  rejects({ file: file('cfg.toml', 'x = 1') }, 'must end in .json, .yml or .yaml');
  rejects({ file: file('list.yaml', '- a\n- b\n') }, 'top level must be a mapping');
});

test('Bus creation: a scheme no imported driver registered fails at load, naming the transport and the package to import', async () => {
  await assert.rejects(Bus.create({ transports: { default: 'amqp1://127.0.0.1' } }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /transports\.default: unknown scheme "amqp1:": no driver is registered for it \(registered: [^)]*zmq:[^)]*\); import the driver's package/);
    return true;
  });
  await assert.rejects(Bus.create({ rpc: { timeout: -1 } }), ConfigError);
});

test("README's config reference is the one generated from the schema", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(configReference()), 'README.md is stale: paste the output of `npm run -s config-reference`');
});
