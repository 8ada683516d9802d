/**
 * A throw-away RabbitMQ node for tests (launcher.ts): a free 127.0.0.1 port (AMQP 0-9-1, and 1.0
 * through rabbitmq_amqp1_0), its own node name, cookie, mnesia and logs in a private data dir,
 * shielded from /etc/rabbitmq; ready once this boot logged "Server startup complete" and the
 * port answers the AMQP header with connection.start.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { amqpConnectionStart, freePorts, LOOPBACK } from './ports.js';
import { findExecutable, ManagedServer, startWithRetry, type LaunchSpec, type RunningServer, type StartOptions } from './managed-server.js';
import { nextServerNumber } from './process.js';

export interface RabbitMQServer extends RunningServer {
  readonly kind: 'rabbitmq';
  /** Erlang node name, e.g. hb1234x1r0f3a@localhost; kept across restart(). */
  readonly nodeName: string;
  /** Erlang distribution port (RABBITMQ_DIST_PORT). */
  readonly distPort: number;
  /** Enabled plugins. */
  readonly plugins: readonly string[];
  /** Runs `rabbitmqctl -n <node> ...args` against this node (same HOME/cookie); resolves with stdout. */
  ctl(args: readonly string[], opts?: { timeoutMs?: number }): Promise<string>;
}

export interface RabbitMQOptions extends StartOptions {
  /** Plugins to enable (default ['rabbitmq_amqp1_0']; pass [] for none). */
  plugins?: string[];
  /** Extra rabbitmq.conf (new-style sysctl format) settings, e.g. { 'heartbeat': 5 }. */
  config?: Record<string, string | number | boolean>;
  /** Contents for advanced.config (Erlang terms), if needed. */
  advancedConfig?: string;
  /** Node name prefix (default 'hb'); a unique suffix and @localhost are appended. */
  nodeNamePrefix?: string;
  /**
   * Erlang cookie, written to `<dataDir>/.erlang.cookie` (HOME is the data dir) before the first
   * start, so nodes given the same cookie can form a cluster (cluster.ts); default: Erlang
   * creates a random one per node.
   */
  erlangCookie?: string;
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

function readFrom(file: string, offset: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= offset) return '';
      const buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

class ManagedRabbitMQ extends ManagedServer implements RabbitMQServer {
  declare readonly kind: 'rabbitmq';
  constructor(
    port: number,
    dataDir: string,
    spec: LaunchSpec,
    readonly nodeName: string,
    readonly distPort: number,
    readonly plugins: readonly string[],
    private readonly ctlPath: string,
  ) {
    super('rabbitmq', port, `amqp://guest:guest@${LOOPBACK}:${port}/`, dataDir, spec);
  }

