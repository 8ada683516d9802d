/**
 * The README's hybrid example (docs/examples/hybrid-amqp1.yaml) runs the demo: calls, casts and
 * fanouts peer to peer over AMQP 1.0 (name service on Redis), notifications with a pool through
 * RabbitMQ — the CLI in its own process, as a user runs it, against real servers.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startRabbitMQ, startRedis, type RabbitMQServer, type RedisServer } from './harness/launcher.js';
import { tempDir } from './util.js';

const require = createRequire(import.meta.url);
const bin = join(require.resolve('@hybridbus/cli/package.json'), '..', 'dist', 'main.js');
const example = join(require.resolve('@hybridbus/cli/package.json'), '..', '..', '..', 'docs', 'examples', 'hybrid-amqp1.yaml');

let rabbit: RabbitMQServer | undefined;
let redis: RedisServer | undefined;
before(async () => {
  [rabbit, redis] = await Promise.all([startRabbitMQ({ plugins: [] }), startRedis()]);
});
after(async () => {
  await Promise.allSettled([rabbit?.stop(), redis?.stop()]);
});

test('the hybrid amqp1 + RabbitMQ example config runs the demo', async () => {
  const text = readFileSync(example, 'utf8');
  assert.match(text, /redis:\/\/127\.0\.0\.1:6379/);
  assert.match(text, /rabbit:\/\/guest:guest@127\.0\.0\.1:5672\//);
  // The example's servers, moved to this test's private ports.
  const file = join(tempDir('hb-demo-hybrid-'), 'hybrid.yaml');
  writeFileSync(
    file,
    text.replace('redis://127.0.0.1:6379', (redis as RedisServer).url).replace('rabbit://guest:guest@127.0.0.1:5672/', (rabbit as RabbitMQServer).url.replace(/^amqp:/, 'rabbit:')),
  );
  const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, '--config', file, 'demo'], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
  assert.equal(out.code, 0, out.stderr + out.stdout);
  assert.match(out.stdout, /^call +direct \(amqp:\/\/\?mode=direct.*select_destinations -> node-\d/m);
  assert.match(out.stdout, /^fanout +direct .*refresh reached node-1, node-2, node-3/m);
  assert.match(out.stdout, /^notify +broker \(rabbit:\/\/guest:\*\*\*@.*pool "billing"/m);
  assert.match(out.stdout, /2000 concurrent calls/);
});
