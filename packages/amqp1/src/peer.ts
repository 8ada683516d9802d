/**
 * One AMQP 1.0 connection this process opens: to an intermediary (kept up, reconnecting with
 * backoff over the failover list) or, in direct mode, to one server's listener (not
 * reconnected: its server may be gone, and the name service knows the others). It holds the
 * connection's senders by address, its reply receiver, and what the peer announced.
 *
 * rhea re-attaches every link after a reconnect by itself; what it cannot know is which of
 * our sends were unsettled when the connection dropped, so outbox.ts keeps those and is told
 * here (onDown) to resend or fail them.
 */
import { AuthenticationFailed, ConnectionLost, MessageUndeliverable, type Logger } from '@hybridbus/core';
import { publishTransportEvent } from '@hybridbus/core/driver';
import net from 'node:net';
import tls from 'node:tls';
import rhea from 'rhea';
import type { Connection, ConnectionOptions, Container, EventContext, Message, Receiver, ReceiverOptions, Sender } from 'rhea';
import { LinkSender } from './outbox.js';

export interface PeerOptions {
  readonly label: string;
  /** "host:port" of a direct server (its name-service address); the host list otherwise. */
  readonly address: string;
  readonly logger: Logger;
  /** Connection options for attempt n (failover lists rotate). */
  readonly connect: (attempt: number) => ConnectionOptions;
  /** Reconnect with this backoff; undefined: one connection, never re-opened. */
  readonly reconnect?: { readonly initialMs: number; readonly maxMs: number } | undefined;
  /** The reply receiver's source, asked once connected: dynamic (the peer names it) or a fixed address. */
  readonly replySource: () => { readonly dynamic: true } | { readonly address: string };
  readonly replyCredit: number;
  /** The driver's totals, shared by all its peers (a direct peer lives only as long as its connection). */
  readonly counts: PeerCounts;
  /** Who publishes the `hybridbus:transport:*` events: the transport's name and URL scheme. */
  readonly transport: { readonly transport: string; readonly scheme: string };
  /** Its first connection re-makes one lost before (a direct peer made again for the same server). */
  readonly again?: boolean | undefined;
}

export interface PeerCounts {
  /** Messages sent again (released, or unsettled when a connection was lost). */
  resends: number;
  /** Connections made again after one was lost. */
  reconnects: number;
}

type Listener = () => void;

/** Reply links a server keeps open at once (one per client it answers). */
const MAX_REPLY_LINKS = 1_000;

export class Peer {
  readonly connection: Connection;
  private readonly senders = new Map<string, LinkSender>();
  private readonly replySenders = new Map<string, LinkSender>();
  private readonly upListeners = new Set<Listener>();
  private readonly downListeners = new Set<(error: Error) => void>();
  private up = false;
  private closed = false;
  private everUp = false;
  private lastError: Error | undefined;
  private replyReceiver: Receiver | undefined;
  private replyHandler: ((ctx: EventContext) => void) | undefined;
  private replyAddr: string | undefined;
  /** The socket of the current connection attempt (opened by us through rhea's connect hook). */
  private socket: net.Socket | undefined;
  private replyWaiters: Array<{ resolve: (a: string) => void; reject: (e: Error) => void }> = [];
  /** "host:port" of the current connection attempt (one of a failover list's), for events. */
  private endpoint: string | undefined;
  /** The `properties` of the peer's open frame (its `product` decides addressing). */
  remoteProperties: Readonly<Record<string, unknown>> = {};

