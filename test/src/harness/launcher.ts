/**
 * Real-server launcher for tests (in the spirit of nats.js's nst/src/launcher.ts).
 *
 * Starts throw-away Redis, RabbitMQ, AMQP 1.0 and etcd servers on free 127.0.0.1 ports, each
 * with a private temporary data directory, and tears them down again:
 *
 *   const redis = await startRedis();            // redis://127.0.0.1:PORT
 *   const rabbit = await startRabbitMQ();        // amqp://guest:guest@127.0.0.1:PORT/ (+ AMQP 1.0 on the same port)
 *   const sentinel = await startRedisSentinel(redis); // redis+sentinel://127.0.0.1:PORT/<masterName>
 *   const broker = await startProtonBroker();    // amqp://127.0.0.1:PORT, a Qpid Proton example broker (AMQP 1.0
 *                                                // queues only; { flavour: 'python' } for the Python one)
 *   const avail = qdrouterdAvailable();          // { bin } or { reason } (Debian has no qdrouterd: skip with it)
 *   const router = await startQdrouterd();       // amqp://127.0.0.1:PORT, a standalone Qpid Dispatch Router
 *                                                // distributing oslo's AMQP 1.0 addresses as a router network does
 *   const etcd = await startEtcd();              // etcd://127.0.0.1:PORT, one etcd node (client + peer port on loopback)
 *   const cluster = await startEtcdCluster(3);   // .url etcd://127.0.0.1:C1,…,C3; .members[i] stop/kill/restart
 *   ...
 *   await rabbit.restart();                      // same port, same node name, same mnesia dir
 *   await redis.kill();                          // SIGKILL ("crash"), data dir kept; restart() brings it back
 *   await redis.stop(); await rabbit.stop();     // graceful stop, whole process tree gone, data dir removed
 *
 * or, per test file / describe():
 *
 *   const servers = sharedServers({ redis: () => startRedis(), rabbit: () => startRabbitMQ() });
 *   test('x', () => use(servers.redis.url));
 *
 * Several servers together (a 3-node RabbitMQ cluster, Redis with a replica and Sentinels) are
 * in cluster.ts, built from these.
 *
 * Process model
 * - Every server is spawned detached (its own process group, pgid = pid). stop()
 *   sends SIGTERM to the group, waits up to a grace period, then SIGKILLs the
 *   group *and* every descendant (Erlang's helper processes such as
 *   erl_child_setup/inet_gethost run in their own sessions, so a group kill
 *   alone would not reach them). It resolves only when the spawned process has
 *   exited, no descendant is left (zombies don't count, see below) and the port
 *   can be bound again.
 * - stdout/stderr go to `<dataDir>/server.log`, never to the test output.
 * - Readiness is protocol-level: Redis must answer a RESP PING with +PONG; a
 *   Sentinel must answer SENTINEL get-master-addr-by-name with its master's address;
 *   RabbitMQ must answer the AMQP 0-9-1 protocol header with a connection.start
 *   method frame (an open port alone is not enough). RabbitMQ also opens its
 *   AMQP listener *before* its plugins (amqp1_0, ...) are started, so it
 *   additionally has to have logged "Server startup complete" for this boot.
 *   A Proton broker and qdrouterd must answer the AMQP 1.0 protocol header with
 *   an AMQP 1.0 (or SASL) header. An etcd member must answer a v3 KV range request
 *   (POST /v3/kv/range on its client port), which it only serves with a leader.
 * - Failed starts reject with an error that includes the tail of the server's
 *   output; a start that lost a port race (EADDRINUSE) is retried on new ports.
 * - Cleanup on failure/interrupt: all servers of this process are kept in a
 *   registry. On process 'exit' they are SIGKILLed synchronously and their data
 *   directories removed; on SIGINT/SIGTERM/SIGHUP they are stopped (bounded
 *   wait) and the process exits with 128+signal (130/143/129). A second signal
 *   exits immediately (the 'exit' hook still kills everything). The handlers
 *   are installed once, lazily, when the first server is spawned. Nothing can
 *   clean up after a SIGKILL of the test process itself.
 * - epmd: the first Erlang node started on the machine starts the Erlang port
 *   mapper daemon (`epmd -daemon`, 127.0.0.1:4369 because ERL_EPMD_ADDRESS is
 *   set). It daemonizes out of our process tree, is shared by all nodes and is
 *   deliberately left running.
 * - Zombies: inside some containers PID 1 does not reap orphans, so the Erlang
 *   helpers stay around as zombies after the VM exits. Liveness checks read
 *   /proc and treat zombies as dead.
 *
 * Environment knobs
 * - HYBRIDBUS_TEST_KEEP_DATA=1   keep data directories (logs, mnesia) after stop/exit for debugging
 * - REDIS_SERVER_BIN, RABBITMQ_SERVER_BIN, QDROUTERD_BIN, ETCD_BIN   override the server executables
 * - QDROUTERD_PYTHONPATH         qdrouterd's Python modules, if a hand-built router needs them found
 * - PROTON_EXAMPLES_DIR          Proton's examples (default /usr/share/proton/examples, from the Debian
 *                                package libqpid-proton11-dev-examples); the C++ broker is compiled from
 *                                them once per source into <tmpdir>/hybridbus-proton-broker-<uid>/
 *
 * Only Node built-ins are used; everything listens on and talks to 127.0.0.1 only.
 *
 * Modules: this file is the entry (and sharedServers()); process.ts spawns, kills process trees,
 * reads /proc and keeps the registry with its exit/signal cleanup; managed-server.ts is the
 * RunningServer lifecycle every kind shares; redis.ts, sentinel.ts, rabbitmq.ts, proton-broker.ts,
 * qdrouterd.ts and etcd.ts start one kind (etcd.ts also a cluster of members).
 */
