/**
 * `hybridbus bench`: every configured backend, the router and the raw-client baselines side by
 * side (the engine is @hybridbus/benchmarks). Bad input fails with one line naming the flag.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { PayloadOption, Scenario } from '@hybridbus/benchmarks';

/**
 * The benchmark engine (chart.js, raw clients, a Python child) is a package of its own that an
 * application need not install: it is loaded when present, and `bench` says how to get it.
 */
type Engine = typeof import('@hybridbus/benchmarks');

async function loadEngine(): Promise<Engine | undefined> {
  try {
    return await import('@hybridbus/benchmarks');
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes('@hybridbus/benchmarks')) return undefined;
    throw e;
  }
}

function int(min: number) {
  return (text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < min) throw new InvalidArgumentError(`expected an integer ≥ ${min}`);
    return Number(text);
  };
}

function intList(text: string): number[] {
  const xs = text.split(',');
  if (xs.some((x) => !/^\d+$/.test(x) || Number(x) < 1)) throw new InvalidArgumentError('expected a comma-separated list of positive integers, e.g. 16,256');
  return xs.map(Number);
}

function scenarioListOf(all: readonly string[]): (text: string) => Array<Scenario | 'scale'> {
  return (text) => {
    const xs = text.split(',').filter(Boolean);
    const bad = xs.filter((x) => !all.includes(x));
    if (bad.length || xs.length === 0) throw new InvalidArgumentError(`unknown scenario ${bad.map((b) => `"${b}"`).join(', ')}; expected some of ${all.join(',')}`);
    return xs as Array<Scenario | 'scale'>;
  };
}

function idList(text: string): string[] {
  const xs = text.split(',').filter(Boolean);
  if (xs.length === 0 || xs.some((x) => !/^[a-z0-9][a-z0-9-]*$/.test(x))) throw new InvalidArgumentError('expected a comma-separated list of contender ids, e.g. zmq,raw-zeromq');
  return xs;
}

function payloadOf(parsePayload: (text: string) => PayloadOption | undefined): (text: string) => PayloadOption {
  return (text) => {
    const p = parsePayload(text);
    if (p === undefined) throw new InvalidArgumentError('expected a size in bytes (≥ 1) or "oslo" (the sizes of real OpenStack messages)');
    return p;
  };
}

/** A flag's URL parser: `protocol` (and a host, if `needsHost`); `example` and `wrong` say what was expected. */
function urlFlag(protocol: string, needsHost: boolean, example: string, wrong: string): (text: string) => string {
  return (text) => {
    let u: URL;
    try {
      u = new URL(text);
    } catch {
      throw new InvalidArgumentError(`expected a URL such as ${example}`);
    }
    if (u.protocol !== protocol || (needsHost && u.host === '')) throw new InvalidArgumentError(wrong);
    return text;
  };
}

const rabbitUrl = urlFlag('rabbit:', false, 'rabbit://guest:guest@127.0.0.1:5672/', 'expected a rabbit:// URL (amqp:// is AMQP 1.0, as in oslo)');
const amqpUrl = urlFlag('amqp:', true, 'amqp://127.0.0.1:5672', 'expected an amqp://host:port URL (AMQP 1.0)');

interface Flags {
  rabbitUrl: string;
  protonUrl?: string;
  routerUrl?: string;
  contenders?: string[];
  scenarios?: Array<Scenario | 'scale'>;
  scenario?: Array<Scenario | 'scale'>;
  rounds?: number;
  payload?: PayloadOption;
  durationMs?: number;
  warmupMs?: number;
  warmupCalls?: number;
  latencyCalls?: number;
  inflight?: number[];
  clients?: number;
  servers?: number;
  fanoutServers?: number[];
  fanoutProbes?: number;
  pin?: boolean;
  scaleSteps?: number[];
  scaleProcs?: number;
  scaleProbes?: number;
  scaleJitter?: number;
  json: string;
  html: string;
  quick?: boolean;
  cpuProf?: string;
}

