/**
 * Runs a command with a private RabbitMQ (the test launcher's: free loopback port, own data
 * dir, removed after), so `hybridbus bench` can compare every backend without a system broker:
 *
 *   node test/dist/harness/with-servers.js node packages/cli/dist/main.js bench [flags]
 *
 * The command gets HYBRIDBUS_BENCH_RABBIT_URL; its exit code is this script's.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { startRabbitMQ } from './launcher.js';

const [command, ...args] = process.argv.slice(2);
if (!command) {
  process.stderr.write('usage: with-servers.js COMMAND [ARGS...]\n');
  process.exit(2);
}
process.stderr.write('with-servers: starting RabbitMQ...\n');
const rabbit = await startRabbitMQ({ plugins: [] });
process.stderr.write(`with-servers: RabbitMQ at ${rabbit.url}\n`);
let code = 1;
try {
  const child = spawn(command, args, {
    stdio: 'inherit',
    env: { ...process.env, HYBRIDBUS_BENCH_RABBIT_URL: rabbit.url.replace(/^amqp:/, 'rabbit:') },
  });
  const [exit] = (await once(child, 'exit')) as [number | null];
  code = exit ?? 1;
} finally {
  await rabbit.stop();
}
process.exit(code);
