/**
 * Two processes on zmq:// (a Bus each, local name service): calls, casts or notifications in a
 * loop per in-flight slot, with an OpenStack-sized request context (21 keys, as nova's
 * RequestContext.to_dict() has) or an empty one; rate and CPU µs per message, client / server.
 * ROOT picks the checkout (built) to measure, so two commits can be run alternately:
 *
 *   ROOT=/path/to/checkout PATTERN=call|cast|notify WIN=16,256 CTX=openstack|empty ACKS=handled|none \
 *     node benchmarks/context-probe.mjs
 *
 * (benchmarks/zmq-findings.md, "OpenStack-sized contexts".)
 */
import { fork } from 'node:child_process';
const root = process.env.ROOT ?? new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const { Bus } = await import(`${root}/packages/core/dist/index.js`);
await import(`${root}/packages/zmq-direct/dist/index.js`);
const role = process.argv[2] ?? 'client'; const dir = process.argv[3] ?? `${(await import('node:os')).tmpdir()}/hb-context-probe-${process.pid}`;
const acks = process.env.ACKS ?? 'handled';
const bus = await Bus.create({ transports: { default: `zmq://?matchmaker=local:${dir}&acks=${acks}` }, log: { level: 'error' } });
const openstack = { user_id: 'a5d0c3e2', project_id: 'f3c1b2a9', domain_id: null, user_domain_id: 'default', project_domain_id: 'default', is_admin: false, read_deleted: 'no', remote_address: '10.0.0.5', timestamp: '2026-11-27T03:50:00.123456', request_id: 'req-1d2c3b4a-0000-1111-2222-333344445555', auth_token: 'gAAAAABk...', user_name: 'demo', project_name: 'demo', roles: ['member', 'reader'], global_request_id: null, show_deleted: false, is_admin_project: true, resource_uuid: null, system_scope: null, instance_lock_checked: false, service_catalog: [] };
const ctx = process.env.CTX === 'empty' ? {} : openstack;
if (role === 'server') {
  let hits = 0;
  const s = bus.rpcServer({ topic: 't', server: 's' }, [{ echo: (_c, a) => a, sink: () => void hits++ }]); await s.start();
  const l = bus.notificationListener([{ topic: 'n' }], [{ info: () => void hits++ }], { pool: 'p' }); await l.start();
  process.send('ready');
  // Gone with the client, even when it crashed: a leftover server would load the next runs.
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (m) => { if (m === 'cpu') { const c = process.cpuUsage(); process.send({ cpu: c.user + c.system }); } if (m === 'exit') { await bus.close(); process.exit(0); } });
} else {
  const child = fork(new URL(import.meta.url).pathname, ['server', dir], { env: process.env });
  await new Promise((r) => child.once('message', r));
  const ask = () => new Promise((r) => { child.once('message', r); child.send('cpu'); });
  const client = bus.rpcClient({ topic: 't' }); const notifier = bus.notifier({ publisherId: 'x', topics: ['n'] }); const body = { p: 'x'.repeat(100) };
  const pattern = process.env.PATTERN ?? 'cast';
  const one = pattern === 'call' ? () => client.call(ctx, 'echo', body) : pattern === 'notify' ? () => notifier.info(ctx, 'e', body) : () => client.cast(ctx, 'sink', body);
  async function run(ms, inflight) { let n = 0; const end = Date.now() + ms; await Promise.all(Array.from({ length: inflight }, async () => { while (Date.now() < end) { await one(); n++; } })); return n; }
  const out = [];
  for (const inflight of (process.env.WIN ?? '64').split(',').map(Number)) {
    await run(700, inflight);
    const s0 = await ask(); const c0 = process.cpuUsage();
    const n = await run(2000, inflight);
    const c1 = process.cpuUsage(c0); const s1 = await ask();
    out.push(`${pattern}@${inflight}: ${Math.round(n / 2)}/s c ${((c1.user + c1.system) / n).toFixed(1)} s ${((s1.cpu - s0.cpu) / n).toFixed(1)} µs`);
  }
  console.log(`${root} ctx=${process.env.CTX ?? 'openstack'} ${out.join(' | ')}`);
  child.send('exit'); await bus.close();
  await new Promise((r) => child.once('exit', r));
  (await import('node:fs')).rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
