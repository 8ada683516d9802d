/**
 * The server side of zmq-direct: one ROUTER bound per transport, shared by every server and
 * listener of the process on it. Frames that do not parse are dropped and counted, and the
 * socket keeps serving; replies to one client leave together, like the client's requests.
 */
import { MalformedMessage, MessageTooLarge, type Logger } from '@hybridbus/core';
import * as zmq from 'zeromq';
import { decode, encode, pack, unpack, VERSION, type Body, type Encoded, type Kind } from './frames.js';
import type { ZmqOptions } from './options.js';
import { releaseZapHandler, zapDomainFor, zapHandlerReady } from './curve.js';
import { observe, socketOpened } from './zeromq-adapter.js';

export interface InboundStats {
  received: number;
  dropped: number;
  oversize: number;
  /** Times reading paused because serverBacklog requests were unfinished. */
  paused: number;
  /** Replies, acks and nacks that could not leave: their client had gone, or stopped reading. */
  repliesDropped: number;
  /** Connections refused at the handshake: CURVE credentials not allowed, or not ZMTP at all. */
  handshakeFailures: number;
}

/**
 * Gets the socket too, so it can answer before bind() has resolved to its caller, and the record's
 * text (decoded again when a copy cannot be made). Returns the promise of the record's
 * processing, if it has one, for backpressure.
 */
export type RecordHandler = (inbound: Inbound, client: Buffer, kind: Kind, body: Body, record: string) => Promise<unknown> | void;

/** What waits to be sent to one client. */
interface Outbox {
  readonly client: Buffer;
  records: Encoded[];
  /** It has dropped replies already (and said so). */
  full?: boolean;
}

/** Unfinished records past which reading waits a turn for handlers to settle (see receive). */
const SETTLE_AT = 512;
const settleTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A day: in effect, never (see the socket options below). */
const SERVER_HEARTBEAT_TIMEOUT = 86_400_000;

export class Inbound {
  private readonly socket: zmq.Router;
  private readonly outboxes = new Map<string, Outbox>();
  /** The box last sent to (still in `outboxes` until the next flush). */
  private lastBox: Outbox | undefined;
  private flushScheduled = false;
  private flushing = false;
  /** ms before retrying a client whose pipe was full; doubles while it stays full. */
  private retryDelay = 0.5;
  private closed = false;
  /** Records handed to handlers and not finished; reading pauses at options.serverBacklog. */
  private unfinished = 0;
  private resume: (() => void) | undefined;
  private readonly finished = (): void => {
    this.unfinished--;
    if (this.resume && this.unfinished <= this.options.serverBacklog / 2) {
      const go = this.resume;
      this.resume = undefined;
      go();
    }
  };
  readonly stats: InboundStats = { received: 0, dropped: 0, oversize: 0, paused: 0, repliesDropped: 0, handshakeFailures: 0 };
  /** "host:port" clients connect to. */
  address = '';

  private constructor(
    private readonly options: ZmqOptions,
    private readonly handler: RecordHandler,
    private readonly logger: Logger,
  ) {
    socketOpened();
    this.socket = new zmq.Router({
      linger: 0,
      // A full pipe or a client that has gone is an error we handle (see flush), not a silent drop.
      mandatory: true,
      sendTimeout: 0,
      // A server pings its clients (so they see it alive even while it is too busy to read) but
      // never drops one for silence: when it pauses reading at server_backlog, ZeroMQ stops
      // decoding that client's traffic, and a heartbeat timeout would cut the connection and
      // lose what is queued on it. Dead client hosts are found by TCP keepalive instead.
      heartbeatInterval: options.heartbeatInterval,
      heartbeatTimeout: SERVER_HEARTBEAT_TIMEOUT,
      tcpKeepalive: 1,
      tcpKeepaliveIdle: 60,
      tcpKeepaliveInterval: 10,
      tcpKeepaliveCount: 6,
      // A peer sending a larger message is disconnected by ZeroMQ before we buffer it.
      maxMessageSize: options.maxMessageSize + 1024,
      ...(options.curve
        ? { curveServer: true, curvePublicKey: options.curve.publicKey, curveSecretKey: options.curve.secretKey, zapDomain: zapDomainFor(options.curve) }
        : {}),
    });
    const refused = (): void => void this.stats.handshakeFailures++;
    let events: zmq.Observer;
    try {
      events = observe(this.socket);
    } catch (e) {
      this.socket.close();
      throw e;
    }
    events.on('handshake:error:auth', refused);
    events.on('handshake:error:protocol', refused);
  }

  static async bind(options: ZmqOptions, handler: RecordHandler, logger: Logger): Promise<Inbound> {
    if (options.curve) await zapHandlerReady();
    const inbound = new Inbound(options, handler, logger);
    await inbound.bindInRange();
    void inbound.receive();
    return inbound;
  }

  private async bindInRange(): Promise<void> {
    const [lo, hi] = this.options.portRange;
    if (lo === 0) {
      await this.socket.bind(`tcp://${this.options.bindHost}:*`);
    } else {
      let bound = false;
      // Start at a random port of the range so processes starting together rarely collide.
      const span = hi - lo + 1;
      const start = Math.floor(Math.random() * span);
      for (let k = 0; k < span && !bound; k++) {
        try {
          await this.socket.bind(`tcp://${this.options.bindHost}:${lo + ((start + k) % span)}`);
          bound = true;
        } catch (e) {
          if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
        }
      }
      if (!bound) throw new Error(`zmq-direct: no free port in ${lo}-${hi} on ${this.options.bindHost}`);
    }
    const port = /:(\d+)$/.exec(this.socket.lastEndpoint ?? '')?.[1];
    this.address = `${this.options.advertiseHost}:${port}`;
  }

