/**
 * Loopback-only networking helpers for the test harness: free ports, raw
 * byte-level probes and deadline-based polling. Node built-ins only.
 *
 * Everything here talks to 127.0.0.1 exclusively.
 */
import net from 'node:net';

export const LOOPBACK = '127.0.0.1' as const;

/** Asks the kernel for a currently unused TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host: LOOPBACK, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close((err) => (err ? reject(err) : port > 0 ? resolve(port) : reject(new Error('freePort: no port assigned'))));
    });
  });
}

/** Several distinct free ports (all held open at once while choosing, so they differ). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      srv.unref();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: LOOPBACK, port: 0, exclusive: true }, () => resolve());
      });
      const addr = srv.address();
      if (typeof addr !== 'object' || addr === null) throw new Error('freePorts: no port assigned');
      ports.push(addr.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/**
 * True when a listener could bind 127.0.0.1:port right now (same SO_REUSEADDR
 * semantics as the servers we launch, so TIME_WAIT leftovers don't count).
 */
export function isPortBindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ host: LOOPBACK, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export type ConnectResult = 'connected' | 'refused' | 'timeout' | 'error';

/** Tries a TCP connect to 127.0.0.1:port and immediately closes it. */
export function tryConnect(port: number, timeoutMs = 1000): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: LOOPBACK, port });
    const done = (r: ConnectResult): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    sock.once('connect', () => done('connected'));
    sock.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'error'));
  });
}

/**
 * Connects to 127.0.0.1:port, writes `payload`, and collects the reply until
 * `complete(buffer)` says it has enough, the peer closes, or the timeout hits.
 * Never throws: connection problems resolve with whatever was received
 * (possibly an empty buffer) and `error` set.
 */
export function exchange(
  port: number,
  payload: Uint8Array | string,
  complete: (received: Buffer) => boolean,
  timeoutMs = 2000,
): Promise<{ data: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const sock = net.connect({ host: LOOPBACK, port });
    const finish = (error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const data = Buffer.concat(chunks, size);
      resolve(error === undefined ? { data } : { data, error });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    sock.once('connect', () => sock.write(payload));
    sock.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (complete(Buffer.concat(chunks, size))) finish();
    });
    sock.once('end', () => finish(size === 0 ? 'closed by peer' : undefined));
    sock.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
  });
}

/** Sends a RESP `PING` and returns the first reply line (e.g. `+PONG`, `-LOADING ...`), or null. */
export async function redisPing(port: number, timeoutMs = 1000): Promise<string | null> {
  const { data } = await exchange(port, '*1\r\n$4\r\nPING\r\n', (b) => b.includes('\r\n'), timeoutMs);
  const end = data.indexOf('\r\n');
  return end < 0 ? null : data.subarray(0, end).toString('latin1');
}

export interface AmqpConnectionStart {
  readonly classId: number; // 10 = connection
  readonly methodId: number; // 10 = start
  readonly versionMajor: number;
  readonly versionMinor: number;
}

/** The AMQP 0-9-1 protocol header. */
export const AMQP_091_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x00, 0x09, 0x01]);
/** The AMQP 1.0 (plain, no SASL) protocol header. */
export const AMQP_10_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x01, 0x00, 0x00]);
/** The AMQP 1.0 SASL layer protocol header. */
export const AMQP_10_SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x03, 0x01, 0x00, 0x00]);

/**
 * Opens an AMQP 0-9-1 connection far enough to receive the server's first
 * frame and returns it if, and only if, it is a `connection.start` method
 * frame (frame type 1, channel 0, class 10, method 10). Returns null otherwise
 * (refused, closed, a protocol-header reply, garbage, timeout).
 */
export async function amqpConnectionStart(port: number, timeoutMs = 2000): Promise<AmqpConnectionStart | null> {
  const { data } = await exchange(port, AMQP_091_HEADER, (b) => b.length >= 13, timeoutMs);
  if (data.length < 13) return null;
  const frameType = data.readUInt8(0);
  const channel = data.readUInt16BE(1);
  const classId = data.readUInt16BE(7);
  const methodId = data.readUInt16BE(9);
  if (frameType !== 1 || channel !== 0 || classId !== 10 || methodId !== 10) return null;
  return { classId, methodId, versionMajor: data.readUInt8(11), versionMinor: data.readUInt8(12) };
}

/** Sends an 8-byte protocol header and returns the server's first 8 bytes (or fewer on close/timeout). */
export async function protocolHeaderReply(port: number, header: Uint8Array, timeoutMs = 2000): Promise<Buffer> {
  const { data } = await exchange(port, header, (b) => b.length >= 8, timeoutMs);
  return data.subarray(0, 8);
}

/**
 * Sends an AMQP 1.0 protocol header (by default the plain one; or AMQP_10_SASL_HEADER) and says
 * which AMQP 1.0 header the server answers with: 'amqp' (it speaks AMQP 1.0 without SASL), 'sasl'
 * (it wants, or offers, a SASL layer first), or null (refused, closed, another protocol such as
 * 0-9-1's header, garbage, timeout). Either answer proves an AMQP 1.0 server behind the port.
 */
export async function amqp10HeaderReply(port: number, header: Uint8Array = AMQP_10_HEADER, timeoutMs = 2000): Promise<'amqp' | 'sasl' | null> {
  const reply = await protocolHeaderReply(port, header, timeoutMs);
  if (reply.equals(AMQP_10_HEADER)) return 'amqp';
  if (reply.equals(AMQP_10_SASL_HEADER)) return 'sasl';
  return null;
}

export class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
}

/**
 * Polls `probe` until it returns a truthy value or `timeoutMs` elapses.
 * `abort()` is checked before every attempt; if it returns a string the wait
 * fails immediately with that message (e.g. "the process exited").
 */
export async function waitFor<T>(
  probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  opts: { timeoutMs: number; intervalMs?: number; what: string; abort?: () => string | undefined },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 50;
  for (;;) {
    const aborted = opts.abort?.();
    if (aborted !== undefined) throw new Error(`${opts.what}: ${aborted}`);
    const v = await probe();
    if (v) return v;
    const left = deadline - Date.now();
    if (left <= 0) throw new DeadlineError(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}`);
    await new Promise((r) => setTimeout(r, Math.min(interval, left)));
  }
}
