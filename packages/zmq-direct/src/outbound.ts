/**
 * The client side of zmq-direct: ONE ROUTER socket connected to every peer in use, each
 * connection addressed by the peer's "host:port" as its routing id. That gives one fd per
 * peer (like a raw DEALER), lets us address a peer exactly, and with `mandatory` tells us when
 * a peer is not connected, so a message is known not to have been delivered and can fail over.
 *
 * Messages for a peer wait in its outbox until its handshake completes; everything queued
 * for one peer in the same tick leaves in one multipart message.
 */
import { AuthenticationFailed, ConnectionLost, MessageUndeliverable, QueueFull, TransportClosed, type Logger } from '@hybridbus/core';
import * as zmq from 'zeromq';
import { TroubledPeers } from '@hybridbus/core/driver';
import { pack, unpack, VERSION, type Encoded } from './frames.js';
import { connectPeer, disconnectPeer, observe, socketOpened } from './zeromq-adapter.js';
import type { CurveOptions, ZmqOptions } from './options.js';

/** Settled once: undefined when handed to ZeroMQ, an error when it never left. */
export type Settle = (err?: Error) => void;

interface Outgoing {
  readonly record: Encoded;
  readonly settle: Settle;
  /** Tracked as in flight at this peer once it has left. */
  readonly id: string | undefined;
}

interface Peer {
  readonly address: string;
  readonly endpoint: string;
  /**
   * Unique per connection attempt, never reused: libzmq aborts the process (router.cpp,
   * `!has_out_pipe (routing_id)`) when a connect reuses the routing id of a pipe it has not
   * finished tearing down, as happens when a refused peer is dropped and at once dialled again.
   */
  readonly routingId: string;
  /** 'waiting': for a slot in a full pool, not dialled yet (see Outbound.waiting). */
  state: 'waiting' | 'connecting' | 'ready' | 'failed';
  outbox: Outgoing[];
  lastUsed: number;
  hot: boolean;
  /** Ids of messages sent to this peer that still expect an answer. */
  readonly inflight: Set<string>;
  connectTimer: NodeJS.Timeout | undefined;
  /** The peer's CURVE server key, kept for dialling after a wait for a slot. */
  readonly serverKey: string | undefined;
  /** It completed a handshake once: a later one is a reconnect, its end a disconnect. */
  connected: boolean;
}

export interface OutboundEvents {
  /** A record (reply, ack, nack) from a peer. */
  onFrames(address: string, records: string[]): void;
  /** The connection to a peer broke (or was refused): messages in flight there are lost. */
  onPeerLost(address: string, inflight: ReadonlySet<string>, error: Error): void;
  /** A peer connected, reconnected after a loss, or its connection ended (for diagnostics). */
  onConnection?(kind: 'connect' | 'reconnect' | 'disconnect', address: string, reason?: string): void;
}

/** How long a peer that refused our credentials is left alone, first and at most (ms). */
const REFUSED_BACKOFF_MS = 200;
const REFUSED_BACKOFF_MAX_MS = 30_000;

/** Records per send at most, so one busy peer cannot hold the socket for long. */
const MAX_BATCH = 512;

