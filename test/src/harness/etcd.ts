/**
 * Throw-away etcd servers for tests (launcher.ts): one node, or a cluster of members, each on free
 * 127.0.0.1 client and peer ports with a private data dir. A node is ready once a KV range request
 * through its HTTP/JSON gateway (`POST /v3/kv/range`, the v3 API) succeeds, which needs a leader:
 * an open port alone is not enough. Raft timings are short (heartbeat 10 ms, election 100 ms) so a
 * cluster elects a leader at once after losing one, and leases as short as 1 s are granted as asked
 * (etcd raises a TTL below 1.5 election timeouts to that minimum).
 */
import http from 'node:http';
import path from 'node:path';

import { freePorts, LOOPBACK } from './ports.js';
import { findExecutable, ManagedServer, quickStartSpec, startWithRetry, type RunningServer, type StartOptions } from './managed-server.js';

export interface EtcdServer extends RunningServer {
  readonly kind: 'etcd';
  /** The member's raft (peer) port. */
  readonly peerPort: number;
  /** The member's name in its cluster. */
  readonly name: string;
}

export interface EtcdOptions extends StartOptions {
  /** Extra etcd arguments, e.g. ['--auto-compaction-retention', '1']. */
  args?: string[];
}

export interface EtcdCluster {
  readonly members: readonly EtcdServer[];
  /** etcd://127.0.0.1:C1,127.0.0.1:C2,… (every member's client port). */
  readonly url: string;
  stop(): Promise<void>;
}

/** etcd: `opts.binary`, else ETCD_BIN, /usr/bin/etcd or PATH (Debian package etcd-server). */
const etcdBinary = (opts: StartOptions): string => opts.binary ?? findExecutable([process.env['ETCD_BIN'], '/usr/bin/etcd'], 'etcd');

/**
 * POSTs `body` to the member's v3 HTTP/JSON gateway at `path` (e.g. /v3/kv/range); resolves with
 * the parsed reply of a 200, or null (another status, no answer within `timeoutMs`, not JSON).
 */
export function etcdGateway(port: number, path: string, body: object, timeoutMs = 1000): Promise<Record<string, unknown> | null> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: LOOPBACK, port, method: 'POST', path, headers: { 'content-type': 'application/json' }, timeout: timeoutMs },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => {
          try {
            resolve(res.statusCode === 200 ? (JSON.parse(text) as Record<string, unknown>) : null);
          } catch {
            resolve(null);
          }
        });
        res.on('error', () => resolve(null));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
    req.end(JSON.stringify(body));
  });
}

/**
 * The member's own figures from its Prometheus endpoint (GET /metrics on the client port): metric
 * name (labels included, as printed) → value. Rejects when etcd does not answer within `timeoutMs`.
 */
export function etcdMetrics(port: number, timeoutMs = 2000): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: LOOPBACK, port, path: '/metrics', timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`etcd on port ${port}: GET /metrics answered ${res.statusCode}`));
        const out = new Map<string, number>();
        for (const line of text.split('\n')) {
          const m = /^([^#\s][^\s]*)\s+(\S+)$/.exec(line);
          if (m) out.set(m[1]!, Number(m[2]));
        }
        resolve(out);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`etcd on port ${port}: no answer to GET /metrics within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** True once the member answers a v3 KV range request (served only with a leader). */
export async function etcdRangeOk(port: number, timeoutMs = 1000): Promise<boolean> {
  const reply = await etcdGateway(port, '/v3/kv/range', { key: Buffer.from('hybridbus-harness-probe').toString('base64') }, timeoutMs);
  return typeof reply?.['header'] === 'object';
}

/** Revokes every lease etcd holds (their keys go with them), as if each had expired; resolves with how many. */
export async function etcdRevokeAllLeases(port: number): Promise<number> {
  const reply = await etcdGateway(port, '/v3/lease/leases', {});
  if (!reply) throw new Error(`etcd on port ${port} did not list its leases`);
  const leases = (reply['leases'] ?? []) as Array<{ ID: string }>;
  for (const { ID } of leases) {
    if (!(await etcdGateway(port, '/v3/lease/revoke', { ID }))) throw new Error(`etcd on port ${port} did not revoke lease ${ID}`);
  }
  return leases.length;
}

interface MemberPlan {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
}

class ManagedEtcd extends ManagedServer implements EtcdServer {
  declare readonly kind: 'etcd';
  constructor(
    plan: MemberPlan,
    dataDir: string,
    spec: ConstructorParameters<typeof ManagedServer>[4],
  ) {
    super('etcd', plan.clientPort, `etcd://${LOOPBACK}:${plan.clientPort}`, dataDir, spec);
    this.peerPort = plan.peerPort;
    this.name = plan.name;
  }
  readonly peerPort: number;
  readonly name: string;
}

