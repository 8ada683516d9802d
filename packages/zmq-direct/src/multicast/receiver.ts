/**
 * The receiving side of multicast fanouts: one UDP socket per process and multicast settings
 * (group address, interface, key, window, heartbeat, buffer), shared by every transport of the
 * process that serves fanouts with those settings, taking the datagrams of their topics' groups.
 * The kernel hands each socket its own copy of a datagram, so a socket per server made a process
 * hosting k servers receive, decode and sequence every datagram k times; shared, that is done
 * once and the record is handed to each local server of its group, each acking for itself.
 *
 * The socket is Node's (dgram), reading what the sender's RADIO sends (ZeroMQ's UDP framing: the
 * group's length in one byte, the group, the body), not a ZeroMQ DISH: zeromq.js 6 watches a
 * thread-safe socket (DISH) through a zmq_poller whose fd stays readable while the socket is
 * writable, so a process with a receive pending on a DISH spins its event loop (measured: 0.4–0.9
 * of a core per process, idle; benchmarks/zmq-findings.md, "Scale").
 *
 * Per sender stream (one per sender and group) it delivers in sequence order, once: a datagram
 * seen before is dropped; one ahead of the next expected is held and the missing ones are asked
 * for at the sender's repair socket (again every heartbeat, a few times); a heartbeat whose last
 * seq was never seen shows a lost tail. What the sender no longer has, or never answers for, is
 * given up and reported: counted (mcastLost), and logged.
 */
import type { Logger } from '@hybridbus/core';
import * as zmq from 'zeromq';
import type { Body } from '../frames.js';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { socketOpened, uninterrupted } from '../zeromq-adapter.js';
import { keyId, type MulticastOptions } from './config.js';
import { SerialSend } from './serial.js';
import { BEAT, decodeDatagram, openControl, sealControl, type Datagram } from './wire.js';

/**
 * A record as received: one object handed to every local server of its group, so what the first
 * of them works out of it (`decoded`: server.ts decodes it there) is not worked out again by the
 * others.
 */
export interface GroupRecord {
  readonly text: string;
  decoded: unknown;
}

/** Hands a record on to the server; `answer` sends an ack back to its sender. */
export type Deliver = (record: GroupRecord, answer: (body: Body) => void) => void;

interface RxStream {
  readonly hex: string;
  readonly repair: string;
  /** The group its datagrams go to (a stream is one sender's to one group). */
  readonly group: string;
  /** Next seq to deliver: everything before it was delivered or given up. */
  next: number;
  /** Highest seq known to exist (seen, or announced by a heartbeat). */
  known: number;
  /** Datagram bodies that arrived ahead of `next`. */
  readonly held: Map<number, Buffer>;
  /** Repair requests since the last progress, and when the last one left. */
  naks: number;
  lastNak: number;
}

interface RepairPeer {
  readonly socket: zmq.Dealer;
  readonly out: SerialSend<Buffer[]>;
}

/** A local server of a group: where its records go, and the address its acks name. */
interface Member {
  readonly deliver: Deliver;
  /** Its topics in the group (two keys may hash to one group). */
  refs: number;
}

/** The shared receivers of this process, by settings (sharingKey). */
const SHARED = new Map<string, { readonly receiver: Promise<MulticastReceiver>; users: number; instance?: MulticastReceiver }>();

/** Settings that must match to share a socket; the key only by its id (config.ts keyId). */
function sharingKey(mc: MulticastOptions): string {
  return JSON.stringify([mc.address, mc.port, mc.interface ?? '', mc.key ? keyId(mc.key) : '', mc.window, mc.heartbeat, mc.receiveBuffer ?? '']);
}

/** The IPv4 address of multicast_interface (a name or an address), or undefined for the default route's. */
function interfaceAddress(iface: string | undefined): string | undefined {
  if (iface === undefined || isIPv4(iface)) return iface;
  const v4 = networkInterfaces()[iface]?.find((a) => a.family === 'IPv4');
  if (!v4) throw new Error(`multicast_interface "${iface}" has no IPv4 address here`);
  return v4.address;
}

