/**
 * zmq:// multicast fanouts (issue 15). Real multicast only ever happens inside a network
 * namespace this file makes (`unshare -n`, loopback up with a multicast route): the bodies
 * under netns/ run there and print their figures; this file launches them and checks the
 * outcome. Where a namespace cannot be made (not root, no unshare, no `ip`), those tests are
 * skipped with the reason. Option checks need no network and always run.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as zmq from 'zeromq';
import { ConfigError } from '@hybridbus/core';
import { curveKeyPair, parseOptions } from '@hybridbus/zmq-direct';
import { tempDir } from './util.js';

/** Loopback up, multicast on, and 224.0.0.0/4 routed to it: the namespace's only network. */
const NETNS_SETUP = 'ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo';

/** Why no namespace can be made here, or undefined when one can. */
function netnsUnavailable(): string | undefined {
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', NETNS_SETUP], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return `cannot run unshare: ${r.error.message}`;
  if (r.status !== 0) return `cannot make a network namespace with multicast on loopback (unshare -n: ${(r.stderr || `exit ${r.status}`).trim()})`;
  if (!zmq.capability.draft) return 'this zeromq.js build has no draft sockets (RADIO/DISH)';
  return undefined;
}
const unavailable = netnsUnavailable();

/** Run `node <script> <args>` in a fresh namespace; its exit code and output. */
function inNamespace(script: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const path = fileURLToPath(new URL(`./netns/${script}`, import.meta.url));
  const quoted = ['--test-reporter=tap', path, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  // Without NODE_TEST_CONTEXT, node:test in the child reports as a program of its own (TAP), not to this runner.
  const env = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  const proc = spawn('unshare', ['-n', '--', 'sh', '-c', `${NETNS_SETUP} && exec node ${quoted}`], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A scenario of netns/multicast-body.ts: passes when it exits 0; returns its figures. */
async function scenario(name: string): Promise<Record<string, number>> {
  const r = await inNamespace('multicast-body.js', [name], 30_000);
  assert.equal(r.code, 0, `scenario ${name} failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  assert.ok(line, `scenario ${name} printed no RESULT line:\n${r.stdout}`);
  return JSON.parse(line.slice(7)) as Record<string, number>;
}

describe('zmq:// multicast fanouts, in a network namespace', { skip: unavailable }, () => {
  test('the prebuilt zeromq.js has RADIO/DISH (draft) and neither PGM nor NORM', () => {
    assert.equal(zmq.capability.draft, true);
    assert.equal(zmq.capability.pgm, false);
    assert.equal(zmq.capability.norm, false);
  });

  test('fanouts to 3 server processes go out once each and arrive once at every server', async (t) => {
    const r = await scenario('fanout3');
    t.diagnostic(JSON.stringify(r));
    assert.equal(r['sent'], r['fanouts']);
  });

  test('servers without multicast, or with another group key, get unicast copies, and so does a fanout over the datagram limit; each server has every fanout once', async (t) => {
    const r = await scenario('mixed');
    t.diagnostic(JSON.stringify(r));
    assert.equal(r['unicastCopies'], 2 * (r['fanouts'] ?? 0));
  });

  test('a receiver frozen (SIGSTOP) while 5,000 fanouts go loses datagrams, and repair brings back every one', async (t) => {
    const r = await scenario('repair');
    t.diagnostic(JSON.stringify(r));
    assert.equal(r['lost'], 0);
    assert.ok((r['recovered'] ?? 0) > 0);
  });

  test('servers in one process share one socket: each has every fanout once and acks it, a gap is repaired once for all', async (t) => {
    const r = await scenario('shared');
    t.diagnostic(JSON.stringify(r));
    assert.equal(r['sockets'], 1);
  });

  test('servers in one process are handed one decoded record, yet each handler has its own args and context: no server sees what another changed', async (t) => {
    const r = await scenario('ownCopies');
    t.diagnostic(JSON.stringify(r));
    assert.equal(r['servers'], 4);
  });

  test('the shared socket stays while any server of the process is up, closes with the last, and opens again for a new one', async (t) => {
    const r = await scenario('sharedClose');
    t.diagnostic(JSON.stringify(r));
  });

  test('an idle server with multicast on costs its process next to no CPU (a DISH with a receive pending spun the event loop)', async (t) => {
    const r = await scenario('idle');
    t.diagnostic(JSON.stringify(r));
    assert.ok((r['idleCpuMsPerS'] ?? Infinity) < 50);
  });

  test('a gap older than the window cannot be repaired: it is counted and logged, never silent', async (t) => {
    const r = await scenario('unrepairable');
    t.diagnostic(JSON.stringify(r));
    assert.ok((r['reportedLost'] ?? 0) > 0);
    assert.equal((r['delivered'] ?? 0) + (r['reportedLost'] ?? 0), r['fanouts']);
  });

  test('acked fanouts whose multicast copy was lost for good reach the server by unicast, once', async (t) => {
    const r = await scenario('acked');
    t.diagnostic(JSON.stringify(r));
    assert.equal(r['delivered'], r['fanouts']);
  });

  test('copies not delivered (a dead server with multicast, one without; a fanout over the datagram limit) fail the fanout with FanoutIncomplete and its counts', async (t) => {
    const r = await scenario('incomplete');
    t.diagnostic(JSON.stringify(r));
    assert.deepEqual([r['notReached'], r['servers']], [2, 3]);
  });

  test('a sealed group drops and counts forged, garbled, unsealed and junk datagrams sent as raw UDP', async (t) => {
    const r = await scenario('sealed');
    t.diagnostic(JSON.stringify(r));
    assert.equal(r['forgedCounted'], r['badSent']);
  });

  test('unsealed, 3,000 mutated and junk datagrams reach the parser: the process survives and keeps serving', async (t) => {
    const r = await scenario('fuzz');
    t.diagnostic(JSON.stringify(r));
    assert.ok((r['forged'] ?? 0) > 0);
  });

  test('the conformance suite passes on zmq:// with multicast fanouts', async (t) => {
    const r = await inNamespace('conformance-multicast.js', ['all'], 60_000);
    const summary = r.stdout.split('\n').filter((l) => /^# (tests|pass|fail|skipped|multicast)/.test(l));
    t.diagnostic(summary.join('; '));
    assert.equal(r.code, 0, `conformance with multicast failed:\n${r.stdout}\n${r.stderr}`);
    assert.ok(summary.includes('# fail 0'), r.stdout);
  });
});

describe('zmq:// multicast options', () => {
  const baseQuery = 'multicast=udp://239.192.0.1:5555';
  const base = `zmq://?${baseQuery}`;
  const problem = (query: string): string => {
    try {
      parseOptions(new URL(`zmq://?${query}`));
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.message;
    }
    assert.fail(`zmq://?${query} was accepted`);
  };

  test('a valid set is read', () => {
    const key = randomBytes(32);
    const o = parseOptions(new URL(`${base}&multicast_interface=eth0&multicast_ttl=4&multicast_key=${encodeURIComponent(key.toString('base64'))}&multicast_window=64&multicast_heartbeat=50&multicast_rcvbuf=65536&multicast_groups=nova/compute=cmp`));
    assert.deepEqual({ ...o.multicast, key: o.multicast?.key?.toString('hex'), groups: [...(o.multicast?.groups ?? [])] }, {
      address: '239.192.0.1',
      port: 5555,
      interface: 'eth0',
      ttl: 4,
      key: key.toString('hex'),
      window: 64,
      heartbeat: 50,
      receiveBuffer: 65536,
      groups: [['nova/compute', 'cmp']],
    });
    assert.equal(parseOptions(new URL('zmq://')).multicast, undefined);
  });

  test('the key may come from a file, base64 or raw', () => {
    const dir = tempDir('hb-mckey-');
    const key = randomBytes(32);
    writeFileSync(join(dir, 'b64'), `${key.toString('base64')}\n`);
    writeFileSync(join(dir, 'raw'), key);
    for (const f of ['b64', 'raw']) assert.deepEqual(parseOptions(new URL(`${base}&multicast_key=@${join(dir, f)}`)).multicast?.key, key);
  });

  test('curve=true without multicast_key is a config error: CURVE does not cover UDP', () => {
    const server = curveKeyPair();
    const curve = `curve=true&curve_public_key=${encodeURIComponent(server.publicKey)}&curve_secret_key=${encodeURIComponent(server.secretKey)}`;
    assert.match(problem(`${curve}&multicast=udp://239.192.0.1:5555`), /"multicast" with curve=true needs "multicast_key"/);
    const ok = parseOptions(new URL(`zmq://?${curve}&multicast=udp://239.192.0.1:5555&multicast_key=${encodeURIComponent(randomBytes(32).toString('base64'))}`));
    assert.ok(ok.multicast?.key);
  });

  test('every bad value names the option, the value and the expected form; keys are never echoed', () => {
    assert.match(problem('multicast=udp://10.0.0.1:5555'), /option "multicast": "udp:\/\/10\.0\.0\.1:5555" is invalid; expected udp:\/\/A\.B\.C\.D:PORT with an IPv4 multicast address/);
    assert.match(problem('multicast=tcp://239.1.1.1:5555'), /option "multicast"/);
    assert.match(problem('multicast=udp://239.1.1.1:70000'), /option "multicast"/);
    assert.match(problem(`${baseQuery}&multicast_ttl=256`), /option "multicast_ttl": "256" is invalid; expected hops 0–255/);
    assert.match(problem(`${baseQuery}&multicast_window=3`), /option "multicast_window": "3" is invalid; expected datagrams 16–65536/);
    assert.match(problem(`${baseQuery}&multicast_interface=a;b`), /option "multicast_interface"/);
    assert.match(problem(`${baseQuery}&multicast_groups=nova/compute=this-name-is-too-long`), /option "multicast_groups".*1–15/);
    const secret = 'c2VjcmV0LWJ1dC10b28tc2hvcnQ=';
    const m = problem(`${baseQuery}&multicast_key=${secret}`);
    assert.match(m, /option "multicast_key": "<28 characters, hidden>" is invalid; expected 32 bytes as base64/);
    assert.ok(!m.includes(secret));
    assert.match(problem('multicast_ttl=2'), /"multicast_ttl" need "multicast"/);
  });
});
