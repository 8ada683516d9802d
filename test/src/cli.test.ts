/** The `hybridbus` command, run as a user would: separate processes, real sockets. */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { freshTopic, tempDir } from './util.js';

const bin = join(createRequire(import.meta.url).resolve('@hybridbus/cli/package.json'), '..', 'dist', 'main.js');
const nsDir = tempDir('hb-cli-ns-');
// Every process of this file shares a private name-service directory, nothing else.
const env = { ...process.env, HYBRIDBUS_TRANSPORTS: JSON.stringify({ default: `zmq://?matchmaker=local:${nsDir}` }) };

function run(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...env, ...extraEnv }, timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('hybridbus CLI', () => {
  const servers: Array<ReturnType<typeof spawn>> = [];
  after(() => servers.forEach((s) => s.kill('SIGTERM')));

  test('serve, then call, cast and a remote error from another process', async () => {
    const topic = freshTopic();
    const server = spawn(process.execPath, [bin, 'serve', '--topic', topic, '--server', 's1'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.stderr.on('data', (d: Buffer) => d.toString().includes('serving topic') && resolve());
      server.once('exit', (c) => reject(new Error(`serve exited with ${c}`)));
    });
    const call = await run(['--context', '{"user_id":"u1"}', 'call', topic, 'echo', '{"x": 1}']);
    assert.equal(call.code, 0, call.stderr);
    assert.deepEqual(JSON.parse(call.stdout), { x: 1 });
    const fail = await run(['call', topic, 'fail', '{"message": "no capacity"}']);
    assert.equal(fail.code, 1);
    assert.match(fail.stderr, /remote Error: no capacity/);
    const none = await run(['call', topic, 'nosuch']);
    assert.match(none.stderr, /remote NoSuchMethod/);
    const cast = await run(['cast', '--fanout', topic, 'echo', '{"fan": true}']);
    assert.equal(cast.code, 0, cast.stderr);
    const ls = await run(['nameservice', 'ls']);
    assert.match(ls.stdout, new RegExp(`openstack/${topic}\\.s1 +127\\.0\\.0\\.1:\\d+`));
    server.kill('SIGTERM');
    assert.equal(await new Promise((r) => server.once('exit', r)), 0, 'serve stops cleanly on SIGTERM');
  });

  test('bad input: exit 1 with one clear line, never a stack trace', async () => {
    const cases: Array<[string[], RegExp, Record<string, string>?]> = [
      [['call', 't', 'm', '{bad'], /args must be JSON/],
      [['call'], /missing required argument 'topic'/],
      [['--context', '[1]', 'call', 't', 'm'], /--context must be a JSON object/],
      [['notify', '-p', 'loud', 'e'], /one of audit, debug, info/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['call', '--timeout', '-5', 't', 'm'], /positive integer number of milliseconds/],
      [['call', '--timeout', '0', 't', 'm'], /option '--timeout <ms>' argument '0' is invalid\. expected a positive integer number of milliseconds \(0 would time out at once\)/],
      [['cast', '--timeout', '0', 't', 'm'], /positive integer number of milliseconds/],
      [['check-config'], /rpc\.timeout: must be a positive integer number of milliseconds.*: value was -1 \(set by HYBRIDBUS_RPC_TIMEOUT\)/, { HYBRIDBUS_RPC_TIMEOUT: '-1' }],
      [['check-config'], /rpc\.timeout: .*value was "abc" \(set by HYBRIDBUS_RPC_TIMEOUT\)/, { HYBRIDBUS_RPC_TIMEOUT: 'abc' }],
      [['check-config'], /HYBRIDBUS_RPC_TIMOUT: unknown environment variable/, { HYBRIDBUS_RPC_TIMOUT: '5' }],
      [['-c', '/nonexistent.yaml', 'check-config'], /cannot read config file/],
      [['call', '--timeout', '300', freshTopic('nobody'), 'x'], /HB_UNDELIVERABLE|HB_TIMEOUT/],
    ];
    for (const [args, message, extra] of cases) {
      const r = await run(args, extra);
      assert.notEqual(r.code, 0, `${args.join(' ')} should fail`);
      assert.match(r.stderr, message, args.join(' '));
      assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+/, `no stack trace for ${args.join(' ')}`);
    }
  });

  test('check-config prints each effective value with its source', async () => {
    const file = join(tempDir('hb-cli-'), 'bus.yaml');
    writeFileSync(file, 'rpc:\n  timeout: 1234\n');
    const r = await run(['-c', file, 'check-config'], { HYBRIDBUS_RPC_MAX_CONCURRENCY: '7' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /rpc\.timeout +1234 +\(file\)/);
    assert.match(r.stdout, /rpc\.maxConcurrency +7 +\(env\)/);
    assert.match(r.stdout, /controlExchange +"openstack" +\(default\)/);
  });

  test("the project's own HYBRIDBUS_BENCH_RABBIT_URL and HYBRIDBUS_TEST_KEEP_DATA do not break config loading", async () => {
    const r = await run(['check-config'], { HYBRIDBUS_BENCH_RABBIT_URL: 'rabbit://guest:guest@127.0.0.1:5672/', HYBRIDBUS_TEST_KEEP_DATA: '1' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /config OK/);
  });

  test('no password in check-config, config errors, nameservice ls or the demo', async () => {
    const secret = 'pw-s3cr3t';
    const broker = `rabbit://guest:${secret}@127.0.0.1:1/`;
    const transports = JSON.stringify({ default: `zmq://?matchmaker=local:${nsDir}`, broker });
    const check = await run(['check-config'], { HYBRIDBUS_TRANSPORTS: transports });
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /transports +\{"default":"zmq:.*","broker":"rabbit:\/\/guest:\*\*\*@127\.0\.0\.1:1\/"\} +\(env\)/);
    // A malformed URL: only that transport, masked, and the variable that set it.
    const bad = await run(['check-config'], { HYBRIDBUS_TRANSPORTS: JSON.stringify({ default: 'zmq://', broker: `rabbit://guest:${secret}@h:port/` }) });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /transports\.broker: is not a well-formed URL.*: value was "rabbit:\/\/guest:\*\*\*@h:port\/" \(set by HYBRIDBUS_TRANSPORTS\)/);
    assert.doesNotMatch(bad.stderr, /"default"/, 'only the bad transport is shown');
    // A transport that is not zmq://: the error names it, masked (the driver may not even connect).
    const ls = await run(['nameservice', 'ls', '--transport', 'broker'], { HYBRIDBUS_TRANSPORTS: transports, HYBRIDBUS_PATTERNS_NOTIFY: 'broker' });
    assert.equal(ls.code, 1);
    assert.match(ls.stderr, /transport "broker" is rabbit:\/\/guest:\*\*\*@127\.0\.0\.1:1\/: it has no name service/);
    // The demo's table shows each transport's URL: a CURVE secret key is masked like a password.
    const { curveKeyPair } = await import('@hybridbus/zmq-direct');
    const keys = curveKeyPair();
    const curve = `zmq://?matchmaker=local:${nsDir}&curve=true&curve_public_key=${encodeURIComponent(keys.publicKey)}&curve_secret_key=${encodeURIComponent(keys.secretKey)}`;
    const demo = await run(['demo'], { HYBRIDBUS_TRANSPORTS: JSON.stringify({ default: curve }) });
    assert.equal(demo.code, 0, demo.stderr);
    assert.match(demo.stdout, /call +default \(zmq:.*curve_secret_key=\*\*\*\)/);
    for (const r of [check, bad, ls, demo]) {
      for (const s of [secret, keys.secretKey, encodeURIComponent(keys.secretKey)]) assert.ok(!(r.stdout + r.stderr).includes(s), `a secret in:\n${r.stdout}${r.stderr}`);
    }
  });

  test('notify and listen take -t once per topic or a comma list, and positionals after it', async () => {
    const [a, b] = [freshTopic('na'), freshTopic('nb')];
    const listener = spawn(process.execPath, [bin, 'listen', '-t', a, '-t', b], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    servers.push(listener);
    let out = '';
    listener.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve, reject) => {
      listener.stderr.on('data', (d: Buffer) => d.toString().includes('listening on') && resolve());
      listener.once('exit', (c) => reject(new Error(`listen exited with ${c}`)));
    });
    const one = await run(['notify', '-t', a, 'compute.one', '{"n": 1}']);
    assert.equal(one.code, 0, one.stderr);
    const both = await run(['notify', '-t', `${a},${b}`, 'compute.both', '{"n": 2}']);
    assert.equal(both.code, 0, both.stderr);
    const deadline = Date.now() + 10_000;
    while ((out.match(/compute\.both/g) ?? []).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const events = out.trim().split('\n').map((l) => JSON.parse(l) as { eventType: string; payload: unknown });
    assert.deepEqual(events.filter((e) => e.eventType === 'compute.one').map((e) => e.payload), [{ n: 1 }]);
    assert.equal(events.filter((e) => e.eventType === 'compute.both').length, 2, 'one per topic');
    listener.kill('SIGTERM');
  });

  test('cast --help says what --timeout does for a cast', async () => {
    const r = await run(['cast', '--help']);
    assert.match(r.stdout, /--timeout <ms> +give up waiting for the cast to be accepted/);
    assert.doesNotMatch(r.stdout, /call timeout/);
  });

  test('--help for every command', async () => {
    for (const cmd of [[], ['call'], ['serve'], ['notify'], ['listen'], ['check-config'], ['nameservice', 'ls'], ['demo']]) {
      const r = await run([...cmd, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /Usage: hybridbus/);
    }
  });
});