export class Outbound {
  private readonly socket: zmq.Router;
  private readonly peers = new Map<string, Peer>();
  /**
   * Peers waiting for a pool slot, first come first served: the pool is full of peers with
   * messages in flight. A slot opens when one of those becomes idle (it is closed and the next
   * waiting peer dialled), so a fanout to more peers than pool_max cycles through them.
   */
  private readonly waiting = new Map<string, Peer>();
  /** Messages in waiting peers' outboxes (at most pool_queue). */
  private waitingRecords = 0;
  /** Peers dialled whose first handshake has not completed (at most connect_burst). */
  private readonly dialing = new Set<Peer>();
  /**
   * Fails every waiting peer when no slot has opened for connect_timeout: the pool is stuck
   * (every peer busy with long calls or unanswered messages), not just cycling.
   */
  private stallTimer: NodeJS.Timeout | undefined;
  /** Peers with something in their outbox: a flush looks at these, not at every peer. */
  private readonly dirty = new Set<Peer>();
  /** The peer last moved to the end of `peers`. */
  private latest: Peer | undefined;
  private flushScheduled = false;
  /** Set while close() waits for queued messages to be handed to ZeroMQ. */
  private onDrained: (() => void) | undefined;
  private flushing = false;
  private closed = false;
  private readonly sweeper: NodeJS.Timeout;
  private connection = 0;
  /** Peers that refused our credentials: not dialled again until `until` (backoff doubles). */
  private readonly refused = new Map<string, { until: number; delay: number; error: Error }>();
  /**
   * Peers whose connection failed or was lost lately, and why: the transport is degraded while
   * any is listed. A handshake with the peer clears it; otherwise it ends when the name service
   * would offer the peer again (ns_ttl after the forget()).
   */
  private readonly troubled = new TroubledPeers('peer');
  readonly stats = {
    batches: 0,
    records: 0,
    connects: 0,
    evictions: 0,
    /** Busy-pool waits: peers that waited for a slot (or for their turn to dial), and those that gave up (QueueFull). */
    poolWaits: 0,
    /** The most first handshakes under way at once (bounded by connect_burst). */
    dialingPeak: 0,
    poolWaitsFailed: 0,
    idleClosed: 0,
    /** Connections made again after a loss. */
    reconnects: 0,
    /** Connections lost (the peer went, or stopped answering heartbeats). */
    peersLost: 0,
    /** Peers that refused our CURVE credentials (or the handshake). */
    authFailures: 0,
    /** Answers that could not be unpacked (bad version frame), dropped. */
    badFrames: 0,
  };