/** Add `bench` to the program; `config()` is the global --config. */
export async function addBenchCommand(program: Command, config: () => string | undefined): Promise<void> {
  const engine = await loadEngine();
  if (!engine) {
    program
      .command('bench')
      .description('benchmark the transports side by side (needs @hybridbus/benchmarks)')
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => {
        process.stderr.write('hybridbus bench: the benchmark engine is not installed; run: npm i @hybridbus/benchmarks\n');
        process.exitCode = 1;
      });
    return;
  }
  const { CPU_COLUMN_NOTE, DEFAULT_RABBIT_URL, DEFAULTS, defaultContenders, QUICK, runBench, SCALE_DEFAULTS, SCENARIOS } = engine;
  const ALL_SCENARIOS: readonly string[] = [...SCENARIOS, 'scale'];
  const scenarioList = scenarioListOf(ALL_SCENARIOS);
  const payload = payloadOf(engine.parsePayload);
  const d = (full: unknown, quick?: unknown): string => `(default ${String(full)}${quick === undefined ? '' : `; --quick: ${String(quick)}`})`;
  program
    .command('bench')
    .description('benchmark every configured transport, the router and raw-client baselines side by side; a table, JSON and HTML')
    // Built when help is shown: the contenders come from the engine, the list a run uses.
    .addHelpText('after', () => {
      const contenders = defaultContenders();
      const width = Math.max(...contenders.map((c) => c.id.length));
      return `
Without --config it runs on the embedded default (zmq:// with a private name service) and adds
RabbitMQ at --rabbit-url when it answers (amqp1-rabbit through its AMQP 1.0 plugin), a Proton
broker at --proton-url and a qdrouterd at --router-url (amqp1-direct needs no server). Contenders (--contenders picks some; those that
cannot run are skipped with a reason):
${contenders.map((c) => `  ${c.id.padEnd(width)}  ${c.label}`).join('\n')}
With --config: one contender per transport of the config, hybrid if it routes patterns to more
than one, and the raw baselines.
Scenarios: ${ALL_SCENARIOS.join(', ')} (scale runs only when asked: --scenarios scale).
The table: median over the rounds, "vs raw" the median of per-round ratios to the transport's
raw baseline, "target" the stated goal for that ratio, and
${CPU_COLUMN_NOTE}.`;
    })
    .addOption(new Option('--rabbit-url <url>', 'RabbitMQ for the default config (used only if reachable)').env('HYBRIDBUS_BENCH_RABBIT_URL').default(DEFAULT_RABBIT_URL).argParser(rabbitUrl))
    .addOption(new Option('--proton-url <url>', 'an AMQP 1.0 queue broker (Proton\'s C++ example broker) for amqp1-proton and raw-rhea-proton').env('HYBRIDBUS_BENCH_PROTON_URL').argParser(amqpUrl))
    .addOption(new Option('--router-url <url>', 'a qdrouterd for amqp1-router and raw-rhea-router').env('HYBRIDBUS_BENCH_ROUTER_URL').argParser(amqpUrl))
    .option('--contenders <ids>', 'contenders to run, e.g. zmq,raw-zeromq (default all)', idList)
    .option('--scenarios <list>', `scenarios to run ${d(SCENARIOS.join(','))}`, scenarioList)
    // The singular, as people type it (README: `--scenario scale`): listed, so help and README agree.
    .addOption(new Option('--scenario <list>', 'the same as --scenarios').argParser(scenarioList))
    .option('--rounds <n>', `interleaved rounds; medians are reported ${d(DEFAULTS.rounds, QUICK.rounds)}`, int(1))
    .option('--payload <bytes|oslo>', `payload size, or oslo: real OpenStack message sizes ${d(DEFAULTS.payload)}`, payload)
    .option('--duration-ms <ms>', `measured time per throughput/cast/fanout/notify figure ${d(DEFAULTS.durationMs, QUICK.durationMs)}`, int(1))
    .option('--warmup-ms <ms>', `warm-up time before each of those ${d(DEFAULTS.warmupMs, QUICK.warmupMs)}`, int(0))
    .option('--warmup-calls <n>', `sequential calls before measuring latency (the JIT needs ~10,000) ${d(DEFAULTS.warmupCalls, QUICK.warmupCalls)}`, int(0))
    .option('--latency-calls <n>', `sequential calls measured for latency ${d(DEFAULTS.latencyCalls, QUICK.latencyCalls)}`, int(1))
    .option('--inflight <list>', `calls in flight for throughput ${d(DEFAULTS.inflight.join(','))}`, intList)
    .option('--clients <n>', `client processes for throughput, cast and notify ${d(DEFAULTS.clients)}`, int(1))
    .option('--servers <n>', `server processes for latency and throughput ${d(DEFAULTS.servers)}`, int(1))
    .option('--fanout-servers <list>', `fanout to this many servers (over up to 4 processes) ${d(DEFAULTS.fanoutServers.join(','), QUICK.fanoutServers.join(','))}`, intList)
    .option('--fanout-probes <n>', `single fanouts timed for fanout.N.complete ${d(DEFAULTS.fanoutProbes, QUICK.fanoutProbes)}`, int(1))
    .option('--scale-steps <list>', `scale: server counts, one step each ${d(SCALE_DEFAULTS.steps.join(','))}`, intList)
    .option('--scale-procs <n>', `scale: server processes the servers are spread over ${d(SCALE_DEFAULTS.procs)}`, int(1))
    .option('--scale-probes <n>', `scale: timed fanouts per step, after one warm-up ${d(SCALE_DEFAULTS.probes)}`, int(1))
    .option('--scale-jitter <ms>', 'scale: spread each server process\'s start-ups over this many ms at random, as a booting fleet (default 0: back to back)', int(0))
    .option('--pin', 'pin clients and servers to different CPUs (taskset)')
    .option('--json <file>', 'JSON results', 'bench-results/bench.json')
    .option('--html <file>', 'HTML report', 'bench-results/bench.html')
    .option('--quick', 'short settings (a smoke run, not figures to quote)')
    .option('--cpu-prof <dir>', 'write a V8 CPU profile of every Node server and client process into <dir>')
    .showHelpAfterError(false)
    .action(async (f: Flags) => {
      const q = f.quick === true;
      await runBench({
        config: config(),
        rabbitUrl: f.rabbitUrl,
        protonUrl: f.protonUrl,
        routerUrl: f.routerUrl,
        contenders: f.contenders,
        scenarios: f.scenarios ?? f.scenario ?? SCENARIOS,
        rounds: f.rounds ?? (q ? QUICK.rounds : DEFAULTS.rounds),
        payload: f.payload ?? DEFAULTS.payload,
        durationMs: f.durationMs ?? (q ? QUICK.durationMs : DEFAULTS.durationMs),
        warmupMs: f.warmupMs ?? (q ? QUICK.warmupMs : DEFAULTS.warmupMs),
        warmupCalls: f.warmupCalls ?? (q ? QUICK.warmupCalls : DEFAULTS.warmupCalls),
        latencyCalls: f.latencyCalls ?? (q ? QUICK.latencyCalls : DEFAULTS.latencyCalls),
        inflight: f.inflight ?? DEFAULTS.inflight,
        clients: f.clients ?? DEFAULTS.clients,
        servers: f.servers ?? DEFAULTS.servers,
        fanoutServers: f.fanoutServers ?? (q ? QUICK.fanoutServers : DEFAULTS.fanoutServers),
        fanoutProbes: f.fanoutProbes ?? (q ? QUICK.fanoutProbes : DEFAULTS.fanoutProbes),
        pin: f.pin === true,
        scaleSteps: f.scaleSteps,
        scaleProcs: f.scaleProcs,
        scaleProbes: f.scaleProbes,
        scaleJitter: f.scaleJitter,
        json: f.json,
        html: f.html,
        cpuProf: f.cpuProf,
        command: ['hybridbus', ...process.argv.slice(2)].join(' '),
      });
    });
}
