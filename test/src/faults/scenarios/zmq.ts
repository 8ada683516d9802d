/**
 * Fault scenarios of the brokerless zmq:// driver (packages/zmq-direct), every process a real
 * child (child.ts). The properties checked are the README's "zmq-direct" promises: robust
 * framing, CURVE refusal within a handshake, and no silent loss with acks=true.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { curveKeyPair } from '@hybridbus/zmq-direct';
import { freshTopic } from '../../util.js';
import { crashNote, errorsNote, note, nsDir, until, warmedUp } from '../kit.js';
import { ProcGroup, type Proc } from '../procs.js';
import { formatRejected, Ledger, MiB, type FaultCounts, type Scenario } from '../types.js';

/** zmq-direct logs a reply/ack it could not send (packages/zmq-direct/src/inbound.ts flush()). */
const COUNT_LINES = { sendFailed: /could not send a reply/, ebusy: /EBUSY/ };

interface Mem {
  rss: number;
  heapUsed: number;
  gc: boolean;
  counters: Record<string, number>;
}

export const zmqFuzz: Scenario = {
  name: 'zmq-fuzz',
  needs: [],
  async run(size): Promise<FaultCounts> {
    const frames = size === 'full' ? 1_000_000 : 20_000;
    const maxMessageSize = 64 * 1024;
    const url = `zmq://?matchmaker=local:${nsDir()}&max_message_size=${maxMessageSize}`;
    const topic = freshTopic('fuzz');
    const ledger = new Ledger();
    const g = new ProcGroup();
    try {
      const server = await g.start('server', 'server', { url, topic, servers: ['s0'] }, { execArgv: ['--expose-gc'], onEvents: (e) => ledger.apply(e), countLines: COUNT_LINES });
      // The legitimate client: a call every 5 ms, at most 8 outstanding, until the flood is over.
      const client = await g.start('client', 'sender', { url, topic, ops: ['call'], count: 10_000_000, concurrency: 8, intervalMs: 5, timeoutMs: 5_000, maxMs: size === 'full' ? 900_000 : 120_000, prefix: 'legit' }, { onEvents: (e) => ledger.apply(e) });
      const fuzzer = await g.start('fuzzer', 'fuzzer', { address: server.ready['address'], count: frames, sockets: 4, seed: 7, key: `openstack/${topic}`, maxMessageSize, maxMs: size === 'full' ? 900_000 : 120_000 });
      client.send({ cmd: 'go' });
      await warmedUp(ledger, 50);
      const before = (await server.request('mem', 10_000)) as unknown as Mem;
      const fuzzed = fuzzer.next('finished', size === 'full' ? 1_000_000 : 150_000);
      fuzzer.send({ cmd: 'go' });
      const f = await fuzzed;
      const legitDuring = ledger.sent.size;
      client.send({ cmd: 'stop' });
      await client.next('finished', 60_000);
      const after = (await server.request('mem', 10_000)) as unknown as Mem;
      await server.request('drain', 30_000); // every handled call reported
      const c = after.counters;
      return ledger.counts(
        g.crashes().length,
        note(
          `${Number(f['sent'])} garbage messages in ${(Number(f['ms']) / 1000).toFixed(1)} s from 4 DEALERs (${Number(f['replies'])} answers read back)`,
          `server counted received ${c['received']}, dropped ${c['dropped']}, oversize ${c['oversize']}`,
          `server RSS ${MiB(before.rss)} -> ${MiB(after.rss)}, heap ${MiB(before.heapUsed)} -> ${MiB(after.heapUsed)} (after GC: ${after.gc})`,
          `${legitDuring} legitimate calls started by the end of the flood`,
          g.lineCount('sendFailed') > 0 && `server logged ${g.lineCount('sendFailed')} replies it could not send (${g.lineCount('ebusy')} EBUSY)`,
          errorsNote(ledger),
          crashNote(g),
        ),
        {
          garbage: Number(f['sent']),
          rssBefore: before.rss,
          rssAfter: after.rss,
          heapBefore: before.heapUsed,
          heapAfter: after.heapUsed,
          serverDropped: c['dropped'] ?? 0,
          serverAlive: server.alive ? 1 : 0,
          replySendFailures: g.lineCount('sendFailed'),
        },
      );
    } finally {
      await g.stopAll();
    }
  },
};

