/**
 * Multi-server set-ups on top of launcher.ts, for fault tests (test/src/faults/):
 *
 *   const cluster = await startRabbitCluster();          // 3 RabbitMQ nodes, one cluster
 *   cluster.url({ rabbit_quorum_queue: true })           // rabbit://…:P1/?failover=amqp://…:P2/,amqp://…:P3/&…
 *   await cluster.nodes[0].kill();                       // kill -9 one node (data dir kept)
 *   await cluster.rejoin(0);                             // start it again; resolves once the cluster runs it
 *   await cluster.stop();
 *
 *   const group = await startRedisSentinelGroup();       // master + 1 replica + 3 Sentinels (quorum 2)
 *   group.url                                            // redis+sentinel://127.0.0.1:S1,…/hbmaster
 *   await group.master.kill();                           // Sentinels promote the replica
 *   await group.waitForNewMaster(group.master.port);     // the port the Sentinels now report
 *   await group.stop();
 *
 * Every node is an ordinary launcher server (own port, data dir, log, process group), so the
 * launcher's cleanup on exit and on signals covers these too. RabbitMQ nodes share one Erlang
 * cookie (RabbitMQOptions.erlangCookie) and join the first node with `rabbitmqctl join_cluster`;
 * they all run on 127.0.0.1 as `<name>@localhost`, with their Erlang distribution on loopback.
 */
import { randomBytes } from 'node:crypto';

import {
  startRabbitMQ,
  startRedis,
  startRedisSentinel,
  type RabbitMQOptions,
  type RabbitMQServer,
  type RedisSentinelServer,
  type RedisServer,
} from './launcher.js';
import { LOOPBACK, waitFor } from './ports.js';
import { infoFields, pairs, resp, respOk } from './resp.js';

// ---------------------------------------------------------------------------
// RabbitMQ cluster
// ---------------------------------------------------------------------------

