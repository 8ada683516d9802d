/**
 * Which connection a message goes out on. Through an intermediary there is one (Intermediary);
 * in direct mode (Direct) the name service says which servers listen for a key, and each
 * server's listener gets a pooled connection of its own.
 */
import { MessageUndeliverable, type Logger } from '@hybridbus/core';
import { TroubledPeers } from '@hybridbus/core/driver';
import { recordsByPool, type HostRecord, type NameService } from '@hybridbus/nameservice';
import type { ConnectionOptions, Container } from 'rhea';
import { Peer, type PeerCounts } from './peer.js';

export interface Carrier {
  /** One peer for a key (direct: round-robin over the key's hosts, skipping `except`). */
  one(key: string, except?: ReadonlySet<string>): Promise<Peer>;
  /** As one(key), synchronously, when the answer is at hand (direct: the key's hosts are cached); else undefined. */
  oneNow(key: string): Peer | undefined;
  /** Every peer serving the key (a fanout). */
  all(key: string): Promise<Peer[]>;
  /** One peer per notification pool of the key (through an intermediary: the one peer, pool ""). */
  perPool(key: string): Promise<Array<{ readonly pool: string; readonly peer: Peer }>>;
  /** The peer failed before it took a message (`reason`: the failure): stop offering it (direct mode). */
  failed(peer: Peer, reason: string): void;
  /** Calls to the peer were lost with its connection (`reason`): direct mode counts that against its health. */
  lostCalls(peer: Peer, reason: string): void;
  /** Connections open now. */
  readonly connections: number;
  /** Add the sends waiting for credit and for an outcome, on every connection, to `acc`. */
  addOutstanding(acc: { queued: number; unacked: number }): void;
  close(): void;
}

export class Intermediary implements Carrier {
  constructor(readonly peer: Peer) {}
  async one(): Promise<Peer> {
    return this.peer;
  }
  oneNow(): Peer {
    return this.peer;
  }
  async all(): Promise<Peer[]> {
    return [this.peer];
  }
  async perPool(): Promise<Array<{ readonly pool: string; readonly peer: Peer }>> {
    return [{ pool: '', peer: this.peer }];
  }
  failed(): void {}
  lostCalls(): void {}
  get connections(): number {
    return this.peer.isUp ? 1 : 0;
  }
  addOutstanding(acc: { queued: number; unacked: number }): void {
    this.peer.addOutstanding(acc);
  }
  close(): void {
    this.peer.close();
  }
}

export interface DirectCarrierOptions {
  readonly container: Container;
  readonly nameService: NameService;
  readonly logger: Logger;
  readonly connect: (record: HostRecord) => ConnectionOptions;
  readonly replyCredit: number;
  readonly counts: PeerCounts;
  readonly transport: { readonly transport: string; readonly scheme: string };
}

/** Addresses remembered as lost (for counting reconnects) at most: a churning fleet must not grow it. */
const MAX_LOST = 1_000;

export class Direct implements Carrier {
  /** The connections open now, by server address. */
  readonly peers = new Map<string, Peer>();
  private readonly next = new Map<string, number>();
  /** Servers whose connection was lost: the next connection to one is a reconnect. */
  private readonly lost = new Set<string>();
  /**
   * Servers whose sends failed lately, and why: the transport is degraded while any is listed.
   * A new connection to the server clears it; otherwise it ends after ns_ttl (the name
   * service offers a forgotten server again then).
   */
  private readonly troubled = new TroubledPeers('server');

  constructor(private readonly o: DirectCarrierOptions) {}

  private peerFor(record: HostRecord): Peer {
    let p = this.peers.get(record.address);
    if (!p || p.isClosed) {
      const address = record.address;
      p = new Peer(this.o.container, {
        label: `direct ${address}`,
        address,
        logger: this.o.logger,
        connect: () => this.o.connect(record),
        replySource: () => ({ dynamic: true }),
        replyCredit: this.o.replyCredit,
        counts: this.o.counts,
        transport: this.o.transport,
        again: this.lost.delete(address),
      });
      const peer = p;
      p.onUp(() => this.troubled.clear(address));
      // Registered before any of its links' own listeners: their sends are still counted here.
      p.onDown((error) => {
        if (peer.everConnected) {
          if (this.lost.size >= MAX_LOST) this.lost.clear();
          this.lost.add(address);
        }
        const acc = { queued: 0, unacked: 0 };
        peer.addOutstanding(acc);
        if (acc.queued + acc.unacked > 0) this.troubled.mark(address, error.message);
        if (peer.isClosed && this.peers.get(address) === peer) this.peers.delete(address);
      });
      this.peers.set(address, p);
    }
    return p;
  }

  private async records(key: string): Promise<readonly HostRecord[]> {
    const rs = this.o.nameService.cached(key) ?? (await this.o.nameService.lookup(key));
    if (rs.length === 0) throw new MessageUndeliverable(`amqp1 direct: nobody listens for "${key}" (no record in the name service)`);
    return rs;
  }

  async one(key: string, except?: ReadonlySet<string>): Promise<Peer> {
    const all = await this.records(key);
    const rs = except ? all.filter((r) => !except.has(r.address)) : all;
    if (rs.length === 0) throw new MessageUndeliverable(`amqp1 direct: every server of "${key}" failed (${[...(except ?? [])].join(', ')})`);
    return this.pick(key, rs);
  }

  /** The name service's cached answer is synchronous: no promise when it has one. */
  oneNow(key: string): Peer | undefined {
    const rs = this.o.nameService.cached(key);
    return rs && rs.length > 0 ? this.pick(key, rs) : undefined;
  }

  /** Round-robin over the key's hosts. */
  private pick(key: string, rs: readonly HostRecord[]): Peer {
    const n = this.next.get(key) ?? 0;
    this.next.set(key, n + 1);
    return this.peerFor(rs[n % rs.length] as HostRecord);
  }

  /** A peer for every host of `key` (a fanout). */
  async all(key: string): Promise<Peer[]> {
    return (await this.records(key)).map((r) => this.peerFor(r));
  }

  /** One member of each notification pool of `key` (a record without a pool is in pool ""), in turn. */
  async perPool(key: string): Promise<Array<{ readonly pool: string; readonly peer: Peer }>> {
    const pools = recordsByPool(await this.records(key));
    const n = this.next.get(key) ?? 0;
    this.next.set(key, n + 1);
    return [...pools].map(([pool, members]) => ({ pool, peer: this.peerFor(members[n % members.length] as HostRecord) }));
  }

  lostCalls(peer: Peer, reason: string): void {
    this.troubled.mark(peer.address, reason);
  }

  failed(peer: Peer, reason: string): void {
    this.troubled.mark(peer.address, reason);
    this.o.nameService.forget(peer.address);
    if (this.peers.get(peer.address) === peer) this.peers.delete(peer.address);
    peer.close();
  }

  get connections(): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.isUp) n++;
    return n;
  }

  addOutstanding(acc: { queued: number; unacked: number }): void {
    for (const p of this.peers.values()) p.addOutstanding(acc);
  }

  /** Why some server is in trouble: its sends failed within `forMs`, and no connection to it since. */
  trouble(forMs: number): string | undefined {
    return this.troubled.reason(forMs);
  }

  close(): void {
    for (const p of this.peers.values()) p.close();
    this.peers.clear();
    this.troubled.clear();
  }
}