export const zmqCurveUnauthorized: Scenario = {
  name: 'zmq-curve-unauthorized',
  needs: [],
  async run(size): Promise<FaultCounts> {
    const attempts = size === 'full' ? 500 : 25;
    const dir = nsDir();
    const serverKeys = curveKeyPair();
    const allowed = curveKeyPair();
    const curveUrl = (keys: { publicKey: string; secretKey: string }, allowList?: string): string =>
      `zmq://?matchmaker=local:${dir}&curve=true&curve_public_key=${encodeURIComponent(keys.publicKey)}&curve_secret_key=${encodeURIComponent(keys.secretKey)}&connect_timeout=2000` +
      (allowList ? `&curve_allowed_clients=${encodeURIComponent(allowList)}` : '');
    const topic = freshTopic('curve');
    const intruders = new Ledger();
    const control = new Ledger();
    // The endpoint reports every id it handles; the prefix tells whose it was.
    const route = (e: Parameters<Ledger['apply']>[0]): void => {
      const mine = (id: string): boolean => id.startsWith('allowed-');
      control.apply({ got: (e.got ?? []).filter(mine), sent: (e.sent ?? []).filter(mine), ok: (e.ok ?? []).filter(mine), failed: (e.failed ?? []).filter(([id]) => mine(id)) });
      intruders.apply({ got: (e.got ?? []).filter((id) => !mine(id)), sent: (e.sent ?? []).filter((id) => !mine(id)), ok: (e.ok ?? []).filter((id) => !mine(id)), failed: (e.failed ?? []).filter(([id]) => !mine(id)) });
    };
    const g = new ProcGroup();
    try {
      await g.start('server', 'server', { url: curveUrl(serverKeys, allowed.publicKey), topic, servers: ['s0'] }, { onEvents: route });
      const ok = await g.start('allowed', 'sender', { url: curveUrl(allowed), topic, ops: ['call', 'cast'], count: 10, concurrency: 1, timeoutMs: 5_000, prefix: 'allowed' }, { onEvents: route });
      ok.send({ cmd: 'go' });
      await ok.next('finished', 30_000);
      const bad: Proc[] = [];
      for (let k = 0; k < 3; k++) {
        bad.push(await g.start(`intruder${k}`, 'sender', { url: curveUrl(curveKeyPair()), topic, ops: ['call', 'cast'], count: attempts, concurrency: 1, timeoutMs: 5_000, prefix: `intruder${k}` }, { onEvents: route }));
      }
      bad.push(await g.start('plain', 'sender', { url: `zmq://?matchmaker=local:${dir}&connect_timeout=2000`, topic, ops: ['call', 'cast'], count: attempts, concurrency: 1, timeoutMs: 5_000, prefix: 'plain' }, { onEvents: route }));
      const done = bad.map((p) => p.next('finished', 300_000).catch((err: unknown) => err as Error));
      for (const p of bad) p.send({ cmd: 'go' });
      const ends = await Promise.all(done);
      // An intruder that died mid-way reported what it got to; its remaining attempts never ran.
      const died = ends.filter((e) => e instanceof Error).length;
      // Let anything that did get through reach the endpoint's report: ask the server to drain.
      await g.procs[0]?.request('drain', 10_000).catch(() => undefined);
      const c = control.counts(0);
      return intruders.counts(
        g.crashes().length,
        note(
          `${bad.length} unauthorized clients (3 wrong keys, 1 without CURVE), ${attempts} attempts each (call, cast in turn)`,
          died > 0 && `${died} of them died before finishing`,
          `allowed client: ${c.resolved}/${c.sent} resolved, ${c.received} handled`,
          `intruders rejected ${formatRejected(intruders.rejectedByClass())}`,
          errorsNote(intruders),
          crashNote(g),
        ),
        { allowedSent: c.sent, allowedResolved: c.resolved, allowedReceived: c.received, attemptsPlanned: bad.length * attempts },
      );
    } finally {
      await g.stopAll();
    }
  },
};

