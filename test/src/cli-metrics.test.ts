/** `hybridbus serve --metrics HOST:PORT`, run as a user would: its own process, real sockets. */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { freshTopic, tempDir } from './util.js';

const bin = join(createRequire(import.meta.url).resolve('@hybridbus/cli/package.json'), '..', 'dist', 'main.js');
const env = { ...process.env, HYBRIDBUS_TRANSPORTS: JSON.stringify({ default: `zmq://?matchmaker=local:${tempDir('hb-cli-metrics-ns-')}` }) };

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env, timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('hybridbus serve --metrics', () => {
  const servers: Array<ReturnType<typeof spawn>> = [];
  after(() => servers.forEach((s) => s.kill('SIGTERM')));

  test('serves /metrics and /healthz beside the demo server; a call shows up in the counters', async () => {
    const topic = freshTopic();
    const server = spawn(process.execPath, [bin, 'serve', '--topic', topic, '--server', 's1', '--metrics', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    servers.push(server);
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      server.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(stderr);
        if (m && stderr.includes('serving topic')) resolve(m[1]!);
      });
      server.once('exit', (c) => reject(new Error(`serve exited with ${c}: ${stderr}`)));
    });
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { state: string }).state, 'connected');
    const call = await run(['call', topic, 'echo', '{"x": 1}']);
    assert.equal(call.code, 0, call.stderr);
    // The server counts a call after its reply went out: poll the endpoint, as a scraper would.
    const deadline = Date.now() + 20_000;
    let text = '';
    while (!/^hybridbus_messages_handled_total\{bus="default",transport="default",pattern="call",outcome="ok"\} 1$/m.test(text)) {
      assert.ok(Date.now() < deadline, `the handled call never showed up in:\n${text}`);
      text = await (await fetch(`${url}/metrics`)).text();
      if (!text.includes('pattern="call",outcome="ok"} 1')) await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(text, /^hybridbus_transport_up\{bus="default",transport="default",scheme="zmq"\} 1$/m);
    assert.match(text, /^process_cpu_user_seconds_total /m, "the process's own metrics too");
    server.kill('SIGTERM');
    assert.equal(await new Promise((r) => server.once('exit', r)), 0, 'serve stops cleanly on SIGTERM');
  });

  test('a bad HOST:PORT is one clear line naming the option, the value and the form', async () => {
    for (const bad of ['nope', '127.0.0.1', '127.0.0.1:99999', ':9464', '::1:9464', '127.0.0.1:http']) {
      const r = await run(['serve', '--topic', 't', '--metrics', bad]);
      assert.equal(r.code, 1, bad);
      assert.match(r.stderr, new RegExp(`option '--metrics <host:port>' argument '${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}' is invalid\\. expected HOST:PORT such as 127\\.0\\.0\\.1:9464`), bad);
      assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+/, `no stack trace for ${bad}`);
    }
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = taken.address() as net.AddressInfo;
      const r = await run(['serve', '--topic', freshTopic(), '--metrics', `127.0.0.1:${port}`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`^hybridbus: --metrics: serveObservability: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`, 'm'));
      assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+/);
    } finally {
      taken.close();
    }
  });
});
