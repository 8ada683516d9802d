/**
 * Multicast fanouts for zmq:// (option `multicast=udp://239.x.y.z:port`): the transport's
 * sender (lazily: a RADIO and a repair socket) and receiver (lazily: the process's shared UDP socket), and the decision
 * per fanout. A server joins its topic's group and says so in its name-service record; a
 * fanout goes out once to the group for the servers whose record says they joined it (with the
 * same group and key id), and by unicast, as before, to every other server. A record too large
 * for one datagram goes by unicast to all.
 *
 * Acked fanouts (acks=handled|received): each receiver acks over the sender's repair socket; a
 * server that has not acked in ack_timeout gets a unicast copy, which it drops as a duplicate
 * (by the message's _unique_id) if it had the multicast one, so a fanout fails only as a unicast
 * one would (FanoutIncomplete, with how many of all its servers were not reached), never silently.
 */
import { MessageTooLarge, TransportClosed, type Logger } from '@hybridbus/core';
import type { HostRecord } from '@hybridbus/nameservice';
import { randomBytes } from 'node:crypto';
import { FanoutIncomplete, missedCopies, type Missed } from '../fanout.js';
import { encode, FANOUT, type Body, type Encoded, type Kind } from '../frames.js';
import type { ZmqOptions } from '../options.js';
import { groupOf, recordValue, type MulticastOptions } from './config.js';
import { MulticastReceiver, type Deliver } from './receiver.js';
import { MulticastSender } from './sender.js';

export { MAX_DATAGRAM } from './wire.js';
export type { MulticastOptions } from './config.js';

/** What a fanout needs of the unicast client (client.ts). */
export interface UnicastClient {
  shared(kind: Kind, key: string, m: Record<string, unknown>): Encoded;
  oneWay(kind: Kind, key: string, m: Record<string, unknown>, opts: { address?: string }, shared?: Encoded): Promise<void>;
}

type WithMulticast = ZmqOptions & { readonly multicast: MulticastOptions };

interface Split {
  readonly via: ReadonlySet<string>;
  readonly rest: ReadonlySet<string>;
}

export class Multicast {
  readonly stats = { mcastFanouts: 0, mcastUnicastCopies: 0, mcastTooLarge: 0, mcastAckFallbacks: 0 };
  private sender: Promise<MulticastSender> | undefined;
  private receiver: Promise<MulticastReceiver> | undefined;
  private readonly idPrefix = `m${randomBytes(4).toString('hex')}`;
  private nextId = 0;
  private senderNow: MulticastSender | undefined;
  private readonly splits = new WeakMap<readonly HostRecord[], Map<string, Split>>();
  /** Acked fanouts waiting for acks: failed at once when the transport closes. */
  private readonly pending = new Set<(err: Error) => void>();
  private closed = false;
  private receiverNow: MulticastReceiver | undefined;
  /** Keys this transport's server joined, and the address it joined as. */
  private readonly joined = new Map<string, string>();

  constructor(
    private readonly options: WithMulticast,
    private readonly logger: Logger,
  ) {}

  static of(options: ZmqOptions, logger: Logger): Multicast | undefined {
    return options.multicast ? new Multicast(options as WithMulticast, logger) : undefined;
  }

  /**
   * A server at `address` serves fanouts of `key`: join its group. Returns what its
   * name-service record says (config.ts recordValue).
   */
  async join(key: string, address: string, deliver: Deliver): Promise<string> {
    // The process's receiver for these settings (shared with its other transports: receiver.ts).
    this.receiver ??= MulticastReceiver.acquire(this.options.multicast, this.logger).then(
      (r) => (this.receiverNow = r),
      (err: unknown) => {
        this.receiver = undefined; // the next listen tries again
        throw err;
      },
    );
    const receiver = await this.receiver;
    if (this.closed) throw new TransportClosed('zmq transport closed');
    receiver.join(groupOf(this.options.multicast, key), address, deliver);
    this.joined.set(key, address);
    return recordValue(this.options.multicast, key);
  }

  leave(key: string): void {
    const address = this.joined.get(key);
    if (address === undefined) return;
    this.joined.delete(key);
    this.receiverNow?.leave(groupOf(this.options.multicast, key), address);
  }

  /** Send a fanout of `key` to `records`; undefined when none of them listens by multicast. */
  fanout(key: string, records: readonly HostRecord[], m: Record<string, unknown>, client: UnicastClient): Promise<void> | undefined {
    const { via, rest } = this.split(key, records);
    if (via.size === 0) return undefined;
    return this.send(key, via, rest, m, client);
  }

  /**
   * The servers of a lookup answer that joined the key's group, and the rest. Remembered per
   * answer: the name service hands out the same array until the records change, and walking a
   * thousand records per fanout would make the sender's cost grow with N again.
   */
  private split(key: string, records: readonly HostRecord[]): Split {
    let byKey = this.splits.get(records);
    if (!byKey) this.splits.set(records, (byKey = new Map()));
    let split = byKey.get(key);
    if (!split) {
      const mine = recordValue(this.options.multicast, key);
      const via = new Set<string>();
      for (const r of records) if (r.multicast === mine) via.add(r.address);
      const rest = new Set<string>();
      for (const r of records) if (!via.has(r.address)) rest.add(r.address);
      byKey.set(key, (split = { via, rest }));
    }
    return split;
  }

