/**
 * A throw-away redis-server for tests (launcher.ts): a free 127.0.0.1 port, a private data dir,
 * ready once it answers PING; no persistence unless asked (AOF).
 */
import { freePort, LOOPBACK, redisPing } from './ports.js';
import { findExecutable, ManagedServer, quickStartSpec, startWithRetry, type RunningServer, type StartOptions } from './managed-server.js';

export interface RedisServer extends RunningServer {
  readonly kind: 'redis';
}

export interface RedisOptions extends StartOptions {
  /** Enable AOF persistence (default false; RDB snapshots are always off). */
  appendonly?: boolean;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
}

/** redis-server (Redis and Sentinel): `opts.binary`, else REDIS_SERVER_BIN, /usr/bin/redis-server or PATH. */
export const redisServerBinary = (opts: StartOptions): string =>
  opts.binary ?? findExecutable([process.env['REDIS_SERVER_BIN'], '/usr/bin/redis-server'], 'redis-server');


/** Starts a private redis-server on a free 127.0.0.1 port; resolves once it answers PING. */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const binary = redisServerBinary(opts);
  return startWithRetry('redis', opts.port, async (dataDir) => {
    const port = opts.port ?? (await freePort());
    const args = [
      '--port', String(port),
      '--bind', LOOPBACK,
      '--protected-mode', 'yes',
      '--dir', dataDir,
      '--save', '',
      '--appendonly', opts.appendonly ? 'yes' : 'no',
      '--daemonize', 'no',
      '--logfile', '', // log to stdout, which goes to server.log
      ...(opts.args ?? []),
    ];
    const probe = async (p: number): Promise<boolean> => {
      const reply = await redisPing(p, 1000);
      return reply === '+PONG' || (reply?.startsWith('-NOAUTH') ?? false);
    };
    const spec = quickStartSpec('redis', binary, args, opts, probe, 'PING with +PONG');
    return new ManagedServer('redis', port, `redis://${LOOPBACK}:${port}`, dataDir, spec) as ManagedServer & RedisServer;
  });
}

