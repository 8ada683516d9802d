/**
 * rabbit://…?ssl=true with ssl_ca_file / ssl_cert_file / ssl_key_file against a RabbitMQ that requires a
 * client certificate. The certificates are made for the run with the openssl command.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Bus, MessageDeliveryFailure, type Context } from '@hybridbus/core';
import '@hybridbus/rabbit-brokered';
import { freePort, startRabbitMQ, type RabbitMQServer } from './harness/launcher.js';
import { Collector, freshTopic, recordingLogger } from './util.js';

const haveOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
const ctx: Context = { user_id: 'u' };

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
function makeCerts(dir: string): void {
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=hybridbus test CA');
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n');
  fs.writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage = clientAuth\n');
  for (const who of ['server', 'client']) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=hybridbus-${who}`);
    ssl('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.pem`, '-days', '2', '-extfile', `${who}.ext`);
  }
  // Another CA nobody signed with, for the "wrong CA" case.
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=other CA');
}

describe('rabbit:// with ssl=true and client certificates', { skip: haveOpenssl ? false : 'the openssl command is not installed' }, () => {
  let dir: string;
  let rabbit: RabbitMQServer;
  let tlsPort: number;
  const buses: Bus[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-tls-'));
    makeCerts(dir);
    tlsPort = await freePort();
    rabbit = await startRabbitMQ({
      plugins: [],
      config: {
        'listeners.ssl.default': `127.0.0.1:${tlsPort}`,
        'ssl_options.cacertfile': path.join(dir, 'ca.pem'),
        'ssl_options.certfile': path.join(dir, 'server.pem'),
        'ssl_options.keyfile': path.join(dir, 'server.key'),
        'ssl_options.verify': 'verify_peer',
        'ssl_options.fail_if_no_peer_cert': true,
      },
    });
  });
  after(async () => {
    await Promise.allSettled(buses.map((b) => b.close()));
    await rabbit?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const tlsUrl = (query: Record<string, string>): string =>
    `rabbit://guest:guest@127.0.0.1:${tlsPort}/?${new URLSearchParams({ connect_timeout: '3', ssl: 'true', ...query }).toString()}`;
  const file = (name: string): string => path.join(dir, name);

  test('with the CA and a client certificate: RPC and notifications work over TLS', async () => {
    const bus = await Bus.create({ transports: { default: tlsUrl({ ssl_ca_file: file('ca.pem'), ssl_cert_file: file('client.pem'), ssl_key_file: file('client.key') }) } });
    buses.push(bus);
    const topic = freshTopic('tls');
    const server = bus.rpcServer({ topic, server: 's' }, [{ echo: (_c: Context, a: { x: string }) => a.x }]);
    await server.start();
    assert.equal(await bus.rpcClient({ topic }).call(ctx, 'echo', { x: 'über TLS' }), 'über TLS');
    const got = new Collector<unknown>();
    const listener = bus.notificationListener([{ topic }], [{ info: (_c, _p, _e, payload) => void got.push(payload) }]);
    await listener.start();
    await bus.notifier({ publisherId: 'p', topics: [topic] }).info(ctx, 'e', { n: 1 });
    assert.deepEqual(await got.until(1), [{ n: 1 }]);
    const conns = JSON.parse(await rabbit.ctl(['list_connections', 'ssl', 'peer_cert_subject', '--formatter', 'json'])) as Array<Record<string, unknown>>;
    assert.ok(conns.length > 0 && conns.every((c) => c['ssl'] === true), JSON.stringify(conns));
    assert.ok(conns.some((c) => /hybridbus-client/.test(String(c['peer_cert_subject']))));
    await listener.stop();
    await server.stop();
  });

  for (const [name, query] of [
    ['without a client certificate', { ssl_ca_file: 'ca.pem' }],
    ['trusting another CA', { ssl_ca_file: 'other.pem', ssl_cert_file: 'client.pem', ssl_key_file: 'client.key' }],
  ] as const) {
    test(`${name}: no connection, and sends say so`, async () => {
      const logger = recordingLogger();
      const q = Object.fromEntries(Object.entries(query).map(([k, v]) => [k, file(v)]));
      const bus = await Bus.create({ transports: { default: tlsUrl(q) } }, { logger });
      buses.push(bus);
      assert.ok(logger.records.some((r) => r.level === 'error' && /cannot connect/.test(r.msg ?? '')));
      await assert.rejects(bus.rpcClient({ topic: 't' }, { retry: 0 }).cast(ctx, 'x'), MessageDeliveryFailure);
    });
  }
});
