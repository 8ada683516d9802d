/**
 * The name services of @hybridbus/nameservice ("matchmaker"): local (in-process and across
 * processes), static, and Redis (plain and Sentinel) and etcd (one node, a 3-member cluster),
 * which run the same shared cases, against real redis-server and etcd processes from the launcher.
 */
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { ConfigError, MessageDeliveryFailure } from '@hybridbus/core';
import {
  createNameService,
  EtcdNameService,
  LocalNameService,
  NAME_SERVICE_DEFAULTS,
  RedisNameService,
  StaticNameService,
  type HostRecord,
  type NameService,
} from '@hybridbus/nameservice';

import { etcdGateway, etcdMetrics, etcdRevokeAllLeases, sharedServers, startEtcd, startEtcdCluster, startRedis, startRedisSentinel, type RunningServer } from './harness/launcher.js';
import { waitFor } from './harness/ports.js';
import { freshTopic, recordingLogger, tempDir } from './util.js';

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

const logger = recordingLogger();
const quiet = { logger };

const opened: NameService[] = [];
/** Closes every name service a test opened, even when the test failed. */
function track<T extends NameService>(ns: T): T {
  opened.push(ns);
  return ns;
}
afterEach(async () => {
  await Promise.all(opened.splice(0).map((ns) => ns.close()));
});

const tmpDir = (): string => tempDir('hybridbus-ns-test-');

const addresses = (records: readonly HostRecord[]): string[] => records.map((r) => r.address);

