/**
 * The server side: a subscription takes requests from the topic's, the server's and the
 * fanout addresses (an intermediary's links, or routes of the direct listener), hands each
 * to core's handler and settles it `accepted`: a call's when its reply is written (in the
 * same tick), a cast's or fanout's when the handler is done, which through a router or
 * directly is the caster's acknowledgement. A duplicate cast or fanout (our clients resend
 * those after a lost connection, never a call) is accepted and dropped; garbage is rejected,
 * counted and logged.
 */
import { TransportClosed, type Target } from '@hybridbus/core';
import { SeenIds, type IncomingRpc, type RpcReply, type Subscription } from '@hybridbus/core/driver';
import type { Message } from 'rhea';
import type { Env } from './env.js';
import { ACCEPT, attached, consume, MANUAL_CREDIT, type Inbound } from './inbound.js';
import type { Peer } from './peer.js';
import { correlationIdFor, decodeRequest, encodeReply, messageIdText } from './wire.js';

export type RpcHandler = (msg: IncomingRpc) => Promise<void> | void;
/** How a reply gets to the address a request named. */
type Replier = (to: string, message: Message) => Promise<void>;

export interface ServerCounters {
  requests: number;
  duplicatesDropped: number;
  malformed: number;
}

export class Amqp1Server {
  readonly counters: ServerCounters = { requests: 0, duplicatesDropped: 0, malformed: 0 };
  private readonly seen: SeenIds;
  private subscriptions = 0;

  constructor(private readonly env: Env) {
    this.seen = new SeenIds({ max: env.options.dedupMax });
  }

  async listen(target: Target, handler: RpcHandler): Promise<Subscription> {
    const sub = this.subscriptions++;
    const server = target.with({ fanout: false });
    const group = target.with({ fanout: false, server: undefined });
    if (this.env.direct) return this.listenDirect(server, group, handler, sub);
    const peer = (await this.env.carrier.one('')) as Peer;
    await peer.whenUp(this.env.options.sendTimeoutMs);
    const a = this.env.addresser(peer);
    const replier: Replier = (to, message) => peer.sendReply(to, message, this.env.options.preSettled.has('rpc-reply'), this.env.options.replyTimeoutMs);
    const receivers = [
      [a.server(server), false],
      [a.group(group), false],
      [this.env.fanoutAddress(peer, group), true],
    ].map(([address, fanout]) => {
      const addr = address as string;
      const r = peer.receiver({ source: { address: addr }, target: { address: addr }, ...MANUAL_CREDIT });
      consume(r, this.env.options.rpcServerCredit, (m) => this.onRequest(m, fanout as boolean, handler, replier, sub));
      return r;
    });
    const stop = async (): Promise<void> => {
      for (const r of receivers) r.close();
    };
    await Promise.all(receivers.map((r) => attached(r, peer.label, this.env.options.sendTimeoutMs))).catch(async (e: unknown) => {
      await stop();
      throw e;
    });
    return { stop };
  }

  private async listenDirect(server: Target, group: Target, handler: RpcHandler, sub: number): Promise<Subscription> {
    const listener = await this.env.listener();
    const replier: Replier = async (to, message) => void listener.reply(to, message);
    const forms = this.env.addressers();
    const window = this.env.options.rpcServerCredit;
    const offRequests = listener.addRoute(
      forms.flatMap((a) => [a.server(server), a.group(group)]),
      { window, onMessage: (m) => this.onRequest(m, false, handler, replier, sub) },
    );
    const offFanout = listener.addRoute(
      forms.map((a) => a.fanout(group)),
      { window, each: true, onMessage: (m) => this.onRequest(m, true, handler, replier, sub) },
    );
    const keys = [this.env.rpcKey(server), this.env.groupKey(group)];
    const { registrations } = this.env;
    await registrations.register(keys, listener.record);
    return {
      stop: async () => {
        await registrations.unregister(keys, listener.record).catch(() => undefined);
        offRequests();
        offFanout();
      },
    };
  }

  private onRequest(m: Inbound, fanout: boolean, handler: RpcHandler, replier: Replier, sub: number): void {
    const msg = m.message;
    const id = messageIdText(msg.message_id) ?? '';
    let decoded;
    try {
      decoded = decodeRequest(msg.body, id);
    } catch (e) {
      this.counters.malformed++;
      if (this.counters.malformed === 1 || this.counters.malformed % 1000 === 0) {
        this.env.logger.warn({}, `amqp1 "${this.env.name}": dropped a malformed request (${this.counters.malformed} so far): ${(e as Error).message}`);
      }
      m.settle({ kind: 'reject', condition: 'amqp:decode-error', description: (e as Error).message.slice(0, 512) });
      return;
    }
    const replyTo = msg.reply_to;
    // Only casts and fanouts are ever resent (after a lost connection); our clients never
    // resend a call, so calls keep no de-duplication record.
    // Per subscription: one fanout copy reaches every server of the topic in this process.
    if (id !== '' && (fanout || !replyTo)) {
      const seenKey = `${sub}:${id}`;
      if (this.seen.has(seenKey)) {
        this.counters.duplicatesDropped++;
        m.settle(ACCEPT);
        return;
      }
      this.seen.add(seenKey);
    }
    this.counters.requests++;
    const cmt = decoded.callMonitorTimeoutMs;
    const send = (message: Message): Promise<void> => {
      if (this.env.closed()) return Promise.reject(new TransportClosed(`amqp1 transport "${this.env.name}" is closed: no reply or heartbeat can go out`));
      return replyTo ? replier(replyTo, { ...message, to: replyTo, correlation_id: correlationIdFor(msg.message_id ?? id) }).catch((e: unknown) => this.replyFailed(e)) : Promise.resolve();
    };
    const pattern = fanout ? 'fanout' : replyTo ? 'call' : 'cast';
    const incoming: IncomingRpc = {
      pattern,
      request: decoded.request,
      callMonitorTimeoutMs: cmt,
      reply: (reply: Omit<RpcReply, 'ending'>) => {
        // A call's request is accepted in the tick its reply is written, right after it (the
        // reply first: it is what the caller waits for); settling is idempotent, so the
        // finally below is then a no-op.
        const sent = send({ body: encodeReply(reply) });
        if (pattern === 'call') m.settle(ACCEPT);
        return sent;
      },
      // ttl is an AMQP uint: a monitor timeout past 2^32-1 ms (49 days) is capped, not unencodable.
      heartbeat: () => send({ ttl: cmt === undefined ? undefined : Math.min(cmt, 0xffffffff), body: undefined }),
    };
    // A cast's accept is its acknowledgement: after the handler.
    Promise.resolve()
      .then(() => handler(incoming))
      .catch(() => undefined)
      .finally(() => m.settle(ACCEPT));
  }

  private replyFailed(e: unknown): void {
    this.env.logger.warn({}, `amqp1 "${this.env.name}": a reply could not be sent: ${(e as Error).message}`);
  }
}
