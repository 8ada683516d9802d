#!/usr/bin/env node
/**
 * The `hybridbus` command: a demo, a server and client for trying a config, notifications,
 * config checking, the name service and the benchmark. It reads config exactly as the library does.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import {
  Bus,
  configSource,
  HybridbusError,
  loadConfig,
  maskSecrets,
  PRIORITIES,
  RemoteError,
  type Context,
  type HybridbusConfig,
  type Priority,
} from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import '@hybridbus/rabbit-brokered';
import { Amqp1Driver } from '@hybridbus/amqp1';
import { ZmqDriver } from '@hybridbus/zmq-direct';
import { addBenchCommand } from './bench.js';
import { runDemo } from './demo.js';

/** Bad input found after parsing (commander reports its own parse errors itself). */
class UsageError extends Error {}

function jsonObject(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${what} must be JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${what} must be a JSON object, e.g. '{"a": 1}'`);
  return v as Record<string, unknown>;
}

/** As an option parser, so commander names the option in its message. */
function json(what: string) {
  return (text: string): Record<string, unknown> => {
    try {
      return jsonObject(text, what);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

/** A timeout in ms: a positive integer (0 would give up at once, which no one means). */
function timeoutMs(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < 1) {
    throw new InvalidArgumentError(`expected a positive integer number of milliseconds (0 would time out at once), got ${JSON.stringify(text)}`);
  }
  return n;
}

/** A repeatable option's values, each also a comma-separated list: `-t a -t b,c` → [a, b, c]. */
function topics(text: string, previous: string[] | undefined): string[] {
  const xs = text.split(',').map((x) => x.trim()).filter(Boolean);
  if (xs.length === 0) throw new InvalidArgumentError('expected a topic name (repeat -t, or separate topics with commas)');
  return [...(previous ?? []), ...xs];
}

/** HOST:PORT for a listening socket: an IPv6 host in brackets, port 0 for a free one. */
function hostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    throw new InvalidArgumentError(`expected HOST:PORT such as 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464 (port 0-65535, 0 for a free one), got ${JSON.stringify(text)}`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

function priority(text: string): Priority {
  if (!(PRIORITIES as readonly string[]).includes(text)) throw new InvalidArgumentError(`expected one of ${PRIORITIES.join(', ')}`);
  return text as Priority;
}

const print = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v)}\n`);

interface Common {
  config?: string;
  context: Context;
}

const program = new Command('hybridbus')
  .description('hybridbus: RPC, fanout and notifications over a backend per message pattern')
  .option('-c, --config <file>', 'config file (JSON or YAML); HYBRIDBUS_* variables apply on top')
  .option('--context <json>', 'request context sent with messages', json('--context'), {})
  .showHelpAfterError()
  .exitOverride();

const common = (): Common => program.opts<Common>();
const openBus = (): Promise<Bus> => Bus.fromConfig(common().config);

/** Stop on SIGINT/SIGTERM, then close. */
function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const stop = (): void => void close().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

program
  .command('demo')
  .description('call, cast, fanout and a pooled notification round trip on the configured (default: embedded) transports')
  .action(async () => runDemo(common().config));

program
  .command('check-config')
  .description('validate the config and print every effective value with where it came from')
  .action(() => {
    const cfg = loadConfig({ file: common().config });
    const rows: Array<[string, unknown, string]> = [];
    const walk = (o: Record<string, unknown>, prefix: string): void => {
      for (const [k, v] of Object.entries(o)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (typeof v === 'object' && v !== null && !Array.isArray(v) && !['transports', 'topics'].includes(key)) walk(v as Record<string, unknown>, key);
        else rows.push([key, v, configSource(cfg, key)]);
      }
    };
    walk(cfg as unknown as Record<string, unknown>, '');
    const width = Math.max(...rows.map(([k]) => k.length));
    // Transport URLs with their passwords masked, as everywhere a URL is shown.
    for (const [k, v, src] of rows) console.log(`${k.padEnd(width)}  ${maskSecrets(JSON.stringify(v))}  (${src})`);
    console.log('config OK');
  });

program
  .command('serve')
  .description('run a demo RPC server: methods echo(args), sleep({ms}), fail({message}); logs every request')
  .requiredOption('-t, --topic <topic>', 'topic to serve')
  .option('-s, --server <name>', 'this server\'s name', `cli-${process.pid}`)
  .option('--metrics <host:port>', 'also serve Prometheus /metrics and /healthz on HOST:PORT (port 0: a free one)', hostPort)
  .action(async (o: { topic: string; server: string; metrics?: { host: string; port: number } }) => {
    const bus = await openBus();
    let stopMetrics = async (): Promise<void> => {};
    if (o.metrics) {
      // Loaded only here: the other commands need not pay for prom-client at startup.
      const { registerMetrics, serveObservability } = await import('@hybridbus/observability');
      const { collectDefaultMetrics, Registry } = await import('prom-client');
      // Its own registry: the bus's metrics and the process's (CPU, memory, event loop lag).
      const registry = new Registry();
      collectDefaultMetrics({ register: registry });
      const unregister = registerMetrics(bus, { registry });
      const endpoint = await serveObservability({ bus, registry, ...o.metrics }).catch(async (e: unknown) => {
        await bus.close();
        throw new UsageError(`--metrics: ${(e as Error).message}`);
      });
      console.error(`metrics on ${endpoint.url}/metrics, health on ${endpoint.url}/healthz`);
      stopMetrics = async () => {
        unregister();
        await endpoint.close();
      };
    }
    const log = (method: string) => (ctx: Context, args: Record<string, unknown>) => print({ method, ctx, args });
    const server = bus.rpcServer({ topic: o.topic, server: o.server }, [
      {
        echo: (ctx: Context, args: Record<string, unknown>) => (log('echo')(ctx, args), args),
        sleep: async (ctx: Context, args: { ms?: number }) => (log('sleep')(ctx, args), await new Promise((r) => setTimeout(r, Number(args.ms ?? 1000))), 'slept'),
        fail: (ctx: Context, args: { message?: string }) => {
          log('fail')(ctx, args);
          throw new Error(String(args.message ?? 'failed on request'));
        },
      },
    ]);
    await server.start();
    console.error(`serving topic "${o.topic}" as "${o.server}" (call: ${bus.route(o.topic, 'call')}, fanout: ${bus.route(o.topic, 'fanout')}); Ctrl-C stops`);
    await untilSignal(async () => {
      await server.stop();
      await stopMetrics();
      await bus.close();
    });
  });

