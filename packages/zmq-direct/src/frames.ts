/**
 * The zmq-direct wire format. Every ZeroMQ message is [VERSION, frame, frame, ...]: the version
 * frame lets a rolling upgrade mix releases. A frame packs one or more records separated by
 * "\n"; a record is a kind byte, then JSON (which never contains a raw newline). Packing the
 * records queued for one peer in the same tick into one frame is how they go out together:
 * zeromq.js pays per frame, so a frame per record cost a client about a seventh of its CPU.
 */
import { MalformedMessage, MessageTooLarge } from '@hybridbus/core';
import { notificationFromCompact, notificationToOslo, requestFromCompact, requestToOslo } from '@hybridbus/core/driver';

export const VERSION = Buffer.from('HB2');

/**
 * The newest record format this build reads, said in its name-service records (`wire`): 3 adds
 * requests (`q`) and notifications (`n`) in compact form (core's message.ts) beside oslo's dict
 * (`m`), which a record without `wire` (an older server) is sent.
 */
export const WIRE = 3;

/** Client → server. */
export const CALL = 0x63; // 'c': { i, k, m: oslo request | q: compact request, t?: call-monitor ms }
export const CAST = 0x73; // 's': { k, m | q, i?: ack id, a?: 1 ack on receipt, r?: 1 sent before }
export const FANOUT = 0x66; // 'f': { k, m, i?, a?, r? }
export const NOTIFY = 0x6e; // 'n': { k, pool, m: oslo notification | n: compact notification, i?, a?, r? }
/** Server → client. */
export const REPLY = 0x72; // 'r': { i, m: oslo reply }
export const ACK = 0x6b; // 'k': { i, w?: 1 still being handled: keep waiting }
export const NACK = 0x78; // 'x': { i, code, error }: refused, with the reason

export type Kind = typeof CALL | typeof CAST | typeof FANOUT | typeof NOTIFY | typeof REPLY | typeof ACK | typeof NACK;

export interface Body {
  /** Correlation id, unique per sender. */
  readonly i?: string;
  /** Name-service key the message is for. */
  readonly k?: string;
  /** The oslo dict. */
  readonly m?: Record<string, unknown>;
  /** A request in compact form (format 3), instead of `m`. */
  readonly q?: readonly unknown[];
  /** A notification in compact form (format 3), instead of `m`. */
  readonly n?: readonly unknown[];
  readonly t?: number;
  readonly pool?: string;
  readonly code?: string;
  readonly error?: string;
  /** 1: ack on receipt rather than once handled. */
  readonly a?: number;
  /** 1: a resend (the receiver may have it already). */
  readonly r?: number;
  /** 1 on an ACK: not handled yet, keep waiting. */
  readonly w?: number;
}

/**
 * A record, with its size in bytes once UTF-8 encoded (what max_message_size limits), or an
 * upper bound of it (3 bytes per UTF-16 unit) when even that is within the limit: counting the
 * exact size of every record showed in a busy client's profile, and packing needs only a bound.
 */
export interface Encoded {
  readonly text: string;
  readonly bytes: number;
  /**
   * The same record in oslo's dict form, for a host whose record does not say it reads this
   * one's format (routing.ts); made on first use. Throws MessageTooLarge if that form is over
   * the limit. Absent: the record is in that form already.
   */
  readonly older?: () => Encoded;
}

/** A record in compact form (`q` or `n`: format 3) that can give its oslo-dict form (older()). */
export function encodeCompact(kind: Kind, body: Body, maxBytes: number): Encoded {
  return new CompactRecord(encodeChecked(kind, body, maxBytes), maxBytes);
}

// A class, not an object spread with a closure: those were 7 % of a client's CPU per cast.
class CompactRecord implements Encoded {
  readonly text: string;
  readonly bytes: number;
  private dict: Encoded | undefined;

  constructor(
    e: Encoded,
    private readonly maxBytes: number,
  ) {
    this.text = e.text;
    this.bytes = e.bytes;
  }

  /**
   * Made from this record's text, not from the application's objects: the values an older host
   * gets are those the message had when it was sent, as a newer host's are.
   */
  older(): Encoded {
    if (this.dict) return this.dict;
    const { kind, body } = decode(this.text);
    const { q, n, ...rest } = body;
    const m = q !== undefined ? requestToOslo(requestFromCompact(q)) : notificationToOslo(notificationFromCompact(n));
    return (this.dict = encodeChecked(kind, { ...rest, m }, this.maxBytes));
  }
}

/**
 * `e` marked as a resend (`"r":1` added), in the same form(s). Throws MessageTooLarge when the
 * mark takes it over `maxBytes`.
 */
export function resent(e: Encoded, maxBytes: number): Encoded {
  const f = checked(sized(`${e.text.slice(0, -1)},"r":1}`, maxBytes), maxBytes, ' (marked as a resend)');
  return e instanceof CompactRecord ? new CompactRecord(f, maxBytes) : f;
}

/** A record's text with its size (or the bound of it, see Encoded). */
function sized(text: string, maxBytes: number): Encoded {
  const bound = text.length * 3;
  return { text, bytes: bound <= maxBytes ? bound : Buffer.byteLength(text) };
}

