/**
 * Tests for the real-server launcher (test/src/harness/launcher.ts): real
 * redis-server, RabbitMQ, Qpid Proton broker, etcd and (when there is one) qdrouterd
 * processes on free 127.0.0.1 ports.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once, type EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import rhea, { type Connection, type EventContext, type Message } from 'rhea';

import {
  activeServers,
  freePort,
  isProcessAlive,
  OSLO_ADDRESSES,
  processTree,
  qdrouterdAvailable,
  sharedServers,
  startProtonBroker,
  startQdrouterd,
  startRabbitMQ,
  startEtcd,
  startEtcdCluster,
  startRedis,
  type ProtonBrokerFlavour,
  type RunningServer,
} from './harness/launcher.js';
import { etcdRangeOk } from './harness/etcd.js';
import { saysAddressInUse } from './harness/managed-server.js';
import {
  AMQP_10_HEADER,
  AMQP_10_SASL_HEADER,
  amqp10HeaderReply,
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

/** restart(): same port and data dir, a new process, the old one gone. */
async function restartChecked(server: RunningServer): Promise<void> {
  const { port, dataDir } = server;
  const pid1 = definedPid(server.pid);
  await server.restart();
  assert.equal(server.port, port);
  assert.equal(server.dataDir, dataDir);
  assert.notEqual(server.pid, pid1);
  assert.equal(isProcessAlive(pid1), false);
}

