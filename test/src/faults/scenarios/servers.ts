/**
 * Fault scenarios around servers the project depends on: RabbitMQ (single node restarted, and a
 * 3-node cluster losing a node) and Redis as zmq's name service (down for a while, and a
 * Sentinel failover). Servers come from the test launcher (test/src/harness/launcher.ts,
 * cluster.ts); every client, server and listener is a child process (child.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startRabbitCluster, startRedisSentinelGroup } from '../../harness/cluster.js';
import { startRabbitMQ, startRedis, type RabbitMQServer } from '../../harness/launcher.js';
import { waitFor } from '../../harness/ports.js';
import { respOk } from '../../harness/resp.js';
import { freshTopic } from '../../util.js';
import { crashNote, errorsNote, note, until, warmedUp } from '../kit.js';
import { ProcGroup, type Proc } from '../procs.js';
import { Ledger, type FaultCounts, type LedgerEvents, type Scenario } from '../types.js';

/** Reconnect within a second (rabbit-brokered's defaults back off to 30 s: README, rabbit options). */
const FAST_RECONNECT = { rabbit_retry_interval: 0.2, rabbit_retry_backoff: 0.2, rabbit_interval_max: 1 };

const rabbitUrl = (server: RabbitMQServer, query: Record<string, string | number | boolean>): string =>
  `${server.url.replace(/^amqp:/, 'rabbit:')}?${new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString()}`;

interface QueueRow {
  name: string;
  type?: string;
  consumers?: number;
  messages?: number;
  messages_unacknowledged?: number;
}
interface BindingRow {
  source_name: string;
  destination_name: string;
  routing_key: string;
}

const listQueues = async (ctl: (a: string[]) => Promise<string>): Promise<QueueRow[]> =>
  JSON.parse(await ctl(['list_queues', 'name', 'type', 'consumers', 'messages', 'messages_unacknowledged', '--formatter', 'json'])) as QueueRow[];
const listBindings = async (ctl: (a: string[]) => Promise<string>): Promise<BindingRow[]> =>
  JSON.parse(await ctl(['list_bindings', 'source_name', 'destination_name', 'routing_key', '--formatter', 'json'])) as BindingRow[];

const listConsumers = async (ctl: (a: string[]) => Promise<string>): Promise<Array<{ queue_name: string }>> =>
  JSON.parse(await ctl(['list_consumers', 'queue_name', '--formatter', 'json'])) as Array<{ queue_name: string }>;

