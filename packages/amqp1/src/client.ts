/**
 * The client side: calls, casts, fanouts. A request goes to the address oslo would use
 * (addressing.ts) on the connection the carrier picks; a call's reply comes back on that
 * connection's reply receiver, matched by correlation-id = the request's message-id.
 *
 * In direct mode a server that cannot be reached, or whose listener refuses the address,
 * is skipped for the next one of the key; a message it may have taken is never sent twice
 * to another server, except casts, which receivers de-duplicate.
 */
import { AuthenticationFailed, ConnectionLost, MessageDeliveryFailure, MessageUndeliverable, TransportClosed, UnsupportedFeature, type Target } from '@hybridbus/core';
import { PendingCalls, type DriverCallOptions, type PendingCall, type RpcReply, type RpcRequest, type SendOptions } from '@hybridbus/core/driver';
import type { EventContext, Message } from 'rhea';
import type { Env } from './env.js';
import type { Peer } from './peer.js';
import { decodeReply, encodeRequest } from './wire.js';

/** How long a direct client waits for a server's listener to accept its connection. */
const CONNECT_TIMEOUT_MS = 5_000;
/** Servers of a key tried at most for one message (direct mode). */
const MAX_HOSTS_TRIED = 5;

interface Call extends PendingCall {
  readonly peer: Peer;
}


export class Amqp1Client {
  private readonly pending = new PendingCalls<Call>();
  private readonly replyHandler = (ctx: EventContext): void => this.onReply(ctx);
  private readonly watched = new WeakSet<Peer>();

  constructor(private readonly env: Env) {}

  get inFlight(): number {
    return this.pending.size;
  }

  /** Replies dropped because they did not decode (or had no correlation-id). */
  malformed = 0;

  /**
   * Run `send` on a peer of `key`; in direct mode try the key's other servers while the
   * failure says the peer never took the message. When the carrier has the peer at hand and
   * it is up, `send` runs synchronously (no promise hop before the message is written).
   */
  private onPeer<T>(key: string, deadline: number, send: (peer: Peer) => Promise<T>): Promise<T> {
    let peer: Peer | undefined;
    try {
      peer = this.env.carrier.oneNow(key);
    } catch (e) {
      return Promise.reject(e);
    }
    if (!peer?.isUp) return this.tryPeers(key, deadline, send, new Set<string>(), peer);
    const first = peer;
    let sent: Promise<T>;
    try {
      sent = send(first);
    } catch (e) {
      sent = Promise.reject(e);
    }
    return sent.catch((e: unknown) => {
      const tried = new Set<string>();
      this.skip(key, first, e, tried);
      return this.tryPeers(key, deadline, send, tried, undefined);
    });
  }

  /** A failure on `peer`: throws it unless another server of the key may take the message. */
  private skip(key: string, peer: Peer, e: unknown, tried: Set<string>): void {
    if (!this.env.direct || !(e instanceof MessageUndeliverable) || tried.size + 1 >= MAX_HOSTS_TRIED) throw e;
    tried.add(peer.address);
    this.env.carrier.failed(peer, (e as Error).message);
    this.env.logger.warn({}, `amqp1 "${this.env.name}": server ${peer.address} of "${key}" skipped: ${(e as Error).message}`);
  }

  private async tryPeers<T>(key: string, deadline: number, send: (peer: Peer) => Promise<T>, tried: Set<string>, first: Peer | undefined): Promise<T> {
    for (;;) {
      const peer = first ?? (await this.env.carrier.one(key, tried));
      first = undefined;
      try {
        const left = Math.max(1, deadline - Date.now());
        await peer.whenUp(this.env.direct ? Math.min(CONNECT_TIMEOUT_MS, left) : left).catch((e: unknown) => {
          // Refused credentials are ours, not the server's: every other server would refuse them too.
          if (e instanceof AuthenticationFailed) throw e;
          // Never connected: the message was not handed over, so another server may take it.
          throw new MessageUndeliverable(`amqp1 "${this.env.name}": ${peer.label} unreachable: ${(e as Error).message}`, { cause: e });
        });
        return await send(peer);
      } catch (e) {
        this.skip(key, peer, e, tried);
      }
    }
  }

  call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
    let key: string;
    try {
      key = this.env.rpcKey(target);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.onPeer(key, Date.now() + options.timeoutMs, (peer) => {
      const replyTo = peer.replyAddressNow(this.replyHandler);
      if (replyTo !== undefined) return this.callOn(peer, replyTo, target, request, options);
      return peer.replyAddress(this.replyHandler).then((r) => this.callOn(peer, r, target, request, options));
    });
  }