  constructor(
    container: Container,
    private readonly options: PeerOptions,
  ) {
    let attempt = 0;
    const first = options.connect(0);
    const reconnect = options.reconnect;
    this.connection = container.connect({
      ...first,
      reconnect: reconnect !== undefined,
      initial_reconnect_delay: reconnect?.initialMs,
      max_reconnect_delay: reconnect?.maxMs,
      connection_details: () => {
        const o = options.connect(attempt++) as ConnectionOptions & { host: string; port: number };
        this.endpoint = `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
        // We open the socket (rhea's documented `connect` hook), so we can also drop it (sessionEnded).
        const connect = (port: number, host: string, opts: tls.ConnectionOptions, done: () => void): net.Socket =>
          (this.socket = o.transport === 'tls' ? tls.connect(port, host, opts, done) : net.connect(port, host, done));
        return { host: o.host, port: o.port, transport: o.transport ?? 'tcp', options: o, connect } as never;
      },
      // A peer that refuses a link must not tear the whole connection down: errors are ours to handle.
      non_fatal_errors: ['amqp:connection:forced', 'amqp:resource-limit-exceeded'],
    } as ConnectionOptions);
    this.connection.on('connection_open', (ctx: EventContext) => {
      this.remoteProperties = (ctx.connection.properties ?? {}) as Record<string, unknown>;
      this.up = true;
      const again = this.everUp || options.again === true;
      if (again) options.counts.reconnects++;
      this.event(again ? 'reconnect' : 'connect');
      this.everUp = true;
      this.lastError = undefined;
      for (const l of [...this.upListeners]) l();
    });
    this.connection.on('disconnected', (ctx: EventContext) => this.down(ctx.error, ctx.reconnecting === true));
    this.connection.on('connection_close', (ctx: EventContext) => {
      // A failed SASL exchange is reported here with the error in the context, not on the connection.
      if (!this.closed) this.down((ctx.error ?? ctx.connection.error) as Error | undefined, this.options.reconnect !== undefined);
    });
    this.connection.on('connection_error', () => undefined);
    this.connection.on('protocol_error', (ctx: EventContext) => this.down(ctx.error, this.options.reconnect !== undefined));
    this.connection.on('error', (e: Error) => this.down(e, this.options.reconnect !== undefined));
    // Link-level errors arrive on the links' own handlers; these keep rhea from printing them.
    this.connection.on('sender_error', () => undefined);
    this.connection.on('receiver_error', () => undefined);
    this.connection.on('session_error', () => undefined);
    this.connection.on('session_close', (ctx: EventContext) => this.sessionEnded(ctx));
  }

  /**
   * The peer ended a session we did not close. RabbitMQ does so to every session before it shuts
   * down (amqp:internal-error "shutdown"), and to one whose link failed; rhea would then drop the
   * session and its links for good: every subscription and the reply link, silently. So it is
   * kept (rhea re-begins a kept session and re-attaches its links on reconnect) and, where the
   * connection itself stays up, the connection is dropped to reconnect with it.
   */
  private sessionEnded(ctx: EventContext): void {
    const session = ctx.session;
    if (!session || session.is_itself_closed() || this.closed || this.options.reconnect === undefined) return;
    // rhea closes a session the peer ended on the next tick unless the application has acted on it
    // since the event: opening it again (a no-op on the wire for an open session) is that act.
    process.nextTick(() => session.open());
    this.options.logger.warn({}, `amqp1 ${this.options.label}: the peer ended a session (${errorText(ctx.session?.error)}); reconnecting to restore its links`);
    setImmediate(() => {
      // With an error: rhea hears of a socket's end only through its 'end' and 'error' events.
      if (this.up) this.socket?.destroy(new Error('the peer ended a session'));
    });
  }

  get label(): string {
    return this.options.label;
  }

  get counts(): PeerCounts {
    return this.options.counts;
  }

  /** It has been connected (now or before). */
  get everConnected(): boolean {
    return this.everUp;
  }

  /** Why it is not connected (never credentials: host:port and error texts). */
  get downReason(): string {
    const last = this.lastError;
    if (last instanceof AuthenticationFailed) return last.message;
    if (this.everUp) return `connection lost: ${last?.message ?? 'closed'}${this.closed ? '' : '; reconnecting'}`;
    return `connecting to ${this.options.address}${last ? `: ${last.message}` : ''}`;
  }

  /** Add this connection's sends waiting for credit and waiting for an outcome to `acc`. */
  addOutstanding(acc: { queued: number; unacked: number }): void {
    for (const s of this.senders.values()) {
      acc.queued += s.waiting;
      acc.unacked += s.unsettled;
    }
    for (const s of this.replySenders.values()) {
      acc.queued += s.waiting;
      acc.unacked += s.unsettled;
    }
  }

  private event(kind: 'connect' | 'disconnect' | 'reconnect', reason?: string): void {
    publishTransportEvent(kind, () => ({ ...this.options.transport, peer: this.endpoint ?? this.options.address, reason }));
  }

  get address(): string {
    return this.options.address;
  }

  get isUp(): boolean {
    return this.up;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Runs on every (re)connection. */
  onUp(l: Listener): () => void {
    this.upListeners.add(l);
    return () => this.upListeners.delete(l);
  }

  /** Runs when the connection drops (before any reconnect). */
  onDown(l: (error: Error) => void): () => void {
    this.downListeners.add(l);
    return () => this.downListeners.delete(l);
  }

  private down(error: unknown, reconnecting: boolean): void {
    const err =
      error instanceof Error
        ? error
        : new Error(typeof error === 'object' && error !== null && 'description' in error ? String((error as { description: unknown }).description) : 'connection closed');
    const wasUp = this.up;
    this.up = false;
    // The SASL outcome or the peer's close said no: the first error says why; what follows is only the socket closing.
    if (!(this.lastError instanceof AuthenticationFailed)) this.lastError = refusal(error) ?? err;
    if (!reconnecting && !this.closed) this.closed = true;
    if (wasUp) this.event('disconnect', this.lastError.message);
    if (wasUp || !this.everUp) {
      if (wasUp) this.options.logger.warn({}, `amqp1 ${this.options.label}: connection lost (${err.message})${reconnecting ? '; reconnecting' : ''}`);
      this.replyAddr = undefined;
      const lost = this.lastError instanceof AuthenticationFailed ? this.lastError : new ConnectionLost(`amqp1 ${this.options.label}: connection lost: ${err.message}`, { cause: err });
      for (const l of [...this.downListeners]) l(lost);
      if (this.closed) {
        for (const w of this.replyWaiters.splice(0)) w.reject(lost);
      }
    }
  }

  /** Resolves once connected; rejects when `timeoutMs` passes first or the peer is gone for good. */
  whenUp(timeoutMs: number): Promise<void> {
    if (this.up) return Promise.resolve();
    if (this.closed) return Promise.reject(this.goneError());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        offUp();
        offDown();
        const last = this.lastError;
        if (last instanceof AuthenticationFailed) return reject(last);
        reject(new ConnectionLost(`amqp1 ${this.options.label}: not connected within ${timeoutMs} ms${this.lastError ? ` (${this.lastError.message})` : ''}`));
      }, timeoutMs);
      const offUp = this.onUp(() => {
        clearTimeout(timer);
        offUp();
        offDown();
        resolve();
      });
      const offDown = this.onDown(() => {
        if (!this.closed) return;
        clearTimeout(timer);
        offUp();
        offDown();
        reject(this.goneError());
      });
    });
  }

  private goneError(): Error {
    if (this.lastError instanceof AuthenticationFailed) return this.lastError;
    return new ConnectionLost(`amqp1 ${this.options.label}: connection closed${this.lastError ? ` (${this.lastError.message})` : ''}`);
  }

  /** The sender for `address` on this connection (made on first use, kept while it works). */
  sender(address: string, presettled: boolean): LinkSender {
    const key = `${presettled ? 's' : 'u'}${address}`;
    let s = this.senders.get(key);
    if (!s || s.isDead) {
      s = this.openSender(address, presettled, () => this.senders.delete(key));
      this.senders.set(key, s);
    }
    return s;
  }

  /**
   * Send a reply to a client's reply address. Every client has its own, so these links are
   * kept in a bounded most-recently-used set (the least recently used idle one is detached).
   */
  sendReply(to: string, message: Message, presettled: boolean, timeoutMs: number): Promise<void> {
    let s = this.replySenders.get(to);
    if (s && !s.isDead) this.replySenders.delete(to);
    else s = this.openSender(to, presettled, () => this.replySenders.get(to) === s && this.replySenders.delete(to));
    this.replySenders.set(to, s);
    if (this.replySenders.size > MAX_REPLY_LINKS) {
      for (const [addr, old] of this.replySenders) {
        if (old.pending > 0) continue;
        this.replySenders.delete(addr);
        old.detach();
        break;
      }
    }
    return s.send(message, { deadline: Date.now() + timeoutMs, resendOnLoss: false, what: 'reply' });
  }

  private openSender(address: string, presettled: boolean, onDead: () => void): LinkSender {
    const link: Sender = this.connection.open_sender({
      target: { address },
      source: { address },
      snd_settle_mode: presettled ? 1 : 0,
      autosettle: true,
      treat_modified_as_released: false,
    } as never);
    return new LinkSender(link, this, address, presettled, onDead);
  }

  /** Attach a receiver (rhea keeps it attached across reconnects). */
  receiver(options: ReceiverOptions): Receiver {
    return this.connection.open_receiver(options);
  }

  /**
   * The address replies to this connection go to, once the peer has attached the reply
   * receiver (a dynamic source gets its address from the peer, again after each reconnect);
   * undefined until then.
   */
  replyAddressNow(handler: (ctx: EventContext) => void): string | undefined {
    if (this.replyAddr === undefined) return undefined;
    this.replyHandler = handler;
    return this.replyAddr;
  }

  /** As replyAddressNow, waiting for the peer to attach the reply receiver when it has not yet. */
  replyAddress(handler: (ctx: EventContext) => void): Promise<string> {
    this.replyHandler = handler;
    if (this.replyAddr !== undefined) return Promise.resolve(this.replyAddr);
    if (this.closed) return Promise.reject(this.goneError());
    if (!this.replyReceiver) {
      const src = this.options.replySource();
      const r = this.connection.open_receiver({
        source: 'dynamic' in src ? { address: undefined as unknown as string, dynamic: true } : { address: src.address },
        target: { address: 'rpc-response' },
        credit_window: this.options.replyCredit,
        autoaccept: true,
      });
      r.on('receiver_open', (ctx: EventContext) => {
        const addr = ctx.receiver?.source?.address;
        if (!addr) return this.failReply(new MessageUndeliverable(`amqp1 ${this.options.label}: the peer gave the reply receiver no address (it must support dynamic sources)`));
        this.replyAddr = addr;
        for (const w of this.replyWaiters.splice(0)) w.resolve(addr);
      });
      r.on('receiver_error', (ctx: EventContext) => {
        const e = ctx.receiver?.error as { description?: string; condition?: string } | undefined;
        this.failReply(new MessageUndeliverable(`amqp1 ${this.options.label}: the reply receiver was refused: ${e?.condition ?? ''} ${e?.description ?? ''}`.trim()));
      });
      r.on('message', (ctx: EventContext) => this.replyHandler?.(ctx));
      this.replyReceiver = r;
    }
    return new Promise((resolve, reject) => this.replyWaiters.push({ resolve, reject }));
  }

  private failReply(e: Error): void {
    this.replyReceiver = undefined;
    for (const w of this.replyWaiters.splice(0)) w.reject(e);
  }

  close(): void {
    if (this.closed && !this.connection.is_open()) return;
    this.closed = true;
    if (this.up) this.event('disconnect', 'closed');
    this.up = false;
    const gone = this.goneError();
    for (const w of this.replyWaiters.splice(0)) w.reject(gone);
    for (const s of [...this.senders.values(), ...this.replySenders.values()]) s.failAll(gone);
    this.connection.close();
  }
}

function errorText(error: unknown): string {
  const e = error as { condition?: unknown; description?: unknown } | undefined;
  return [e?.condition, e?.description].filter((x) => x !== undefined && x !== null).join(': ') || 'no error given';
}

/** AuthenticationFailed when `error` is the peer refusing our credentials (SASL, or a close saying so). */
function refusal(error: unknown): AuthenticationFailed | undefined {
  const e = error as { condition?: unknown; description?: unknown } | undefined;
  if (e?.condition !== 'amqp:unauthorized-access') return undefined;
  return new AuthenticationFailed(`amqp1: the peer refused our credentials: ${String(e.description ?? e.condition)}`);
}

export { rhea };
