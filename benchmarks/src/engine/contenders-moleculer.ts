/**
 * Moleculer 0.15 as a peer contender: `moleculer-tcp`, its TCP transporter between separate
 * client and server processes (child-moleculer.ts), and `moleculer-amqp`, its AMQP transporter on
 * the bench's RabbitMQ. Peers, not baselines: they have no ratio of their own; the README
 * compares zmq:// with moleculer-tcp and rabbit:// with moleculer-amqp. Importing this module
 * registers both.
 *
 * Moleculer's AMQP transporter requires amqplib itself, as an optional peer dependency (^0.10)
 * that npm leaves out of the root node_modules next to the workspaces' amqplib 2.x: its child
 * gets this package's amqplib through NODE_PATH (CommonJS resolution's last resort).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { Contender, Scenario } from './contender.js';
import { probeUrl, redactUrl, registerContender } from './contenders.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = { command: process.execPath, args: [path.join(here, 'child-moleculer.js')] };

const SCENARIOS: readonly Scenario[] = ['latency', 'throughput', 'cast'];
const UNSUPPORTED = {
  fanout: 'Moleculer has no "every server of a topic" cast here (broadcast reaches every node of every service); not mapped',
  notify: 'Moleculer has no notification pools; its balanced events are what cast measures',
};

registerContender('moleculer-tcp', (): Contender => ({
  info: { id: 'moleculer-tcp', label: 'Moleculer 0.15 (TCP transporter)', kind: 'raw' },
  scenarios: SCENARIOS,
  unsupported: UNSUPPORTED,
  data: {},
  probe: async () => undefined,
  server: () => child,
  client: () => child,
  baseline: () => undefined,
}));

/** The directory holding this package's amqplib, for NODE_PATH. */
function amqplibDir(): string {
  const main = createRequire(import.meta.url).resolve('amqplib');
  const marker = `${path.sep}node_modules${path.sep}amqplib${path.sep}`;
  return main.slice(0, main.lastIndexOf(marker) + marker.length - `amqplib${path.sep}`.length - 1);
}

registerContender('moleculer-amqp', ({ rabbitUrl }): Contender => {
  // amqplib reads an empty path as the default vhost '/'.
  const amqp = rabbitUrl?.replace(/^rabbit:/, 'amqp:').replace(/\/$/, '');
  const withAmqplib = { ...child, env: { NODE_PATH: amqplibDir() } };
  return {
    info: { id: 'moleculer-amqp', label: 'Moleculer 0.15 (AMQP transporter)', kind: 'raw', ...(rabbitUrl ? { url: redactUrl(rabbitUrl) } : {}) },
    scenarios: SCENARIOS,
    unsupported: UNSUPPORTED,
    data: amqp ? { url: amqp } : {},
    probe: async () => (rabbitUrl ? probeUrl(rabbitUrl) : 'moleculer-amqp: no RabbitMQ URL configured (--rabbit-url)'),
    server: () => withAmqplib,
    client: () => withAmqplib,
    baseline: () => undefined,
  };
});