/** Runs `fn` with process.env[name] set to `value`, then puts back what was there. */
async function withEnv<T>(name: string, value: string, fn: () => T | Promise<T>): Promise<T> {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
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
      const { port } = redis;
      assert.equal(await redisCommand(port, 'SET', 'k', 'survives'), '+OK\r\n');
      await restartChecked(redis);
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

test('a port taken between freePort() and the bind is recognised, so the launch retries on new ports', () => {
  // RabbitMQ's words when another process took its Erlang distribution port (seen under load).
  assert.ok(saysAddressInUse('{"Kernel pid terminated",application_controller,"{application_start_failure,rabbitmq_prelaunch,{{shutdown,{failed_to_start_child,prelaunch,{dist_port_already_used,34791,not_erlang,\\"localhost\\"}}}'));
  assert.ok(saysAddressInUse('listen tcp 127.0.0.1:2379: bind: address already in use'));
  assert.ok(saysAddressInUse('Error: listen EADDRINUSE: address already in use 127.0.0.1:6379'));
  assert.equal(saysAddressInUse('{error, {bad_config, "x"}}'), false);
});

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
    const { port, nodeName } = rabbit;
    await rabbit.ctl(['add_vhost', 'hb-durable-check']);
    await restartChecked(rabbit);
    assert.equal(rabbit.nodeName, nodeName);
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

// ---------------------------------------------------------------------------
// AMQP 1.0: the Qpid Proton example brokers and qdrouterd, driven with rhea
// ---------------------------------------------------------------------------

/** The first `event` on `emitter`, or a rejection naming `what` after `ms`. */
async function next(emitter: EventEmitter, event: string, what: string, ms = 5_000): Promise<EventContext> {
  const [ctx] = (await once(emitter, event, { signal: AbortSignal.timeout(ms) }).catch((err: unknown) => {
    throw new Error(`no ${event} within ${ms} ms: ${what} (${String(err)})`);
  })) as [EventContext];
  return ctx;
}

/** An open AMQP 1.0 connection (SASL ANONYMOUS, no reconnect) to 127.0.0.1:port. */
async function amqp10Connect(port: number): Promise<Connection> {
  const conn = rhea.create_container().connect({ host: '127.0.0.1', port, reconnect: false });
  conn.on('disconnected', () => undefined); // a closed connection is expected at the end; no unhandled-error noise
  await next(conn, 'connection_open', `AMQP 1.0 connection to port ${port}`);
  return conn;
}

async function amqp10Close(conn: Connection): Promise<void> {
  if (!conn.is_open()) return;
  const closed = next(conn, 'connection_close', 'connection close');
  conn.close();
  await closed;
}

/** Sends `body` to `address` and resolves once the server settled it with `accepted`. */
async function sendAccepted(conn: Connection, address: string, body: string): Promise<void> {
  const sender = conn.open_sender(address);
  await next(sender, 'sendable', `credit to send to ${address}`);
  const accepted = next(sender, 'accepted', `${address} to accept ${body}`);
  sender.send({ body, message_id: body });
  await accepted;
  sender.close();
}

/** A receiver on `address` (attached once this resolves) that collects message bodies. */
async function receiveInto(conn: Connection, address: string): Promise<{ bodies: string[]; arrived: (n: number) => Promise<void> }> {
  const receiver = conn.open_receiver(address);
  const bodies: string[] = [];
  receiver.on('message', (ctx: EventContext) => void bodies.push(String((ctx.message as Message).body)));
  await next(receiver, 'receiver_open', `receiver on ${address} to attach`);
  const arrived = async (n: number): Promise<void> => {
    while (bodies.length < n) await next(receiver, 'message', `message ${bodies.length + 1} of ${n} on ${address}`);
  };
  return { bodies, arrived };
}

/** A message goes from one connection through the server at `port` to another: the server forwards. */
async function assertMovesAMessage(port: number, address: string): Promise<void> {
  const [a, b] = await Promise.all([amqp10Connect(port), amqp10Connect(port)]);
  try {
    await sendAccepted(a, address, `hello ${address}`); // store-and-forward: no receiver yet
    const inbox = await receiveInto(b, address);
    await inbox.arrived(1);
    assert.deepEqual(inbox.bodies, [`hello ${address}`]);
  } finally {
    await Promise.all([amqp10Close(a), amqp10Close(b)]);
  }
}

describe('launcher: Qpid Proton example brokers (AMQP 1.0)', { timeout: 60_000 }, () => {
  for (const flavour of ['cpp', 'python'] as const satisfies readonly ProtonBrokerFlavour[]) {
    test(`startProtonBroker({ flavour: '${flavour}' }): answers the AMQP 1.0 header on 127.0.0.1 only and moves a message`, async (t) => {
      const broker = await startProtonBroker({ flavour });
      try {
        t.diagnostic(`${flavour} broker start took ${broker.startupMs} ms`);
        assert.equal(broker.kind, 'proton-broker');
        assert.equal(broker.flavour, flavour);
        assert.equal(broker.url, `amqp://127.0.0.1:${broker.port}`);
        assert.equal(await amqp10HeaderReply(broker.port), 'amqp');
        assert.equal(await amqp10HeaderReply(broker.port, AMQP_10_SASL_HEADER), 'sasl');
        const addrs = listenAddresses(broker.port);
        if (addrs) assert.deepEqual(addrs, ['127.0.0.1'], 'listens on 127.0.0.1 only');
        assert.equal(fs.statSync(broker.dataDir).mode & 0o077, 0, 'data dir must be private (0700)');
        assert.equal(path.dirname(broker.logFile), broker.dataDir);
        await assertMovesAMessage(broker.port, `q-${flavour}`);
        const conn = await amqp10Connect(broker.port);
        assert.equal(conn.properties?.['product'], undefined, 'no product property: oslo picks its legacy addresses');
        await amqp10Close(conn);
      } finally {
        await broker.stop();
      }
    });

    test(`${flavour} broker: restart() keeps the port (queues are in memory), kill() then restart() revives it`, async () => {
      const broker = await startProtonBroker({ flavour });
      try {
        const { port, dataDir } = broker;
        await restartChecked(broker);
        await assertMovesAMessage(port, 'after-restart');
        await broker.kill();
        assert.equal(await tryConnect(port), 'refused');
        assert.equal(fs.existsSync(dataDir), true, 'kill() keeps the data dir');
        await broker.restart();
        assert.equal(await amqp10HeaderReply(port), 'amqp');
      } finally {
        await broker.stop();
      }
    });

    test(`${flavour} broker: stop() frees the port and leaves no process`, async () => {
      const broker = await startProtonBroker({ flavour });
      const pid = definedPid(broker.pid);
      const tree = processTree(pid);
      await broker.stop();
      assert.equal(broker.running, false);
      await assertGone({ pid, port: broker.port, dataDir: broker.dataDir }, tree);
      assert.equal(await isPortBindable(broker.port), true);
    });

    test(`${flavour} broker: without Proton's examples the start fails naming the Debian package`, async () => {
      const missing = path.join(os.tmpdir(), 'hybridbus-no-such-proton-examples');
      await withEnv('PROTON_EXAMPLES_DIR', missing, () => assert.rejects(startProtonBroker({ flavour }), /libqpid-proton11-dev-examples/));
    });
  }

  test('the C++ broker is built once: two starts at once share one cached binary', async () => {
    const [a, b] = await Promise.all([startProtonBroker(), startProtonBroker()]);
    try {
      const exe = (s: typeof a): string => fs.readlinkSync(`/proc/${definedPid(s.pid)}/exe`);
      assert.equal(exe(a), exe(b));
      assert.match(exe(a), new RegExp(`^${os.tmpdir()}/hybridbus-proton-broker-[^/]+/[0-9a-f]{16}/broker$`));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('launcher: qdrouterd (AMQP 1.0 router)', { timeout: 60_000 }, () => {
  test('qdrouterdAvailable(): QDROUTERD_BIN that is not an executable is a reason, not a binary', async () => {
    const missing = path.join(os.tmpdir(), 'hybridbus-no-such-qdrouterd');
    const found = await withEnv('QDROUTERD_BIN', missing, qdrouterdAvailable);
    assert.deepEqual(found, { reason: `QDROUTERD_BIN=${missing} is not an executable file` });
  });

  test('startQdrouterd(): oslo\'s addresses distribute as in a router network; restart() keeps the port; stop() leaves nothing', async (t) => {
    const available = qdrouterdAvailable();
    if ('reason' in available) {
      t.skip(available.reason);
      return;
    }
    const router = await startQdrouterd();
    try {
      t.diagnostic(`qdrouterd ${available.bin} start took ${router.startupMs} ms`);
      assert.equal(router.kind, 'qdrouterd');
      assert.equal(router.url, `amqp://127.0.0.1:${router.port}`);
      assert.notEqual(await amqp10HeaderReply(router.port), null);
      const addrs = listenAddresses(router.port);
      if (addrs) assert.deepEqual(addrs, ['127.0.0.1'], 'listens on 127.0.0.1 only');
      const conf = fs.readFileSync(router.configFile, 'utf8');
      assert.match(conf, new RegExp(`id: ${router.routerId}\n`));
      for (const [prefix, distribution] of OSLO_ADDRESSES) assert.ok(conf.includes(`prefix: ${prefix}\n    distribution: ${distribution}\n`), prefix);

      const [a, b, c] = await Promise.all([amqp10Connect(router.port), amqp10Connect(router.port), amqp10Connect(router.port)]);
      try {
        assert.equal(a.properties?.['product'], 'qpid-dispatch-router', 'oslo picks its routable addresses by this');
        // multicast: every receiver gets a copy
        for (const prefix of ['openstack.org/om/rpc/multicast', 'openstack.org/om/notify/multicast', 'broadcast']) {
          const address = `${prefix}/x/t`;
          const inboxes = await Promise.all([receiveInto(a, address), receiveInto(b, address)]);
          await sendAccepted(c, address, `to all on ${prefix}`);
          for (const inbox of inboxes) {
            await inbox.arrived(1);
            assert.deepEqual(inbox.bodies, [`to all on ${prefix}`]);
          }
        }
        // balanced / closest: each message reaches one receiver
        for (const prefix of ['openstack.org/om/rpc/anycast', 'openstack.org/om/rpc/unicast', 'exclusive', 'unicast']) {
          const address = `${prefix}/x/t`;
          const inboxes = await Promise.all([receiveInto(a, address), receiveInto(b, address)]);
          const sent = ['1', '2', '3', '4'].map((n) => `${prefix} #${n}`);
          for (const body of sent) await sendAccepted(c, address, body);
          const got = (): string[] => inboxes.flatMap((i) => i.bodies);
          await waitFor(() => got().length >= sent.length, { timeoutMs: 5_000, what: `4 messages on ${address}` });
          assert.deepEqual(got().sort(), sent, `each message once on ${address}`);
        }
      } finally {
        await Promise.all([a, b, c].map(amqp10Close));
      }

      await restartChecked(router);
      assert.notEqual(await amqp10HeaderReply(router.port), null);
    } finally {
      const pid = router.pid;
      const tree = pid === undefined ? [] : processTree(pid);
      await router.stop();
      if (pid !== undefined) await assertGone({ pid, port: router.port, dataDir: router.dataDir }, tree);
    }
  });
});

after(() => {
  assert.deepEqual(
    activeServers().map((s) => `${s.kind}:${s.port}`),
    [],
    'every server started by this file was stopped',
  );
});

describe('launcher: etcd', { timeout: 60_000 }, () => {
  test('startEtcd(): client and peer port on loopback, answers a range request, private data dir; kill() keeps the data dir, restart() revives it', async () => {
    const etcd = await startEtcd();
    try {
      assert.match(etcd.url, /^etcd:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(etcd.peerPort, etcd.port);
      assert.equal(await etcdRangeOk(etcd.port), true);
      assert.equal(await tryConnect(etcd.peerPort), 'connected');
      assert.equal(fs.statSync(etcd.dataDir).mode & 0o077, 0, 'private data dir');
      const pid = definedPid(etcd.pid);
      await etcd.kill();
      assert.equal(isProcessAlive(pid), false);
      assert.equal(await tryConnect(etcd.port), 'refused');
      assert.equal(fs.existsSync(etcd.dataDir), true, 'kill() keeps the data dir');
      await etcd.restart();
      assert.equal(await etcdRangeOk(etcd.port), true);
    } finally {
      await etcd.stop();
    }
    assert.equal(fs.existsSync(etcd.dataDir), false);
  });

  test('startEtcdCluster(3): three members of one cluster; two of them still answer when one is killed', async () => {
    const cluster = await startEtcdCluster(3);
    try {
      assert.equal(cluster.members.length, 3);
      assert.equal(cluster.url, `etcd://${cluster.members.map((m) => `127.0.0.1:${m.port}`).join(',')}`);
      assert.equal(new Set(cluster.members.flatMap((m) => [m.port, m.peerPort])).size, 6);
      await cluster.members[1]!.kill();
      for (const m of [cluster.members[0]!, cluster.members[2]!]) {
        await waitFor(() => etcdRangeOk(m.port), { timeoutMs: 5000, what: `member ${m.name} to answer with a new leader` });
      }
    } finally {
      await cluster.stop();
    }
  });
});
