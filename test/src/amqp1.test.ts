/**
 * What the AMQP 1.0 driver (amqp://) does beyond the conformance suite: its URL errors, a
 * server killed mid-call, resends after a lost connection, garbage on a direct listener,
 * notifications nobody consumes, SASL and TLS client certificates in direct mode, a RabbitMQ
 * restart. Every bus is a "process"; direct mode finds servers through a private local name service.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthenticationFailed, Bus, ConfigError, ConnectionLost, MessageDeliveryFailure, MessageUndeliverable, type Context } from '@hybridbus/core';
// The link sender itself, below the driver (no public entry point for it).
import { LinkSender } from '../../packages/amqp1/dist/outbox.js';
import { parseAmqp1Url } from '@hybridbus/amqp1';
import rhea from 'rhea';
import type { EventContext } from 'rhea';
import { CrashableAmqp1Driver, registerCrashableAmqp1 } from './amqp1/crashable.js';
import { startChild, type ChildServer } from './amqp1/children.js';
import { CuttableProxy } from './amqp1/proxy.js';
import { qdrouterdAvailable, startProtonBroker, startQdrouterd, startRabbitMQ, type RunningServer } from './harness/launcher.js';
import { Collector, freshTopic, tempDir } from './util.js';

registerCrashableAmqp1();
const ctx: Context = { user_id: 'u1' };

/** Buses made by a describe(), closed by its after(). */
function busPool(): (url: string) => Promise<Bus> {
  const buses: Bus[] = [];
  after(() => Promise.allSettled(buses.map((b) => b.close())));
  return async (url) => {
    const bus = await Bus.create({ transports: { default: url } });
    buses.push(bus);
    return bus;
  };
}

const driverOf = (bus: Bus): CrashableAmqp1Driver => bus.transport('default') as CrashableAmqp1Driver;

describe('amqp:// URL options', () => {
  const problem = (url: string): ConfigError => {
    try {
      parseAmqp1Url(new URL(url));
    } catch (e) {
      assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
      return e;
    }
    assert.fail(`${url} was accepted`);
  };

  test('a bad value names the option, the value and the expected form', () => {
    const e = problem('amqp://broker:5672/?rpc_server_credit=zero&mode=bus&default_send_timeout=-1');
    assert.match(e.message, /option "rpc_server_credit" has bad value "zero"; expected a whole number/);
    assert.match(e.message, /option "mode" has bad value "bus"; expected .*auto.*direct/);
    assert.match(e.message, /option "default_send_timeout" has bad value "-1"; expected/);
    assert.match(problem('amqp://broker/?no_such=1').message, /unknown option "no_such"; expected one of: .*sasl_mechanisms/);
    // Names of Object's own properties are unknown options too, not a TypeError.
    for (const k of ['constructor', 'toString', '__proto__']) assert.match(problem(`amqp://broker/?${k}=1`).message, new RegExp(`unknown option "${k}"`));
    assert.match(problem('amqp://?mode=direct&bind_host=x&allowed_clients=a').message, /option "allowed_clients" needs TLS: use an amqps:\/\/ URL or ssl=true/);
    assert.match(problem('amqp://broker/?matchmaker=local').message, /option "matchmaker" applies only to mode=direct/);
  });

  test('passwords are never shown: not from the userinfo, not from options', () => {
    for (const url of [
      'amqp://alice:S3cretPw@broker:5672/?rpc_server_credit=zero',
      'amqp://alice:S3cretPw@broker:5672/?mode=direct',
      'amqp://?mode=direct&username=alice&password=S3cretPw&reply_link_credit=none',
      'amqps://broker/?ssl_key_password=S3cretPw&ssl_cert_file=/nonexistent.pem',
      'amqp://broker/?ssl_key_password=S3cretPw',
      'amqp://alice:S3cretPw@broker/?username=bob&password=S3cretPw',
    ]) {
      const e = problem(url);
      assert.doesNotMatch(`${e.message} ${JSON.stringify(e)}`, /S3cretPw/, url);
    }
    assert.match(problem('amqp://broker/?password=S3cretPw').message, /option "password" needs "username"/);
    // The bus's own error about the transport masks it too.
    return assert.rejects(Bus.create({ transports: { default: 'amqp://alice:S3cretPw@broker/?idle_timeout=x' } }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.doesNotMatch(e.message, /S3cretPw/);
      assert.match(e.message, /option "idle_timeout" has bad value "x"/);
      return true;
    });
  });

  test('direct mode takes credentials as username/password options (a URL without a host has no userinfo)', () => {
    const o = parseAmqp1Url(new URL('amqp://?mode=direct&username=alice&password=pw'));
    assert.deepEqual([o.mode, o.username, o.password, o.saslMechanisms], ['direct', 'alice', 'pw', ['PLAIN', 'ANONYMOUS']]);
    assert.match(problem('amqp://alice:pw@host/?mode=direct').message, /write amqp:\/\/\?mode=direct&matchmaker=\.\.\.&username=\.\.\.&password=\.\.\./);
  });
});