/** Streams remembered at most (least recently heard forgotten first), and repair sockets. */
const MAX_STREAMS = 4096;
const MAX_PEERS = 64;
/** Repair requests for one gap before it is given up when the sender does not answer. */
const REPAIR_TRIES = 10;
/**
 * SO_RCVBUF asked for when multicast_rcvbuf is not set (the kernel caps it at net.core.rmem_max):
 * datagrams wait there, not in a ZeroMQ I/O thread's queue, while this process's event loop is
 * busy handing records to its servers; what overflows is repaired (or reported lost).
 */
const DEFAULT_RECEIVE_BUFFER = 8 << 20;
/** Missing ranges per request at most. */
const MAX_RANGES = 64;
/**
 * Servers named in one ack frame at most: an address is at most 255 characters (peer()), so a
 * frame stays well under the repair socket's 1 MiB limit.
 */
const ACKS_PER_FRAME = 256;
/** Ack frames per message at most. */
const ACK_BATCH = 1024;
const ACK = Buffer.from('A');

/** Acks for one sender, not sent yet: the servers that acked each fanout id, done or still working. */
interface AcksOut {
  readonly done: Map<string, string[]>;
  readonly working: Map<string, string[]>;
}

/** The lowest seq held (Infinity when none). */
function lowest(held: ReadonlyMap<number, Buffer>): number {
  let low = Infinity;
  for (const seq of held.keys()) if (seq < low) low = seq;
  return low;
}

export interface ReceiverStats {
  mcastReceived: number;
  mcastDelivered: number;
  mcastDuplicates: number;
  /** Gaps seen (datagrams found missing, counted once per gap). */
  mcastGaps: number;
  /** Missing datagrams that came back by repair. */
  mcastRecovered: number;
  /** Datagrams given up: the sender's window had passed them, or it did not answer. */
  mcastLost: number;
  /** Datagrams dropped as garbled, truncated, forged or sealed with another key. */
  mcastForged: number;
  mcastRepairRequests: number;
}

export class MulticastReceiver {
  readonly stats: ReceiverStats = { mcastReceived: 0, mcastDelivered: 0, mcastDuplicates: 0, mcastGaps: 0, mcastRecovered: 0, mcastLost: 0, mcastForged: 0, mcastRepairRequests: 0 };
  private readonly udp: UdpSocket;
  /** Local servers by group, by address. */
  private readonly members = new Map<string, Map<string, Member>>();
  private readonly streams = new Map<string, RxStream>();
  private readonly gappy = new Set<RxStream>();
  private readonly peers = new Map<string, RepairPeer>();
  /** Acks not sent yet, by the sender's repair address (ack()). */
  private readonly acksOut = new Map<string, AcksOut>();
  private repairTimer: NodeJS.Timeout | undefined;
  private readonly retryMs: number;
  private closed = false;

  private constructor(
    private readonly mc: MulticastOptions,
    /** The first user's: a shared socket's problems are logged once, not per server. */
    private readonly logger: Logger,
    /** Its key in SHARED (sharingKey). */
    private readonly sharedAs: string,
  ) {
    // reuseAddr: other processes on this host take the group's datagrams too.
    this.udp = createSocket({ type: 'udp4', reuseAddr: true });
    this.retryMs = Math.max(20, mc.heartbeat);
  }

  /** This process's receiver for these settings, opened by its first user; each user release()s it once. */
  static acquire(mc: MulticastOptions, logger: Logger): Promise<MulticastReceiver> {
    const id = sharingKey(mc);
    let entry = SHARED.get(id);
    if (!entry) {
      const receiver = MulticastReceiver.open(mc, logger, id);
      const opened: { receiver: Promise<MulticastReceiver>; users: number; instance?: MulticastReceiver } = { receiver, users: 0 };
      SHARED.set(id, (entry = opened));
      receiver.then(
        (r) => (opened.instance = r),
        // Failed to open: the next user tries again.
        () => (SHARED.get(id) === opened ? SHARED.delete(id) : undefined),
      );
    }
    entry.users++;
    return entry.receiver;
  }

