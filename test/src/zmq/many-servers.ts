/**
 * A process hosting `argv[2]` zmq:// servers, each its own Bus (a ROUTER, its event observer's
 * monitor pair, a name-service registration), as the scale bench's server processes do. Prints
 * "ok N" once every server listens and one client call reached each; "failed at K: why" else.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bus } from 'hybridbus';

const n = Number(process.argv[2]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-many-'));
const url = `zmq://?matchmaker=local:${dir}`;
const buses: Bus[] = [];
try {
  for (let i = 0; i < n; i++) {
    const bus = await Bus.create({ transports: { default: url }, log: { level: 'fatal' } });
    buses.push(bus);
    await bus.rpcServer({ topic: 'many', server: `s${i}` }, [{ ping: () => 'pong' }]).start();
  }
  const client = buses[0]?.rpcClient({ topic: 'many' });
  for (let i = 0; i < n; i++) await client?.prepare({ server: `s${i}` }).call({}, 'ping');
  console.log(`ok ${n}`);
} catch (e) {
  console.log(`failed at ${buses.length}: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await Promise.allSettled(buses.map((b) => b.close()));
  fs.rmSync(dir, { recursive: true, force: true });
}