describe('amqp1 sending: a message rhea cannot encode', () => {
  test('fails alone with MessageDeliveryFailure when credit comes after it was queued (not a throw from the sendable event); the link keeps working', { timeout: 20_000 }, async () => {
    // A real peer (rhea on loopback) that accepts whatever arrives.
    const peer = rhea.create_container({ id: 'peer' });
    const got: unknown[] = [];
    peer.on('message', (c: EventContext) => void got.push(c.message?.body));
    const listener = peer.listen({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => listener.once('listening', r));
    const port = (listener.address() as net.AddressInfo).port;
    const client = rhea.create_container({ id: 'client' });
    const connection = client.connect({ port, host: '127.0.0.1', reconnect: false });
    const errors: unknown[] = [];
    connection.on('connection_error', (c: EventContext) => void errors.push(c.connection.error));
    connection.on('error', (e: unknown) => void errors.push(e));
    try {
      const link = connection.open_sender({ target: { address: 'q' } });
      const owner = { label: 'test', isClosed: false, counts: { resends: 0 }, onDown: () => () => undefined };
      const sender = new LinkSender(link, owner, 'q', false, () => undefined);
      const options = { deadline: Date.now() + 5_000, resendOnLoss: false, what: 'test message' };
      // Queued before the link has credit: encoded later, from rhea's 'sendable' event. An AMQP
      // uint ttl cannot hold 5e9.
      const bad = sender.send({ ttl: 5e9, body: 'bad' }, options);
      const good = sender.send({ body: 'good' }, options);
      await assert.rejects(bad, (e: unknown) => e instanceof MessageDeliveryFailure && /could not be encoded/.test(e.message));
      await good;
      assert.deepEqual(got, ['good']);
      assert.deepEqual(errors, []);
    } finally {
      connection.close();
      listener.close();
    }
  });
});

describe('amqp:// direct mode', () => {
  const dir = tempDir('hb-amqp1-ns-');
  const url = `amqp://?mode=direct&matchmaker=local:${dir}&ns_cache=0`;
  const newBus = busPool();
  const children: ChildServer[] = [];
  after(() => Promise.allSettled(children.map((c) => c.kill())));

  test('a server killed (SIGKILL) mid-call fails the call with ConnectionLost; the next call goes to the other server', async () => {
    const topic = freshTopic('kill');
    const child = await startChild(url, topic, 'child');
    children.push(child);
    const other = await newBus(url);
    await other.rpcServer({ topic, server: 'other' }, [{ whoami: () => 'other', hang: () => 'other' }]).start();
    const client = (await newBus(url)).rpcClient({ topic }, { timeout: 20_000 });
    // Calls go round the two servers: one of the first two lands on the child and hangs there.
    const first = client.call(ctx, 'hang');
    const second = client.call(ctx, 'hang');
    await child.hung();
    const [a, b] = [first.catch((e: unknown) => e), second.catch((e: unknown) => e)];
    const t0 = Date.now();
    await child.kill('SIGKILL');
    const outcomes = await Promise.all([a, b]);
    assert.ok(outcomes.includes('other'), `one call was the other server's: ${String(outcomes)}`);
    const lost = outcomes.find((o) => o !== 'other');
    assert.ok(lost instanceof ConnectionLost, `the child's call failed with ConnectionLost, got ${String(lost)}`);
    assert.ok(Date.now() - t0 < 5_000, 'the kill was noticed at once');
    // The child's record is still in the name service: it is tried, found dead and skipped.
    for (let i = 0; i < 3; i++) assert.equal(await client.call(ctx, 'whoami'), 'other');
  });

  test('garbage on the wire never takes the listener down; malformed requests are rejected and counted', async () => {
    const topic = freshTopic('garbage');
    const bus = await newBus(url);
    await bus.rpcServer({ topic, server: 's' }, [{ echo: (_c: Context, a: object) => a }]).start();
    const [host, port] = (await driverOf(bus).listenerAddress()).split(':') as [string, string];
    // Random bytes, and a valid protocol header followed by a frame of garbage: the listener hangs up.
    for (const bytes of [randomBytes(512), Buffer.concat([Buffer.from('AMQP\x00\x01\x00\x00', 'latin1'), Buffer.from([0, 0, 0, 64, 2, 0, 0, 0]), randomBytes(56)])]) {
      const sock = net.connect(Number(port), host);
      sock.on('error', () => undefined);
      sock.on('data', () => undefined);
      await new Promise((resolve) => sock.once('connect', resolve));
      sock.write(bytes);
      await new Promise((resolve) => sock.once('close', resolve));
    }
    // Well-formed AMQP, bodies that are no request: each is rejected with amqp:decode-error.
    const container = rhea.create_container();
    const conn = container.connect({ host, port: Number(port), reconnect: false });
    const outcomes = new Collector<string>();
    const sender = conn.open_sender({ target: { address: `unicast.openstack.${topic}` } });
    sender.on('rejected', (c: EventContext) => outcomes.push((c.delivery?.remote_state as { error?: { condition?: string } }).error?.condition ?? '?'));
    sender.on('accepted', () => outcomes.push('accepted'));
    await new Promise((resolve) => sender.once('sendable', resolve));
    for (const body of ['not json {', '["a list"]', rhea.message.data_section(randomBytes(64)), '{"request": 5}', 42]) sender.send({ message_id: randomBytes(8).toString('hex'), body });
    assert.deepEqual(await outcomes.until(5), Array(5).fill('amqp:decode-error'));
    conn.close();
    assert.equal(driverOf(bus).counters['malformed'], 5);
    const client = (await newBus(url)).rpcClient({ topic });
    assert.deepEqual(await client.call(ctx, 'echo', { still: 'here' }), { still: 'here' });
  });

  test('a notification to a topic nobody listens to fails with MessageUndeliverable (no record)', async () => {
    const notifier = (await newBus(url)).notifier({ publisherId: 'p', topics: [freshTopic('nobody')] });
    const t0 = Date.now();
    await assert.rejects(notifier.info(ctx, 'e', {}), MessageUndeliverable);
    assert.ok(Date.now() - t0 < 2_000);
  });

  /**
   * Pools of one topic whose listeners share processes' direct listeners: each pool gets each
   * of 20 notifications exactly once. `hosts` gives, per pool, the buses of its listeners.
   */
  async function poolsGetEachOnce(hosts: Readonly<Record<string, readonly Bus[]>>): Promise<void> {
    const topic = freshTopic('pools');
    const got = new Collector<string>();
    const n = 20;
    const pools = Object.keys(hosts);
    const buses = [...new Set(Object.values(hosts).flat())];
    for (const pool of pools) {
      for (const bus of hosts[pool] ?? []) {
        const at = buses.indexOf(bus);
        const endpoint = { info: (_c: Context, _p: string, _e: string, payload: unknown) => void got.push(`${pool}:${at}:${(payload as { i: number }).i}`) };
        await bus.notificationListener([{ topic }], [endpoint], { pool }).start();
      }
    }
    const notifier = (await newBus(url)).notifier({ publisherId: 'p', topics: [topic] });
    for (let i = 0; i < n; i++) await notifier.info(ctx, 'e', { i });
    // One copy per pool and notification: a duplicate in one pool and a loss in another also add up to that.
    const items = await got.until(pools.length * n, 5_000).catch(() => got.items);
    const expected = Array.from({ length: n }, (_, i) => i);
    for (const pool of pools) {
      const seen = items.filter((s) => s.startsWith(`${pool}:`)).map((s) => Number(s.split(':')[2]));
      assert.deepEqual(
        [...seen].sort((x, y) => x - y),
        expected,
        `pool ${pool} got each notification once; arrivals (pool:bus:i): ${items.join(' ')}`,
      );
    }
  }

  test('two pools of one topic, their listeners on one bus: each pool gets each of 20 notifications exactly once', async () => {
    const bus = await newBus(url);
    await poolsGetEachOnce({ a: [bus], b: [bus] });
  });

  test('two pools of one topic, each with listeners on two buses of one process: each notification reaches exactly one listener per pool', async () => {
    const [one, two] = [await newBus(url), await newBus(url)];
    await poolsGetEachOnce({ a: [one, two], b: [one, two] });
  });

  // The copies of one notification go to different buses: the one bus both pools share gets pool
  // b's copy alone, and must hand it to pool b's listener, not to the next subscription of its
  // address (pool a got some twice and pool b never, before copies said their pool).
  test('two pools of one topic sharing a bus, pool a also on a second bus: each pool gets each of 20 notifications exactly once', async () => {
    const [one, two] = [await newBus(url), await newBus(url)];
    await poolsGetEachOnce({ a: [one, two], b: [one] });
  });

  test('two pools of one topic with two listeners each on one bus: each pool gets each notification once, spread over both its listeners', async () => {
    const topic = freshTopic('pools');
    const bus = await newBus(url);
    const got = new Collector<string>();
    for (const pool of ['a', 'b']) {
      for (const listener of [1, 2]) {
        const endpoint = { info: (_c: Context, _p: string, _e: string, payload: unknown) => void got.push(`${pool}${listener}:${(payload as { i: number }).i}`) };
        await bus.notificationListener([{ topic }], [endpoint], { pool }).start();
      }
    }
    const notifier = (await newBus(url)).notifier({ publisherId: 'p', topics: [topic] });
    for (let i = 0; i < 20; i++) await notifier.info(ctx, 'e', { i });
    const items = await got.until(40, 5_000).catch(() => got.items);
    for (const pool of ['a', 'b']) {
      const seen = items.filter((s) => s.startsWith(pool)).map((s) => Number(s.split(':')[1]));
      assert.deepEqual([...seen].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i), `pool ${pool}: ${items.join(' ')}`);
      // The pools' copies arrive alternately: one turn counter for both handed each pool's copies to one listener only.
      for (const listener of [1, 2]) assert.ok(items.some((s) => s.startsWith(`${pool}${listener}:`)), `listener ${pool}${listener} got none: ${items.join(' ')}`);
    }
  });

  test('two servers or two pool listeners of one topic in one process: stopping one leaves the other found', async () => {
    const topic = freshTopic('shared');
    const bus = await newBus(url);
    const one = bus.rpcServer({ topic, server: 's1' }, [{ who: () => 's1' }]);
    const two = bus.rpcServer({ topic, server: 's2' }, [{ who: () => 's2' }]);
    await one.start();
    await two.start();
    const got = new Collector<string>();
    const listeners = [1, 2].map((i) => bus.notificationListener([{ topic }], [{ info: () => void got.push(`l${i}`) }], { pool: 'p' }));
    for (const l of listeners) await l.start();
    await one.stop();
    await listeners[0]?.stop();
    // The name service is asked afresh: a client of its own, after the stops.
    const other = await newBus(url);
    assert.equal(await other.rpcClient({ topic }, { timeout: 5_000 }).call(ctx, 'who'), 's2');
    await other.notifier({ publisherId: 'p', topics: [topic] }).info(ctx, 'e', {});
    assert.deepEqual(await got.until(1), ['l2']);
  });

  test('SASL: a listener with credentials refuses wrong ones (AuthenticationFailed) and serves the right ones', async () => {
    const topic = freshTopic('sasl');
    const withUser = (user: string, pass: string): string => `${url}&username=${user}&password=${pass}`;
    const server = await newBus(withUser('alice', 'right'));
    await server.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]).start();
    const t0 = Date.now();
    await assert.rejects((await newBus(withUser('alice', 'wrong'))).rpcClient({ topic }, { timeout: 20_000 }).call(ctx, 'ping'), AuthenticationFailed);
    await assert.rejects((await newBus(url)).rpcClient({ topic }, { timeout: 20_000 }).call(ctx, 'ping'), AuthenticationFailed);
    assert.ok(Date.now() - t0 < 5_000, 'refused, not hung');
    assert.equal(await (await newBus(withUser('alice', 'right'))).rpcClient({ topic }).call(ctx, 'ping'), 'pong');
  });
});

const haveOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

/** A CA and, signed by it, a certificate for 127.0.0.1 with each of `names` as CN. */
function makeCerts(dir: string, names: readonly string[]): void {
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=hybridbus test CA');
  // Every process both listens and connects in direct mode: one certificate for both ends.
  fs.writeFileSync(path.join(dir, 'both.ext'), 'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth, clientAuth\n');
  for (const who of names) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`);
    ssl('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.pem`, '-days', '2', '-extfile', 'both.ext');
  }
}

describe('amqps:// direct mode with allowed_clients', { skip: haveOpenssl ? false : 'the openssl command is not installed' }, () => {
  const newBus = busPool();
  let dir: string;
  const urlFor = (who: string): string =>
    `amqps://?mode=direct&matchmaker=local:${path.join(dir, 'ns')}&ns_cache=0&ssl_ca_file=${dir}/ca.pem&ssl_cert_file=${dir}/${who}.pem&ssl_key_file=${dir}/${who}.key&allowed_clients=svc-a,svc-b`;
  before(() => {
    dir = tempDir('hb-amqp1-tls-');
    makeCerts(dir, ['svc-a', 'svc-b', 'intruder']);
  });

  test('a client whose certificate CN is not listed is refused; a listed one is served', async () => {
    const topic = freshTopic('tls');
    await (await newBus(urlFor('svc-a'))).rpcServer({ topic, server: 's' }, [{ ping: () => 'pong' }]).start();
    assert.equal(await (await newBus(urlFor('svc-b'))).rpcClient({ topic }).call(ctx, 'ping'), 'pong');
    const t0 = Date.now();
    await assert.rejects((await newBus(urlFor('intruder'))).rpcClient({ topic }, { timeout: 20_000 }).call(ctx, 'ping'), AuthenticationFailed);
    assert.ok(Date.now() - t0 < 5_000, 'refused, not hung');
  });
});

