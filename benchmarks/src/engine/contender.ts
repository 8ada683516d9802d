/**
 * What every contender of `hybridbus bench` implements, and the protocol its child processes
 * speak with the engine.
 *
 * A contender says how to start its server process(es) and its measuring client process for a
 * scenario; the engine spawns them, drives them with the messages below and does all the
 * arithmetic (rates, ratios, medians, CPU per message), so that every contender is measured by
 * the same clock and the same rules. A contender may be written in any language.
 *
 * ## Spawning
 *
 * The engine runs `command args... <spec-json>`: the JSON spec (`ServerSpec` or `ClientSpec`)
 * is always the LAST argument. stdio is `['ignore', 'inherit', 'inherit', 'ipc']` with
 * `serialization: 'json'`, so stdout/stderr go to the terminal (keep them quiet) and the
 * channel is Node's IPC channel. A non-Node child finds it on the fd number in the environment
 * variable `NODE_CHANNEL_FD` (a socket): each message is one JSON object on one line ending
 * in "\n", both ways. (Python: `sock = socket.socket(fileno=int(os.environ['NODE_CHANNEL_FD']))`,
 * read lines, `sock.sendall((json.dumps(m) + '\n').encode())`.) Node children use
 * `toParent`/`fromParent` from ../lib/proc.js.
 *
 * ## Messages (every message is an object with a string `kind`)
 *
 * Both roles:
 * - child → `{kind: 'ready', endpoints?: string[]}` once set up (servers: listening and
 *   registered, so a message sent now reaches them). `endpoints` are opaque strings a raw
 *   contender's servers pass to its client (e.g. 'tcp://127.0.0.1:41234'): the engine gives the
 *   client every server process's endpoints, concatenated in server-process order.
 * - child → `{kind: 'error', message: string}` on any failure (then exit non-zero). The engine
 *   treats a child exiting without a result as an error too.
 * - engine → `{kind: 'exit'}`: close everything and exit 0.
 *
 * Server (role 'server'; echoes calls, counts one-way messages):
 * - engine → `{kind: 'expect', n: number, reset: boolean}`: reply `{kind: 'reached', count,
 *   firstAt, lastAt}` as soon as `count` (one-way messages received by ALL servers this process
 *   hosts, since the last reset) is ≥ n — at once if it already is. `firstAt`/`lastAt` are the
 *   wall-clock times (ms since the epoch, fractional: `performance.timeOrigin +
 *   performance.now()` or Python's `time.time() * 1000`) of the first and the latest arrival
 *   counted. `reset: true` zeroes the count (and the times) AFTER replying.
 * - engine → `{kind: 'cpu'}`: reply `{kind: 'cpu', us: number}`, this process's CPU time so far
 *   (user + system, µs: `process.cpuUsage()`, Python `time.process_time() * 1e6`).
 *
 * Client (role 'client'); each command is answered by one `{kind: 'done', ...}`:
 * - `{kind: 'latency', count}`: `count` sequential calls of method `echo` (args `{p: <payload>}`
 *   or the raw payload); reply `{kind: 'done', ops, seconds, cpuUs, histogram: [[percentile,
 *   µs], ...]}` with percentiles 50, 90, 99, 99.9 and 100 at least (ascending; more for charts).
 * - `{kind: 'throughput', inflight, durationMs}`: keep `inflight` calls outstanding for
 *   `durationMs`; reply `{kind: 'done', ops, seconds, cpuUs}`.
 * - `{kind: 'send', count?: number, durationMs?: number}`: send one-way messages of the spec's
 *   scenario (cast: cast `sink`; fanout: a fanout cast of `sink` to every server, or its raw
 *   equivalent; notify: an info notification) — `count` of them, or as many as fit in
 *   `durationMs`; reply `{kind: 'done', ops, seconds, cpuUs, startedAt, endedAt}` (wall-clock
 *   ms of the first send and of the last send returning). Delivery is measured by the servers.
 * `cpuUs` is the client's CPU time spent during the command. The engine sends the warm-up as
 * the same commands and discards it.
 */
import type { ContenderInfo, ScenarioName } from '../report/types.js';

/** The scenarios a contender can run (scale is its own engine; see engine/run.ts). */
export type Scenario = Exclude<ScenarioName, 'scale'>;
export const SCENARIOS: readonly Scenario[] = ['latency', 'throughput', 'cast', 'fanout', 'notify'];

/** The message pattern a scenario exercises (what the hybrid router routes by). */
export const PATTERN_OF: Readonly<Record<Scenario, 'call' | 'cast' | 'fanout' | 'notify'>> = {
  latency: 'call',
  throughput: 'call',
  cast: 'cast',
  fanout: 'fanout',
  notify: 'notify',
};

/** What the children send and receive: sizes of the payloads, in bytes, used round-robin. */
export interface PayloadSpec {
  /** Payload sizes to cycle through, one per message (one entry for a fixed size). */
  readonly sizes: readonly number[];
}

interface SpecBase {
  readonly scenario: Scenario;
  readonly contender: string;
  /** A topic fresh for this measurement, so no leftover server ever answers. */
  readonly topic: string;
  readonly payload: PayloadSpec;
  /** Contender-specific data from `Contender.data` (e.g. a bus config, a broker URL). */
  readonly data: Readonly<Record<string, unknown>>;
}

export interface ServerSpec extends SpecBase {
  readonly role: 'server';
  /** Index of this server process, 0-based. */
  readonly process: number;
  /** Names of the servers this process hosts (one each for call/cast/notify; several for fanout). */
  readonly servers: readonly string[];
}

export interface ClientSpec extends SpecBase {
  readonly role: 'client';
  /** Index of this client process, 0-based. */
  readonly process: number;
  /** Every server process's `ready.endpoints`, concatenated. */
  readonly endpoints: readonly string[];
  /** How many servers there are in all (fanout: the N a message must reach). */
  readonly serverCount: number;
}

/** A process to start; the engine appends the spec JSON as the last argument. */
export interface ProcessCommand {
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

export interface Contender {
  /** id, label, kind and url (credentials removed) as the report shows them. */
  readonly info: Omit<ContenderInfo, 'skipped'>;
  readonly scenarios: readonly Scenario[];
  /**
   * Scenarios it cannot run, each with one line saying why (e.g. fanout on a queue broker with
   * no multicast): they are left out of `scenarios`, and the run notes and reports the reason.
   */
  readonly unsupported?: Readonly<Partial<Record<Scenario, string>>>;
  /** Contender-specific data copied into every spec (`spec.data`). */
  readonly data: Readonly<Record<string, unknown>>;
  /** Why this contender cannot run here (one line, no stack), or undefined when it can. */
  probe(): Promise<string | undefined>;
  server(spec: ServerSpec): ProcessCommand;
  client(spec: ClientSpec): ProcessCommand;
  /** The raw contender this one is compared with for a scenario (undefined for raw ones). */
  baseline(scenario: Scenario): string | undefined;
  /** Runs only when --contenders names it (a variant for a specific question, not a default figure). */
  readonly optIn?: boolean | undefined;
}