  private static async open(mc: MulticastOptions, logger: Logger, id: string): Promise<MulticastReceiver> {
    const r = new MulticastReceiver(mc, logger, id);
    try {
      const iface = interfaceAddress(mc.interface);
      // Bound to the group address, not any: unicast datagrams to the port are not ours.
      await new Promise<void>((resolve, reject) => {
        r.udp.once('error', reject);
        r.udp.bind({ port: mc.port, address: mc.address }, () => {
          r.udp.off('error', reject);
          resolve();
        });
      });
      r.udp.addMembership(mc.address, iface);
      r.udp.setRecvBufferSize(mc.receiveBuffer ?? DEFAULT_RECEIVE_BUFFER);
    } catch (e) {
      r.close();
      throw e;
    }
    r.udp.on('message', (buf: Buffer) => r.fromGroup(buf));
    r.udp.on('error', (err) => {
      if (!r.closed) r.logger.error({ err }, 'zmq-direct: multicast receive failed');
    });
    return r;
  }

  /** A user is done with it (its transport closed); the last one closes the socket. */
  release(): void {
    const entry = SHARED.get(this.sharedAs);
    if (entry?.instance === this) {
      if (--entry.users > 0) return;
      SHARED.delete(this.sharedAs);
    }
    this.close();
  }

  /** The server at `address` takes the group's records (acks naming that address). */
  join(group: string, address: string, deliver: Deliver): void {
    let byAddress = this.members.get(group);
    if (!byAddress) this.members.set(group, (byAddress = new Map()));
    const m = byAddress.get(address);
    if (m) m.refs++;
    else byAddress.set(address, { deliver, refs: 1 });
  }

  leave(group: string, address: string): void {
    const byAddress = this.members.get(group);
    const m = byAddress?.get(address);
    if (!byAddress || !m) return;
    if (--m.refs > 0) return;
    byAddress.delete(address);
    if (byAddress.size === 0) this.members.delete(group);
  }

  /**
   * A datagram off the group address, as the sender's RADIO framed it: the group (its length in
   * a byte, then its name), the body. Only the groups of local servers are taken, as a DISH joined
   * to them would. Never throws.
   */
  private fromGroup(buf: Buffer): void {
    const length = buf[0];
    if (length === undefined || buf.length < 1 + length) return this.forged('datagram shorter than its group name');
    const group = buf.toString('latin1', 1, 1 + length);
    if (!this.members.has(group)) return;
    this.stats.mcastReceived++;
    this.onDatagram(buf.subarray(1 + length), group);
  }

  /** A datagram from `group`, or (group undefined) resent over the repair socket. Never throws. */
  private onDatagram(buf: Buffer, group: string | undefined): void {
    const repaired = group === undefined;
    const d = decodeDatagram(buf, this.mc.key);
    if (typeof d === 'string') return this.forged(d);
    const s = this.streamOf(d, group);
    // A repair answer for a stream not (or no longer) known here: nothing to hand it to.
    if (!s) return;
    if (d.type === BEAT) {
      const last = d.body.readUInt32BE(0);
      const oldest = d.body.readUInt32BE(4);
      if (last > s.known) s.known = last;
      if (oldest > s.next) this.giveUp(s, oldest, 'the sender no longer has them');
      if (s.known >= s.next) this.gap(s);
      return;
    }
    if (d.seq < s.next || s.held.has(d.seq)) {
      this.stats.mcastDuplicates++;
      return;
    }
    if (repaired) this.stats.mcastRecovered++;
    if (d.seq > s.known) s.known = d.seq;
    if (d.seq !== s.next) {
      s.held.set(d.seq, d.body);
      // Held datagrams are bounded by the window: past it the oldest gap is given up.
      if (s.held.size > this.mc.window) this.giveUp(s, lowest(s.held), 'too many datagrams held behind it');
      else this.gap(s);
      return;
    }
    s.naks = 0;
    this.hand(s, d.body);
    s.next++;
    this.drain(s);
  }

  private streamOf(d: Datagram, group: string | undefined): RxStream | undefined {
    let s = this.streams.get(d.stream);
    if (s) {
      // Map order is recency order: re-insert when heard (cheap), evict from the front.
      this.streams.delete(d.stream);
      this.streams.set(d.stream, s);
      return s;
    }
    if (group === undefined) return undefined;
    if (this.streams.size >= MAX_STREAMS) {
      const oldest = this.streams.values().next().value as RxStream;
      this.streams.delete(oldest.hex);
      this.gappy.delete(oldest);
    }
    // A stream first seen here starts at what it shows: earlier datagrams predate this
    // receiver's interest (they went to the servers registered then).
    const next = d.type === BEAT ? d.body.readUInt32BE(0) + 1 : d.seq;
    s = { hex: d.stream, repair: d.repair, group, next, known: next - 1, held: new Map(), naks: 0, lastNak: 0 };
    this.streams.set(d.stream, s);
    return s;
  }