/** Resolves on the first onChange(key) of `ns` (subscribe before acting); rejects after `ms`. */
function nextChange(ns: NameService, key: string, ms = 5000): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no change event for "${key}" within ${ms} ms`));
    }, ms);
    const off = ns.onChange((k) => {
      if (k !== key) return;
      clearTimeout(timer);
      off();
      resolve(performance.now() - t0);
    });
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t0 };
}

// A child process that registers one record in a local registry, then waits:
// "unregister" on stdin makes it close (unregistering); SIGKILL simulates a crash.
const LOCAL_MODULE = new URL('./local.js', import.meta.resolve('@hybridbus/nameservice')).href;
const CHILD = `
const { LocalNameService } = await import(process.env.NS_MODULE);
const ns = new LocalNameService({ dir: process.env.NS_DIR, ttlMs: Number(process.env.NS_TTL), cacheMs: 0 });
await ns.register([process.env.NS_KEY], { address: process.env.NS_ADDRESS });
process.stdout.write('registered\\n');
process.stdin.setEncoding('utf8');
process.stdin.on('data', async (d) => {
  if (!d.includes('unregister')) return;
  await ns.close();
  process.stdout.write('closed\\n');
  process.exit(0);
});
`;

interface Child {
  readonly proc: ChildProcess;
  /** Resolves when the child printed `line`. */
  said(line: string, ms?: number): Promise<void>;
}

const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function spawnRegistrant(dir: string, key: string, address: string, ttlMs: number): Child {
  return spawnChild(CHILD, { NS_MODULE: LOCAL_MODULE, NS_DIR: dir, NS_KEY: key, NS_ADDRESS: address, NS_TTL: String(ttlMs) });
}

/** Runs `script` (an ES module) in a child node process with `env` added; killed after the file at the latest. */
function spawnChild(script: string, env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, ...env, HYBRIDBUS_LOG_LEVEL: 'error' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(proc);
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return {
    proc,
    said: (line, ms = 10_000) =>
      waitFor(() => out.split('\n').includes(line), {
        timeoutMs: ms,
        intervalMs: 10,
        what: `child to print "${line}"`,
        abort: () => (proc.exitCode !== null && !out.split('\n').includes(line) ? `child exited ${proc.exitCode}: ${err}` : undefined),
      }).then(() => undefined),
  };
}

// ---------------------------------------------------------------------------
// local
// ---------------------------------------------------------------------------

describe('nameservice: local', () => {
  test('register/lookup/unregister in one process; other instances hear of it before register() returns', async () => {
    const dir = tmpDir();
    const a = track(new LocalNameService({ dir, ...quiet }));
    // polling so slow that only the in-process path can report the change in time
    const b = track(new LocalNameService({ dir, watch: false, pollMs: 60_000, cacheMs: 60_000, ...quiet }));
    const key = `nova/${freshTopic()}`;
    const keyHost = `${key}.host-1`;
    const seen: string[] = [];
    b.onChange((k) => seen.push(k));

    assert.deepEqual(await b.lookup(key), []);
    await a.register([key, keyHost], { address: '127.0.0.1:5001', publicKey: 'k'.repeat(40) });
    assert.ok(seen.includes(key) && seen.includes(keyHost), `changes seen: ${seen.join(', ')}`);
    assert.deepEqual(await b.lookup(key), [{ address: '127.0.0.1:5001', publicKey: 'k'.repeat(40) }]);
    assert.equal(a.stats.registered, 2);

    const hits = b.stats.cacheHits;
    await b.lookup(key);
    assert.equal(b.stats.cacheHits, hits + 1);

    const listed = await b.list();
    assert.deepEqual(addresses(listed.get(key) ?? []), ['127.0.0.1:5001']);
    assert.deepEqual(addresses(listed.get(keyHost) ?? []), ['127.0.0.1:5001']);

    seen.length = 0;
    await a.unregister([key], { address: '127.0.0.1:5001', publicKey: 'k'.repeat(40) });
    assert.deepEqual(seen, [key]);
    assert.deepEqual(await b.lookup(key), []); // the change event cleared the cached answer
    assert.deepEqual(addresses(await b.lookup(keyHost)), ['127.0.0.1:5001']);
    assert.equal(a.stats.registered, 1);

    await a.close();
    assert.deepEqual(await b.lookup(keyHost), [], 'close() unregisters');
  });

  test('another process registering and unregistering is seen through fs.watch', async () => {
    const dir = tmpDir();
    const parent = track(new LocalNameService({ dir, cacheMs: 60_000, ...quiet }));
    const key = `neutron/${freshTopic()}`;
    assert.deepEqual(await parent.lookup(key), []);

    const registered = nextChange(parent, key, 10_000);
    const child = spawnRegistrant(dir, key, '127.0.0.1:6001', 30_000);
    await registered;
    assert.deepEqual(addresses(await parent.lookup(key)), ['127.0.0.1:6001']);

    const unregistered = nextChange(parent, key);
    child.proc.stdin!.write('unregister\n');
    await unregistered;
    assert.deepEqual(await parent.lookup(key), []);
    await child.said('closed');
  });

  test('polling fallback sees another process; its records expire after the TTL once it is SIGKILLed', async () => {
    const dir = tmpDir();
    const ttlMs = 600;
    const parent = track(new LocalNameService({ dir, watch: false, pollMs: 50, ttlMs, cacheMs: 0, ...quiet }));
    const key = `cinder/${freshTopic()}`;
    await parent.lookup(key);

    const registered = nextChange(parent, key, 10_000);
    const child = spawnRegistrant(dir, key, '127.0.0.1:6002', ttlMs);
    await child.said('registered');
    await registered;
    assert.deepEqual(addresses(await parent.lookup(key)), ['127.0.0.1:6002']);

    const expired = nextChange(parent, key);
    child.proc.kill('SIGKILL');
    const killedAt = performance.now();
    assert.deepEqual(addresses(await parent.lookup(key)), ['127.0.0.1:6002'], 'a crashed process is only noticed by its TTL');
    await expired; // the parent's sweep deleted the expired file and said so
    await waitFor(async () => (await parent.lookup(key)).length === 0, { timeoutMs: 5000, what: 'the record to expire' });
    assert.ok(performance.now() - killedAt >= ttlMs / 3, 'expired too early');
  });

  /** Runs `fn` with os.tmpdir() at a private directory: the real default registry is other processes' too. */
  async function withPrivateTmp<T>(fn: (tmp: string) => Promise<T>): Promise<T> {
    const saved = process.env['TMPDIR'];
    const tmp = tmpDir();
    process.env['TMPDIR'] = tmp;
    try {
      return await fn(tmp);
    } finally {
      if (saved === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = saved;
    }
  }

  test('the default directory is removed when its last user in the process closes, and only if empty', async () => {
    await withPrivateTmp(async (tmp) => {
      const a = track(new LocalNameService(quiet));
      const b = track(new LocalNameService(quiet));
      assert.equal(path.dirname(a.dir), tmp);
      await a.register([`nova/${freshTopic()}`], { address: '127.0.0.1:5101' });
      await b.close();
      assert.ok(fs.existsSync(a.dir), 'another instance of this process still uses it');
      await a.close();
      assert.ok(!fs.existsSync(a.dir), 'an empty default directory is not left behind');
      // Records left by a close without unregistering (or another process's): the directory stays.
      const c = track(new LocalNameService(quiet));
      await c.register([`nova/${freshTopic()}`], { address: '127.0.0.1:5102' });
      await c.close({ unregister: false });
      assert.ok(fs.existsSync(c.dir) && fs.readdirSync(c.dir).length === 1);
      // A directory given with local:/dir is the user's: never removed.
      const mine = tmpDir();
      await track(new LocalNameService({ dir: mine, ...quiet })).close();
      assert.ok(fs.existsSync(mine));
    });
  });

  test('a default directory removed by another process meanwhile reads as empty and is created again on register', async () => {
    await withPrivateTmp(async () => {
      const ns = track(new LocalNameService({ cacheMs: 0, ...quiet }));
      const key = `nova/${freshTopic()}`;
      fs.rmdirSync(ns.dir); // what another process's close() does when the directory is empty
      assert.deepEqual(await ns.lookup(key), [], 'no directory: no records, not a backend failure');
      await ns.register([key], { address: '127.0.0.1:5103' });
      assert.deepEqual(addresses(await ns.lookup(key)), ['127.0.0.1:5103']);
      assert.equal(fs.statSync(ns.dir).mode & 0o077, 0, 'created again as private');
      assert.equal(ns.stats.backendErrors, 0);
    });
  });

  test('forget() hides an address, from cached answers too, until it is registered again', async () => {
    const dir = tmpDir();
    const owner = track(new LocalNameService({ dir, ...quiet }));
    const other = track(new LocalNameService({ dir, ...quiet }));
    const reader = track(new LocalNameService({ dir, cacheMs: 60_000, ...quiet }));
    const key = `glance/${freshTopic()}`;
    const a = { address: '127.0.0.1:7001' };
    const c = { address: '127.0.0.1:7003' };
    await owner.register([key], a);
    await other.register([key], c);
    assert.deepEqual(addresses(await reader.lookup(key)), [a.address, c.address]);

    // Registrations and forget() are ordered by millisecond stamps: one made in the same
    // millisecond as a forget() counts as after it. Keep each step in a later millisecond.
    await nextMillisecond();
    reader.forget(a.address);
    reader.forget(c.address);
    const hits = reader.stats.cacheHits;
    assert.deepEqual(await reader.lookup(key), []);
    assert.equal(reader.stats.cacheHits, hits + 1);

    // a's server comes back: it registers again (after the forget), c's does not
    await nextMillisecond();
    await owner.unregister([key], a);
    const changed = nextChange(reader, key);
    await owner.register([key], a);
    await changed;
    assert.deepEqual(addresses(await reader.lookup(key)), [a.address]);
  });
});

/** Resolves once Date.now() has moved past the millisecond it was called in. */
async function nextMillisecond(): Promise<void> {
  const t = Date.now();
  while (Date.now() <= t) await new Promise((r) => setImmediate(r));
}

// ---------------------------------------------------------------------------
// static
// ---------------------------------------------------------------------------

describe('nameservice: static', () => {
  test('lookup and list from the map; register() only warns about unlisted servers', async () => {
    const ns = track(
      createNameService(
        `static:${JSON.stringify({ 'nova/compute': ['10.0.0.1:9501', { address: '10.0.0.2:9501', publicKey: 'pk', wire: 3 }] })}`,
        quiet,
      ),
    );
    assert.equal(ns.kind, 'static');
    assert.deepEqual(await ns.lookup('nova/compute'), [{ address: '10.0.0.1:9501' }, { address: '10.0.0.2:9501', publicKey: 'pk', wire: 3 }]);
    assert.deepEqual(await ns.lookup('nova/unknown'), []);
    assert.deepEqual([...(await ns.list()).keys()], ['nova/compute']);

    const warnings = logger.records.length;
    await ns.register(['nova/compute'], { address: '10.0.0.1:9501' });
    assert.equal(logger.records.length, warnings, 'a listed server is fine');
    await ns.register(['nova/compute'], { address: '10.0.0.1:9501', wire: 3 });
    assert.equal(logger.records.length, warnings, 'a server saying which record format it reads is not a different server');
    await ns.register(['nova/compute'], { address: '10.0.0.9:9501' });
    const warning = logger.records.slice(warnings).find((r) => r.level === 'warn');
    assert.match(warning?.msg ?? '', /does not list 10\.0\.0\.9:9501 under "nova\/compute"/);
    assert.equal(ns.stats.registered, 3);
  });

  test('a record field of the wrong type is refused, naming the field and the value', () => {
    for (const [record, why] of [
      [{ address: '10.0.0.1:1', wire: '3' }, /wire must be a positive integer, got "3"/],
      [{ address: '10.0.0.1:1', wire: 0 }, /wire must be a positive integer, got 0/],
      [{ address: '10.0.0.1:1', pool: 7 }, /pool must be a string, got 7/],
    ] as const) {
      assert.throws(() => createNameService(`static:${JSON.stringify({ k: [record] })}`, quiet), why);
    }
  });

  test('forget() hides a configured host for ttlMs, then it is tried again', async () => {
    const ns = track(new StaticNameService({ k: ['10.0.0.1:1', '10.0.0.2:1'] }, { ttlMs: 200, ...quiet }));
    ns.forget('10.0.0.1:1');
    assert.deepEqual(addresses(await ns.lookup('k')), ['10.0.0.2:1']);
    await waitFor(async () => (await ns.lookup('k')).length === 2, { timeoutMs: 3000, what: 'the forgotten host to return' });
  });

  test('maps from JSON and YAML files', async () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'hosts.yaml'), 'nova/compute:\n  - 10.0.0.1:9501\n  - address: "[::1]:9502"\n    pool: p1\n');
    fs.writeFileSync(path.join(dir, 'hosts.json'), JSON.stringify({ 'nova/compute': ['10.0.0.3:9501'] }));
    const y = track(createNameService(`static:@${path.join(dir, 'hosts.yaml')}`, quiet));
    const j = track(createNameService(`static:@${path.join(dir, 'hosts.json')}`, quiet));
    assert.deepEqual(await y.lookup('nova/compute'), [{ address: '10.0.0.1:9501' }, { address: '[::1]:9502', pool: 'p1' }]);
    assert.deepEqual(addresses(await j.lookup('nova/compute')), ['10.0.0.3:9501']);
  });
});

// ---------------------------------------------------------------------------
// specs
// ---------------------------------------------------------------------------

describe('nameservice: createNameService specs', () => {
  test('defaults', () => {
    assert.deepEqual(NAME_SERVICE_DEFAULTS, { ttlMs: 30_000, cacheMs: 5_000 });
  });

  test('local and local:/dir', async () => {
    const dir = tmpDir();
    const ns = track(createNameService(`local:${dir}`, quiet));
    assert.ok(ns instanceof LocalNameService);
    assert.equal(ns.dir, dir);
    // A private temp dir stands for the shared one (closing removes the default directory when empty).
    const saved = process.env['TMPDIR'];
    process.env['TMPDIR'] = tmpDir();
    try {
      const dflt = track(createNameService('local', quiet));
      assert.ok(dflt instanceof LocalNameService);
      assert.equal(fs.statSync(dflt.dir).mode & 0o077, 0, 'the default registry directory is private');
    } finally {
      if (saved === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = saved;
    }
  });

  const bad: Array<[spec: string, mentions: RegExp]> = [
    ['', /is empty/],
    ['zookeeper://h:2181', /"zookeeper:\/\/h:2181" is not a name service spec; expected one of: local, local:\/absolute\/dir, static:/],
    ['local:relative/dir', /"local:relative\/dir" needs an absolute directory/],
    ['static:{"k": [', /static map that is not valid JSON.*expected one of/],
    ['static:["10.0.0.1:1"]', /static map is \["10\.0\.0\.1:1"\]; expected a map of key/],
    ['static:{"k": ["no-port"]}', /static key "k", entry 0: address "no-port" is not "host:port"/],
    ['static:{"k": "10.0.0.1:1"}', /static key "k" has "10\.0\.0\.1:1"; expected a map of key → array/],
    ['static:@/nonexistent/hosts.yaml', /names a file that cannot be read/],
    ['static:@/etc/hosts', /not \.json, \.yaml or \.yml/],
    ['redis://', /"redis:\/\/" has no host; expected redis:\/\/\[\[user\]:<password>@\]host\[:port\]\[\/db\]/],
    ['redis://h:1/zero', /has database "zero", not a number/],
    ['redis+sentinel://h1:26379', /is not a Sentinel URL; expected redis\+sentinel:\/\/host\[:port\]/],
    ['redis+sentinel://h1:26379/m?pass=x', /has unknown parameter "pass"/],
    ['etcd://', /"etcd:\/\/" has no host; expected etcd:\/\/host\[:port\]\[,host\[:port\]\.\.\.\]\[\/prefix\]/],
    ['etcd://h1:2379,h2:99999', /has member address "h2:99999", not host\[:port\]/],
    ['etcd://h1:2379?user=u', /has unknown parameter "user"/],
    ['etcd://h1?username=u', /needs both username and password/],
    ['etcd://u:pw@h1', /credentials before the host/],
  ];
  for (const [spec, mentions] of bad) {
    test(`bad spec ${JSON.stringify(spec)} → ConfigError naming matchmaker`, () => {
      assert.throws(
        () => createNameService(spec, quiet),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
          assert.match(err.message, /matchmaker/);
          assert.match(err.message, mentions);
          return true;
        },
      );
    });
  }

  test('passwords never appear in errors', () => {
    for (const spec of ['redis://:s3cret@h:1/notadb', 'redis+sentinel://h:1/m?password=s3cret&bogus=1', 'etcd://h:1?username=u&password=s3cret&bogus=1', 'etcd://u:s3cret@h:1']) {
      assert.throws(
        () => createNameService(spec, quiet),
        (err: unknown) => err instanceof ConfigError && !err.message.includes('s3cret') && err.message.includes('***'),
      );
    }
  });

  test('bad ttlMs/cacheMs → ConfigError', () => {
    assert.throws(() => createNameService('local', { ttlMs: -1, ...quiet }), /matchmaker ttlMs: -1 is not valid/);
    assert.throws(() => new StaticNameService({}, { cacheMs: Number.NaN }), /matchmaker cacheMs: NaN is not valid/);
  });
});

// ---------------------------------------------------------------------------
// shared backends: Redis and etcd pass the same cases
// ---------------------------------------------------------------------------

interface Backend {
  readonly kind: 'redis' | 'etcd';
  /** A private server of the backend; its url is a name service spec. */
  start(): Promise<RunningServer>;
  /** Resolves once `ns` hears every later change. */
  ready(ns: NameService): Promise<void>;
}

const BACKENDS: readonly Backend[] = [
  { kind: 'redis', start: () => startRedis(), ready: (ns) => (ns as RedisNameService).ready() },
  { kind: 'etcd', start: () => startEtcd(), ready: (ns) => (ns as EtcdNameService).ready() },
];

/** The "unavailable" warnings of an outage in `log`. */
const outageWarnings = (log: ReturnType<typeof recordingLogger>): number =>
  log.records.filter((r) => r.level === 'warn' && /unavailable/.test(r.msg ?? '')).length;

for (const backend of BACKENDS) {
  describe(`nameservice: ${backend.kind}`, () => {
    const servers = sharedServers({ server: () => backend.start() });

    test('register/lookup/unregister; change events reach other instances promptly; cache hits; list()', async () => {
      const a = track(createNameService(servers.server.url, quiet));
      const b = track(createNameService(servers.server.url, { cacheMs: 60_000, ...quiet }));
      assert.equal(a.kind, backend.kind);
      await backend.ready(b);
      const key = `nova/${freshTopic()}`;
      const keyHost = `${key}.host-1`;
      const r1 = { address: '10.1.0.1:9501' };
      const r2 = { address: '10.1.0.2:9501', pool: 'p', wire: 3 };
      assert.deepEqual(await b.lookup(key), []);

      let change = nextChange(b, key);
      await a.register([key, keyHost], r1);
      assert.ok((await change) < 1000, 'change event took over a second');
      assert.deepEqual(await b.lookup(key), [r1]);
      const hits = b.stats.cacheHits;
      assert.deepEqual(await b.lookup(key), [r1]);
      assert.equal(b.stats.cacheHits, hits + 1);

      change = nextChange(b, key);
      await a.register([key], r2);
      await change;
      assert.deepEqual(await b.lookup(key), [r1, r2], 'the change event cleared the cached answer');
      assert.equal(a.stats.registered, 3);

      const listed = await b.list();
      assert.deepEqual(listed.get(key), [r1, r2]);
      assert.deepEqual(listed.get(keyHost), [r1]);

      change = nextChange(b, key);
      await a.unregister([key], r1);
      await change;
      assert.deepEqual(await b.lookup(key), [r2]);
      assert.equal(a.stats.registered, 2);

      await a.close();
      assert.deepEqual(await b.lookup(keyHost), []);
      assert.equal((await b.list()).has(keyHost), false, 'a key without records leaves the index');
    });

    test('records expire per record: a dead registrant\'s record goes, the live one on the same key stays', async () => {
      const ttlMs = 1000; // etcd's leases count whole seconds
      const key = `nova/${freshTopic()}`;
      const dying = track(createNameService(servers.server.url, { ttlMs, ...quiet }));
      const living = track(createNameService(servers.server.url, { ttlMs, ...quiet }));
      const reader = track(createNameService(servers.server.url, { ttlMs, cacheMs: 0, ...quiet }));
      await dying.register([key], { address: '10.2.0.1:1' });
      await living.register([key], { address: '10.2.0.2:1' });
      const livingSince = Date.now();
      assert.deepEqual(addresses(await reader.lookup(key)), ['10.2.0.1:1', '10.2.0.2:1']);

      await dying.close({ unregister: false }); // stops refreshing, like a killed process
      await waitFor(async () => (await reader.lookup(key)).length === 1, { timeoutMs: 5000, intervalMs: 50, what: 'the dead record to expire' });
      // the living record outlives its first TTL several times over, because it is refreshed
      await waitFor(
        async () => {
          assert.deepEqual(addresses(await reader.lookup(key)), ['10.2.0.2:1']);
          return Date.now() - livingSince > 3 * ttlMs;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: 'three TTLs to pass' },
      );
    });

    test('two processes registering the same record: it stays while either lives', async () => {
      const ttlMs = 1000;
      const key = `nova/${freshTopic()}`;
      const rec = { address: '10.2.1.1:1' };
      const first = track(createNameService(servers.server.url, { ttlMs, ...quiet }));
      const second = track(createNameService(servers.server.url, { ttlMs, ...quiet }));
      const reader = track(createNameService(servers.server.url, { ttlMs, cacheMs: 0, ...quiet }));
      await first.register([key], rec);
      await second.register([key], rec);
      assert.deepEqual(await reader.lookup(key), [rec], 'one record, not one per registrant');
      await first.close({ unregister: false });
      const since = Date.now();
      await waitFor(
        async () => {
          assert.deepEqual(await reader.lookup(key), [rec]);
          return Date.now() - since > 2 * ttlMs;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: 'two TTLs to pass' },
      );
      await second.unregister([key], rec);
      assert.deepEqual(await reader.lookup(key), []);
    });

    test(`${backend.kind} down: lookups answer from the stale cache without hanging, one warning; back: fresh again, records re-registered`, async () => {
      const server = await backend.start();
      try {
        const key = `nova/${freshTopic()}`;
        const late = `${key}.late`;
        const gone = `${key}.gone`;
        const rec = { address: '10.3.0.1:1' };
        const log = recordingLogger();
        // default TTL: its periodic refresh or keep-alive (every 10 s) is too slow to pass this test, only the re-registration on reconnect is fast enough
        const owner = track(createNameService(server.url, quiet));
        const client = track(createNameService(server.url, { cacheMs: 0, logger: log }));
        await owner.register([key, gone], rec);
        assert.deepEqual(await client.lookup(key), [rec]);

        await server.kill();
        const stale = await timed(() => client.lookup(key));
        assert.deepEqual(stale.value, [rec]);
        assert.ok(stale.ms < 1500, `stale lookup took ${Math.round(stale.ms)} ms`);
        assert.deepEqual(await client.lookup(key), [rec]);
        assert.ok(client.stats.backendErrors >= 2, `backendErrors ${client.stats.backendErrors}`);

        const t0 = performance.now();
        await assert.rejects(client.lookup(`${key}.never-looked-up`), (err: unknown) => err instanceof MessageDeliveryFailure && /no cached answer/.test(err.message));
        assert.ok(performance.now() - t0 < 1500, 'uncached lookup did not fail fast');
        // registering while the backend is away fails, but the record is kept and written once it is back
        await assert.rejects(owner.register([late], rec), MessageDeliveryFailure);
        await owner.unregister([gone], rec); // cannot reach the backend: only warns, and the record goes all the same
        for (let i = 0; i < 5; i++) await client.lookup(key);
        assert.equal(outageWarnings(log), 1, 'one warning per outage, not per lookup');

        await server.restart(); // Redis without persistence comes back empty; etcd with its data
        const fresh = track(createNameService(server.url, { cacheMs: 0, ...quiet }));
        await waitFor(async () => (await fresh.lookup(key)).length === 1 && (await fresh.lookup(late)).length === 1, {
          timeoutMs: 5_000,
          intervalMs: 50,
          what: 'the owner to re-register after the restart',
        });
        await waitFor(async () => (await fresh.lookup(gone)).length === 0, { timeoutMs: 5_000, intervalMs: 50, what: 'the record unregistered during the outage to go' });
        await waitFor(async () => {
          const errors = client.stats.backendErrors;
          return (await client.lookup(late)).length === 1 && client.stats.backendErrors === errors;
        }, { timeoutMs: 10_000, intervalMs: 50, what: 'the client to answer fresh again' });
        assert.equal(outageWarnings(log), 1, 'still the one warning');
      } finally {
        await Promise.all(opened.splice(0).map((ns) => ns.close()));
        await server.stop();
      }
    });
  });
}

// ---------------------------------------------------------------------------
// redis only
// ---------------------------------------------------------------------------

describe('nameservice: redis (Sentinel)', () => {
  const servers = sharedServers({ redis: () => startRedis() });

  test('Sentinel URL', async () => {
    const sentinel = await startRedisSentinel(servers.redis);
    try {
      assert.match(sentinel.url, /^redis\+sentinel:\/\/127\.0\.0\.1:\d+\/hbmaster$/);
      const viaSentinel = track(createNameService(sentinel.url, quiet));
      const direct = track(new RedisNameService(servers.redis.url, { cacheMs: 0, ...quiet }));
      await direct.ready();
      const key = `nova/${freshTopic()}`;
      const change = nextChange(direct, key);
      await viaSentinel.register([key], { address: '10.4.0.1:1' });
      await change;
      assert.deepEqual(addresses(await direct.lookup(key)), ['10.4.0.1:1']);
      assert.deepEqual(addresses(await viaSentinel.lookup(key)), ['10.4.0.1:1']);
    } finally {
      await Promise.all(opened.splice(0).map((ns) => ns.close()));
      await sentinel.stop();
    }
  });
});

// ---------------------------------------------------------------------------
// etcd only
// ---------------------------------------------------------------------------

// A child process that registers one record in etcd and waits to be SIGKILLed (a crash: no unregister, no revoke).
const NS_PACKAGE = import.meta.resolve('@hybridbus/nameservice');
const ETCD_CHILD = `
const { createNameService } = await import(process.env.NS_MODULE);
const ns = createNameService(process.env.NS_SPEC, { ttlMs: Number(process.env.NS_TTL) });
await ns.register([process.env.NS_KEY], { address: process.env.NS_ADDRESS });
process.stdout.write('registered\\n');
setInterval(() => {}, 1000);
`;

describe('nameservice: etcd (leases, members)', () => {
  const servers = sharedServers({ etcd: () => startEtcd() });

  test('spec: prefix and credentials; the password is not in url', () => {
    const ns = track(createNameService('etcd://127.0.0.1:1,127.0.0.1:2/my%20app?username=u&password=s3cret', quiet));
    assert.ok(ns instanceof EtcdNameService);
    assert.equal(ns.url, 'etcd://127.0.0.1:1,127.0.0.1:2/my%20app?username=u&password=***');
  });

  test('an instance that only registers opens no watch (a server does not hear every other server register); a reader opens one', async () => {
    const etcd = await startEtcd(); // its own: a closed watch leaves the shared one's gauges late
    try {
      const gauges = async (): Promise<[number | undefined, number | undefined]> => {
        const m = await etcdMetrics(etcd.port);
        return [m.get('etcd_debugging_mvcc_watch_stream_total'), m.get('etcd_debugging_mvcc_watcher_total')];
      };
      const key = `nova/${freshTopic()}`;
      const owners = [1, 2, 3].map(() => track(createNameService(etcd.url, quiet)));
      await Promise.all(owners.map((o, i) => o.register([key, `${key}.host-${i}`], { address: `10.10.0.${i + 1}:1` })));
      const reader = track(createNameService(etcd.url, { cacheMs: 60_000, ...quiet }));
      await (reader as EtcdNameService).ready();
      // One more registration, seen through the reader's watch: the owners (made first) had long had theirs, if any.
      const seen = nextChange(reader, key);
      await owners[0]!.register([key], { address: '10.10.0.9:1' });
      await seen;
      assert.equal((await reader.lookup(key)).length, 4);
      assert.deepEqual(await gauges(), [1, 1], 'etcd\'s watch streams and watchers: the reader\'s only');
    } finally {
      await Promise.all(opened.splice(0).map((ns) => ns.close()));
      await etcd.stop();
    }
  });

  test('a registration etcd answers late (frozen for 3 s) is waited for, not abandoned at the read deadline', async () => {
    const etcd = await startEtcd(); // its own: it is frozen
    try {
      const key = `nova/${freshTopic()}`;
      const owner = track(new EtcdNameService(etcd.url, { commandTimeoutMs: 1000, ...quiet }));
      assert.deepEqual(await owner.lookup(`${key}.warm`), []); // connected
      const pid = etcd.pid!;
      process.kill(pid, 'SIGSTOP');
      const thawed = new Promise<void>((resolve) => setTimeout(() => resolve(void process.kill(pid, 'SIGCONT')), 3000));
      const t0 = performance.now();
      try {
        await owner.register([key], { address: '10.12.0.1:1' });
      } finally {
        await thawed;
      }
      assert.ok(performance.now() - t0 >= 2500, 'the write was answered while etcd was frozen');
      const reader = track(createNameService(etcd.url, { cacheMs: 0, ...quiet }));
      assert.deepEqual(addresses(await reader.lookup(key)), ['10.12.0.1:1']);
    } finally {
      await Promise.all(opened.splice(0).map((ns) => ns.close()));
      await etcd.stop();
    }
  });

  test('a prefix keeps two registries apart on one etcd', async () => {
    const key = `nova/${freshTopic()}`;
    const a = track(createNameService(`${servers.etcd.url}/region-a`, { cacheMs: 0, ...quiet }));
    const b = track(createNameService(`${servers.etcd.url}/region-b`, { cacheMs: 0, ...quiet }));
    await a.register([key], { address: '10.5.0.1:1' });
    assert.deepEqual(addresses(await a.lookup(key)), ['10.5.0.1:1']);
    assert.deepEqual(await b.lookup(key), []);
    assert.equal((await b.list()).has(key), false);
  });

  test('a registering process killed without unregistering disappears after its lease TTL', async () => {
    const ttlMs = 1000;
    const key = `nova/${freshTopic()}`;
    const reader = track(createNameService(servers.etcd.url, { ttlMs, cacheMs: 60_000, ...quiet }));
    await (reader as EtcdNameService).ready();
    const registered = nextChange(reader, key, 10_000);
    const child = spawnChild(ETCD_CHILD, { NS_MODULE: NS_PACKAGE, NS_SPEC: servers.etcd.url, NS_KEY: key, NS_ADDRESS: '10.6.0.1:1', NS_TTL: String(ttlMs) });
    await child.said('registered');
    await registered;
    assert.deepEqual(addresses(await reader.lookup(key)), ['10.6.0.1:1']);

    const expired = nextChange(reader, key, 10_000);
    child.proc.kill('SIGKILL');
    const killedAt = performance.now();
    await expired; // the lease expired in etcd and the watch said so
    const after = performance.now() - killedAt;
    assert.deepEqual(await reader.lookup(key), [], 'the change event cleared the cached answer');
    // The library keeps the lease alive every TTL/3: it expires between 2/3 of a TTL and a TTL (+ etcd's lease check) after the kill.
    assert.ok(after >= ttlMs / 2, `gone after ${Math.round(after)} ms, before the lease could expire`);
    assert.ok(after < 3 * ttlMs, `gone only after ${Math.round(after)} ms`);
  });

  test('username and password: with the right ones it works; a wrong password is a clear error that does not show it', async () => {
    const etcd = await startEtcd();
    try {
      // etcd's own steps: a root user with the root role, then auth on
      for (const [path, body] of [
        ['/v3/auth/user/add', { name: 'root', password: 'r00t-s3cret' }],
        ['/v3/auth/user/grant', { user: 'root', role: 'root' }],
        ['/v3/auth/enable', {}],
      ] as const) {
        assert.ok(await etcdGateway(etcd.port, path, body), `${path} failed`);
      }
      const key = `nova/${freshTopic()}`;
      const good = track(createNameService(`${etcd.url}?username=root&password=r00t-s3cret`, { cacheMs: 0, ...quiet }));
      await good.register([key], { address: '10.9.0.1:1' });
      assert.deepEqual(addresses(await good.lookup(key)), ['10.9.0.1:1']);

      const bad = track(createNameService(`${etcd.url}?username=root&password=wr0ng-s3cret`, { cacheMs: 0, ...quiet }));
      await assert.rejects(bad.lookup(key), (err: unknown) => {
        assert.ok(err instanceof MessageDeliveryFailure, String(err));
        assert.match(err.message, /authentication failed|invalid user ID or password/i);
        assert.ok(!err.message.includes('wr0ng-s3cret'), err.message);
        return true;
      });
      await assert.rejects(bad.register([key], { address: '10.9.0.2:1' }), (err: unknown) => {
        assert.ok(err instanceof MessageDeliveryFailure && !err.message.includes('wr0ng-s3cret'), String(err));
        assert.match(err.message, /password=\*\*\*/);
        return true;
      });
    } finally {
      await Promise.all(opened.splice(0).map((ns) => ns.close()));
      await etcd.stop();
    }
  });

  test('a lost lease (revoked in etcd) is granted again and the records put again', async () => {
    const ttlMs = 1000;
    const key = `nova/${freshTopic()}`;
    const owner = track(createNameService(servers.etcd.url, { ttlMs, ...quiet }));
    const reader = track(createNameService(servers.etcd.url, { ttlMs, cacheMs: 60_000, ...quiet }));
    await (reader as EtcdNameService).ready();
    await owner.register([key], { address: '10.8.0.1:1' });
    assert.deepEqual(addresses(await reader.lookup(key)), ['10.8.0.1:1']);

    const gone = nextChange(reader, key);
    assert.ok((await etcdRevokeAllLeases(servers.etcd.port)) >= 1);
    await gone;
    assert.deepEqual(await reader.lookup(key), [], 'revoking the lease removed the record');
    const back = nextChange(reader, key); // the owner's next keep-alive finds its lease gone (within ttl/3)
    await back;
    assert.deepEqual(addresses(await reader.lookup(key)), ['10.8.0.1:1']);
    assert.equal(owner.stats.registered, 1);
  });

  test('3-member cluster loses a member: lookups and registrations keep working', async () => {
    const cluster = await startEtcdCluster(3);
    try {
      const ttlMs = 1000;
      const key = `nova/${freshTopic()}`;
      const log = recordingLogger();
      const owner = track(createNameService(cluster.url, { ttlMs, logger: log }));
      const reader = track(createNameService(cluster.url, { ttlMs, cacheMs: 0, logger: log }));
      await owner.register([key], { address: '10.7.0.1:1' });
      assert.deepEqual(addresses(await reader.lookup(key)), ['10.7.0.1:1']);

      await cluster.members[0]!.kill(); // the first endpoint of both clients
      const since = Date.now();
      const change = nextChange(reader, key);
      await owner.register([key], { address: '10.7.0.2:1' });
      await change;
      assert.deepEqual(addresses(await reader.lookup(key)), ['10.7.0.1:1', '10.7.0.2:1']);
      // answers are fresh (not the stale cache) and the lease is kept alive through the others, several TTLs long
      await waitFor(
        async () => {
          assert.deepEqual(addresses(await reader.lookup(key)), ['10.7.0.1:1', '10.7.0.2:1']);
          return Date.now() - since > 3 * ttlMs;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: 'three TTLs to pass' },
      );
      const late = track(createNameService(cluster.url, { ttlMs, cacheMs: 0, ...quiet }));
      assert.deepEqual(addresses(await late.lookup(key)), ['10.7.0.1:1', '10.7.0.2:1'], 'a new client finds a live member');
      assert.equal(reader.stats.backendErrors, 0, 'no lookup needed the stale cache');
      assert.equal(outageWarnings(log), 0, 'one member gone is no outage');
    } finally {
      await Promise.all(opened.splice(0).map((ns) => ns.close()));
      await cluster.stop();
    }
  });
});
