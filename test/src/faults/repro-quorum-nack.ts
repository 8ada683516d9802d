/**
 * The broker-side half of rabbit-cluster-failover's failure (scenarios/servers.ts), with raw
 * amqplib and no hybridbus: on RabbitMQ 3.10, a confirm channel opened while a quorum queue's
 * leader is being re-elected (its node was just killed) has every publish to that queue nacked,
 * for as long as the channel lives; a channel opened later on the same connection is fine.
 * rabbit-brokered reconnects within milliseconds of losing its node, so its new channels fall
 * in that window and every later cast and notification fails with MessageDeliveryFailure.
 *
 *   npm run build && node test/dist/faults/repro-quorum-nack.js
 *
 * Prints one character per publish ('.' confirmed, 'x' nacked), then the verdict.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { startRabbitCluster } from '../harness/cluster.js';

const cluster = await startRabbitCluster();
try {
  const [n0, n1] = cluster.nodes;
  if (!n0 || !n1) throw new Error('need 3 nodes');
  // Declared through node 0, so node 0 leads the queue.
  const c0 = await amqp.connect(n0.url);
  c0.on('error', () => undefined); // node 0 is about to die
  const ch = await c0.createChannel();
  await ch.assertExchange('x', 'topic', { durable: true });
  await ch.assertQueue('q', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue('q', 'x', 'q');

  await n0.kill();
  const conn = await amqp.connect(n1.url); // as a client failing over at once does
  const early = await conn.createConfirmChannel();
  const publish = (c: amqp.ConfirmChannel): Promise<string> =>
    new Promise((resolve) => c.publish('x', 'q', Buffer.from('m'), { mandatory: true }, (err) => resolve(err ? 'x' : '.')));
  let line = '';
  const t0 = Date.now();
  while (Date.now() - t0 < 15_000) {
    line += await publish(early);
    await sleep(100);
  }
  const late = await conn.createConfirmChannel();
  const fresh = await publish(late);
  console.log(`channel opened right after the kill, 15 s of publishes: ${line}`);
  console.log(`a channel opened 15 s later on the same connection: ${fresh}`);
  const stuck = !line.slice(-20).includes('.');
  console.log(stuck ? 'REPRODUCED: the early channel is still nacked; only a new channel works' : 'not reproduced: the early channel recovered');
  await conn.close();
} finally {
  await cluster.stop();
}