  /** Hand a record to each local server of its group: each handles and acks it as its own. */
  private hand(s: RxStream, body: Buffer): void {
    const members = this.members.get(s.group);
    if (!members) return;
    const record: GroupRecord = { text: body.toString('utf8'), decoded: undefined };
    for (const [address, m] of members) {
      this.stats.mcastDelivered++;
      try {
        m.deliver(record, (answer) => this.ack(s.repair, answer, address));
      } catch (err) {
        this.logger.warn({ err }, 'zmq-direct: a multicast fanout could not be delivered');
      }
    }
  }

  private drain(s: RxStream): void {
    for (let body = s.held.get(s.next); body !== undefined; body = s.held.get(s.next)) {
      s.held.delete(s.next);
      this.hand(s, body);
      s.next++;
    }
    if (s.known < s.next) this.gappy.delete(s);
  }

  /** Stop waiting for everything before `upTo`: report what never came, deliver what is held. */
  private giveUp(s: RxStream, upTo: number, why: string): void {
    let lost = 0;
    for (let seq = s.next; seq < upTo; seq++) if (!s.held.has(seq)) lost++;
    if (lost > 0) {
      this.stats.mcastLost += lost;
      this.logger.warn({ sender: s.repair, stream: s.hex, from: s.next, to: upTo - 1, lost }, `zmq-direct: ${lost} multicast fanout(s) lost: could not be repaired (${why})`);
    }
    for (let seq = s.next; seq < upTo; seq++) {
      const body = s.held.get(seq);
      if (body === undefined) continue;
      s.held.delete(seq);
      this.hand(s, body);
    }
    s.next = Math.max(s.next, upTo);
    s.naks = 0;
    this.drain(s);
    if (s.known >= s.next) this.gap(s);
  }

  private gap(s: RxStream): void {
    if (this.gappy.has(s)) return;
    this.gappy.add(s);
    this.stats.mcastGaps++;
    s.naks = 0;
    this.requestRepair(s);
    if (!this.repairTimer) {
      this.repairTimer = setInterval(() => this.repairTick(), this.retryMs);
      this.repairTimer.unref();
    }
  }

  private repairTick(): void {
    const now = Date.now();
    for (const s of this.gappy) {
      if (s.known < s.next) {
        this.gappy.delete(s);
        continue;
      }
      if (now - s.lastNak < this.retryMs) continue;
      if (s.naks >= REPAIR_TRIES) {
        // The sender does not answer (gone?): give up to the next datagram held, if any.
        const upTo = Math.min(s.known + 1, lowest(s.held));
        this.giveUp(s, upTo, `no answer to ${REPAIR_TRIES} repair requests`);
        continue;
      }
      this.requestRepair(s);
    }
    if (this.gappy.size === 0) {
      clearInterval(this.repairTimer);
      this.repairTimer = undefined;
    }
  }

  private requestRepair(s: RxStream): void {
    const ranges: [number, number][] = [];
    const end = Math.min(s.known, s.next + this.mc.window - 1);
    for (let seq = s.next; seq <= end && ranges.length < MAX_RANGES; seq++) {
      if (s.held.has(seq)) continue;
      const last = ranges[ranges.length - 1];
      if (last && last[1] === seq - 1) last[1] = seq;
      else ranges.push([seq, seq]);
    }
    if (ranges.length === 0) return;
    s.naks++;
    s.lastNak = Date.now();
    this.stats.mcastRepairRequests++;
    this.send(s.repair, 'N', { s: s.hex, r: ranges });
  }

  /** The sender says these ranges are gone from its window. */
  private onGone(msg: Record<string, unknown>): void {
    const s = typeof msg['s'] === 'string' ? this.streams.get(msg['s']) : undefined;
    if (!s || !Array.isArray(msg['r'])) return;
    let upTo = 0;
    for (const r of msg['r']) if (Array.isArray(r) && Number.isInteger(r[1])) upTo = Math.max(upTo, (r[1] as number) + 1);
    if (upTo > s.next) this.giveUp(s, upTo, "the sender's window has passed them");
  }

