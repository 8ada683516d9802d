/**
 * The RPC server side: consume a target's topic, topic.server and fanout queues, hand each
 * request to core's handler (once: duplicates by `_unique_id` are dropped), and send its reply
 * and call-monitor heartbeats to the caller's reply queue.
 */
import { MalformedMessage, MessageDeliveryFailure, MessageUndeliverable, type Target } from '@hybridbus/core';
import {
  SeenIds,
  envelope,
  exchangeOf,
  fanoutName,
  replyToOslo,
  requestFromOslo,
  serverKey,
  uniqueId,
  type IncomingRpc,
  type Subscription,
} from '@hybridbus/core/driver';
import type { Delivery } from './consumer.js';
import { MANDATORY, decodeDelivery, dropMalformed, type PartEnv } from './parts.js';
import type { Outgoing } from './publishing.js';
import { sleep } from './util.js';

/** How many request ids a server remembers (oslo keeps 16; our resends can lag more). */
const RECENT_REQUEST_IDS = 1024;
/** Give up on a heartbeat that cannot be sent within this long (the next one will try). */
const HEARTBEAT_SEND_MS = 5_000;

/** `_timeout` on the wire is seconds (oslo writes an int; a numeric string is accepted). */
function monitorMs(v: unknown): number | undefined {
  const s = typeof v === 'number' ? v : typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
  return Number.isFinite(s) && s > 0 ? s * 1000 : undefined;
}

export class RabbitServer {
  constructor(private readonly env: PartEnv) {}

  async listen(target: Target, handler: (msg: IncomingRpc) => void): Promise<Subscription> {
    // All three queues regardless of the router's hint: Python peers may send any pattern here.
    const topic = target.topic as string;
    const fanoutExchange = fanoutName(target);
    const queues = {
      exchange: exchangeOf(target, this.env.controlExchange),
      topic,
      serverQueue: serverKey(target),
      fanoutExchange,
      fanoutQueue: `${fanoutExchange}_${uniqueId()}`,
    };
    const seen = new SeenIds({ max: RECENT_REQUEST_IDS });
    return this.env.subscriptions.start({
      label: `rpc server ${queues.serverQueue}`,
      declare: (ch) => this.env.topology.rpcServer(ch, queues),
      deliver: (d) => {
        d.consumer.settle(d, 'ack', false); // oslo acks before dispatching: at most once
        this.onRequest(d, d.queue === queues.fanoutQueue, handler, seen);
      },
      ownQueues: [queues.fanoutQueue],
      acksOnArrival: true,
    });
  }

  private onRequest(d: Delivery, fanout: boolean, handler: (msg: IncomingRpc) => void, seen: SeenIds): void {
    const { logger } = this.env;
    const decoded = decodeDelivery(d, 'request', requestFromOslo, logger);
    if (!decoded) return;
    const { dict: parsed, message: request } = decoded;
    const msgId = parsed['_msg_id'];
    const replyQ = parsed['_reply_q'];
    const isCall = msgId !== undefined && msgId !== null;
    if (isCall && (typeof msgId !== 'string' || typeof replyQ !== 'string')) {
      return dropMalformed(d, 'request', new MalformedMessage('a call needs string "_msg_id" and "_reply_q"'), logger);
    }
    if (request.uniqueId !== '') {
      if (seen.has(request.uniqueId)) return logger.debug({ uniqueId: request.uniqueId }, 'dropping a duplicate request');
      seen.add(request.uniqueId);
    }
    handler({
      pattern: isCall ? 'call' : fanout ? 'fanout' : 'cast',
      request,
      callMonitorTimeoutMs: isCall ? monitorMs(parsed['_timeout']) : undefined,
      reply: async (r) => (isCall ? this.sendReply(replyQ as string, msgId as string, r.result, r.failure, true) : undefined),
      heartbeat: async () => (isCall ? this.sendReply(replyQ as string, msgId as string, null, null, false) : undefined),
    });
  }

  /**
   * To the default exchange, mandatory. A returned reply (its queue not there yet, e.g. the
   * caller is reconnecting) is retried for kombu_missing_consumer_retry_timeout, then dropped.
   */
  private async sendReply(replyQ: string, msgId: string, result: unknown, failure: string | null, ending: boolean): Promise<void> {
    const { link, sender, logger } = this.env;
    const heartbeat = !ending;
    const what = heartbeat ? `a heartbeat for call ${msgId}` : `the reply to call ${msgId}`;
    // The driver's fields added to core's dict, not spread into a copy (spreads showed per reply).
    const reply = replyToOslo({ result, failure, ending });
    reply['_msg_id'] = msgId;
    reply['_unique_id'] = uniqueId();
    const body = Buffer.from(envelope(reply));
    const limitMs = heartbeat ? HEARTBEAT_SEND_MS : this.env.options.missingConsumerRetryTimeoutS * 1000;
    const out: Outgoing = { exchange: '', routingKey: replyQ, body, properties: MANDATORY, what };
    // Nearly every reply goes out at the first try, connected: no timer for those (a timeout
    // signal per reply showed in profiles). Otherwise, retry within the time limit below.
    if (link.isUp) {
      try {
        return await sender.publish(out, { retry: 0 });
      } catch (err) {
        if (!(err instanceof MessageDeliveryFailure)) throw err;
      }
    }
    const signal = AbortSignal.timeout(Math.max(limitMs, 1));
    for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
      try {
        await sender.publish(out, { retry: -1, signal });
        return;
      } catch (err) {
        if (err instanceof MessageUndeliverable) {
          if (heartbeat) return logger.debug({ msgId, replyQ }, 'heartbeat returned: nobody waits for it any more');
          if (!signal.aborted) {
            await sleep(wait, signal).catch(() => undefined);
            if (!signal.aborted) {
              sender.stats.replyRetries++;
              continue;
            }
          }
          return logger.warn({ msgId, replyQ, seconds: limitMs / 1000 }, 'reply dropped: its reply queue had no consumer within the retry timeout');
        }
        if (signal.aborted) {
          if (heartbeat) throw new MessageDeliveryFailure(`${what} could not be sent in ${limitMs} ms`, { cause: err });
          return logger.warn({ msgId, replyQ, err }, 'reply dropped: not sent within the retry timeout');
        }
        throw err;
      }
    }
  }
}