export interface RabbitCluster {
  /** The nodes; nodes[0] is the one the others joined. */
  readonly nodes: readonly RabbitMQServer[];
  /**
   * A rabbit:// URL for every node: the first (or `first`) in the authority, the others in
   * `failover=`, then the given query options.
   */
  url(query?: Record<string, string | number | boolean>, first?: number): string;
  /** `rabbitmqctl` against a running node (the first one that is). */
  ctl(args: readonly string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** Node names the cluster reports as running (asked of a running node). */
  runningNodes(): Promise<string[]>;
  /** Starts node i again after kill()/stop-less crash; resolves once the cluster reports it running. */
  rejoin(i: number): Promise<void>;
  /** Kills every node (their data is thrown away) and removes the data dirs. */
  stop(): Promise<void>;
}

export interface RabbitClusterOptions extends RabbitMQOptions {
  /** Nodes (default 3). */
  size?: number;
}

/**
 * Starts `size` RabbitMQ nodes in parallel with one shared cookie, then joins nodes 2..n to
 * node 1 (stop_app, reset, join_cluster, start_app), one at a time as RabbitMQ's docs do it.
 * Resolves once every node reports all of them running. Plugins default to none here.
 */
export async function startRabbitCluster(opts: RabbitClusterOptions = {}): Promise<RabbitCluster> {
  const { size = 3, ...nodeOpts } = opts;
  const cookie = randomBytes(20).toString('hex').toUpperCase();
  const started = await Promise.allSettled(
    Array.from({ length: size }, () => startRabbitMQ({ plugins: [], nodeNamePrefix: 'hbc', ...nodeOpts, erlangCookie: cookie })),
  );
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stopAll = async (): Promise<void> => {
    // The data is thrown away, so a graceful stop (quorum queues hand over leadership node by
    // node) would only cost time: kill, then stop() removes the data dirs.
    await Promise.allSettled(nodes.map((n) => (n.running ? n.kill() : undefined)));
    await Promise.allSettled(nodes.map((n) => n.stop()));
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stopAll();
    throw failed.reason;
  }
  const first = nodes[0] as RabbitMQServer;
  try {
    for (const node of nodes.slice(1)) {
      await node.ctl(['stop_app']);
      await node.ctl(['reset']);
      await node.ctl(['join_cluster', first.nodeName]);
      await node.ctl(['start_app']);
      await node.ctl(['await_startup'], { timeoutMs: 90_000 });
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  const running = (): RabbitMQServer => {
    const n = nodes.find((x) => x.running);
    if (!n) throw new Error('RabbitMQ cluster: no node is running');
    return n;
  };
  const cluster: RabbitCluster = {
    nodes,
    url(query = {}, firstIndex = 0) {
      const order = [...nodes.slice(firstIndex), ...nodes.slice(0, firstIndex)];
      const hostPort = (n: RabbitMQServer): string => `${LOOPBACK}:${n.port}`;
      const q = new URLSearchParams();
      if (order.length > 1) q.set('failover', order.slice(1).map((n) => `amqp://guest:guest@${hostPort(n)}/`).join(','));
      for (const [k, v] of Object.entries(query)) q.set(k, String(v));
      return `rabbit://guest:guest@${hostPort(order[0] as RabbitMQServer)}/?${q.toString()}`;
    },
    ctl: (args, o) => running().ctl(args, o),
    async runningNodes() {
      const status = JSON.parse(await running().ctl(['cluster_status', '--formatter', 'json'])) as { running_nodes?: string[] };
      return status.running_nodes ?? [];
    },
    async rejoin(i) {
      const node = nodes[i];
      if (!node) throw new Error(`RabbitMQ cluster: no node ${i}`);
      await node.restart(); // after kill(): just starts it; it rejoins from its own mnesia dir
      await waitFor(async () => (await cluster.runningNodes()).includes(node.nodeName), {
        timeoutMs: 60_000,
        intervalMs: 250,
        what: `${node.nodeName} to be reported running by the cluster`,
      });
    },
    stop: stopAll,
  };
  try {
    await waitFor(async () => (await cluster.runningNodes()).length === size, {
      timeoutMs: 60_000,
      intervalMs: 250,
      what: `all ${size} RabbitMQ nodes to be reported running`,
    });
  } catch (err) {
    await stopAll();
    throw err;
  }
  return cluster;
}

// ---------------------------------------------------------------------------
// Redis master + replicas + Sentinels
// ---------------------------------------------------------------------------

export interface RedisSentinelGroup {
  /** The master at start (after a failover, a replica is master: see masterPort()). */
  readonly master: RedisServer;
  readonly replicas: readonly RedisServer[];
  readonly sentinels: readonly RedisSentinelServer[];
  readonly masterName: string;
  /** redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,…/<masterName> */
  readonly url: string;
  /** The master port a majority of the running Sentinels report, or null if they disagree or do not answer. */
  masterPort(): Promise<number | null>;
  /** Waits until a majority of Sentinels report a master other than `oldPort`, and it answers as a master; resolves with its port. */
  waitForNewMaster(oldPort: number, timeoutMs?: number): Promise<number>;
  /** Stops Sentinels first (so they do not fail over while the servers go), then the servers. */
  stop(): Promise<void>;
}

export interface RedisSentinelGroupOptions {
  replicas?: number;
  sentinels?: number;
  /** Default: a majority of the Sentinels. */
  quorum?: number;
  masterName?: string;
  /** Sentinel's down-after-milliseconds (default 1000) and failover-timeout (default 10000). */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
}

/**
 * Starts a master, `replicas` replicas of it (default 1) and `sentinels` Sentinels (default 3,
 * quorum a majority) with a short down-after; resolves once every replica's link is up and
 * every Sentinel knows all replicas and the other Sentinels, because a Sentinel that has not
 * yet seen a replica (it learns them from the master's INFO) or its peers (hello messages every
 * 2 s) cannot fail over.
 */
export async function startRedisSentinelGroup(opts: RedisSentinelGroupOptions = {}): Promise<RedisSentinelGroup> {
  const nReplicas = opts.replicas ?? 1;
  const nSentinels = opts.sentinels ?? 3;
  const masterName = opts.masterName ?? 'hbmaster';
  const started: Array<RedisServer | RedisSentinelServer> = [];
  const stopAll = async (): Promise<void> => {
    const sentinels = started.filter((s) => s.kind === 'redis-sentinel');
    await Promise.allSettled(sentinels.map((s) => s.stop()));
    await Promise.allSettled(started.filter((s) => s.kind !== 'redis-sentinel').map((s) => s.stop()));
  };
  try {
    const master = await startRedis();
    started.push(master);
    const replicas: RedisServer[] = [];
    for (let i = 0; i < nReplicas; i++) {
      // No 5 s wait before the first (diskless) sync, Redis 7's default.
      const r = await startRedis({ args: ['--replicaof', LOOPBACK, String(master.port), '--repl-diskless-sync-delay', '0'] });
      started.push(r);
      replicas.push(r);
    }
    await waitFor(async () => {
      for (const r of replicas) if (infoFields(await respOk(r.port, ['INFO', 'replication']))['master_link_status'] !== 'up') return false;
      return true;
    }, { timeoutMs: 15_000, intervalMs: 50, what: 'the replicas to sync with the master' });

    const config = [
      `sentinel down-after-milliseconds ${masterName} ${opts.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${masterName} ${opts.failoverTimeoutMs ?? 10_000}`,
    ];
    const quorum = opts.quorum ?? Math.floor(nSentinels / 2) + 1;
    const sentinels = await Promise.all(Array.from({ length: nSentinels }, () => startRedisSentinel(master, { masterName, quorum, config })));
    started.push(...sentinels);
    await waitFor(async () => {
      for (const s of sentinels) {
        const reps = await respOk(s.port, ['SENTINEL', 'replicas', masterName]);
        const peers = await respOk(s.port, ['SENTINEL', 'sentinels', masterName]);
        if (!Array.isArray(reps) || reps.length < nReplicas || !Array.isArray(peers) || peers.length < nSentinels - 1) return false;
        if (reps.some((r) => /s_down|disconnected/.test(pairs(r)['flags'] ?? ''))) return false;
      }
      return true;
    }, { timeoutMs: 30_000, intervalMs: 200, what: 'every Sentinel to know the replicas and the other Sentinels' });

    const masterPort = async (): Promise<number | null> => {
      const votes = new Map<number, number>();
      const live = sentinels.filter((s) => s.running);
      for (const s of live) {
        const v = await resp(s.port, ['SENTINEL', 'get-master-addr-by-name', masterName]).catch(() => null);
        if (Array.isArray(v) && v.length === 2) votes.set(Number(v[1]), (votes.get(Number(v[1])) ?? 0) + 1);
      }
      for (const [port, n] of votes) if (n > live.length / 2) return port;
      return null;
    };
    return {
      master,
      replicas,
      sentinels,
      masterName,
      url: `redis+sentinel://${sentinels.map((s) => `${LOOPBACK}:${s.port}`).join(',')}/${masterName}`,
      masterPort,
      waitForNewMaster: (oldPort, timeoutMs = 30_000) =>
        waitFor(
          async () => {
            const port = await masterPort();
            if (port === null || port === oldPort) return null;
            const role = await resp(port, ['ROLE']).catch(() => null);
            return Array.isArray(role) && role[0] === 'master' ? port : null;
          },
          { timeoutMs, intervalMs: 100, what: `the Sentinels to promote a new master (old: ${oldPort})` },
        ),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
