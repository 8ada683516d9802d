/**
 * The sending side of multicast fanouts: one RADIO for the transport, a stream per group
 * (stream id + sequence numbers), a bounded window of the datagrams last sent per stream, and
 * a small ROUTER ("repair socket") where receivers ask for what they missed and send the acks
 * of acked fanouts. The sender is a client, which has no socket receivers could reach, hence
 * this one; its "host:port" travels in every datagram.
 */
import type { Logger } from '@hybridbus/core';
import { randomBytes } from 'node:crypto';
import * as zmq from 'zeromq';
import { socketOpened, uninterrupted } from '../zeromq-adapter.js';
import type { ZmqOptions } from '../options.js';
import type { MulticastOptions } from './config.js';
import { zmqEndpoint } from './config.js';
import { loadDraft } from './draft.js';
import { SerialSend } from './serial.js';
import { BEAT, DATA, encodeDatagram, MAX_DATAGRAM, newStreamId, openControl, sealControl } from './wire.js';

interface Stream {
  id: Buffer;
  hex: string;
  readonly group: string;
  /** Last sequence number sent (0: none yet). */
  seq: number;
  beats: number;
  /** Datagram of seq s at s % window, for repair. */
  readonly window: (Buffer | undefined)[];
  /** When the next announcement of the last seq is due, and the gap after it. */
  nextBeat: number;
  beatGap: number;
}

/** Told of each ack for a fanout id: from which server, and whether it is still being handled. */
export type AckListener = (from: string, working: boolean) => void;

/**
 * Announcements of a quiet stream back off to one per this long: a receiver stalled for a while
 * still learns of a lost tail (and repairs it while the window has it), at little cost.
 */
const MAX_BEAT_GAP_MS = 10_000;
/** Datagrams per repair message: a few hundred KB at most. */
const REPAIR_BATCH = 64;

export interface SenderStats {
  mcastSent: number;
  mcastBeats: number;
  mcastRepairsAsked: number;
  mcastRepaired: number;
  mcastRepairGone: number;
  /** Repair-socket messages that did not open or parse (forged, or another key). */
  mcastControlDropped: number;
}

export class MulticastSender {
  readonly stats: SenderStats = { mcastSent: 0, mcastBeats: 0, mcastRepairsAsked: 0, mcastRepaired: 0, mcastRepairGone: 0, mcastControlDropped: 0 };
  /** Acked fanouts waiting for their acks, by id. */
  readonly acks = new Map<string, AckListener>();
  private readonly mc: MulticastOptions;
  private readonly radio: InstanceType<ReturnType<typeof loadDraft>['Radio']>;
  private readonly router: zmq.Router;
  private readonly senderId = randomBytes(4);
  private readonly streams = new Map<string, Stream>();
  private readonly byHex = new Map<string, Stream>();
  private readonly out: SerialSend<readonly [Buffer, string]>;
  private readonly replies: SerialSend<Buffer[]>;
  private readonly beat: NodeJS.Timeout;
  private closed = false;
  /** "host:port" of the repair socket. */
  repairAddress = '';

  private constructor(
    private readonly options: ZmqOptions & { multicast: MulticastOptions },
    private readonly logger: Logger,
  ) {
    this.mc = options.multicast;
    const { Radio } = loadDraft();
    socketOpened();
    this.radio = new Radio({ multicastHops: this.mc.ttl, linger: 0, sendHighWaterMark: 100_000 });
    uninterrupted(() => this.radio.connect(zmqEndpoint(this.mc)));
    socketOpened();
    this.router = new zmq.Router({ linger: 0, sendHighWaterMark: 100_000, maxMessageSize: 1 << 20 });
    const warn = (what: string) => (err: unknown) => {
      if (!this.closed) this.logger.warn({ err }, `zmq-direct: multicast ${what} failed`);
    };
    this.out = new SerialSend(([dg, group]) => this.radio.send(dg, { group }), warn('send'));
    this.replies = new SerialSend((frames) => this.router.send(frames), warn('repair reply'));
    this.beat = setInterval(() => this.announce(), this.mc.heartbeat);
    this.beat.unref();
  }

  static async open(options: ZmqOptions & { multicast: MulticastOptions }, logger: Logger): Promise<MulticastSender> {
    const s = new MulticastSender(options, logger);
    try {
      await s.router.bind(`tcp://${options.bindHost}:*`);
    } catch (e) {
      await s.close(0);
      throw e;
    }
    s.repairAddress = `${options.advertiseHost}:${/:(\d+)$/.exec(s.router.lastEndpoint ?? '')?.[1] ?? ''}`;
    void s.serveRepairs();
    return s;
  }

  /** Whether a record of `bytes` fits one datagram (with the header and the seal). */
  fits(bytes: number): boolean {
    return bytes + 23 + this.repairAddress.length + 16 <= MAX_DATAGRAM;
  }

  /** Multicast `record` to `group`, once. */
  send(group: string, record: Buffer): void {
    const s = this.stream(group);
    if (s.seq === 0xffffffff) this.renew(s);
    const seq = ++s.seq;
    const dg = encodeDatagram(DATA, s.id, seq, this.repairAddress, record, this.mc.key);
    s.window[seq % this.mc.window] = dg;
    // Data shows receivers the seq itself: the first announcement is due a heartbeat after the last.
    s.beatGap = this.mc.heartbeat;
    s.nextBeat = Date.now() + s.beatGap;
    this.stats.mcastSent++;
    this.out.push([dg, group]);
  }

