/**
 * Tests for the real-server launcher (test/src/harness/launcher.ts): real
 * redis-server and RabbitMQ processes on free 127.0.0.1 ports.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  activeServers,
  freePort,
  isProcessAlive,
  processTree,
  sharedServers,
  startRabbitMQ,
  startRedis,
} from './harness/launcher.js';
import {
  AMQP_10_HEADER,
  AMQP_10_SASL_HEADER,
  amqpConnectionStart,
  exchange,
  isPortBindable,
  protocolHeaderReply,
  redisPing,
  tryConnect,
  waitFor,
} from './harness/ports.js';

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/** Sends one RESP command and returns the raw reply (enough for simple/bulk replies). */
async function redisCommand(port: number, ...args: string[]): Promise<string> {
  const req = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  const isComplete = (b: Buffer): boolean => {
    const s = b.toString('latin1');
    if (s.startsWith('$') && !s.startsWith('$-1')) {
      const len = Number(s.slice(1, s.indexOf('\r\n')));
      return s.indexOf('\r\n') >= 0 && b.length >= s.indexOf('\r\n') + 2 + len + 2;
    }
    return s.includes('\r\n');
  };
  const { data, error } = await exchange(port, req, isComplete, 2000);
  if (error) throw new Error(`redis ${args[0]} on port ${port}: ${error}`);
  return data.toString('latin1');
}

/**
 * Local addresses with a LISTEN socket on `port`, from /proc/net/tcp{,6}
 * (reads kernel tables; sends no traffic). null if /proc is unavailable.
 */
function listenAddresses(port: number): string[] | null {
  const out: string[] = [];
  let any = false;
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]] as const) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'latin1');
      any = true;
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (!local || cols[3] !== '0A') continue; // 0A = LISTEN
      const [hexAddr = '', hexPort = ''] = local.split(':');
      if (parseInt(hexPort, 16) !== port) continue;
      if (!v6) {
        const b = Buffer.from(hexAddr, 'hex');
        out.push(`${b[3]}.${b[2]}.${b[1]}.${b[0]}`);
      } else {
        out.push(hexAddr === '00000000000000000000000001000000' ? '::1' : `v6:${hexAddr}`);
      }
    }
  }
  return any ? out : null;
}

async function assertGone(info: { pid: number; port: number; dataDir: string }, tree: number[] = []): Promise<void> {
  for (const p of [info.pid, ...tree]) assert.equal(isProcessAlive(p), false, `process ${p} should be gone`);
  assert.equal(fs.existsSync(info.dataDir), false, `data dir ${info.dataDir} should be removed`);
  assert.equal(await tryConnect(info.port), 'refused', `port ${info.port} should refuse connections`);
}