export const zmqAckedKill: Scenario = {
  name: 'zmq-acked-kill',
  needs: [],
  async run(size): Promise<FaultCounts> {
    const perClient = size === 'full' ? 20_000 : 1_000;
    const url = `zmq://?matchmaker=local:${nsDir()}&acks=true&ack_timeout=500&connect_timeout=1000&heartbeat_interval=200`;
    const topic = freshTopic('acked');
    const ledger = new Ledger();
    const g = new ProcGroup();
    try {
      const servers: Proc[] = [];
      for (let k = 0; k < 3; k++) servers.push(await g.start(`server${k}`, 'server', { url, topic, servers: [`s${k}`], workMs: 20 }, { onEvents: (e) => ledger.apply(e), countLines: COUNT_LINES }));
      const clients: Proc[] = [];
      for (let k = 0; k < 2; k++) clients.push(await g.start(`client${k}`, 'sender', { url, topic, ops: ['cast'], count: perClient, concurrency: 50, timeoutMs: 10_000, maxMs: 300_000, prefix: `c${k}` }, { onEvents: (e) => ledger.apply(e) }));
      const finished = clients.map((c) => c.next('finished', 360_000));
      for (const c of clients) c.send({ cmd: 'go' });
      await until('half of the casts to be acked', () => ledger.ok.size >= perClient, 120_000);
      const victim = servers[1] as Proc;
      const handledBeforeKill = ledger.deliveries.size;
      const resolvedAtKill = ledger.ok.size;
      await victim.kill9();
      await Promise.all(finished);
      // core's stop() waits for the casts in flight: afterwards every handled cast is reported.
      for (const s of servers) if (s.alive) await s.request('drain', 30_000);
      return ledger.counts(
        g.crashes().length,
        note(
          `server1 killed -9 with ${resolvedAtKill} of ${2 * perClient} casts acked and ${handledBeforeKill} handled`,
          `lost ids e.g. ${ledger.lostIds().slice(0, 3).join(', ') || 'none'}`,
          g.lineCount('sendFailed') > 0 && `servers logged ${g.lineCount('sendFailed')} replies/acks they could not send (${g.lineCount('ebusy')} EBUSY)`,
          errorsNote(ledger),
          crashNote(g),
        ),
      );
    } finally {
      await g.stopAll();
    }
  },
};

export const zmqFrozenServer: Scenario = {
  name: 'zmq-frozen-server',
  needs: [],
  async run(size): Promise<FaultCounts> {
    const heartbeatTimeout = 500;
    // Frozen for three heartbeat timeouts: clients must have given up on it by then.
    const freezeMs = size === 'full' ? 10_000 : 3 * heartbeatTimeout;
    const url = `zmq://?matchmaker=local:${nsDir()}&acks=true&ack_timeout=400&heartbeat_interval=100&heartbeat_timeout=${heartbeatTimeout}&connect_timeout=1000`;
    const topic = freshTopic('frozen');
    const ledger = new Ledger();
    const g = new ProcGroup();
    try {
      const servers: Proc[] = [];
      for (let k = 0; k < 2; k++) servers.push(await g.start(`server${k}`, 'server', { url, topic, servers: [`s${k}`], workMs: 2 }, { onEvents: (e) => ledger.apply(e), countLines: COUNT_LINES }));
      const runMs = freezeMs + (size === 'full' ? 20_000 : 3_000);
      const client = await g.start('client', 'sender', { url, topic, ops: ['cast', 'call'], count: 10_000_000, concurrency: 20, intervalMs: 3, timeoutMs: 5_000, maxMs: runMs, prefix: 'f' }, { onEvents: (e) => ledger.apply(e) });
      const finished = client.next('finished', runMs + 60_000);
      client.send({ cmd: 'go' });
      await warmedUp(ledger, 200);
      const frozen = servers[1] as Proc;
      const sentAtFreeze = ledger.sent.size;
      frozen.signal('SIGSTOP');
      await sleep(freezeMs); // the fault's duration, not a wait for an event
      frozen.signal('SIGCONT');
      const sentAtThaw = ledger.sent.size;
      await finished;
      for (const s of servers) if (s.alive) await s.request('drain', 30_000);
      return ledger.counts(
        g.crashes().length,
        note(
          `server1 SIGSTOPped for ${freezeMs} ms (heartbeat_timeout ${heartbeatTimeout} ms) after ${sentAtFreeze} sends; ${sentAtThaw - sentAtFreeze} sent while frozen`,
          ledger.lostIds().length > 0 && `lost ids e.g. ${ledger.lostIds().slice(0, 3).join(', ')}`,
          g.lineCount('sendFailed') > 0 && `servers logged ${g.lineCount('sendFailed')} replies/acks they could not send (${g.lineCount('ebusy')} EBUSY)`,
          errorsNote(ledger),
          crashNote(g),
        ),
      );
    } finally {
      await g.stopAll();
    }
  },
};
