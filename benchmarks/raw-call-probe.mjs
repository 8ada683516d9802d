/**
 * The raw counterpart of `PATTERN=call WIN=1` in benchmarks/context-probe.mjs: two processes,
 * raw zeromq.js DEALER→ROUTER echo of a 100-byte JSON body, one call in flight; rate and CPU µs
 * per call, client / server (benchmarks/zmq-findings.md, "What a lone call costs").
 *
 *   node benchmarks/raw-call-probe.mjs
 */
import { fork } from 'node:child_process';
import * as zmq from 'zeromq';

if (process.argv[2] === 'server') {
  const router = new zmq.Router();
  await router.bind('tcp://127.0.0.1:0');
  process.send({ endpoint: router.lastEndpoint });
  // Gone with the client, even when it crashed: a leftover server would load the next runs.
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m) => {
    if (m === 'cpu') {
      const c = process.cpuUsage();
      process.send({ cpu: c.user + c.system });
    }
    if (m === 'exit') process.exit(0);
  });
  for await (const [id, body] of router) await router.send([id, body]);
} else {
  const child = fork(new URL(import.meta.url).pathname, ['server']);
  const { endpoint } = await new Promise((r) => child.once('message', r));
  const ask = () => new Promise((r) => { child.once('message', r); child.send('cpu'); });
  const dealer = new zmq.Dealer();
  dealer.connect(endpoint);
  const body = Buffer.from(JSON.stringify({ p: 'x'.repeat(100) }));
  async function run(ms) { let n = 0; const end = Date.now() + ms; while (Date.now() < end) { await dealer.send(body); await dealer.receive(); n++; } return n; }
  await run(700);
  const s0 = await ask(); const c0 = process.cpuUsage();
  const n = await run(2000);
  const c1 = process.cpuUsage(c0); const s1 = await ask();
  console.log(`raw call@1: ${Math.round(n / 2)}/s c ${((c1.user + c1.system) / n).toFixed(1)} s ${((s1.cpu - s0.cpu) / n).toFixed(1)} µs`);
  child.send('exit');
  dealer.close();
  await new Promise((r) => child.once('exit', r));
}