  private async send(key: string, via: ReadonlySet<string>, rest: ReadonlySet<string>, m: Record<string, unknown>, client: UnicastClient): Promise<void> {
    if (this.closed) throw new TransportClosed('zmq transport closed');
    this.sender ??= MulticastSender.open(this.options, this.logger).then(
      (s) => (this.senderNow = s),
      (err: unknown) => {
        this.sender = undefined; // the next fanout tries again
        throw err;
      },
    );
    const sender = await this.sender;
    const acks = this.options.acks;
    const id = acks === 'none' ? undefined : `${this.idPrefix}${(this.nextId++).toString(36)}`;
    const body: Body = id === undefined ? { k: key, m } : { i: id, k: key, m, a: acks === 'received' ? 1 : undefined };
    const record = Buffer.from(encode(FANOUT, body, Infinity).text);
    const max = this.options.maxMessageSize;
    if (record.length > max) throw new MessageTooLarge(`message of ${record.length} bytes exceeds max_message_size=${max}`);
    const shared = rest.size > 0 || !sender.fits(record.length) ? client.shared(FANOUT, key, m) : undefined;
    const unicast = (addresses: Iterable<string>): Promise<Missed> => missedCopies([...addresses], (address) => client.oneWay(FANOUT, key, m, { address }, shared));
    // As a unicast fanout (fanout.ts): a copy not delivered fails the whole with FanoutIncomplete,
    // counted against every server of the fanout, multicast ones included.
    const settle = (missed: readonly Missed[]): void => {
      const addresses = missed.flatMap((x) => x.addresses);
      if (addresses.length > 0) throw new FanoutIncomplete(key, via.size + rest.size, addresses, missed.flatMap((x) => x.reasons));
    };
    if (!sender.fits(record.length)) {
      this.stats.mcastTooLarge++;
      settle([await unicast([...via, ...rest])]);
      return;
    }
    this.stats.mcastFanouts++;
    this.stats.mcastUnicastCopies += rest.size;
    const copies = [unicast(rest)];
    if (id !== undefined) copies.push(this.acked(sender, id, via, key, m, client));
    sender.send(groupOf(this.options.multicast, key), record);
    settle(await Promise.all(copies));
  }

  /**
   * Resolves once every server in `via` acked `id` (nothing missed); the silent ones get unicast
   * copies after ack_timeout, and those not delivered are what it resolves with. Rejects only
   * when the transport closes.
   */
  private acked(sender: MulticastSender, id: string, via: ReadonlySet<string>, key: string, m: Record<string, unknown>, client: UnicastClient): Promise<Missed> {
    return new Promise<Missed>((resolve, reject) => {
      const waiting = new Set(via);
      let timer: NodeJS.Timeout | undefined;
      // The transport closes: fail now, as unicast acked sends do, not after ack_timeout.
      const abort = (err: Error): void => {
        clearTimeout(timer);
        sender.acks.delete(id);
        reject(err);
      };
      this.pending.add(abort);
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(fallBack, this.options.ackTimeout);
      };
      const fallBack = (): void => {
        sender.acks.delete(id);
        this.pending.delete(abort);
        this.stats.mcastAckFallbacks += waiting.size;
        void missedCopies([...waiting], (address) => client.oneWay(FANOUT, key, m, { address })).then(resolve);
      };
      sender.acks.set(id, (from, working) => {
        if (!waiting.has(from)) return;
        // Still being handled there: give it another ack_timeout, as a unicast ack would.
        if (working) return arm();
        waiting.delete(from);
        if (waiting.size > 0) return;
        clearTimeout(timer);
        sender.acks.delete(id);
        this.pending.delete(abort);
        resolve({ addresses: [], reasons: [] });
      });
      arm();
    });
  }

  /** Counters for the driver's counters() and stats().extra. */
  counters(): Record<string, number> {
    return { ...this.stats, ...(this.senderNow?.stats ?? {}), ...(this.receiverNow?.stats ?? {}) };
  }

  /** Datagrams and repair messages dropped as undecodable or unauthentic (stats().dropped). */
  get dropped(): number {
    return (this.receiverNow?.stats.mcastForged ?? 0) + (this.senderNow?.stats.mcastControlDropped ?? 0);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const abort of [...this.pending]) abort(new TransportClosed('zmq transport closed with an acked multicast fanout in flight'));
    this.pending.clear();
    const [s, r] = await Promise.all([this.sender?.catch(() => undefined), this.receiver?.catch(() => undefined)]);
    await s?.close();
    if (r) {
      for (const key of [...this.joined.keys()]) this.leave(key);
      r.release();
    }
  }
}