/** `f`, or MessageTooLarge if it is over `maxBytes` (`what` says more of it). */
function checked(f: Encoded, maxBytes: number, what = ''): Encoded {
  if (f.bytes > maxBytes) throw new MessageTooLarge(`message of ${f.bytes} bytes${what} exceeds max_message_size=${maxBytes}`);
  return f;
}

export function encode(kind: Kind, body: Body, maxBytes: number): Encoded {
  return sized(String.fromCharCode(kind) + JSON.stringify(body), maxBytes);
}

/** encode(), refusing a record over `maxBytes` (MessageTooLarge) before it is queued anywhere. */
export function encodeChecked(kind: Kind, body: Body, maxBytes: number): Encoded {
  return checked(encode(kind, body, maxBytes), maxBytes);
}

/**
 * `base` (a record without an id) with the id `i` as its first field. The copies of one fanout
 * or notification differ only by their ack ids: the body is encoded once and each copy gets its
 * id spliced in, instead of a JSON.stringify of the whole message per copy.
 */
export function withId(base: Encoded, i: string, maxBytes: number): Encoded {
  const rest = base.text.slice(2);
  return checked(sized(`${base.text.charAt(0)}{"i":${JSON.stringify(i)}${rest === '}' ? '' : ','}${rest}`, maxBytes), maxBytes);
}

/**
 * Packs records into as few frames as fit `maxFrameBytes` each (a record larger than that,
 * which senders refuse before queueing, would still get a frame of its own). Frames are
 * strings: zeromq.js encodes a string into memory ZeroMQ frees itself, where a Buffer over
 * 128 bytes must be released back on the JS thread.
 */
export function pack(records: readonly Encoded[], maxFrameBytes: number): string[] {
  const frames: string[] = [];
  let texts: string[] = [];
  let size = 0;
  for (const r of records) {
    if (texts.length > 0 && size + 1 + r.bytes > maxFrameBytes) {
      frames.push(texts.join('\n'));
      texts = [];
      size = 0;
    }
    size += (texts.length > 0 ? 1 : 0) + r.bytes;
    texts.push(r.text);
  }
  if (texts.length > 0) frames.push(texts.length === 1 ? (texts[0] as string) : texts.join('\n'));
  return frames;
}

/** Longest correlation id (ours are about a dozen characters) and name-service key accepted. */
export const MAX_ID = 128;
export const MAX_KEY = 1024;

const KINDS = new Set<number>([CALL, CAST, FANOUT, NOTIFY, REPLY, ACK, NACK]);
const badString = (v: unknown, name: string): string | undefined => (v === undefined || typeof v === 'string' ? undefined : name);

export function decode(record: string): { kind: Kind; body: Body } {
  const kind = record.charCodeAt(0);
  if (!KINDS.has(kind)) throw new MalformedMessage(`unknown record kind ${Number.isNaN(kind) ? 'none' : kind}`);
  let body: unknown;
  try {
    body = JSON.parse(record.slice(1));
  } catch (e) {
    throw new MalformedMessage('record body is not JSON', { cause: e });
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new MalformedMessage('record body must be a JSON object');
  const b = body as Record<string, unknown>;
  // Field by field, not a loop over names: a keyed load per name was megamorphic and showed.
  const bad = badString(b['i'], 'i') ?? badString(b['k'], 'k') ?? badString(b['pool'], 'pool') ?? badString(b['code'], 'code') ?? badString(b['error'], 'error');
  if (bad) throw new MalformedMessage(`record field "${bad}" must be a string`);
  // Ids and keys come back in answers and are remembered: a sender cannot make them large.
  if (typeof b['i'] === 'string' && b['i'].length > MAX_ID) throw new MalformedMessage(`record id of ${b['i'].length} characters (at most ${MAX_ID})`);
  if (typeof b['k'] === 'string' && b['k'].length > MAX_KEY) throw new MalformedMessage(`record key of ${b['k'].length} characters (at most ${MAX_KEY})`);
  const m = b['m'];
  if (m !== undefined && (typeof m !== 'object' || m === null || Array.isArray(m))) {
    throw new MalformedMessage('record field "m" must be an object');
  }
  const notArray = b['q'] !== undefined && !Array.isArray(b['q']) ? 'q' : b['n'] !== undefined && !Array.isArray(b['n']) ? 'n' : undefined;
  if (notArray) throw new MalformedMessage(`record field "${notArray}" must be an array`);
  return { kind: kind as Kind, body: b as Body };
}

/** The records of [VERSION, ...frames]; throws MalformedMessage for another version. */
export function unpack(frames: readonly Buffer[]): string[] {
  const [version, ...packed] = frames;
  if (!version || !version.equals(VERSION)) {
    throw new MalformedMessage(`unsupported frame version ${JSON.stringify(version?.subarray(0, 16).toString('latin1') ?? null)}`);
  }
  const records: string[] = [];
  for (const frame of packed) {
    const text = frame.toString('utf8');
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      records.push(text.slice(start, nl));
      start = nl + 1;
    }
    records.push(text.slice(start));
  }
  return records;
}