  ctl(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    const env = this.spec.env;
    return new Promise((resolve, reject) => {
      execFile(
        this.ctlPath,
        ['-n', this.nodeName, ...args],
        { env, cwd: this.dataDir, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message}\n${stderr}`));
          else resolve(stdout);
        },
      );
    });
  }
}

function rabbitConfValue(v: string | number | boolean): string {
  return typeof v === 'string' ? v : String(v);
}

/**
 * Starts a private RabbitMQ node on a free 127.0.0.1 port (AMQP 0-9-1, plus
 * AMQP 1.0 on the same port via rabbitmq_amqp1_0 unless `plugins` says
 * otherwise); resolves once it answers the AMQP handshake with connection.start.
 */
export async function startRabbitMQ(opts: RabbitMQOptions = {}): Promise<RabbitMQServer> {
  // Debian's /usr/sbin/rabbitmq-server is a wrapper that `su`s to the rabbitmq
  // user, cd's to /var/lib/rabbitmq and redirects output to /var/log/rabbitmq
  // when run as root; the real start script lives in /usr/lib/rabbitmq/bin.
  const binary =
    opts.binary ??
    findExecutable(
      [process.env['RABBITMQ_SERVER_BIN'], '/usr/lib/rabbitmq/bin/rabbitmq-server', '/usr/lib/rabbitmq/sbin/rabbitmq-server'],
      'rabbitmq-server',
    );
  const ctlPath = path.join(path.dirname(binary), 'rabbitmqctl');
  const plugins = opts.plugins ?? ['rabbitmq_amqp1_0'];

  return startWithRetry('rabbitmq', opts.port, async (dataDir) => {
    const [p1, p2] = await freePorts(opts.port === undefined ? 2 : 1);
    const port = opts.port ?? p1!;
    const distPort = opts.port === undefined ? p2! : p1!;
    const n = nextServerNumber();
    const rand = Math.floor(Math.random() * 0xffff).toString(16).padStart(4, '0');
    const nodeName = `${opts.nodeNamePrefix ?? 'hb'}${process.pid}x${n}r${rand}@localhost`;

    const mnesiaBase = path.join(dataDir, 'mnesia');
    const logBase = path.join(dataDir, 'log');
    const confDir = path.join(dataDir, 'conf.d');
    await Promise.all([fsp.mkdir(mnesiaBase), fsp.mkdir(logBase), fsp.mkdir(confDir)]);
    const enabledPluginsFile = path.join(dataDir, 'enabled_plugins');
    await fsp.writeFile(enabledPluginsFile, `[${plugins.join(',')}].\n`);
    const configFile = path.join(dataDir, 'rabbitmq.conf');
    const conf: Record<string, string | number | boolean> = {
      'listeners.tcp.default': `${LOOPBACK}:${port}`,
      'loopback_users.guest': true,
      ...opts.config,
    };
    await fsp.writeFile(
      configFile,
      `# generated by test/src/harness/launcher.ts\n${Object.entries(conf)
        .map(([k, v]) => `${k} = ${rabbitConfValue(v)}`)
        .join('\n')}\n`,
    );
    const advancedConfigFile = path.join(dataDir, 'advanced.config');
    if (opts.advancedConfig !== undefined) await fsp.writeFile(advancedConfigFile, opts.advancedConfig);
    const confEnvFile = path.join(dataDir, 'rabbitmq-env.conf'); // empty: shields us from /etc/rabbitmq/rabbitmq-env.conf
    await fsp.writeFile(confEnvFile, '');
    // Erlang refuses a cookie file that others can read.
    if (opts.erlangCookie !== undefined) await fsp.writeFile(path.join(dataDir, '.erlang.cookie'), opts.erlangCookie, { mode: 0o400 });

    // Start from the caller's environment minus anything that would steer the broker elsewhere.
    const base: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (k.startsWith('RABBITMQ_') || k === 'NOTIFY_SOCKET' || k === 'ERL_EPMD_ADDRESS') continue;
      base[k] = v;
    }
    const loopbackDist = '-kernel inet_dist_use_interface {127,0,0,1}';
    const env: NodeJS.ProcessEnv = {
      ...base,
      HOME: dataDir, // own ~/.erlang.cookie
      ERL_EPMD_ADDRESS: LOOPBACK,
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_NODE_IP_ADDRESS: LOOPBACK,
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort), // default would be NODE_PORT+20000, which overflows for high ports
      RABBITMQ_MNESIA_BASE: mnesiaBase,
      RABBITMQ_LOG_BASE: logBase,
      RABBITMQ_ENABLED_PLUGINS_FILE: enabledPluginsFile,
      RABBITMQ_CONFIG_FILE: configFile,
      RABBITMQ_CONFIG_FILES: confDir, // default /etc/rabbitmq/conf.d
      RABBITMQ_ADVANCED_CONFIG_FILE: advancedConfigFile,
      RABBITMQ_CONF_ENV_FILE: confEnvFile,
      RABBITMQ_PID_FILE: path.join(dataDir, 'rabbitmq.pid'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: loopbackDist, // Erlang distribution listens on 127.0.0.1 only
      RABBITMQ_CTL_ERL_ARGS: loopbackDist,
      ...opts.env,
    };
    // Readiness: RabbitMQ starts its AMQP listener before the plugins (e.g.
    // amqp1_0) are up, so wait for the "Server startup complete" log line of
    // *this* boot (logs are appended across restarts, hence the offsets) and
    // then require a real connection.start on the AMQP port.
    const logsToWatch = [path.join(logBase, `${nodeName}.log`), path.join(dataDir, 'server.log')];
    const offsets = new Map<string, number>();
    const bootCompleted = (): boolean => logsToWatch.some((f) => /Server startup complete/.test(readFrom(f, offsets.get(f) ?? 0)));
    const spec: LaunchSpec = {
      kind: 'rabbitmq',
      command: binary,
      args: [],
      env,
      beforeLaunch: () => {
        for (const f of logsToWatch) offsets.set(f, fileSize(f));
      },
      probe: async (p) => bootCompleted() && (await amqpConnectionStart(p, 2000)) !== null,
      probeName: 'the AMQP 0-9-1 header with connection.start after "Server startup complete"',
      probeIntervalMs: 100,
      startTimeoutMs: opts.startTimeoutMs ?? 90_000,
      stopGraceMs: opts.stopGraceMs ?? 15_000,
      extraLogs: () => [path.join(logBase, `${nodeName}.log`)],
    };
    return new ManagedRabbitMQ(port, dataDir, spec, nodeName, distPort, plugins, ctlPath);
  }) as Promise<RabbitMQServer>;
}
