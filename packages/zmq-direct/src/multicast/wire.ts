/**
 * Multicast datagrams. One layout for data and heartbeats, sent by RADIO and, unchanged, again
 * over TCP when a receiver asks for a repair, so both paths are checked the same way:
 *
 *   0  "HBM1"                magic and version
 *   4  type                  1 data, 2 heartbeat
 *   5  flags                 bit 0: sealed
 *   6  stream id (8)         sender id (4, random per sender) ‖ epoch (4, random per group, top bit 0)
 *  14  seq (u32)             data: the sequence number (from 1); heartbeat: a counter of its own
 *  18  body length (u32)     plaintext bytes (UDP truncates silently: a short body is dropped)
 *  22  repair address length (u8), then "host:port" of the sender's repair socket
 *   …  body                  data: a zmq-direct record; heartbeat: last seq (u32) ‖ oldest repairable seq (u32)
 *                            sealed: AES-256-GCM ciphertext ‖ 16-byte tag, the header as AAD
 *
 * The GCM nonce is stream id ‖ seq, with the epoch's top bit set for heartbeats: unique while
 * a stream's seq does not wrap (a sender starts a new epoch before it would).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export const DATA = 1;
export const BEAT = 2;
const MAGIC = 0x48424d31; // "HBM1"
const SEALED = 1;
const HEAD = 23;
const TAG = 16;

/**
 * Largest datagram sent: libzmq's UDP engine silently truncates a message whose group and body
 * exceed 8,192 bytes (MAX_UDP_MSG), and our group names are ≤ 15 characters. Larger fanouts
 * go by unicast.
 */
export const MAX_DATAGRAM = 8000;

export interface Datagram {
  readonly type: typeof DATA | typeof BEAT;
  /** The stream id as hex (map key) and as bytes. */
  readonly stream: string;
  readonly streamId: Buffer;
  readonly seq: number;
  readonly repair: string;
  /** Plaintext body. */
  readonly body: Buffer;
}

function nonce(streamId: Buffer, type: number, seq: number): Buffer {
  const n = Buffer.allocUnsafe(12);
  streamId.copy(n, 0, 0, 8);
  if (type === BEAT) n[4] = (n[4] as number) | 0x80;
  n.writeUInt32BE(seq, 8);
  return n;
}

export function encodeDatagram(type: typeof DATA | typeof BEAT, streamId: Buffer, seq: number, repair: string, body: Buffer, key: Buffer | undefined): Buffer {
  const addr = Buffer.from(repair, 'latin1');
  const head = Buffer.allocUnsafe(HEAD + addr.length);
  head.writeUInt32BE(MAGIC, 0);
  head[4] = type;
  head[5] = key ? SEALED : 0;
  streamId.copy(head, 6, 0, 8);
  head.writeUInt32BE(seq, 14);
  head.writeUInt32BE(body.length, 18);
  head[22] = addr.length;
  addr.copy(head, HEAD);
  if (!key) return Buffer.concat([head, body]);
  const cipher = createCipheriv('aes-256-gcm', key, nonce(streamId, type, seq));
  cipher.setAAD(head);
  return Buffer.concat([head, cipher.update(body), cipher.final(), cipher.getAuthTag()]);
}

/**
 * The datagram, or why it is refused: garbled, truncated, forged (fails authentication), or
 * sealed/unsealed when this end expects the other. Never throws on any input.
 */
export function decodeDatagram(buf: Buffer, key: Buffer | undefined): Datagram | string {
  if (buf.length < HEAD || buf.readUInt32BE(0) !== MAGIC) return 'not a hybridbus datagram';
  const type = buf[4];
  if (type !== DATA && type !== BEAT) return `unknown datagram type ${String(type)}`;
  const sealed = buf[5] === SEALED;
  if (buf[5] !== 0 && !sealed) return 'unknown datagram flags';
  if (sealed !== (key !== undefined)) return sealed ? 'sealed datagram, and no multicast_key here' : 'unsealed datagram where multicast_key requires sealing';
  const addrEnd = HEAD + (buf[22] as number);
  const length = buf.readUInt32BE(18);
  if (buf.length !== addrEnd + length + (sealed ? TAG : 0)) return 'datagram length does not match its header (truncated?)';
  if (type === BEAT && length !== 8) return 'heartbeat body of the wrong size';
  const streamId = buf.subarray(6, 14);
  const seq = buf.readUInt32BE(14);
  let body = buf.subarray(addrEnd, addrEnd + length);
  if (key) {
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, nonce(streamId, type, seq));
      decipher.setAAD(buf.subarray(0, addrEnd));
      decipher.setAuthTag(buf.subarray(addrEnd + length));
      body = Buffer.concat([decipher.update(body), decipher.final()]);
    } catch {
      return 'datagram failed authentication (forged, garbled, or another key)';
    }
  }
  return { type, stream: streamId.toString('hex'), streamId: Buffer.from(streamId), seq, repair: buf.toString('latin1', HEAD, addrEnd), body };
}

/**
 * Control messages on the repair channel (requests and acks, receiver → sender): JSON, sealed
 * with a random nonce when a key is set, so nobody without the key can fake an ack.
 */
export function sealControl(value: unknown, key: Buffer | undefined): Buffer {
  const plain = Buffer.from(JSON.stringify(value));
  if (!key) return plain;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  return Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

/** The control message as an object, or undefined when it does not open or parse. */
export function openControl(buf: Buffer, key: Buffer | undefined): Record<string, unknown> | undefined {
  let plain = buf;
  if (key) {
    if (buf.length < 12 + TAG) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, 12));
      decipher.setAuthTag(buf.subarray(buf.length - TAG));
      plain = Buffer.concat([decipher.update(buf.subarray(12, buf.length - TAG)), decipher.final()]);
    } catch {
      return undefined;
    }
  }
  try {
    const v: unknown = JSON.parse(plain.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A fresh stream id: the sender's id ‖ a random epoch with its top bit clear (see nonce()). */
export function newStreamId(senderId: Buffer): Buffer {
  const id = Buffer.concat([senderId.subarray(0, 4), randomBytes(4)]);
  id[4] = (id[4] as number) & 0x7f;
  return id;
}