describe('amqp:// through a Proton C++ broker', () => {
  let broker: RunningServer;
  let proxy: CuttableProxy;
  const newBus = busPool();
  before(async () => {
    broker = await startProtonBroker({ flavour: 'cpp' });
    proxy = new CuttableProxy(broker.port);
    await proxy.listen();
  });
  after(async () => {
    await proxy?.close();
    await broker?.stop();
  });

  test('a cast resent after the connection dropped before its outcome is handled once (receivers drop the duplicate)', async () => {
    const topic = freshTopic('resend');
    const handled = new Collector<number>();
    const server = await newBus(`${broker.url}/`);
    await server.rpcServer({ topic, server: 's' }, [{ record: (_c: Context, a: { i: number }) => void handled.push(a.i) }]).start();
    const client = (await newBus(`amqp://127.0.0.1:${proxy.port}/?connection_retry_interval=0.05`)).rpcClient({ topic });
    await client.cast(ctx, 'record', { i: 0 });
    // The link has its credit now; the broker's `accepted` for the next cast never reaches the client: unsettled until the cut.
    proxy.stall();
    const cast = client.cast(ctx, 'record', { i: 1 });
    assert.deepEqual(await handled.until(2), [0, 1]);
    proxy.cut();
    await cast;
    await client.cast(ctx, 'record', { i: 2 });
    assert.deepEqual(await handled.until(3), [0, 1, 2]);
    assert.equal(driverOf(server).counters['duplicatesDropped'], 1);
  });
});