function definedPid(pid: number | undefined): number {
  assert.ok(pid !== undefined && pid > 0, 'server should have a pid');
  return pid;
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

describe('launcher: redis', { timeout: 60_000 }, () => {
  test('freePort() returns a bindable loopback port', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
    assert.equal(await isPortBindable(port), true);
  });

  test('startRedis(): free loopback port, answers PING, private data dir', async () => {
    const redis = await startRedis();
    try {
      assert.equal(redis.kind, 'redis');
      assert.equal(redis.host, '127.0.0.1');
      assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
      assert.equal(redis.running, true);
      assert.ok(redis.startupMs >= 0);
      const pid = definedPid(redis.pid);
      assert.equal(isProcessAlive(pid), true);
      assert.equal(await redisPing(redis.port), '+PONG');

      const st = fs.statSync(redis.dataDir);
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o077, 0, 'data dir must be private (0700)');
      assert.ok(redis.dataDir.startsWith(os.tmpdir() + path.sep));
      assert.ok(fs.statSync(redis.logFile).size > 0, 'server output is captured in the log file');
      assert.equal(path.dirname(redis.logFile), redis.dataDir);
      assert.match(redis.logTail(), /Ready to accept connections/);

      const addrs = listenAddresses(redis.port);
      if (addrs) assert.deepEqual(addrs, ['127.0.0.1'], 'listens on 127.0.0.1 only');
    } finally {
      await redis.stop();
    }
  });

  test('stop(): port refused, data dir removed, process gone; idempotent', async () => {
    const redis = await startRedis();
    const info = { pid: definedPid(redis.pid), port: redis.port, dataDir: redis.dataDir };
    await redis.stop();
    assert.equal(redis.pid, undefined);
    assert.equal(redis.running, false);
    await assertGone(info);
    await redis.stop(); // second stop is a no-op
    await assert.rejects(redis.restart(), /after stop\(\)/);
  });

  test('two instances at once get different ports and data dirs', async () => {
    const [a, b] = await Promise.all([startRedis(), startRedis()]);
    try {
      assert.notEqual(a.port, b.port);
      assert.notEqual(a.dataDir, b.dataDir);
      assert.notEqual(a.pid, b.pid);
      assert.equal(await redisPing(a.port), '+PONG');
      assert.equal(await redisPing(b.port), '+PONG');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('restart() keeps port and data dir (AOF data survives), new process', async () => {
    const redis = await startRedis({ appendonly: true });
    try {
      const { port, dataDir } = redis;
      const pid1 = definedPid(redis.pid);
      assert.equal(await redisCommand(port, 'SET', 'k', 'survives'), '+OK\r\n');
      await redis.restart();
      assert.equal(redis.port, port);
      assert.equal(redis.dataDir, dataDir);
      assert.notEqual(redis.pid, pid1);
      assert.equal(isProcessAlive(pid1), false);
      assert.equal(await redisPing(port), '+PONG');
      assert.equal(await redisCommand(port, 'GET', 'k'), '$8\r\nsurvives\r\n');
    } finally {
      await redis.stop();
    }
  });

  test('kill() crashes the server but keeps its data dir; restart() revives it', async () => {
    const redis = await startRedis();
    try {
      const pid = definedPid(redis.pid);
      await redis.kill();
      assert.equal(redis.running, false);
      assert.equal(isProcessAlive(pid), false);
      assert.equal(fs.existsSync(redis.dataDir), true, 'kill() keeps the data dir');
      assert.equal(await tryConnect(redis.port), 'refused');
      await redis.restart();
      assert.equal(await redisPing(redis.port), '+PONG');
    } finally {
      await redis.stop();
    }
    assert.equal(fs.existsSync(redis.dataDir), false);
  });

  test('a server that fails to start rejects with the log tail and leaves nothing behind', async () => {
    const err: unknown = await startRedis({ args: ['--no-such-directive', 'x'] }).then(
      () => assert.fail('should not start'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error);
    assert.match(err.message, /failed to start redis/);
    assert.match(err.message, /exited early/);
    assert.match(err.message, /no-such-directive/i, 'includes the server output');
    const dir = /(\S*hybridbus-redis-[^/\s]+)/.exec(err.message)?.[1];
    assert.ok(dir, 'message names the data dir');
    assert.equal(fs.existsSync(dir), false);
  });

  // A separate node process starts Redis, prints its pid/port/dir and then
  // gets a signal (or just ends): the launcher's process hooks must clean up.
  const launcherUrl = new URL('./harness/launcher.js', import.meta.url).href;
  const cases: { how: string; signal?: NodeJS.Signals; expectCode: number }[] = [
    { how: 'SIGINT', signal: 'SIGINT', expectCode: 130 },
    { how: 'SIGTERM', signal: 'SIGTERM', expectCode: 143 },
    { how: 'natural exit without stop()', expectCode: 0 },
  ];
  for (const { how, signal, expectCode } of cases) {
    test(`child process: ${how} → redis killed and data dir removed`, async () => {
      const natural = signal === undefined;
      const script = [
        `import { startRedis } from ${JSON.stringify(launcherUrl)};`,
        'const s = await startRedis();',
        'console.log(JSON.stringify({ pid: s.pid, port: s.port, dataDir: s.dataDir }));',
        // without a timer the event loop drains: the unref'd server must not keep the process alive
        natural ? '' : 'setInterval(() => {}, 1000);',
      ].join('\n');
      const env = { ...process.env };
      delete env['NODE_TEST_CONTEXT'];
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      );
      try {
        const line = await waitFor(() => stdout.split('\n').find((l) => l.startsWith('{')), {
          timeoutMs: 15_000,
          intervalMs: 20,
          what: `child to report its redis (stderr: ${stderr})`,
          abort: () => (child.exitCode !== null && !stdout.includes('{') ? `child exited: ${stderr}` : undefined),
        });
        const info = JSON.parse(line) as { pid: number; port: number; dataDir: string };
        if (signal !== undefined) {
          assert.equal(isProcessAlive(info.pid), true);
          assert.equal(fs.existsSync(info.dataDir), true);
          child.kill(signal);
        }
        const result = await Promise.race([
          exited,
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`child did not exit; stderr: ${stderr}`)), 20_000).unref()),
        ]);
        assert.deepEqual(result, { code: expectCode, signal: null }, `stderr: ${stderr}`);
        await assertGone(info);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    });
  }
});

