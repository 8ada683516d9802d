/**
 * The multicast_* options of zmq:// (parsed by options.ts) and what both ends derive from them:
 * the group of a name-service key and the string a server puts in its record so clients know
 * one datagram reaches it. A client multicasts to a server only when that string equals its own
 * for the key (same address, port, group and key id); every other server gets unicast copies.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';

export interface MulticastOptions {
  /** The group address and port every group of this transport uses ("239.192.0.1", 5555). */
  readonly address: string;
  readonly port: number;
  /** The interface (name or IPv4 address) datagrams leave and are received on; undefined: the default route's. */
  readonly interface: string | undefined;
  /** IP multicast TTL (hops): 1 keeps datagrams on the local network. */
  readonly ttl: number;
  /** AES-256-GCM key sealing every datagram (32 bytes); required with curve=true. */
  readonly key: Buffer | undefined;
  /** Datagrams per sender and group kept for repair (and out-of-order ones a receiver holds). */
  readonly window: number;
  /** How often a sender announces each active stream's last sequence number (ms). */
  readonly heartbeat: number;
  /** SO_RCVBUF of a receiver's socket (bytes); undefined: 8 MiB asked for (the kernel caps it at net.core.rmem_max). */
  readonly receiveBuffer: number | undefined;
  /** Configured group names by key ("exchange/topic"), instead of the hashed ones. */
  readonly groups: ReadonlyMap<string, string>;
}

/** A parse problem: the caller turns it into the ConfigError naming the option. */
export class OptionProblem {
  constructor(
    readonly expected: string,
    /** Never echo the value (keys). */
    readonly hide = false,
  ) {}
}

type Check<T> = (raw: string) => T | OptionProblem;

/** ZeroMQ group names are at most 15 characters (ZMQ_GROUP_MAX_LENGTH on some builds). */
export const MAX_GROUP = 15;
const GROUP = /^[A-Za-z0-9._-]{1,15}$/;

export const multicastEndpoint: Check<{ address: string; port: number }> = (raw) => {
  const m = /^udp:\/\/(\d+\.\d+\.\d+\.\d+):(\d{1,5})$/.exec(raw);
  const first = Number(m?.[1]?.split('.')[0]);
  const port = Number(m?.[2]);
  if (!m || !isIPv4(m[1] ?? '') || first < 224 || first > 239 || port < 1 || port > 65535) {
    return new OptionProblem('udp://A.B.C.D:PORT with an IPv4 multicast address (224.0.0.0/4; 239.0.0.0/8 for private use) and a port 1–65535');
  }
  return { address: m[1] as string, port };
};

export const multicastInterface: Check<string> = (raw) =>
  /^[A-Za-z0-9_.:-]{1,64}$/.test(raw) && !raw.includes(';') ? raw : new OptionProblem('an interface name (e.g. eth0, lo) or its IPv4 address');

/** 32 bytes: base64 (or base64url), or "@path" to a file holding those or the raw 32 bytes. */
export const multicastKey: Check<Buffer> = (raw) => {
  const expected = '32 bytes as base64, or @/path/to/file holding them (base64, or raw)';
  let text = raw;
  if (raw.startsWith('@')) {
    let data: Buffer;
    try {
      data = readFileSync(raw.slice(1));
    } catch (e) {
      return new OptionProblem(`${expected}; the file is not readable (${(e as Error & { code?: string }).code ?? 'unreadable'})`, true);
    }
    if (data.length === 32) return data;
    text = data.toString('utf8').trim();
  }
  if (!/^[A-Za-z0-9+/_-]{42,43}={0,2}$/.test(text)) return new OptionProblem(expected, true);
  const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return key.length === 32 ? key : new OptionProblem(expected, true);
};

export const multicastGroups: Check<ReadonlyMap<string, string>> = (raw) => {
  const groups = new Map<string, string>();
  for (const pair of raw.split(',').filter(Boolean)) {
    const eq = pair.lastIndexOf('=');
    const key = pair.slice(0, eq);
    const name = pair.slice(eq + 1);
    if (eq <= 0 || !GROUP.test(name)) return new OptionProblem('a comma-separated list of EXCHANGE/TOPIC=GROUP, GROUP being 1–15 of [A-Za-z0-9._-]');
    groups.set(key, name);
  }
  return groups;
};

/** The group of a name-service key: configured, or 15 characters of a hash (collisions are filtered by the key inside each message). */
export function groupOf(options: MulticastOptions, key: string): string {
  return options.groups.get(key) ?? createHash('sha256').update(key).digest('base64url').slice(0, MAX_GROUP);
}

/** Names the key in records without revealing it: peers with different keys never multicast to each other. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update('hybridbus multicast key id\0').update(key).digest('hex').slice(0, 16);
}

/** What a server that joined the key's group puts in its record (see the module comment). */
export function recordValue(options: MulticastOptions, key: string): string {
  return `udp://${options.address}:${options.port}#${groupOf(options, key)}${options.key ? `;key=${keyId(options.key)}` : ''}`;
}

/** The ZeroMQ endpoint the RADIO connects to (receivers bind the address and port themselves: receiver.ts). */
export function zmqEndpoint(options: MulticastOptions): string {
  return `udp://${options.interface !== undefined ? `${options.interface};` : ''}${options.address}:${options.port}`;
}
