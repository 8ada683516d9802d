/**
 * The zmq-direct wire format. Every ZeroMQ message is [VERSION, record, record, ...]: the
 * version frame lets a rolling upgrade mix releases, and several records per message are how
 * messages queued for one peer in the same tick go out together. A record is one frame: a
 * kind byte, then JSON.
 */
import { MalformedMessage } from '@hybridbus/core';

export const VERSION = Buffer.from('HB1');

/** Client → server. */
export const CALL = 0x63; // 'c': { i, k, m: oslo request, t?: call-monitor ms }
export const CAST = 0x73; // 's': { k, m, i?: ack id }
export const FANOUT = 0x66; // 'f': { k, m, i? }
export const NOTIFY = 0x6e; // 'n': { k, pool, m: oslo notification, i? }
/** Server → client. */
export const REPLY = 0x72; // 'r': { i, m: oslo reply }
export const ACK = 0x6b; // 'k': { i }
export const NACK = 0x78; // 'x': { i, code, error }: refused, with the reason

export type Kind = typeof CALL | typeof CAST | typeof FANOUT | typeof NOTIFY | typeof REPLY | typeof ACK | typeof NACK;

export interface Body {
  /** Correlation id, unique per sender. */
  readonly i?: string;
  /** Name-service key the message is for. */
  readonly k?: string;
  /** The oslo dict. */
  readonly m?: Record<string, unknown>;
  readonly t?: number;
  readonly pool?: string;
  readonly code?: string;
  readonly error?: string;
}

export function encode(kind: Kind, body: Body): Buffer {
  // Kind bytes are ASCII, so one UTF-8 encode of the whole string does it without a copy.
  return Buffer.from(String.fromCharCode(kind) + JSON.stringify(body));
}

const KINDS = new Set<number>([CALL, CAST, FANOUT, NOTIFY, REPLY, ACK, NACK]);

export function decode(frame: Buffer): { kind: Kind; body: Body } {
  const kind = frame[0];
  if (kind === undefined || !KINDS.has(kind)) throw new MalformedMessage(`unknown record kind ${kind}`);
  let body: unknown;
  try {
    body = JSON.parse(frame.subarray(1).toString('utf8'));
  } catch (e) {
    throw new MalformedMessage('record body is not JSON', { cause: e });
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new MalformedMessage('record body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const f of ['i', 'k', 'pool', 'code', 'error'] as const) {
    if (b[f] !== undefined && typeof b[f] !== 'string') throw new MalformedMessage(`record field "${f}" must be a string`);
  }
  if (b['m'] !== undefined && (typeof b['m'] !== 'object' || b['m'] === null || Array.isArray(b['m']))) {
    throw new MalformedMessage('record field "m" must be an object');
  }
  return { kind: kind as Kind, body: b as Body };
}

/** Splits [VERSION, ...records]; throws MalformedMessage for another version. */
export function unpack(frames: readonly Buffer[]): Buffer[] {
  const [version, ...records] = frames;
  if (!version || !version.equals(VERSION)) {
    throw new MalformedMessage(`unsupported frame version ${JSON.stringify(version?.subarray(0, 16).toString('latin1') ?? null)}`);
  }
  return records;
}
