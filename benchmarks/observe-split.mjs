// Where observability's cost goes on zmq:// (issue 14; README "Observability", "What it costs").
// Two processes (this one the client, a forked server), calls at 16 and 256 in flight, one
// subscriber setup per run: `node benchmarks/observe-split.mjs MODE` after `npm run build`.
//   none          nothing subscribed
//   noop          a no-op subscriber on every message channel (core builds and publishes events)
//   spans         the least the OTel API asks of a tracer, 1 % sampled: startSpan + inject on
//                 the client, extract + startSpan + context.with on the server, one attribute
//   sampled       instrumentTracing(), 1 % sampled (benchmarks/src/engine/observe.ts)
//   metrics       registerMetrics()
//   both-sampled  both
// Prints calls/s and CPU µs per call of each process; run the modes interleaved, several times.
import { fork } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { context, defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';
import { Bus } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import { observe } from './dist/engine/observe.js';

const [mode = 'none', role = 'client', dir = `/tmp/hb-observe-split-${process.pid}`] = process.argv.slice(2);
const bus = await Bus.create({ transports: { default: `zmq://?matchmaker=local:${dir}` }, log: { level: 'error' } });

if (mode === 'noop' || mode === 'spans') {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const propagator = new W3CTraceContextPropagator();
  const tracer = new BasicTracerProvider({ sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.01) }) }).getTracer('split');
  const SPAN = Symbol('span');
  const on = (name, fn) => diagnostics.subscribe(name, fn);
  for (const ch of ['rpc:call', 'rpc:cast', 'notify:send', 'rpc:dispatch', 'notify:dispatch']) for (const ph of ['start', 'end', 'error']) on(`hybridbus:${ch}:${ph}`, () => {});
  if (mode === 'spans') {
    on('hybridbus:rpc:call:start', (e) => {
      const parent = context.active();
      const span = tracer.startSpan('call', { kind: 2, attributes: { 'messaging.system': 'zeromq' } }, parent);
      e[SPAN] = span;
      propagator.inject(trace.setSpan(parent, span), e.trace, defaultTextMapSetter);
    });
    on('hybridbus:rpc:dispatch:start', (e) => {
      const parent = e.trace === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, e.trace, defaultTextMapGetter);
      const span = tracer.startSpan('process', { kind: 1, attributes: { 'messaging.system': 'zeromq' } }, parent);
      e[SPAN] = span;
      const current = trace.setSpan(parent, span);
      e.bind = (fn) => context.with(current, fn);
    });
    for (const ch of ['rpc:call', 'rpc:dispatch']) on(`hybridbus:${ch}:end`, (e) => e[SPAN]?.end());
  }
} else if (mode !== 'none') {
  observe(bus, mode);
}

if (role === 'server') {
  const server = bus.rpcServer({ topic: 'split', server: 's' }, [{ echo: (_c, a) => a }]);
  await server.start();
  process.on('message', async (m) => {
    if (m === 'cpu') {
      const c = process.cpuUsage();
      process.send({ cpu: c.user + c.system });
    } else {
      await server.stop();
      await bus.close();
      process.exit(0);
    }
  });
  process.send('ready');
} else {
  const child = fork(new URL(import.meta.url).pathname, [mode, 'server', dir], { execArgv: process.execArgv });
  await new Promise((r) => child.once('message', r));
  const serverCpu = () => new Promise((r) => (child.once('message', (m) => r(m.cpu)), child.send('cpu')));
  const client = bus.rpcClient({ topic: 'split' });
  const body = { p: 'x'.repeat(100) };
  const run = async (ms, inflight) => {
    let n = 0;
    const end = Date.now() + ms;
    await Promise.all(Array.from({ length: inflight }, async () => {
      while (Date.now() < end) {
        await client.call({}, 'echo', body);
        n++;
      }
    }));
    return n;
  };
  for (const inflight of [16, 256]) {
    await run(1000, inflight);
    const s0 = await serverCpu();
    const c0 = process.cpuUsage();
    const n = await run(3000, inflight);
    const c = process.cpuUsage(c0);
    const s = (await serverCpu()) - s0;
    console.log(`${mode.padEnd(12)} ${String(inflight).padStart(3)} in flight: ${Math.round(n / 3)} calls/s, CPU µs/call client ${((c.user + c.system) / n).toFixed(1)}, server ${(s / n).toFixed(1)}`);
  }
  child.send('exit');
  await bus.close();
  process.exit(0);
}
