/**
 * The RPC client side: call (a request to the topic's exchange, its reply on this driver's
 * reply queue, matched by `_msg_id`), cast and fanout (confirmed, mandatory: nobody to receive
 * is an error, not a silent loss).
 */
import { ConnectionLost, MalformedMessage, TransportClosed, type Target } from '@hybridbus/core';
import {
  PendingCalls,
  SeenIds,
  envelope,
  exchangeOf,
  fanoutName,
  replyFromOslo,
  requestToOslo,
  serverKey,
  uniqueId,
  type DriverCallOptions,
  type RpcReply,
  type RpcRequest,
  type SendOptions,
} from '@hybridbus/core/driver';
import type { Delivery } from './consumer.js';
import { MANDATORY, decodeDelivery, dropMalformed, expiringProperties, type Dict, type PartEnv } from './parts.js';
import type { Outgoing } from './publishing.js';

/** How many reply ids the client remembers, to drop duplicates (resends after a lost confirm). */
const RECENT_REPLY_IDS = 1024;
/** Why a call's leftover send is cancelled once the call has its answer (made once, not per call). */
const CALL_SETTLED = new TransportClosed('the call is settled; its send is no longer needed');

/** oslo's field order for a call (byte layout does not matter to receivers; humans read it). */
function callMessage(request: RpcRequest, fields: Dict): Dict {
  const out: Dict = {};
  for (const [k, v] of Object.entries(requestToOslo(request))) {
    if (k === '_unique_id') Object.assign(out, fields);
    out[k] = v;
  }
  return out;
}

export class RabbitClient {
  /** `reply_<uuid hex>`: one per driver instance (oslo: per process and transport). */
  readonly replyQueue = `reply_${uniqueId()}`;
  private readonly pending = new PendingCalls();
  private readonly seenReplies = new SeenIds({ max: RECENT_REPLY_IDS });
  private replyConsumer: Promise<void> | undefined;
  /** The reply queue is consumed (restored by the link after a reconnect). */
  private replyReady = false;

  /** Calls sent and waiting for their reply. */
  get pendingCalls(): number {
    return this.pending.size;
  }

  constructor(private readonly env: PartEnv) {
    env.link.onDown((err) => {
      this.pending.rejectAll((p) => new ConnectionLost(`the broker connection was lost while ${p.what} waited for its reply`, { cause: err }));
    });
  }

  private ensureReplyConsumer(): Promise<void> {
    if (!this.replyConsumer) {
      const queue = this.replyQueue;
      this.replyConsumer = this.env.subscriptions
        .start({
          label: `reply queue ${queue}`,
          declare: (ch) => this.env.topology.replyQueue(ch, queue),
          deliver: (d) => {
            d.consumer.settle(d, 'ack', false);
            this.onReply(d);
          },
          ownQueues: [queue],
          acksOnArrival: true,
        })
        .then(
          () => void (this.replyReady = true),
          (err: unknown) => {
            this.replyConsumer = undefined;
            throw err;
          },
        );
    }
    return this.replyConsumer;
  }

  private onReply(d: Delivery): void {
    const { logger } = this.env;
    const decoded = decodeDelivery(d, 'reply', replyFromOslo, logger);
    if (!decoded) return;
    const { dict, message: reply } = decoded;
    const msgId = dict['_msg_id'];
    if (typeof msgId !== 'string') return dropMalformed(d, 'reply', new MalformedMessage('reply without a string "_msg_id"'), logger);
    const uid = dict['_unique_id'];
    if (typeof uid === 'string') {
      if (this.seenReplies.has(uid)) return logger.debug({ msgId, uniqueId: uid }, 'dropping a duplicate reply');
      this.seenReplies.add(uid);
    }
    if (!this.pending.reply(msgId, reply)) logger.debug({ msgId }, 'reply for a call nobody waits for (timed out or aborted)');
  }

  async call(target: Target, request: RpcRequest, options: DriverCallOptions): Promise<RpcReply> {
    if (!this.replyReady) {
      await new Promise<void>((resolve, reject) => {
        options.cancel.onCancel(reject); // replaced below once the call is under way
        this.ensureReplyConsumer().then(resolve, reject);
      });
    }
    const msgId = uniqueId();
    const exchange = exchangeOf(target, this.env.controlExchange);
    const routingKey = serverKey(target);
    const body = envelope(
      callMessage(request, {
        _msg_id: msgId,
        _reply_q: this.replyQueue,
        _timeout: options.callMonitorTimeoutMs ? options.callMonitorTimeoutMs / 1000 : null,
      }),
    );
    // One token for the whole call: core cancels it (timeout, monitor, abort), a failure of the
    // call cancels it with its error, and an answer with CALL_SETTLED. Cancelled, the call
    // rejects and its send stops where it waits (connection, window, ...); most sends wait for
    // nothing but their confirm, and that is not waited for after a reply.
    const { cancel } = options;
    return new Promise<RpcReply>((resolve, reject) => {
      cancel.onCancel((reason) => {
        this.pending.delete(msgId);
        reject(reason);
      });
      if (cancel.reason) return;
      const what = `call ${request.method} to "${routingKey}"`;
      let sending = true;
      this.pending.add(msgId, {
        what,
        onHeartbeat: options.onHeartbeat,
        resolve: (r) => {
          resolve(r);
          if (sending) cancel.cancel(CALL_SETTLED);
        },
        reject: (e) => cancel.cancel(e),
      });
      const out: Outgoing = {
        exchange,
        routingKey,
        body: Buffer.from(body),
        properties: options.timeoutMs !== undefined ? expiringProperties(options.timeoutMs) : MANDATORY,
        declare: (gen) => this.env.topology.exchange(gen, exchange),
        what,
      };
      this.env.sender.publish(out, { retry: options.retry ?? -1, cancel }).then(
        () => void (sending = false),
        (err: unknown) => {
          sending = false;
          this.pending.get(msgId)?.reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /** A cast to one server of the topic (or `target.server`), or with `fanout` to all of them. */
  async send(target: Target, request: RpcRequest, options: SendOptions, fanout: boolean): Promise<void> {
    const { topology } = this.env;
    const exchange = fanout ? fanoutName(target) : exchangeOf(target, this.env.controlExchange);
    const routingKey = fanout ? '' : serverKey(target);
    const out: Outgoing = {
      exchange,
      routingKey,
      body: Buffer.from(envelope(requestToOslo(request))),
      properties: MANDATORY,
      declare: fanout ? (gen) => topology.fanout(gen, exchange) : (gen) => topology.exchange(gen, exchange),
      what: `${fanout ? 'fanout' : 'cast'} ${request.method} to "${fanout ? exchange : routingKey}"`,
    };
    await this.env.sender.publish(out, { retry: options.retry ?? -1, signal: options.signal });
  }

  /** Every call still waiting fails: the transport is closing. */
  close(): void {
    this.pending.rejectAll((p) => new TransportClosed(`rabbit transport "${this.env.name}" closed while ${p.what} waited for its reply`));
  }
}
