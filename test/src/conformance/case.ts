/**
 * What a conformance case is, what it is given, and when it is skipped: the table the suite
 * runs (suite.ts) is made of these, one file per area (rpc.ts, versions.ts, errors.ts,
 * server.ts, monitoring.ts, notifications.ts).
 */
import type { TestContext } from 'node:test';
import type { Bus, BusOptions, ConfigInput, Context, DriverCapabilities, Pattern, RpcServer } from '@hybridbus/core';

export interface BackendUnderTest {
  readonly name: string;
  /** Start whatever the backend needs (servers); called once before the cases. */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** The config of one "process": every bus made from it reaches the same backend. */
  config(): ConfigInput;
  /** Make the bus die as a crashed process would: no more replies or heartbeats. */
  crash(bus: Bus): Promise<void> | void;
  /**
   * A message to a topic nobody serves: 'undeliverable' (the default; every driver here can
   * tell: rabbit's mandatory publish comes back, zmq's name service has no host, the memory
   * hub no queue) fails a call, cast or fanout with MessageUndeliverable within
   * noServerTimeout; 'timeout' is for a backend that cannot tell, whose call only times out.
   */
  readonly noServer?: 'undeliverable' | 'timeout';
  /** Within this long (ms; default 500) a message to a topic nobody serves must have failed. */
  readonly noServerTimeout?: number;
}

export type Capability = keyof DriverCapabilities;

/** What a case runs with: one backend, its buses (closed after the suite) and a fresh topic. */
export interface ConformanceEnv {
  readonly backend: BackendUnderTest;
  /** A topic no other case uses; the case's `needs` were checked on its route. */
  readonly topic: string;
  /** The running test, for diagnostics. */
  readonly t: TestContext;
  /** A bus, a "process" of the backend (or of `config`). */
  newBus(options?: BusOptions, config?: ConfigInput): Promise<Bus>;
  /** An RPC server on its own bus, started. */
  startServer(topic: string, server: string, endpoints: object[], opts?: Parameters<Bus['rpcServer']>[2]): Promise<{ bus: Bus; server: RpcServer }>;
  /** Made by the first case of the backend that asks for `key`; every later one gets the same. */
  shared<T>(key: string, make: () => Promise<T>): Promise<T>;
}

/** One row of the table, after Watermill's pubsub test cases: a name, the features it needs, a body. */
export interface ConformanceCase {
  /** The test's name. */
  readonly name: string;
  /** The describe() it sits in; the cases of a group stand together in the table. */
  readonly group?: string;
  /** The pattern the case is about: its transport is the one whose capabilities count. */
  readonly pattern: Pattern;
  /** Capabilities the transport carrying `pattern` on `env.topic` must declare, or the case is skipped. */
  readonly needs?: readonly Capability[];
  /** Prefix of `env.topic` (default 't'). */
  readonly topicPrefix?: string;
  run(env: ConformanceEnv): Promise<void>;
}

/** The cases of one describe(), all about `pattern`, written without repeating either. */
export const inGroup = (group: string, pattern: Pattern, cases: ReadonlyArray<Omit<ConformanceCase, 'group' | 'pattern'>>): ConformanceCase[] =>
  cases.map((c) => ({ group, pattern, ...c }));

/** The context most cases send. */
export const ctx: Context = { user_id: 'u1', project_id: 'p1', request_id: 'req-1' };

/**
 * Why `needs` cannot be tested on `topic`, or undefined if they can: with a router each pattern
 * may go over a different transport, so only the one the router gives `pattern` counts.
 */
export function skipReason(bus: Pick<Bus, 'route' | 'transport'>, topic: string, pattern: Pattern, needs: readonly Capability[]): string | undefined {
  const name = bus.route(topic, pattern);
  const capabilities = bus.transport(name).capabilities;
  const missing = needs.filter((cap) => !capabilities[cap]);
  return missing.length === 0 ? undefined : `transport "${name}", which carries ${pattern}, does not declare ${missing.join(', ')}`;
}