  constructor(
    private readonly options: ZmqOptions,
    private readonly events: OutboundEvents,
    private readonly logger: Logger,
  ) {
    socketOpened();
    this.socket = new zmq.Router({
      mandatory: true,
      sendTimeout: 0,
      // A peer closed to make room (or for idleness) may have just been handed a message that
      // expects no answer (acks=none): give it time to reach the wire rather than drop it.
      linger: options.connectTimeout,
      // A client drops a server that is silent for heartbeat_timeout; it asks no TTL of the
      // server, which must not drop a client it has stopped reading from (see inbound.ts).
      heartbeatInterval: options.heartbeatInterval,
      heartbeatTimeout: options.heartbeatTimeout,
      maxMessageSize: options.maxMessageSize + 1024,
      reconnectInterval: 100,
      reconnectMaxInterval: 2000,
      ...curveClient(options.curve),
    });
    try {
      this.watch();
    } catch (e) {
      this.socket.close();
      throw e;
    }
    void this.receive();
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(options.idleTtl / 2, 10_000)));
    this.sweeper.unref();
  }

  /** Peers with a connection (or a connection attempt). */
  get size(): number {
    return this.peers.size;
  }

  /** Peers connected now (handshake done). O(peers): for scrapes, not per message. */
  get connected(): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.state === 'ready') n++;
    return n;
  }

  /** Records waiting to be handed to ZeroMQ (for a handshake, or a full pipe). */
  get queued(): number {
    let n = this.waitingRecords;
    for (const p of this.dirty) n += p.outbox.length;
    return n;
  }

  /**
   * Why some peer is in trouble: its connection failed or was lost within `forMs`, and no
   * handshake with it since. Undefined when none is.
   */
  trouble(forMs: number): string | undefined {
    return this.troubled.reason(forMs);
  }

  /**
   * Queue `record` for `address`. `settle` says whether it left; `id` is tracked as in flight
   * until untrack(). Positional options: this runs once per message.
   */
  send(address: string, record: Encoded, settle: Settle, id?: string, serverKey?: string, hot = false): void {
    const peer = this.peer(address, serverKey);
    if (peer instanceof Error) return settle(peer);
    if (peer.outbox.length >= this.options.maxQueued) {
      return settle(new QueueFull(`${peer.outbox.length} messages already wait for ${address} (max_queued=${this.options.maxQueued}); slow down or raise max_queued`));
    }
    if (peer.state === 'waiting') {
      if (this.waitingRecords >= this.options.poolQueue) {
        return settle(this.poolFull(`${this.waitingRecords} messages already wait for a slot (pool_queue=${this.options.poolQueue})`));
      }
      this.waitingRecords++;
    }
    peer.lastUsed = Date.now();
    if (hot) peer.hot = true;
    peer.outbox.push({ record, settle, id });
    if (peer.state === 'waiting') return;
    this.dirty.add(peer);
    this.schedule();
  }

  untrack(address: string, id: string): void {
    const peer = this.peers.get(address);
    // Closed for a waiting peer only when the pool is full (peers may wait for their turn to dial instead).
    if (peer?.inflight.delete(id) && this.waiting.size > 0 && this.peers.size >= this.options.poolMax) this.recycle(peer);
  }

  /** Close `peer` if it is idle and others wait for its slot. */
  private recycle(peer: Peer): void {
    if (peer.hot || peer.inflight.size > 0 || peer.outbox.length > 0 || this.peers.get(peer.address) !== peer) return;
    this.stats.evictions++;
    this.drop(peer, 'evicted: others wait for a slot in the pool (pool_max)');
  }

  private poolFull(why: string): QueueFull {
    return new QueueFull(`connection pool is full: ${this.peers.size} peers busy (pool_max=${this.options.poolMax}) and ${why}`);
  }

  private peer(address: string, serverKey: string | undefined): Peer | Error {
    const known = this.peers.get(address);
    if (known) {
      // Map order is our LRU order: most recently used last (already so for a run to one peer).
      if (known !== this.latest) {
        this.peers.delete(address);
        this.peers.set(address, known);
        this.latest = known;
      }
      return known;
    }
    if (this.options.curve && !serverKey) {
      return new AuthenticationFailed(`CURVE is on but ${address} registered no public key: refusing an unauthenticated connection`);
    }
    const refusal = this.refused.get(address);
    if (refusal && refusal.until > Date.now()) return refusal.error;
    const waiting = this.waiting.get(address);
    if (waiting) return waiting;
    const peer: Peer = { address, endpoint: `tcp://${address}`, routingId: `${address}#${(this.connection++).toString(36)}`, state: 'waiting', outbox: [], lastUsed: Date.now(), hot: false, inflight: new Set(), connectTimer: undefined, serverKey, connected: false };
    if (this.waiting.size > 0 || this.dialing.size >= this.options.connectBurst || (this.peers.size >= this.options.poolMax && !this.evictOne())) {
      // Every slot is busy, or enough handshakes are under way: wait (bounded by pool_queue and connect_timeout).
      if (this.waitingRecords >= this.options.poolQueue) return this.poolFull(`${this.waitingRecords} messages already wait for a slot (pool_queue=${this.options.poolQueue})`);
      this.waiting.set(address, peer);
      this.stats.poolWaits++;
      this.stallTimer ??= this.armStall();
      return peer;
    }
    return this.dial(peer) ?? peer;
  }

  /** Dial `peer`; an error (nothing was sent) when zeromq.js refused the connect. */
  private dial(peer: Peer): MessageUndeliverable | undefined {
    try {
      connectPeer(this.socket, peer.endpoint, peer.routingId, peer.serverKey);
    } catch (e) {
      peer.state = 'failed';
      return new MessageUndeliverable(`could not dial ${peer.address}: ${(e as Error).message}`, { cause: e });
    }
    peer.state = 'connecting';
    this.stats.connects++;
    this.dialing.add(peer);
    if (this.dialing.size > this.stats.dialingPeak) this.stats.dialingPeak = this.dialing.size;
    this.latest = peer;
    peer.connectTimer = this.handshakeDeadline(peer, 'complete a connection');
    this.peers.set(peer.address, peer);
  }

  /** Slots are free: dial the peers waiting for them, in order. */
  private admit(): void {
    if (this.waiting.size === 0 || this.closed) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    let undialled: [Outgoing[], Error][] | undefined;
    for (const peer of this.waiting.values()) {
      if (this.dialing.size >= this.options.connectBurst) break;
      if (this.peers.size >= this.options.poolMax && !this.evictOne()) break;
      this.waiting.delete(peer.address);
      this.waitingRecords -= peer.outbox.length;
      const refused = this.dial(peer);
      if (refused) (undialled ??= []).push([peer.outbox, refused]);
      else if (peer.outbox.length > 0) this.dirty.add(peer);
    }
    if (this.waiting.size > 0) this.stallTimer = this.armStall();
    // Settled last: a failover sends again at once, which may come back here or arm the stall timer.
    for (const [outbox, err] of undialled ?? []) for (const o of outbox) o.settle(err);
  }

  private armStall(): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.stallTimer = undefined;
      const err = this.poolFull(`neither a slot opened nor a handshake completed (connect_burst=${this.options.connectBurst}) for ${this.options.connectTimeout} ms (connect_timeout) while ${this.waiting.size} peer(s) waited`);
      const waiting = [...this.waiting.values()];
      this.waiting.clear();
      this.waitingRecords = 0;
      this.stats.poolWaitsFailed += waiting.length;
      for (const peer of waiting) {
        peer.state = 'failed';
        this.dirty.delete(peer);
        for (const o of peer.outbox.splice(0)) o.settle(err);
      }
    }, this.options.connectTimeout);
    t.unref();
    return t;
  }

  /** Close the least recently used peer with nothing pending. */
  private evictOne(): boolean {
    for (const peer of this.peers.values()) {
      if (!peer.hot && peer.inflight.size === 0 && peer.outbox.length === 0) {
        // Not admitting waiters from here: the caller is about to use the slot (admit() itself).
        this.drop(peer, 'evicted: the pool is full (pool_max)', false);
        this.stats.evictions++;
        return true;
      }
    }
    return false;
  }

  private sweep(): void {
    const now = Date.now();
    const cutoff = now - this.options.idleTtl;
    // A refusal is remembered twice its backoff, so a peer that keeps refusing backs off further.
    for (const [address, r] of this.refused) if (r.until + r.delay < now) this.refused.delete(address);
    for (const peer of [...this.peers.values()]) {
      if (peer.lastUsed < cutoff && !peer.hot && peer.inflight.size === 0 && peer.outbox.length === 0) {
        this.drop(peer);
        this.stats.idleClosed++;
      }
    }
  }

  /** Close `peer`; its slot goes to a waiting peer unless `admit` is false (the caller takes it). */
  private drop(peer: Peer, reason = 'idle', admit = true): void {
    clearTimeout(peer.connectTimer);
    this.dialing.delete(peer);
    this.peers.delete(peer.address);
    this.dirty.delete(peer);
    // Told only for a peer that is connected now: a lost one was told at its loss.
    if (peer.state === 'ready') this.events.onConnection?.('disconnect', peer.address, reason);
    disconnectPeer(this.socket, peer.endpoint); // false: already gone
    if (admit) this.admit();
  }

  /** The peer cannot be reached: nothing queued for it left, everything in flight is lost. */
  private fail(peer: Peer, error: Error): void {
    if (this.peers.get(peer.address) !== peer) return;
    // Trouble only when sends failed: a peer that went quietly is no fault of the transport.
    if (peer.outbox.length > 0 || peer.inflight.size > 0) this.troubled.mark(peer.address, error.message);
    this.drop(peer, error.message);
    peer.state = 'failed';
    const outbox = peer.outbox;
    peer.outbox = [];
    for (const o of outbox) o.settle(error);
    if (peer.inflight.size > 0) this.events.onPeerLost(peer.address, new Set(peer.inflight), error);
  }

  private schedule(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.closed) return;
    this.flushing = true;
    let blocked = false;
    try {
      for (const peer of [...this.dirty]) {
        while (peer.state === 'ready' && peer.outbox.length > 0) {
          // Detach the batch first: sends made while this one awaits go into a fresh outbox.
          const batch = peer.outbox.length <= MAX_BATCH ? peer.outbox : peer.outbox.slice(0, MAX_BATCH);
          peer.outbox = batch === peer.outbox ? [] : peer.outbox.slice(MAX_BATCH);
          try {
            await this.socket.send([peer.routingId, VERSION, ...pack(batch.map((o) => o.record), this.options.maxMessageSize)]);
          } catch (e) {
            peer.outbox = batch.concat(peer.outbox);
            const code = (e as { code?: string }).code;
            if (code === 'EAGAIN') {
              blocked = true; // high-water mark: leave it queued, retry shortly
              break;
            }
            if (code === 'EHOSTUNREACH') {
              // Not connected (any more): nothing left; wait for the reconnect or the deadline.
              this.reconnecting(peer);
              break;
            }
            throw e;
          }
          this.stats.batches++;
          this.stats.records += batch.length;
          for (const o of batch) {
            if (o.id !== undefined) peer.inflight.add(o.id);
            o.settle();
          }
        }
        if (peer.outbox.length === 0) {
          this.dirty.delete(peer);
          // Messages that expect no answer leave a peer idle at once: make room for waiters.
          if (this.waiting.size > 0) this.recycle(peer);
        }
      }
    } catch (e) {
      this.logger.error({ err: e }, 'zmq-direct: send failed');
    } finally {
      this.flushing = false;
    }
    if (blocked) setTimeout(() => this.schedule(), 1).unref();
    else if (this.readyToSend()) this.schedule();
    else this.onDrained?.();
  }

  /** Whether a connected peer has messages waiting. */
  private readyToSend(): boolean {
    for (const p of this.dirty) if (p.state === 'ready') return true;
    return false;
  }

  private reconnecting(peer: Peer): void {
    if (peer.state !== 'ready') return;
    peer.state = 'connecting';
    clearTimeout(peer.connectTimer);
    peer.connectTimer = this.handshakeDeadline(peer, 'reconnect');
  }

  /**
   * Fails `peer` if its handshake has not come by connect_timeout. The verdict waits one more
   * turn of the event loop: a deadline that fires after the loop was busy (a fanout to thousands
   * of peers) runs before the I/O that came meanwhile is read, and the handshake may be in it; a
   * live server was counted unreachable after a 400 ms stall with connect_timeout=100.
   */
  private handshakeDeadline(peer: Peer, what: string): NodeJS.Timeout {
    return setTimeout(() => {
      setImmediate(() => {
        if (peer.state === 'connecting') this.fail(peer, new MessageUndeliverable(`${peer.address} did not ${what} in ${this.options.connectTimeout} ms`));
      });
    }, this.options.connectTimeout);
  }

  private byEndpoint(endpoint: string): Peer | undefined {
    return endpoint.startsWith('tcp://') ? this.peers.get(endpoint.slice(6)) : undefined;
  }

  private watch(): void {
    const ev = observe(this.socket);
    ev.on('handshake', ({ address }) => {
      const peer = this.byEndpoint(address);
      if (!peer) return;
      clearTimeout(peer.connectTimer);
      peer.state = 'ready';
      this.troubled.clear(peer.address);
      // Its turn to dial is over: the next waiting peer's begins.
      if (this.dialing.delete(peer)) this.admit();
      if (peer.connected) this.stats.reconnects++;
      this.events.onConnection?.(peer.connected ? 'reconnect' : 'connect', peer.address);
      peer.connected = true;
      this.schedule();
    });
    ev.on('disconnect', ({ address }) => {
      const peer = this.byEndpoint(address);
      if (!peer) return;
      // ZeroMQ reports the end of a connection that never completed its handshake too.
      if (peer.state === 'ready') {
        this.stats.peersLost++;
        this.events.onConnection?.('disconnect', peer.address, 'connection lost');
      }
      // In-flight messages may or may not have arrived: report them now, not at their timeout.
      if (peer.inflight.size > 0) {
        this.troubled.mark(peer.address, `connection to ${peer.address} lost with ${peer.inflight.size} message(s) in flight`);
        const lost = new Set(peer.inflight);
        peer.inflight.clear();
        this.events.onPeerLost(peer.address, lost, new ConnectionLost(`connection to ${peer.address} lost while a message was in flight; it may or may not have been processed`));
      }
      if (peer.state === 'ready') this.reconnecting(peer);
    });
    const authFailed = ({ address, error }: { address: string; error: Error }): void => {
      const peer = this.byEndpoint(address);
      if (!peer) return;
      const last = this.refused.get(peer.address);
      const delay = Math.min((last?.delay ?? REFUSED_BACKOFF_MS / 2) * 2, REFUSED_BACKOFF_MAX_MS);
      const err = new AuthenticationFailed(`CURVE handshake with ${peer.address} failed: ${error.message} (not retried for ${delay} ms)`);
      this.stats.authFailures++;
      this.refused.set(peer.address, { until: Date.now() + delay, delay, error: err });
      this.fail(peer, err);
    };
    ev.on('handshake:error:auth', authFailed);
    ev.on('handshake:error:protocol', authFailed);
    ev.on('handshake:error:other', authFailed);
  }

  private async receive(): Promise<void> {
    try {
      for await (const [from, ...frames] of this.socket) {
        if (!from) continue;
        // The routing id is "host:port#n" (see Peer.routingId).
        const id = from.toString();
        const address = id.slice(0, id.lastIndexOf('#'));
        let records: string[];
        try {
          records = unpack(frames);
        } catch (err) {
          this.stats.badFrames++;
          this.logger.warn({ err, address }, 'zmq-direct: dropping a message with a bad version frame');
          continue;
        }
        this.events.onFrames(address, records);
      }
    } catch (e) {
      if (!this.closed) this.logger.error({ err: e }, 'zmq-direct: client socket receive failed');
    }
  }

  /**
   * Close. Messages already handed over (their sends resolved) still leave: queued ones are
   * flushed first, and ZeroMQ gets `lingerMs` to put them on the wire.
   */
  async close(lingerMs: number): Promise<void> {
    const deadline = Date.now() + lingerMs;
    if (this.flushing || this.readyToSend()) {
      // A flush is running or scheduled; it says when nothing ready is left.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, lingerMs);
        this.onDrained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.onDrained = undefined;
    }
    this.closed = true;
    clearInterval(this.sweeper);
    clearTimeout(this.stallTimer);
    const closed = new TransportClosed('the zmq transport closed before a connection-pool slot opened');
    for (const peer of this.waiting.values()) for (const o of peer.outbox.splice(0)) o.settle(closed);
    this.waiting.clear();
    this.waitingRecords = 0;
    for (const peer of this.peers.values()) {
      clearTimeout(peer.connectTimer);
      if (peer.state === 'ready') this.events.onConnection?.('disconnect', peer.address, 'closed');
    }
    this.peers.clear();
    this.troubled.clear();
    this.socket.linger = Math.max(0, deadline - Date.now());
    this.socket.close();
  }

}

function curveClient(curve: CurveOptions | undefined): Partial<zmq.SocketOptions<zmq.Router>> {
  return curve ? { curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey } : {};
}