import { after, before } from 'node:test';

import type { RunningServer } from './managed-server.js';

export { freePort } from './ports.js';
export { isProcessAlive, processTree } from './process.js';
export { activeServers, stopAllServers, type RunningServer, type ServerKind, type StartOptions } from './managed-server.js';
export { startRedis, type RedisOptions, type RedisServer } from './redis.js';
export { startRedisSentinel, type RedisSentinelOptions, type RedisSentinelServer } from './sentinel.js';
export { startRabbitMQ, type RabbitMQOptions, type RabbitMQServer } from './rabbitmq.js';
export { startProtonBroker, type ProtonBrokerFlavour, type ProtonBrokerOptions, type ProtonBrokerServer } from './proton-broker.js';
export { etcdGateway, etcdMetrics, etcdRevokeAllLeases, startEtcd, startEtcdCluster, type EtcdCluster, type EtcdOptions, type EtcdServer } from './etcd.js';
export { OSLO_ADDRESSES, qdrouterdAvailable, startQdrouterd, type QdrouterdDistribution, type QdrouterdOptions, type QdrouterdServer } from './qdrouterd.js';

// ---------------------------------------------------------------------------
// Sharing servers across the tests of a file / describe()
// ---------------------------------------------------------------------------

type Factories = Record<string, () => Promise<RunningServer>>;
export type SharedServers<F extends Factories> = { readonly [K in keyof F]: Awaited<ReturnType<F[K]>> };

/**
 * Registers before()/after() hooks in the current node:test scope (file or
 * describe) that start the given servers in parallel once and stop them at
 * the end. Returns an object whose properties are the running servers
 * (accessing one before it has started throws).
 *
 *   describe('rpc over rabbit', () => {
 *     const s = sharedServers({ rabbit: () => startRabbitMQ(), redis: () => startRedis() });
 *     test('call', async () => { ... s.rabbit.url ... });
 *   });
 */
export function sharedServers<F extends Factories>(factories: F): SharedServers<F> {
  const started = new Map<string, RunningServer>();
  const view = {} as SharedServers<F>;
  const keys = Object.keys(factories);
  for (const key of keys) {
    Object.defineProperty(view, key, {
      enumerable: true,
      get(): RunningServer {
        const s = started.get(key);
        if (!s) throw new Error(`sharedServers: '${key}' is not running (did its before() hook fail or not run yet?)`);
        return s;
      },
    });
  }
  const stopAll = async (): Promise<void> => {
    const servers = [...started.values()];
    started.clear();
    await Promise.all(servers.map((s) => s.stop()));
  };
  before(async () => {
    const results = await Promise.allSettled(keys.map((k) => factories[k]!()));
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') started.set(keys[i]!, r.value);
    });
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await stopAll();
      throw failed.reason;
    }
  });
  after(stopAll);
  return view;
}