/** Consumers per queue, of the queues in `names`. */
function consumerCounts(rows: ReadonlyArray<{ queue_name: string }>, names: ReadonlySet<string>): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of rows) if (names.has(r.queue_name)) m.set(r.queue_name, (m.get(r.queue_name) ?? 0) + 1);
  return m;
}
const sum = (m: ReadonlyMap<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

/** Waits until every resolved send was handled (bounded; the counts say what was not). */
async function allHandled(ledger: Ledger, timeoutMs: number): Promise<void> {
  await until('every resolved send to be handled', () => ledger.lostIds().length === 0, timeoutMs).catch(() => undefined);
}

export const rabbitRestartNotify: Scenario = {
  name: 'rabbit-restart-notify',
  needs: ['rabbitmq'],
  async run(size): Promise<FaultCounts> {
    const count = size === 'full' ? 30_000 : 3_000;
    const restarts = 3;
    const rabbit = await startRabbitMQ({ plugins: [] });
    const ledger = new Ledger();
    const g = new ProcGroup();
    try {
      // Durable queues keep the pool's messages over a restart; without the default queue a
      // notification goes only to the pool's queue (README, notification_default_queue).
      const url = rabbitUrl(rabbit, { amqp_durable_queues: true, notification_default_queue: false, ...FAST_RECONNECT });
      const topic = freshTopic('notify');
      const pool = freshTopic('pool');
      for (let k = 0; k < 2; k++) await g.start(`listener${k}`, 'listener', { url, topic, pool }, { onEvents: (e) => ledger.apply(e) });
      const notifier = await g.start('notifier', 'sender', { url, topic, ops: ['notify'], count, concurrency: 20, intervalMs: 1, maxMs: 600_000, settleMs: 60_000, prefix: 'n' }, { onEvents: (e) => ledger.apply(e) });
      const finished = notifier.next('finished', 700_000);
      notifier.send({ cmd: 'go' });
      const restartMs: number[] = [];
      for (let r = 1; r <= restarts; r++) {
        await until(`${(r * count) / (restarts + 1)} notifications to be confirmed`, () => ledger.ok.size >= (r * count) / (restarts + 1), 120_000);
        const t0 = performance.now();
        await rabbit.restart();
        restartMs.push(performance.now() - t0);
      }
      const end = await finished;
      await allHandled(ledger, 60_000);
      // Nothing left in the pool's queue (ready or unacked): no late duplicate is on its way.
      await waitQueuesEmpty((a) => rabbit.ctl(a), 30_000);
      for (const p of g.procs.filter((x) => x.role === 'listener')) await p.request('drain', 30_000);
      return ledger.counts(
        g.crashes().length,
        note(
          `${restarts} graceful restarts (${restartMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')}) of one node; pool of 2 listeners; durable queues`,
          Number(end['unsettled']) > 0 && `${Number(end['unsettled'])} notifications never settled`,
          errorsNote(ledger),
          crashNote(g),
        ),
      );
    } finally {
      await g.stopAll();
      await rabbit.stop();
    }
  },
};

/** Waits until no queue but reply queues holds a message, ready or unacknowledged. */
async function waitQueuesEmpty(ctl: (a: string[]) => Promise<string>, timeoutMs: number): Promise<void> {
  let busy: QueueRow[] = [];
  await waitFor(
    async () => {
      busy = (await listQueues(ctl)).filter((q) => !q.name.startsWith('reply_') && ((q.messages ?? 0) > 0 || (q.messages_unacknowledged ?? 0) > 0));
      return busy.length === 0;
    },
    { timeoutMs, intervalMs: 200, what: 'queues to be empty' },
  ).catch(() => {
    throw new Error(`queues still hold messages: ${busy.map((q) => `${q.name}=${q.messages}/${q.messages_unacknowledged}`).join(', ')}`);
  });
}

export const redisOutage: Scenario = {
  name: 'redis-outage',
  needs: ['redis'],
  async run(size): Promise<FaultCounts> {
    const outageMs = size === 'full' ? 30_000 : 5_000;
    const redis = await startRedis();
    const ledger = new Ledger();
    const g = new ProcGroup();
    try {
      // A 1 s lookup cache: the outage outlasts it, so lookups are answered from the stale cache.
      const url = `zmq://?matchmaker=${encodeURIComponent(redis.url)}&ns_ttl=3000&ns_cache=1000&heartbeat_interval=200`;
      const topic = freshTopic('ns');
      const servers: Proc[] = [];
      for (let k = 0; k < 2; k++) servers.push(await g.start(`server${k}`, 'server', { url, topic, servers: [`s${k}`] }, { onEvents: (e) => ledger.apply(e) }));
      const senders = [
        await g.start('client', 'sender', { url, topic, ops: ['call'], count: 10_000_000, concurrency: 10, intervalMs: 10, timeoutMs: 3_000, maxMs: outageMs + 60_000, prefix: 'topic' }, { onEvents: (e) => ledger.apply(e) }),
        await g.start('client-s1', 'sender', { url, topic, server: 's1', ops: ['call'], count: 10_000_000, concurrency: 5, intervalMs: 20, timeoutMs: 3_000, maxMs: outageMs + 60_000, prefix: 'server' }, { onEvents: (e) => ledger.apply(e) }),
      ];
      const finished = senders.map((s) => s.next('finished', outageMs + 90_000));
      for (const s of senders) s.send({ cmd: 'go' });
      await warmedUp(ledger, 100);
      await redis.kill();
      const atKill = ledger.sent.size;
      await sleep(outageMs); // the outage's duration, not a wait for an event
      const atRestart = ledger.sent.size;
      await redis.restart(); // empty: no persistence; servers must register again
      const key = `hb:ns:openstack/${topic}`;
      const addresses = servers.map((s) => String(s.ready['address']));
      let registered = 0;
      await waitFor(
        async () => {
          const members = (await respOk(redis.port, ['ZRANGE', key, '0', '-1'])) as string[];
          registered = addresses.filter((a) => members.some((m) => m.includes(`"${a}"`))).length;
          return registered === addresses.length;
        },
        { timeoutMs: 15_000, intervalMs: 100, what: 'both servers to register again' },
      ).catch(() => undefined); // `registered` says how many did
      const okBefore = ledger.ok.size;
      await until('50 more calls after the restart', () => ledger.ok.size >= okBefore + 50, 20_000).catch(() => undefined);
      for (const s of senders) s.send({ cmd: 'stop' });
      await Promise.all(finished);
      for (const s of servers) await s.request('drain', 30_000);
      const during = [...ledger.sent].slice(atKill, atRestart);
      const okDuring = during.filter((id) => ledger.ok.has(id)).length;
      return ledger.counts(
        g.crashes().length,
        note(
          `Redis killed for ${outageMs / 1000} s: ${okDuring}/${during.length} calls started meanwhile succeeded`,
          `${registered}/2 servers registered again after the restart`,
          errorsNote(ledger),
          crashNote(g),
        ),
        { sentDuringOutage: during.length, okDuringOutage: okDuring, reregistered: registered },
      );
    } finally {
      await g.stopAll();
      await redis.stop();
    }
  },
};

export const rabbitClusterFailover: Scenario = {
  name: 'rabbit-cluster-failover',
  needs: ['cluster'],
  async run(size): Promise<FaultCounts> {
    const scale = size === 'full' ? 10 : 1;
    const cluster = await startRabbitCluster();
    const ledger = new Ledger();
    const g = new ProcGroup();
    try {
      const url = cluster.url({ rabbit_quorum_queue: true, notification_default_queue: false, heartbeat_timeout_threshold: 10, ...FAST_RECONNECT });
      const topic = freshTopic('qq');
      const rpcTopic = freshTopic('qqrpc');
      const pool = freshTopic('pool');
      const on = { onEvents: (e: LedgerEvents) => ledger.apply(e) };
      for (let k = 0; k < 2; k++) await g.start(`listener${k}`, 'listener', { url, topic, pool }, on);
      await g.start('servers', 'server', { url, topic: rpcTopic, servers: ['s0', 's1'] }, on);
      // The flows run until `afterKillMs` after the kill; sends started `recoveredMs` after it
      // must all succeed (by then the clients have reconnected and the quorum queues have new leaders).
      const afterKillMs = size === 'full' ? 60_000 : 12_000;
      const recoveredMs = 8_000;
      const flow = { count: 1e9, maxMs: 600_000, settleMs: 60_000 };
      const senders = [
        await g.start('notifier', 'sender', { url, topic, ops: ['notify'], concurrency: 20, intervalMs: 2, prefix: 'n', ...flow }, on),
        await g.start('caster', 'sender', { url, topic: rpcTopic, ops: ['cast'], concurrency: 20, intervalMs: 4, prefix: 'cast', ...flow }, on),
        await g.start('caller', 'sender', { url, topic: rpcTopic, ops: ['call'], concurrency: 10, intervalMs: 10, timeoutMs: 15_000, prefix: 'call', ...flow }, on),
      ];

      // Before the flow: where the clients are connected (the failover list puts node 0 first)
      // and the topology they declared (rabbitmqctl takes a second or two per command).
      // (3.10's list_connections has no `node` item; every node has its own AMQP port.)
      const conns = JSON.parse(await cluster.ctl(['list_connections', 'port', '--formatter', 'json'])) as Array<{ port: number }>;
      const perNode = cluster.nodes.map((n) => conns.filter((c) => c.port === n.port).length);
      const victim = perNode.indexOf(Math.max(...perNode));
      const survivor = cluster.nodes.find((_, i) => i !== victim) as RabbitMQServer;
      const ctl = (a: string[]): Promise<string> => survivor.ctl(a);
      const quorumBefore = (await listQueues(ctl)).filter((q) => q.type === 'quorum');
      const names = new Set(quorumBefore.map((q) => q.name));
      const bindingsBefore = (await listBindings(ctl)).filter((b) => names.has(b.destination_name));
      const consumersBefore = consumerCounts(await listConsumers(ctl), names);

      const finished = senders.map((s) => s.next('finished', 700_000));
      for (const s of senders) s.send({ cmd: 'go' });
      await warmedUp(ledger, 1000 * scale, 60_000);
      const atKill = ledger.ok.size;
      await cluster.nodes[victim]?.kill();
      const killedAt = Date.now();
      await sleep(afterKillMs); // how long the flows run on after the kill, not a wait for an event
      for (const s of senders) s.send({ cmd: 'stop' });
      const ends = await Promise.all(finished);
      await allHandled(ledger, 60_000);

      // Recovery: the node restarts and rejoins; then the clients' queues, bindings and
      // consumers (asked of a node that was not killed) are what they were before. Not earlier:
      // until the killed node is back, quorum queues still list the consumers of its dead
      // channels (seen as double counts in an earlier run of this scenario).
      const t0 = performance.now();
      await cluster.rejoin(victim);
      const rejoinMs = performance.now() - t0;

      const key = (b: BindingRow): string => `${b.source_name}->${b.destination_name}:${b.routing_key}`;
      let missingQueues: QueueRow[] = [];
      let missingBindings: BindingRow[] = [];
      let fewerConsumers: string[] = [];
      let extraConsumers: string[] = [];
      let consumersAfter = new Map<string, number>();
      await waitFor(
        async () => {
          const queuesAfter = await listQueues(ctl);
          const bindingsAfter = await listBindings(ctl);
          consumersAfter = consumerCounts(await listConsumers(ctl), names);
          missingQueues = quorumBefore.filter((q) => !queuesAfter.some((a) => a.name === q.name && a.type === 'quorum'));
          missingBindings = bindingsBefore.filter((b) => !bindingsAfter.some((a) => key(a) === key(b)));
          fewerConsumers = [...consumersBefore].filter(([q, n]) => (consumersAfter.get(q) ?? 0) < n).map(([q, n]) => `${q} ${consumersAfter.get(q) ?? 0}/${n}`);
          extraConsumers = [...consumersAfter].filter(([q, n]) => n > (consumersBefore.get(q) ?? 0)).map(([q, n]) => `${q} ${n}/${consumersBefore.get(q) ?? 0}`);
          return missingQueues.length + missingBindings.length + fewerConsumers.length + extraConsumers.length === 0;
        },
        { timeoutMs: 30_000, intervalMs: 500, what: 'the topology to be back' },
      ).catch(() => undefined); // the counts below say what differs
      await waitQueuesEmpty(ctl, 30_000).catch(() => undefined);
      for (const p of g.procs.filter((x) => x.role !== 'sender')) await p.request('drain', 30_000);
      const unsettled = ends.reduce((n, e) => n + Number(e['unsettled']), 0);
      // Whether each flow recovered: failures among the sends started `recoveredMs` after the kill.
      const tail = (prefix: string): { failed: number; of: number } => {
        const late = [...ledger.sent].filter((id) => id.startsWith(`${prefix}-`) && (ledger.sentAt.get(id) ?? 0) >= killedAt + recoveredMs);
        return { failed: late.filter((id) => ledger.failed.has(id)).length, of: late.length };
      };
      const tails = { notify: tail('n'), cast: tail('cast'), call: tail('call') };
      const tailFailures = tails.notify.failed + tails.cast.failed + tails.call.failed;
      const tailSent = tails.notify.of + tails.cast.of + tails.call.of;
      return ledger.counts(
        g.crashes().length,
        note(
          `killed -9 node ${victim} (${perNode[victim]} of ${conns.length} client connections) with ${atKill} sends resolved`,
          `after: ${quorumBefore.length - missingQueues.length}/${quorumBefore.length} quorum queues, ${bindingsBefore.length - missingBindings.length}/${bindingsBefore.length} bindings, consumers ${sum(consumersAfter)} (before ${sum(consumersBefore)})`,
          missingQueues.length > 0 && `missing queues: ${missingQueues.map((q) => q.name).join(', ')}`,
          fewerConsumers.length > 0 && `fewer consumers (after/before): ${fewerConsumers.join(', ')}`,
          extraConsumers.length > 0 && `more consumers (after/before): ${extraConsumers.join(', ')}`,
          `sends started ${recoveredMs / 1000} s or more after the kill that failed: ${Object.entries(tails).map(([k, t]) => `${k} ${t.failed}/${t.of}`).join(', ')}`,
          `node back in the cluster ${(rejoinMs / 1000).toFixed(1)} s after its restart began`,
          unsettled > 0 && `${unsettled} sends never settled`,
          errorsNote(ledger),
          crashNote(g),
        ),
        { quorumQueues: quorumBefore.length, missingQueues: missingQueues.length, queuesWithFewerConsumers: fewerConsumers.length, queuesWithExtraConsumers: extraConsumers.length, missingBindings: missingBindings.length, victimConnections: perNode[victim] ?? 0, tailFailures, tailSent },
      );
    } finally {
      await g.stopAll();
      await cluster.stop();
    }
  },
};

export const sentinelFailover: Scenario = {
  name: 'sentinel-failover',
  needs: ['sentinel'],
  async run(size): Promise<FaultCounts> {
    const group = await startRedisSentinelGroup();
    const ledger = new Ledger();
    const g = new ProcGroup();
    try {
      const nsTtl = 3000;
      const url = `zmq://?matchmaker=${encodeURIComponent(group.url)}&ns_ttl=${nsTtl}&ns_cache=1000&heartbeat_interval=200`;
      const topic = freshTopic('sentinel');
      const on = { onEvents: (e: LedgerEvents) => ledger.apply(e) };
      const servers: Proc[] = [];
      for (let k = 0; k < 2; k++) servers.push(await g.start(`server${k}`, 'server', { url, topic, servers: [`s${k}`] }, on));
      const client = await g.start('client', 'sender', { url, topic, ops: ['call'], count: 10_000_000, concurrency: 10, intervalMs: 10, timeoutMs: 3_000, maxMs: 120_000, prefix: 'c' }, on);
      const finished = client.next('finished', 180_000);
      client.send({ cmd: 'go' });
      await warmedUp(ledger, 100);

      const oldPort = group.master.port;
      const t0 = performance.now();
      await group.master.kill();
      const newPort = await group.waitForNewMaster(oldPort, 30_000);
      const promotedAt = Date.now();
      const failoverMs = performance.now() - t0;

      // Written after the promotion: a record's score is its writer's clock + ns_ttl (packages/
      // nameservice/src/redis.ts), so a score past promotedAt + ns_ttl was written to the new
      // master, not replicated from the old one.
      const key = `hb:ns:openstack/${topic}`;
      const addresses = servers.map((s) => String(s.ready['address']));
      let refreshed = 0;
      await waitFor(
        async () => {
          const flat = (await respOk(newPort, ['ZRANGE', key, '0', '-1', 'WITHSCORES'])) as string[];
          refreshed = addresses.filter((a) => flat.some((m, i) => i % 2 === 0 && m.includes(`"${a}"`) && Number(flat[i + 1]) > promotedAt + nsTtl)).length;
          return refreshed === addresses.length;
        },
        { timeoutMs: 15_000, intervalMs: 100, what: 'both servers to write their records to the new master' },
      ).catch(() => undefined); // `refreshed` says how many did

      // A server that starts after the failover registers on the new master, and a new client finds it.
      await g.start('server2', 'server', { url, topic, servers: ['s2'] }, on);
      const fresh = new Ledger();
      const probe = await g.start('client-s2', 'sender', { url, topic, server: 's2', ops: ['call'], count: 20, concurrency: 1, timeoutMs: 5_000, prefix: 'new' }, { onEvents: (e) => (fresh.apply(e), ledger.apply(e)) });
      const probed = probe.next('finished', 60_000);
      probe.send({ cmd: 'go' });
      await probed;
      const okBefore = ledger.ok.size;
      await until('50 more calls after the failover', () => ledger.ok.size >= okBefore + 50, 20_000).catch(() => undefined);
      client.send({ cmd: 'stop' });
      await finished;
      for (const p of g.procs.filter((x) => x.role === 'server')) await p.request('drain', 30_000);
      return ledger.counts(
        g.crashes().length,
        note(
          `master killed -9; Sentinels promoted port ${newPort} in ${(failoverMs / 1000).toFixed(1)} s`,
          `${refreshed}/2 servers wrote their records to the new master`,
          `a server started after the failover: ${fresh.ok.size}/${fresh.sent.size} calls to it succeeded`,
          errorsNote(ledger),
          crashNote(g),
        ),
        { refreshedOnNewMaster: refreshed, newServerCallsOk: fresh.ok.size, newServerCallsSent: fresh.sent.size },
      );
    } finally {
      await g.stopAll();
      await group.stop();
    }
  },
};