  private send(repair: string, tag: string, value: Record<string, unknown>): void {
    if (this.closed) return;
    this.peer(repair)?.out.push([Buffer.from(tag), sealControl(value, this.mc.key)]);
  }

  /**
   * An ack for the sender at `repair`, by the local server at `from`. A receipt answers { i }
   * or { i, w: 1 } (receipts.ts). The acks of one turn of the event loop (the local servers that
   * handled a fanout) go as one message with one sealed frame per fanout id, naming all of them
   * (`{ i, from: [...] }`): one send, one seal and one parse at the sender per server process,
   * not per server.
   */
  private ack(repair: string, answer: Body, from: string): void {
    if (this.closed || answer.i === undefined) return;
    let queued = this.acksOut.get(repair);
    if (!queued) {
      if (this.acksOut.size === 0) setImmediate(() => this.flushAcks());
      this.acksOut.set(repair, (queued = { done: new Map(), working: new Map() }));
    }
    const byId = answer.w === 1 ? queued.working : queued.done;
    const servers = byId.get(answer.i);
    if (servers) servers.push(from);
    else byId.set(answer.i, [from]);
  }

  private flushAcks(): void {
    const all = [...this.acksOut];
    this.acksOut.clear();
    if (this.closed) return;
    for (const [repair, { done, working }] of all) {
      const out = this.peer(repair)?.out;
      if (!out) continue;
      const frames: Buffer[] = [];
      for (const [byId, w] of [[done, undefined], [working, 1]] as const) {
        for (const [i, servers] of byId) {
          for (let k = 0; k < servers.length; k += ACKS_PER_FRAME) frames.push(sealControl({ i, w, from: servers.slice(k, k + ACKS_PER_FRAME) }, this.mc.key));
        }
      }
      for (let k = 0; k < frames.length; k += ACK_BATCH) out.push([ACK, ...frames.slice(k, k + ACK_BATCH)]);
    }
  }

  private peer(address: string): RepairPeer | undefined {
    const known = this.peers.get(address);
    if (known) return known;
    // The address came in a datagram: only a "host:port" is dialled.
    if (!/^[A-Za-z0-9.\-_[\]:]{1,255}:\d{1,5}$/.test(address)) return undefined;
    if (this.peers.size >= MAX_PEERS) {
      const [oldAddress, old] = this.peers.entries().next().value as [string, RepairPeer];
      this.peers.delete(oldAddress);
      old.out.clear();
      old.socket.close();
    }
    socketOpened();
    const socket = new zmq.Dealer({ linger: 0, sendTimeout: 0, maxMessageSize: 1 << 20 });
    const out = new SerialSend<Buffer[]>(
      (frames) => socket.send(frames),
      () => undefined, // a full or closed connection: the next tick asks again
    );
    try {
      uninterrupted(() => socket.connect(`tcp://${address}`));
    } catch {
      socket.close();
      return undefined;
    }
    const peer = { socket, out };
    this.peers.set(address, peer);
    void this.fromPeer(socket);
    return peer;
  }

  private async fromPeer(socket: zmq.Dealer): Promise<void> {
    try {
      for await (const [tag, ...rest] of socket) {
        const t = tag?.toString();
        if (t === 'D') for (const dg of rest) this.onDatagram(dg, undefined);
        else if (t === 'G' && rest[0]) {
          const msg = openControl(rest[0], this.mc.key);
          if (msg) this.onGone(msg);
          else this.forged('repair answer that does not open');
        } else this.forged('unknown repair answer');
      }
    } catch (err) {
      if (!this.closed && !socket.closed) this.logger.debug({ err }, 'zmq-direct: multicast repair connection failed');
    }
  }

  private forged(why: string): void {
    // Counted always; logged once at warn, then at debug, so a flood cannot flood the log.
    if (this.stats.mcastForged++ === 0) this.logger.warn({ why }, 'zmq-direct: dropped a multicast datagram (further ones are logged at debug)');
    else this.logger.debug({ why }, 'zmq-direct: dropped a multicast datagram');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.repairTimer);
    this.acksOut.clear();
    try {
      this.udp.close();
    } catch {
      // not bound (open failed)
    }
    for (const p of this.peers.values()) {
      p.out.clear();
      p.socket.close();
    }
    this.peers.clear();
  }
}