const peerUrl = (m: MemberPlan): string => `http://${LOOPBACK}:${m.peerPort}`;

/** Starts one member of `cluster` (all members must be started together: none is ready without a quorum). */
function startMember(plan: MemberPlan, cluster: readonly MemberPlan[], token: string, opts: EtcdOptions, retry: boolean): Promise<ManagedEtcd> {
  const binary = etcdBinary(opts);
  return startWithRetry('etcd', retry ? undefined : plan.clientPort, async (dataDir) => {
    // A retried single node gets new ports (a lost port race); a cluster member keeps its planned ones.
    const me = retry && !cluster.length ? await planSingle() : plan;
    const all = cluster.length ? cluster : [me];
    const clientUrl = `http://${LOOPBACK}:${me.clientPort}`;
    const args = [
      '--name', me.name,
      '--data-dir', path.join(dataDir, 'data'),
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl(me),
      '--initial-advertise-peer-urls', peerUrl(me),
      '--initial-cluster', all.map((m) => `${m.name}=${peerUrl(m)}`).join(','),
      '--initial-cluster-token', token,
      '--initial-cluster-state', 'new', // ignored on a restart: the data dir knows the cluster
      '--heartbeat-interval', '10',
      '--election-timeout', '100',
      '--logger', 'zap',
      '--log-outputs', 'stderr',
      ...(opts.args ?? []),
    ];
    const spec = quickStartSpec('etcd', binary, args, opts, (p) => etcdRangeOk(p), 'a v3 KV range request');
    return new ManagedEtcd(me, dataDir, spec);
  });
}

async function planSingle(): Promise<MemberPlan> {
  const [clientPort, peerPort] = await freePorts(2);
  return { name: 'hb-etcd', clientPort: clientPort!, peerPort: peerPort! };
}

/** Starts a private single-node etcd on free 127.0.0.1 ports; resolves once it answers a range request. */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdServer> {
  const plan = opts.port === undefined ? await planSingle() : { name: 'hb-etcd', clientPort: opts.port, peerPort: (await freePorts(1))[0]! };
  return startMember(plan, [], `hb-${process.pid}-${plan.clientPort}`, opts, opts.port === undefined);
}

/**
 * Starts an etcd cluster of `size` members (default 3) on free 127.0.0.1 ports; resolves once every
 * member answers a range request. stop() stops them all. A member's stop grace is 1 s unless
 * `opts.stopGraceMs` says otherwise: after another member was killed, a leader that is stopped
 * together with the rest may wait seconds for a leadership transfer that cannot happen.
 */
export async function startEtcdCluster(size = 3, opts: Omit<EtcdOptions, 'port'> = {}): Promise<EtcdCluster> {
  opts = { stopGraceMs: 1000, ...opts };
  const ports = await freePorts(2 * size);
  const plans = Array.from({ length: size }, (_, i) => ({ name: `hb-etcd-${i + 1}`, clientPort: ports[2 * i]!, peerPort: ports[2 * i + 1]! }));
  const token = `hb-${process.pid}-${ports[0]}`;
  const results = await Promise.allSettled(plans.map((p) => startMember(p, plans, token, opts, false)));
  const members = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.allSettled(members.map((m) => m.stop()));
  };
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { members, url: `etcd://${members.map((m) => `${LOOPBACK}:${m.port}`).join(',')}`, stop };
}
