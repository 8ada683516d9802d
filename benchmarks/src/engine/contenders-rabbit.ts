/**
 * The RabbitMQ contenders beside hybridbus's own: `raw-amqplib` (the baseline of the rabbit
 * transport, child-raw-amqplib.ts) and `oslo` (Python oslo.messaging's rabbit driver,
 * ../../oslo/bench_child.py, run with Debian's /usr/bin/python3), and `raw-amqplib-oslo` (raw
 * amqplib doing the driver's wire work: oslo's topology, envelopes, confirms and `mandatory`;
 * child-raw-amqplib-oslo.ts), the rabbit transport's like-for-like baseline. Importing this
 * module registers them.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SCENARIOS, type Contender } from './contender.js';
import { probeUrl, redactUrl, registerContender } from './contenders.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The package root (benchmarks/): this file runs from benchmarks/dist/engine. */
const packageRoot = path.resolve(here, '..', '..');
/** Debian's python3, where python3-oslo.messaging lives (not a pyenv or venv one). */
export const OSLO_PYTHON = '/usr/bin/python3';
export const OSLO_CHILD = path.join(packageRoot, 'oslo', 'bench_child.py');

/** The URL oslo.messaging takes: rabbit:// with host(s), credentials and vhost, no hybridbus options. */
export function osloTransportUrl(url: string): string {
  const u = new URL(url);
  const cred = u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : '';
  return `rabbit://${cred}${u.host}${u.pathname || '/'}`;
}

const noBroker = (id: string): string => `${id}: no RabbitMQ URL configured (--rabbit-url)`;

/** A raw amqplib contender: a Node child script on the bench's RabbitMQ. */
function rawAmqplib(id: string, label: string, script: string, baseline: string | undefined): void {
  registerContender(id, ({ rabbitUrl }): Contender => {
    const child = { command: process.execPath, args: [path.join(here, script)] };
    return {
      info: { id, label, kind: 'raw', ...(rabbitUrl ? { url: redactUrl(rabbitUrl) } : {}) },
      scenarios: SCENARIOS,
      data: { url: rabbitUrl },
      probe: async () => (rabbitUrl ? probeUrl(rabbitUrl) : noBroker(id)),
      server: () => child,
      client: () => child,
      baseline: () => baseline,
    };
  });
}

rawAmqplib('raw-amqplib', 'raw amqplib', 'child-raw-amqplib.js', undefined);
// Compared with the floor: what oslo's wire work costs.
rawAmqplib('raw-amqplib-oslo', 'raw amqplib, oslo wire work', 'child-raw-amqplib-oslo.js', 'raw-amqplib');

/** Can Debian's python import oslo_messaging? One line saying why not, or undefined. */
function probeOslo(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(OSLO_PYTHON, ['-c', 'import oslo_messaging'], { timeout: 30_000 }, (err, _out, stderr) => {
      if (!err) return resolve(undefined);
      const last = String(stderr).trim().split('\n').pop() || err.message.split('\n')[0];
      resolve(`oslo: ${OSLO_PYTHON} cannot import oslo_messaging (${last}); install python3-oslo.messaging`);
    });
  });
}

registerContender('oslo', ({ rabbitUrl }): Contender => ({
  info: { id: 'oslo', label: 'oslo.messaging (rabbit)', kind: 'oslo', ...(rabbitUrl ? { url: redactUrl(rabbitUrl) } : {}) },
  scenarios: SCENARIOS,
  data: rabbitUrl ? { url: osloTransportUrl(rabbitUrl) } : {},
  probe: async () => {
    if (!rabbitUrl) return noBroker('oslo');
    return (await probeOslo()) ?? (await probeUrl(rabbitUrl));
  },
  // -u: unbuffered stderr, so a crash's traceback is not lost on os._exit.
  server: () => ({ command: OSLO_PYTHON, args: ['-u', OSLO_CHILD] }),
  client: () => ({ command: OSLO_PYTHON, args: ['-u', OSLO_CHILD] }),
  baseline: () => 'raw-amqplib',
}));