  private callOn(peer: Peer, replyTo: string, target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
    this.watch(peer);
    const id = request.uniqueId;
    const message: Message = {
      message_id: id,
      to: this.env.addresser(peer).request(target),
      reply_to: replyTo,
      ttl: options.timeoutMs,
      body: encodeRequest(request, options.callMonitorTimeoutMs),
    };
    const sender = peer.sender(message.to as string, this.env.options.preSettled.has('rpc-call'));
    return new Promise<RpcReply>((resolve, reject) => {
      this.pending.add(id, { what: `call ${request.method} to ${message.to}`, onHeartbeat: options.onHeartbeat, resolve, reject, peer });
      options.cancel.onCancel((reason) => {
        this.pending.delete(id);
        sender.withdraw(message);
        reject(reason);
      });
      const now = Date.now();
      const send = { deadline: now + options.timeoutMs, creditDeadline: now + this.env.options.sendTimeoutMs, resendOnLoss: false, what: 'call' };
      sender.send(message, send).catch((e: unknown) => {
        if (!this.pending.get(id)) return;
        this.pending.delete(id);
        reject(e);
      });
    });
  }

  /** A cast to one server of the topic (or target.server), or a fanout to every server. */
  async send(target: Target, request: RpcRequest, options: SendOptions, fanout: boolean): Promise<void> {
    const presettled = this.env.options.preSettled.has('rpc-cast');
    const deadline = Date.now() + this.env.options.sendTimeoutMs;
    const body = encodeRequest(request);
    const what = fanout ? 'fanout' : 'cast';
    const sendOn = (peer: Peer, to: string): Promise<void> =>
      peer.sender(to, presettled).send({ message_id: request.uniqueId, to, body }, { deadline, resendOnLoss: true, what });
    if (!fanout) {
      await this.onPeer(this.env.rpcKey(target), deadline, (peer) => sendOn(peer, this.env.addresser(peer).request(target)));
      return;
    }
    if (!this.env.capabilities().broadcast) {
      throw new UnsupportedFeature(
        `amqp1 "${this.env.name}": this ${this.env.kind()} has no multicast, so a fanout would reach one server only; route fanout to another transport (see README, "amqp1")`,
      );
    }
    const peers = await this.env.carrier.all(this.env.groupKey(target));
    const results = await Promise.allSettled(
      peers.map(async (peer) => {
        await peer.whenUp(Math.max(1, deadline - Date.now()));
        return sendOn(peer, this.env.fanoutAddress(peer, target));
      }),
    );
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length === 0) return;
    if (failed.length === 1) throw failed[0]?.reason;
    throw new MessageDeliveryFailure(`amqp1 "${this.env.name}": fanout to ${target.topic} failed for ${failed.length} of ${peers.length} servers: ${String((failed[0]?.reason as Error).message)}`);
  }

  /** Calls waiting on a connection that dropped can never get their reply (its reply link went with it). */
  private watch(peer: Peer): void {
    if (this.watched.has(peer)) return;
    this.watched.add(peer);
    peer.onDown((error) => {
      let lost = 0;
      this.pending.rejectAll(
        (c) => new ConnectionLost(`amqp1 "${this.env.name}": the connection of ${c.what} was lost while it waited for its reply`, { cause: error }),
        (c) => c.peer === peer && ++lost > 0,
      );
      if (lost > 0) this.env.carrier.lostCalls(peer, `connection to ${peer.address} lost with ${lost} call(s) waiting for their reply`);
    });
  }

  private onReply(ctx: EventContext): void {
    const m = ctx.message;
    const id = m?.correlation_id;
    if (typeof id !== 'string') {
      this.malformed++;
      this.env.logger.warn({}, `amqp1 "${this.env.name}": a reply without a string correlation-id was dropped`);
      return;
    }
    let reply: RpcReply | undefined;
    try {
      reply = decodeReply(m?.body);
    } catch (e) {
      this.malformed++;
      const call = this.pending.get(id);
      if (call) {
        this.pending.delete(id);
        call.reject(e as Error);
      }
      return;
    }
    this.pending.reply(id, reply ?? { result: null, failure: null, ending: false });
  }

  close(): void {
    this.pending.rejectAll((c) => new TransportClosed(`amqp1 transport "${this.env.name}" closed while ${c.what} waited for its reply`));
  }
}
