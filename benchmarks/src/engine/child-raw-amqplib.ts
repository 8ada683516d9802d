/**
 * The raw amqplib baseline's child: what a careful amqplib user writes by hand on the broker the
 * hybridbus rabbit driver uses, without envelopes, serialisation or reconnection logic.
 * - calls: the classic RPC pattern: a shared request queue the servers consume (ack after the
 *   reply is published), replies to an exclusive reply queue with a correlation id;
 * - cast, notify: publisher confirms (ConfirmChannel) with a bounded window of unconfirmed
 *   publishes to a queue the server consumes, acking after handling;
 * - fanout: a fanout exchange, one exclusive queue per server, confirmed publishes.
 * Every connection has TCP_NODELAY on (amqplib leaves Nagle on), as the hybridbus driver does.
 * Like the hybridbus child, each server has its own connection (its own peer).
 * spec.data.url is the broker (rabbit://, amqp:// or amqps://).
 */
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { connectOptions } from './amqp-connect.js';
import { Payloads, readSpec, runClient, runServer, SEND_WINDOW, type ClientSide } from './child.js';
import type { ClientSpec, ServerSpec } from './contender.js';


const open = (spec: ServerSpec | ClientSpec): Promise<ChannelModel> => connect(connectOptions(String(spec.data['url'])), { noDelay: true });
const fanoutExchange = (topic: string): string => `${topic}_fanout`;
const isCall = (s: ServerSpec | ClientSpec): boolean => s.scenario === 'latency' || s.scenario === 'throughput';

const role = readSpec<ServerSpec | ClientSpec>().role;

if (role === 'server') {
  await runServer(async (spec, arrivals) => {
    const conns: ChannelModel[] = [];
    for (let i = 0; i < spec.servers.length; i++) {
      const conn = await open(spec);
      conns.push(conn);
      const ch = await conn.createChannel();
      if (isCall(spec)) {
        await ch.assertQueue(spec.topic, { durable: false, autoDelete: true });
        await ch.consume(spec.topic, (msg) => {
          if (!msg) return;
          ch.publish('', msg.properties.replyTo as string, msg.content, { correlationId: msg.properties.correlationId as string });
          ch.ack(msg);
        });
      } else {
        let queue = spec.topic;
        if (spec.scenario === 'fanout') {
          await ch.assertExchange(fanoutExchange(spec.topic), 'fanout', { durable: false, autoDelete: true });
          queue = (await ch.assertQueue('', { exclusive: true, autoDelete: true })).queue;
          await ch.bindQueue(queue, fanoutExchange(spec.topic), '');
        } else {
          await ch.assertQueue(queue, { durable: false, autoDelete: true });
        }
        await ch.consume(queue, (msg) => {
          if (!msg) return;
          arrivals.hit();
          ch.ack(msg);
        });
      }
    }
    return { close: async () => void (await Promise.allSettled(conns.map((c) => c.close()))) };
  });
} else {
  await runClient(async (spec): Promise<ClientSide> => {
    const conn = await open(spec);
    const payloads = new Payloads(spec.payload.sizes);
    if (isCall(spec)) {
      const ch: Channel = await conn.createChannel();
      const { queue: replyQueue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      const waiting = new Map<string, () => void>();
      await ch.consume(replyQueue, (msg: ConsumeMessage | null) => {
        if (!msg) return;
        ch.ack(msg);
        const id = msg.properties.correlationId as string;
        const done = waiting.get(id);
        waiting.delete(id);
        done?.();
      });
      let seq = 0;
      return {
        call: () =>
          new Promise<void>((resolve) => {
            const correlationId = (seq++).toString(36);
            waiting.set(correlationId, resolve);
            ch.publish('', spec.topic, payloads.nextBuffer(), { replyTo: replyQueue, correlationId });
          }),
        sendMany: () => Promise.reject(new Error('no one-way messages in call scenarios')),
        close: () => conn.close(),
      };
    }
    const ch = await conn.createConfirmChannel();
    const [exchange, routingKey] = spec.scenario === 'fanout' ? [fanoutExchange(spec.topic), ''] : ['', spec.topic];
    if (spec.scenario === 'fanout') await ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: true });
    let failure: Error | undefined;
    let writable = true;
    ch.on('drain', () => {
      writable = true;
      wake?.();
    });
    let unconfirmed = 0;
    let wake: (() => void) | undefined;
    const waitForWake = (): Promise<void> => new Promise<void>((r) => (wake = r));
    return {
      sendMany: async (more) => {
        let sent = 0;
        while (more()) {
          while (unconfirmed >= SEND_WINDOW || !writable) await waitForWake();
          if (failure) throw failure;
          unconfirmed++;
          writable = ch.publish(exchange, routingKey, payloads.nextBuffer(), {}, (err) => {
            if (err) failure ??= err instanceof Error ? err : new Error(String(err));
            unconfirmed--;
            wake?.();
          });
          sent++;
        }
        while (unconfirmed > 0) await waitForWake();
        if (failure) throw failure;
        return sent;
      },
      close: () => conn.close(),
    };
  });
}
