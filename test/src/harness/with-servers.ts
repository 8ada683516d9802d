/**
 * Runs a command with private servers (the test launcher's: free loopback ports, own data dirs,
 * removed after), so `hybridbus bench` can compare every backend without system servers:
 *
 *   node test/dist/harness/with-servers.js node packages/cli/dist/main.js bench [flags]
 *
 * - RabbitMQ with its AMQP 1.0 plugin (one port for 0-9-1 and 1.0): HYBRIDBUS_BENCH_RABBIT_URL;
 * - Qpid Proton's C++ example broker: HYBRIDBUS_BENCH_PROTON_URL;
 * - a qdrouterd when one is configured (QDROUTERD_BIN, see harness/qdrouterd.ts):
 *   HYBRIDBUS_BENCH_ROUTER_URL; without one, the router contenders are skipped with the reason.
 * A server that cannot start is reported and left out (its contenders are skipped); the
 * command's exit code is this script's.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { qdrouterdAvailable, startProtonBroker, startQdrouterd, startRabbitMQ, type RunningServer } from './launcher.js';

const [command, ...args] = process.argv.slice(2);
if (!command) {
  process.stderr.write('usage: with-servers.js COMMAND [ARGS...]\n');
  process.exit(2);
}
const say = (l: string): void => void process.stderr.write(`with-servers: ${l}\n`);
const router = qdrouterdAvailable();
say(`starting RabbitMQ (with rabbitmq_amqp1_0), a Proton C++ broker${'bin' in router ? ' and qdrouterd' : ''}...`);
if ('reason' in router) say(`no qdrouterd: ${router.reason}`);
const starting: Array<[string, string, Promise<RunningServer>]> = [
  ['RabbitMQ', 'HYBRIDBUS_BENCH_RABBIT_URL', startRabbitMQ()],
  ['Proton broker', 'HYBRIDBUS_BENCH_PROTON_URL', startProtonBroker({ flavour: 'cpp' })],
  ...('bin' in router ? [['qdrouterd', 'HYBRIDBUS_BENCH_ROUTER_URL', startQdrouterd()] as [string, string, Promise<RunningServer>]] : []),
];
const started: RunningServer[] = [];
const env: Record<string, string> = {};
for (const [name, key, p] of starting) {
  try {
    const s = await p;
    started.push(s);
    // The rabbit driver's scheme is rabbit:// (amqp:// is AMQP 1.0).
    env[key] = key === 'HYBRIDBUS_BENCH_RABBIT_URL' ? s.url.replace(/^amqp:/, 'rabbit:') : s.url;
    say(`${name} at ${s.url}`);
  } catch (e) {
    say(`${name} did not start: ${(e as Error).message.split('\n')[0]}`);
  }
}
let code = 1;
try {
  const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  const [exit] = (await once(child, 'exit')) as [number | null];
  code = exit ?? 1;
} finally {
  await Promise.allSettled(started.map((s) => s.stop()));
}
process.exit(code);