for (const kind of ['call', 'cast'] as const) {
  const cmd = program
    .command(`${kind} <topic> <method> [args]`)
    .description(kind === 'call' ? 'call a method and print its result' : 'cast a method (no result)')
    .option('-s, --server <name>', 'one server of the topic')
    .option('--version <x.y>', 'API version to ask for')
    .option('--namespace <ns>', 'endpoint namespace')
    .option(
      '--timeout <ms>',
      kind === 'call'
        ? 'give up on the reply after this many ms (default: config rpc.timeout; at least 1)'
        : 'give up waiting for the cast to be accepted after this many ms (e.g. zmq:// acks, a blocked broker; default: wait)',
      timeoutMs,
    );
  if (kind === 'cast') cmd.option('--fanout', 'to every server of the topic');
  cmd.action(async (topic: string, method: string, args: string | undefined, o: { server?: string; version?: string; namespace?: string; timeout?: number; fanout?: boolean }) => {
      const parsed = args === undefined ? {} : jsonObject(args, 'args');
      const bus = await openBus();
      try {
        const client = bus.rpcClient({ topic, server: o.server, version: o.version, namespace: o.namespace, fanout: kind === 'cast' ? o.fanout : undefined }, { timeout: kind === 'call' ? o.timeout : undefined });
        if (kind === 'call') print(await client.call(common().context, method, parsed));
        else await client.cast(common().context, method, parsed, { signal: o.timeout === undefined ? undefined : AbortSignal.timeout(o.timeout) });
      } finally {
        await bus.close();
      }
    });
}

program
  .command('notify <eventType> [payload]')
  .description('send a notification')
  .option('-p, --priority <priority>', `one of ${PRIORITIES.join(', ')}`, priority, 'info' as Priority)
  .option('--publisher <id>', 'publisher id', `cli.${process.pid}`)
  .option('-t, --topic <topic>', 'a notification topic; repeat (-t a -t b) or separate with commas (default: config notifications.topics)', topics)
  .action(async (eventType: string, payload: string | undefined, o: { priority: Priority; publisher: string; topic?: string[] }) => {
    const body = payload === undefined ? {} : jsonObject(payload, 'payload');
    const bus = await openBus();
    try {
      await bus.notifier({ publisherId: o.publisher, topics: o.topic }).notify(o.priority, common().context, eventType, body);
    } finally {
      await bus.close();
    }
  });

program
  .command('listen')
  .description('print notifications as they arrive')
  .option('-t, --topic <topic>', 'a topic to listen on; repeat (-t a -t b) or separate with commas (default: notifications)', topics)
  .option('--pool <name>', 'listener pool')
  .action(async (opts: { topic?: string[]; pool?: string }) => {
    const o = { ...opts, topic: opts.topic ?? ['notifications'] };
    const bus = await openBus();
    const printer = Object.fromEntries(
      PRIORITIES.map((p) => [p, (ctx: Context, publisherId: string, eventType: string, payload: unknown, metadata: unknown) => print({ priority: p, publisherId, eventType, payload, ctx, metadata })]),
    );
    const listener = bus.notificationListener(o.topic.map((topic) => ({ topic })), [printer], { pool: o.pool });
    await listener.start();
    console.error(`listening on ${o.topic.join(', ')}${o.pool ? ` in pool "${o.pool}"` : ''}; Ctrl-C stops`);
    await untilSignal(async () => {
      await listener.stop();
      await bus.close();
    });
  });

program
  .command('nameservice')
  .description('the zmq:// name service')
  .command('ls')
  .description('list every key and the hosts registered under it')
  .option('--transport <name>', 'zmq:// or amqp://?mode=direct transport to inspect (default: the one carrying calls)')
  .action(async (o: { transport?: string }) => {
    const cfg: HybridbusConfig = loadConfig({ file: common().config });
    const name = o.transport ?? cfg.patterns.call;
    const bus = await Bus.fromConfig(common().config);
    try {
      const driver = bus.transport(name);
      const ns = driver instanceof ZmqDriver ? driver.nameService : driver instanceof Amqp1Driver ? driver.nameService : undefined;
      if (!ns) throw new HybridbusError(`transport "${name}" is ${maskSecrets(String(cfg.transports[name]))}: it has no name service (zmq:// and amqp://?mode=direct have one)`);
      const all = await ns.list();
      if (all.size === 0) console.log('(no records)');
      for (const [key, records] of all) console.log(`${key}  ${records.map((r) => r.address + (r.pool ? ` pool=${r.pool}` : '')).join(', ')}`);
    } finally {
      await bus.close();
    }
  });

await addBenchCommand(program, () => common().config);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  // Whatever an error says, a URL in it is shown with its password masked.
  const say = (line: string): void => console.error(maskSecrets(line));
  if (e instanceof RemoteError) say(`hybridbus: remote ${e.remoteClass}: ${e.remoteMessage}`);
  else if (e instanceof HybridbusError) say(`hybridbus: ${e.code}: ${e.message}`);
  else say(`hybridbus: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