describe('amqp:// through RabbitMQ (AMQP 1.0 plugin)', () => {
  let rabbit: RunningServer;
  const newBus = busPool();
  before(async () => {
    rabbit = await startRabbitMQ();
  });
  after(() => rabbit?.stop());

  test('after a broker restart, calls and casts flow again', async () => {
    const topic = freshTopic('restart');
    const url = `${rabbit.url}?connection_retry_interval=0.2&connection_retry_interval_max=1`;
    const casts = new Collector<number>();
    const server = await newBus(url);
    await server.rpcServer({ topic, server: 's' }, [{ ping: () => 'pong', record: (_c: Context, a: { i: number }) => void casts.push(a.i) }]).start();
    const clientBus = await newBus(url);
    const client = clientBus.rpcClient({ topic }, { timeout: 20_000 });
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    await rabbit.restart();
    assert.equal(await client.call(ctx, 'ping'), 'pong');
    await client.cast(ctx, 'record', { i: 1 });
    assert.deepEqual(await casts.until(1), [1]);
  });
});

const router = qdrouterdAvailable();
describe('amqp:// through qdrouterd', { skip: 'reason' in router ? router.reason : false }, () => {
  let qdr: RunningServer;
  const newBus = busPool();
  before(async () => {
    qdr = await startQdrouterd();
  });
  after(() => qdr?.stop());

  test('a notification to an address nobody consumes fails with MessageUndeliverable by default_notify_timeout', async () => {
    const notifier = (await newBus(`${qdr.url}/?default_notify_timeout=0.5`)).notifier({ publisherId: 'p', topics: [freshTopic('nobody')] });
    const t0 = Date.now();
    await assert.rejects(notifier.info(ctx, 'e', {}), MessageUndeliverable);
    assert.ok(Date.now() - t0 < 3_000);
  });
});