  private stream(group: string): Stream {
    let s = this.streams.get(group);
    if (!s) {
      const id = this.freshId();
      s = { id, hex: id.toString('hex'), group, seq: 0, beats: 0, window: new Array<Buffer | undefined>(this.mc.window), nextBeat: 0, beatGap: 0 };
      this.streams.set(group, s);
      this.byHex.set(s.hex, s);
    }
    return s;
  }

  private freshId(): Buffer {
    for (;;) {
      const id = newStreamId(this.senderId);
      if (!this.byHex.has(id.toString('hex'))) return id;
    }
  }

  /** A new epoch before seq would wrap: nonces (stream id ‖ seq) must never repeat. */
  private renew(s: Stream): void {
    this.byHex.delete(s.hex);
    s.id = this.freshId();
    s.hex = s.id.toString('hex');
    s.seq = 0;
    s.beats = 0;
    s.window.fill(undefined);
    this.byHex.set(s.hex, s);
  }

  /**
   * A stream's last seq and oldest repairable seq, a heartbeat after its last data and then at
   * doubling gaps: how receivers see a lost tail. Steady traffic needs none (each datagram
   * shows its seq), so a busy stream sends no announcements at all.
   */
  private announce(): void {
    const now = Date.now();
    for (const s of this.streams.values()) {
      if (s.seq === 0 || now < s.nextBeat || s.beats === 0xffffffff) continue;
      s.beatGap = Math.min(s.beatGap * 2, MAX_BEAT_GAP_MS);
      s.nextBeat = now + s.beatGap;
      const body = Buffer.allocUnsafe(8);
      body.writeUInt32BE(s.seq, 0);
      body.writeUInt32BE(this.oldest(s), 4);
      this.out.push([encodeDatagram(BEAT, s.id, ++s.beats, this.repairAddress, body, this.mc.key), s.group]);
      this.stats.mcastBeats++;
    }
  }

  private oldest(s: Stream): number {
    return Math.max(1, s.seq - this.mc.window + 1);
  }

  private async serveRepairs(): Promise<void> {
    try {
      for await (const [from, tag, ...payloads] of this.router) {
        if (!from || !tag || payloads.length === 0) continue;
        const t = tag.toString();
        // Acks come batched: a sealed frame per fanout id naming the servers of one process that
        // acked it (receiver.ts ack()); one naming a single server (`from` a string) is what
        // receivers of an earlier commit send. A request is one frame.
        for (const payload of t === 'A' ? payloads : payloads.slice(0, 1)) {
          const msg = openControl(payload, this.mc.key);
          const servers = msg?.['from'];
          if (!msg) this.stats.mcastControlDropped++;
          else if (t === 'A' && typeof msg['i'] === 'string' && (Array.isArray(servers) || typeof servers === 'string')) this.acked(msg['i'], typeof servers === 'string' ? [servers] : servers, msg['w'] === 1);
          else if (t === 'N' && typeof msg['s'] === 'string' && Array.isArray(msg['r'])) this.repair(from, msg['s'], msg['r']);
          else this.stats.mcastControlDropped++;
        }
      }
    } catch (err) {
      if (!this.closed) this.logger.error({ err }, 'zmq-direct: multicast repair socket failed');
    }
  }

  /** Servers acked fanout `id` (done, or still working on it). */
  private acked(id: string, servers: readonly unknown[], working: boolean): void {
    const listener = this.acks.get(id);
    if (!listener) return;
    for (const from of servers) if (typeof from === 'string') listener(from, working);
  }

  /** Send back what the window still has of the ranges asked for; say which are gone. */
  private repair(to: Buffer, hex: string, ranges: unknown[]): void {
    this.stats.mcastRepairsAsked++;
    const s = this.byHex.get(hex);
    const gone: [number, number][] = [];
    let batch: Buffer[] = [];
    let budget = this.mc.window;
    for (const range of ranges.slice(0, 64)) {
      if (!Array.isArray(range) || !Number.isInteger(range[0]) || !Number.isInteger(range[1])) continue;
      const from = range[0] as number;
      const upTo = Math.min(range[1] as number, from + budget - 1);
      if (from < 1 || upTo < from) continue;
      budget -= upTo - from + 1;
      const low = s ? this.oldest(s) : Infinity;
      if (from < low) gone.push([from, Math.min(upTo, low - 1)]);
      for (let seq = Math.max(from, low); s && seq <= Math.min(upTo, s.seq); seq++) {
        const dg = s.window[seq % this.mc.window];
        if (!dg) continue;
        batch.push(dg);
        this.stats.mcastRepaired++;
        if (batch.length === REPAIR_BATCH) {
          this.replies.push([to, Buffer.from('D'), ...batch]);
          batch = [];
        }
      }
      if (budget <= 0) break;
    }
    if (batch.length) this.replies.push([to, Buffer.from('D'), ...batch]);
    if (gone.length) {
      this.stats.mcastRepairGone += gone.reduce((n, [a, b]) => n + b - a + 1, 0);
      this.replies.push([to, Buffer.from('G'), sealControl({ s: hex, r: gone }, this.mc.key)]);
    }
  }

  /** Close, once what is queued has gone to the RADIO (at most `lingerMs`). */
  async close(lingerMs = 1000): Promise<void> {
    if (this.closed) return;
    await this.out.idle(lingerMs);
    this.closed = true;
    clearInterval(this.beat);
    this.out.clear();
    this.replies.clear();
    this.radio.close();
    this.router.close();
  }
}