describe('an install without the benchmark engine', () => {
  test('every command works, and bench says which package to install', async () => {
    // A user's install: the CLI and the drivers, no @hybridbus/benchmarks beside them.
    const { cpSync, mkdirSync, realpathSync, symlinkSync } = await import('node:fs');
    const root = tempDir('hb-cli-install-');
    const cliDir = realpathSync(join(bin, '..', '..'));
    cpSync(join(cliDir, 'dist'), join(root, 'cli', 'dist'), { recursive: true });
    cpSync(join(cliDir, 'package.json'), join(root, 'cli', 'package.json'));
    const installed = join(cliDir, '..', '..', 'node_modules');
    mkdirSync(join(root, 'node_modules', '@hybridbus'), { recursive: true });
    for (const pkg of ['@hybridbus/core', '@hybridbus/nameservice', '@hybridbus/zmq-direct', '@hybridbus/rabbit-brokered', '@hybridbus/amqp1', 'commander']) {
      symlinkSync(realpathSync(join(installed, pkg)), join(root, 'node_modules', pkg));
    }
    const alone = join(root, 'cli', 'dist', 'main.js');
    const exec = (args: string[]): Promise<{ code: number; stderr: string; stdout: string }> =>
      new Promise((resolve) =>
        execFile(process.execPath, [alone, ...args], { env, timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
      );
    const bench = await exec(['bench', '--quick']);
    assert.equal(bench.code, 1);
    assert.match(bench.stderr, /the benchmark engine is not installed; run: npm i @hybridbus\/benchmarks/);
    const check = await exec(['check-config']);
    assert.equal(check.code, 0, check.stderr);
  });
});
