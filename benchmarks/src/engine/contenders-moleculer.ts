/**
 * Moleculer 0.15 as a peer contender: `moleculer-tcp`, its TCP transporter between separate
 * client and server processes (child-moleculer.ts). A peer, not a baseline: it has no ratio of
 * its own; the README compares zmq:// with it. Importing this module registers it.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Contender } from './contender.js';
import { registerContender } from './contenders.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = { command: process.execPath, args: [path.join(here, 'child-moleculer.js')] };

registerContender('moleculer-tcp', (): Contender => ({
  info: { id: 'moleculer-tcp', label: 'Moleculer 0.15 (TCP transporter)', kind: 'raw' },
  scenarios: ['latency', 'throughput', 'cast'],
  unsupported: {
    fanout: 'Moleculer has no "every server of a topic" cast here (broadcast reaches every node of every service); not mapped',
    notify: 'Moleculer has no notification pools; its balanced events are what cast measures',
  },
  data: {},
  probe: async () => undefined,
  server: () => child,
  client: () => child,
  baseline: () => undefined,
}));