// ---------------------------------------------------------------------------
// RabbitMQ (one broker for the whole describe: boot takes seconds)
// ---------------------------------------------------------------------------

describe('launcher: rabbitmq', { timeout: 180_000 }, () => {
  const servers = sharedServers({ rabbit: () => startRabbitMQ() });

  test('answers the AMQP 0-9-1 handshake with connection.start, on 127.0.0.1 only', async (t) => {
    const rabbit = servers.rabbit;
    t.diagnostic(`rabbitmq boot took ${rabbit.startupMs} ms`);
    assert.equal(rabbit.kind, 'rabbitmq');
    assert.equal(rabbit.host, '127.0.0.1');
    assert.equal(rabbit.url, `amqp://guest:guest@127.0.0.1:${rabbit.port}/`);
    assert.notEqual(rabbit.port, rabbit.distPort);
    const start = await amqpConnectionStart(rabbit.port);
    assert.deepEqual(start, { classId: 10, methodId: 10, versionMajor: 0, versionMinor: 9 });

    const addrs = listenAddresses(rabbit.port);
    if (addrs) assert.deepEqual(addrs, ['127.0.0.1'], 'AMQP listener on 127.0.0.1 only');
    const dist = listenAddresses(rabbit.distPort);
    if (dist) assert.deepEqual(dist, ['127.0.0.1'], 'Erlang distribution on 127.0.0.1 only');
  });

  test('the rabbitmq_amqp1_0 plugin answers the AMQP 1.0 protocol header', async () => {
    const rabbit = servers.rabbit;
    assert.deepEqual(rabbit.plugins, ['rabbitmq_amqp1_0']);
    const reply = await protocolHeaderReply(rabbit.port, AMQP_10_HEADER);
    assert.ok(
      reply.equals(AMQP_10_HEADER) || reply.equals(AMQP_10_SASL_HEADER),
      `expected an AMQP 1.0 or SASL header, got ${JSON.stringify(reply.toString('latin1'))}`,
    );
  });

  test('private node: unique node name, own cookie, mnesia and logs inside the data dir', () => {
    const rabbit = servers.rabbit;
    assert.match(rabbit.nodeName, new RegExp(`^hb${process.pid}x\\d+r[0-9a-f]{4}@localhost$`));
    assert.equal(fs.statSync(rabbit.dataDir).mode & 0o077, 0, 'data dir must be private (0700)');
    assert.ok(fs.existsSync(path.join(rabbit.dataDir, '.erlang.cookie')));
    assert.ok(fs.existsSync(path.join(rabbit.dataDir, 'mnesia', rabbit.nodeName)));
    assert.ok(fs.existsSync(path.join(rabbit.dataDir, 'log', `${rabbit.nodeName}.log`)));
    assert.match(rabbit.logTail(200_000), /Server startup complete; 1 plugins started/);
  });

  test('restart() keeps port, node name and durable state', async (t) => {
    const rabbit = servers.rabbit;
    const { port, nodeName, dataDir } = rabbit;
    const pid1 = definedPid(rabbit.pid);
    await rabbit.ctl(['add_vhost', 'hb-durable-check']);
    await rabbit.restart();
    assert.equal(rabbit.port, port);
    assert.equal(rabbit.nodeName, nodeName);
    assert.equal(rabbit.dataDir, dataDir);
    assert.notEqual(rabbit.pid, pid1);
    assert.equal(isProcessAlive(pid1), false);
    assert.notEqual(await amqpConnectionStart(port), null);
    assert.match(await rabbit.ctl(['list_vhosts', '--quiet']), /^hb-durable-check$/m);
    t.diagnostic(`rabbitmq boot after restart took ${rabbit.startupMs} ms`);
  });

  test('stop(): whole process tree gone, port refused, data dir removed', async () => {
    const rabbit = servers.rabbit;
    const pid = definedPid(rabbit.pid);
    const tree = processTree(pid);
    assert.ok(tree.length > 1, 'the start script runs the Erlang VM and helpers as children');
    await rabbit.stop();
    await assertGone({ pid, port: rabbit.port, dataDir: rabbit.dataDir }, tree);
    assert.equal(await isPortBindable(rabbit.distPort), true, 'distribution port released');
  });
});

after(() => {
  assert.deepEqual(
    activeServers().map((s) => `${s.kind}:${s.port}`),
    [],
    'every server started by this file was stopped',
  );
});