  private async receive(): Promise<void> {
    try {
      for await (const [client, ...frames] of this.socket) {
        if (!client) continue;
        let records: string[];
        try {
          records = unpack(frames);
        } catch (err) {
          this.dropped(err);
          continue;
        }
        for (const record of records) {
          this.stats.received++;
          const max = this.options.maxMessageSize;
          // A string's length bounds its UTF-8 size from below, and 3× from above.
          const bytes = record.length * 3 > max ? Buffer.byteLength(record) : record.length;
          if (bytes > max) {
            this.stats.oversize++;
            this.dropped(new MessageTooLarge(`record of ${bytes} bytes exceeds max_message_size=${max}`));
            continue;
          }
          let decoded: ReturnType<typeof decode>;
          try {
            decoded = decode(record);
          } catch (err) {
            this.dropped(err);
            continue;
          }
          try {
            const done = this.handler(this, client, decoded.kind, decoded.body, record);
            if (done) {
              this.unfinished++;
              done.then(this.finished, this.finished);
            }
          } catch (err) {
            this.dropped(err);
          }
        }
        if (this.unfinished >= SETTLE_AT && this.unfinished < this.options.serverBacklog) {
          // Messages read back to back resolve at once (zeromq.js returns up to 512 reads
          // synchronously), and each continues behind the microtasks of the last: handlers'
          // promise chains of several batches stay alive together and survive scavenges (GC
          // was 40 % of a notification server's time). One turn lets the finished ones settle.
          await settleTurn();
        }
        if (this.unfinished >= this.options.serverBacklog && !this.closed) {
          // Stop taking work until half of it is done: what is not read stays in ZeroMQ's
          // bounded queues and TCP's windows, which push back on the senders.
          this.stats.paused++;
          await new Promise<void>((resolve) => (this.resume = resolve));
        }
      }
    } catch (e) {
      if (!this.closed) this.logger.error({ err: e }, 'zmq-direct: server socket receive failed');
    }
  }

  /** Count (and log at debug) a frame we could not use. */
  dropped(err: unknown): void {
    this.stats.dropped++;
    // Counted always; logged at debug so a flood of garbage cannot flood the log.
    this.logger.debug({ err }, err instanceof MalformedMessage ? 'zmq-direct: dropped a malformed frame' : 'zmq-direct: dropped a frame');
  }

  /** Queue a record for `client`; everything queued in this tick leaves together. */
  send(client: Buffer, kind: Kind, body: Body): void {
    if (this.closed) return;
    // The records of one incoming message share its client frame: look its box up once.
    let box = this.lastBox?.client === client ? this.lastBox : undefined;
    if (!box) {
      const key = client.toString('latin1');
      box = this.outboxes.get(key);
      if (!box) this.outboxes.set(key, (box = { client, records: [] }));
      this.lastBox = box;
    }
    if (box.records.length >= this.options.maxQueued) {
      // A client that does not read what it asked for: bounded memory beats its replies. Said
      // once per full queue and counted always, so such a client cannot flood the log either.
      this.stats.repliesDropped++;
      if (!box.full) this.logger.warn({ client: client.toString('hex') }, `zmq-direct: a client has ${box.records.length} replies it does not read (max_queued); dropping its replies`);
      box.full = true;
      return;
    }
    box.records.push(encode(kind, body, this.options.maxMessageSize));
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    queueMicrotask(() => void this.flush());
  }

  /**
   * The one sender of this socket: zeromq.js allows a single send in progress per socket and
   * rejects a concurrent one (EBUSY), so every reply, ack and nack leaves from this loop, in
   * the order queued. What is queued while a send is pending leaves in the next round.
   */
  private async flush(): Promise<void> {
    this.flushScheduled = false;
    if (this.flushing || this.closed) return;
    this.flushing = true;
    let blocked = false;
    try {
      while (this.outboxes.size > 0 && !this.closed) {
        const boxes = [...this.outboxes.values()];
        this.outboxes.clear();
        this.lastBox = undefined;
        for (const box of boxes) {
          try {
            await this.socket.send([box.client, VERSION, ...pack(box.records, this.options.maxMessageSize)]);
          } catch (err) {
            const code = (err as { code?: string }).code;
            if (code === 'EAGAIN') {
              // That client's pipe is full (it reads slowly): keep its records first in line.
              this.requeue(box);
              blocked = true;
            } else if (code === 'EHOSTUNREACH') {
              // The client has gone: its calls fail on its side with ConnectionLost.
              this.stats.repliesDropped += box.records.length;
            } else if (!this.closed) {
              this.stats.repliesDropped += box.records.length;
              this.logger.warn({ err }, 'zmq-direct: could not send a reply');
            }
          }
        }
        if (blocked) break;
      }
    } finally {
      this.flushing = false;
    }
    if (blocked) {
      this.retryDelay = Math.min(this.retryDelay * 2, 100);
      setTimeout(() => this.schedule(), this.retryDelay).unref();
    } else {
      this.retryDelay = 0.5;
    }
  }

  /** Put a box that could not leave back in front of what was queued for its client since. */
  private requeue(box: Outbox): void {
    const key = box.client.toString('latin1');
    const newer = this.outboxes.get(key);
    if (newer) {
      newer.records = box.records.concat(newer.records);
      newer.full ||= box.full;
    } else this.outboxes.set(key, box);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.resume?.();
    this.socket.close();
    if (this.options.curve) releaseZapHandler();
  }
}
