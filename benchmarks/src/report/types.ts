/**
 * The results of one `hybridbus bench` run, as written to JSON and rendered to HTML. Every
 * figure is kept per round (rounds are interleaved, so machine drift hits every contender
 * alike) and summarised as the median; a ratio compares a contender with its raw baseline
 * measured in the same round.
 */

export type ScenarioName = 'latency' | 'throughput' | 'cast' | 'fanout' | 'notify' | 'scale';

export interface Machine {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memGiB: number;
  readonly os: string;
  readonly node: string;
}

/** One thing being measured: a hybridbus transport, the router, a raw client or oslo.messaging. */
export interface ContenderInfo {
  /** Stable id: 'zmq', 'rabbit', 'hybrid', 'raw-zeromq', 'raw-amqplib', 'oslo', ... */
  readonly id: string;
  /** For people: 'hybridbus zmq-direct', 'raw amqplib', 'oslo.messaging (rabbit)'. */
  readonly label: string;
  readonly kind: 'hybridbus' | 'raw' | 'oslo';
  /** The transport URL it ran on, when it has one (credentials removed). */
  readonly url?: string;
  /** Set when the contender did not run: one line saying why (e.g. "rabbit: ECONNREFUSED 127.0.0.1:5672"). */
  readonly skipped?: string;
  /** Scenarios it cannot run, each with why (e.g. fanout on a broker with no multicast). */
  readonly unsupported?: Readonly<Record<string, string>>;
}

/** A figure a scenario produces, e.g. { id: 'latency.p99', unit: 'µs', better: 'lower' }. */
export interface MetricInfo {
  readonly id: string;
  readonly scenario: ScenarioName;
  /** 'call latency p99', 'call throughput, 16 in flight', 'fanout to 10 servers'. */
  readonly label: string;
  readonly unit: string;
  readonly better: 'lower' | 'higher';
  /**
   * Stated targets for the ratio to the baseline, by contender id, where an issue sets one,
   * e.g. { zmq: { op: '<=', ratio: 1.05 }, rabbit: { op: '<=', ratio: 1.1 } }.
   */
  readonly targets?: Readonly<Record<string, { readonly op: '<=' | '>='; readonly ratio: number }>>;
}

/** CPU µs per message of the client processes, the server processes and the broker. */
export interface CpuPerMsg {
  readonly client?: number | undefined;
  readonly server?: number | undefined;
  readonly broker?: number | undefined;
}

/** One measurement: a metric for a contender in a round. */
export interface Cell {
  readonly metric: string;
  readonly contender: string;
  readonly round: number;
  readonly value: number;
  /**
   * CPU time per message, per process role, in µs (user + system): a cost, where the figure
   * itself is a rate. `broker`: the local broker the contender goes through (RabbitMQ's
   * beam.smp, the Proton broker), when the bench can read its process (lib/broker-cpu.ts).
   */
  readonly cpuUsPerMsg?: CpuPerMsg;
}

/** The median of a metric's cells for one contender, and its ratio to the baseline. */
export interface Summary {
  readonly metric: string;
  readonly contender: string;
  readonly median: number;
  readonly rounds: readonly number[];
  /** Id of the raw contender this one is compared with, if any. */
  readonly baseline?: string;
  /** Median over rounds of (this round's value / the baseline's value in the same round). */
  readonly ratio?: number;
  readonly cpuUsPerMsg?: CpuPerMsg;
}

/** A latency distribution for charting: [percentile (0–100), µs] pairs, percentile ascending. */
export interface LatencyDistribution {
  readonly contender: string;
  readonly percentiles: ReadonlyArray<readonly [number, number]>;
}

/** The scale scenario: how costs grow with the number of servers. */
export interface ScalePoint {
  /** Servers (peers) running. */
  readonly n: number;
  /** Processes hosting them. */
  readonly procs: number;
  /** From spawning the server processes to every server listening and registered. */
  readonly startupMs: number;
  /** Until a client's name-service lookup sees all n. */
  readonly registerMs: number;
  /** One fanout: from send until all n servers have it. */
  readonly fanoutCompleteMs: number;
  readonly clientFds: number;
  readonly clientFdsPerPeer: number;
  readonly clientRssKiB: number;
  readonly clientRssPerPeerKiB: number;
  /** Records the name service holds, and lookups the client made, for this point. */
  readonly nsRecords: number;
  readonly nsLookups: number;
}

/**
 * One fanout contender at one n: time until all n servers have a fanout, and what one costs.
 * Contenders: "zmq" (unicast copies from the client), "rabbit" (one publish, RabbitMQ copies),
 * and a slot for "zmq-multicast" (RADIO/DISH over UDP; it runs only inside a network namespace
 * it creates, see MULTICAST_SCALE).
 */
export interface ScaleFanoutPoint {
  readonly contender: 'zmq' | 'rabbit' | 'zmq-multicast';
  readonly n: number;
  /** Median over the probes: send → the last server has it (ms). */
  readonly completeMs: number;
  /** The sender's CPU per fanout (user + system, ms), median over the probes. */
  readonly senderCpuMs: number;
  /** The broker's CPU per fanout (RabbitMQ's process), ms; undefined without a broker. */
  readonly brokerCpuMs?: number | undefined;
  /** The server processes' CPU per fanout, summed over them (ms), median over the probes. */
  readonly serversCpuMs?: number | undefined;
  /**
   * zmq-multicast only: the same fanout by unicast zmq, and multicast without acks, from other
   * clients in the same namespace, to the same servers, probes interleaved (like with like).
   */
  readonly sameServers?: {
    readonly unicast: { readonly completeMs: number; readonly senderCpuMs: number; readonly serversCpuMs: number };
    readonly multicastNoAcks: { readonly completeMs: number; readonly senderCpuMs: number; readonly serversCpuMs: number };
  } | undefined;
}

export interface ScaleReport {
  readonly contender: string;
  readonly points: readonly ScalePoint[];
  /** Fanout side by side per contender and n (zmq unicast, RabbitMQ, multicast zmq when built). */
  readonly fanouts?: readonly ScaleFanoutPoint[];
  /** What would be needed for 10,000 nodes, and other observations, one per line. */
  readonly notes: readonly string[];
}

export interface BenchReport {
  readonly version: 1;
  readonly title: string;
  /** The exact command line that produced it. */
  readonly command: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly machine: Machine;
  /** The knobs: rounds, payload, durations, in-flight levels, server counts, ... */
  readonly settings: Readonly<Record<string, unknown>>;
  readonly contenders: readonly ContenderInfo[];
  readonly metrics: readonly MetricInfo[];
  readonly cells: readonly Cell[];
  readonly summaries: readonly Summary[];
  readonly latency?: readonly LatencyDistribution[];
  readonly scale?: ScaleReport;
  /** Measurements that failed, one line each ("rabbit fanout round 2: ..."); their cells are missing. */
  readonly errors?: readonly string[];
}
