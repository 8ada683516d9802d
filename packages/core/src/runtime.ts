import type { Bus } from './bus.js';
import type { HybridbusConfig } from './config/schema.js';
import type { TransportRef } from './diagnostics.js';
import type { Driver, Pattern } from './driver.js';
import type { Logger } from './logger.js';
import type { Serializer } from './serializer.js';

/** What clients, servers, notifiers and listeners get from the bus that made them (not the process environment: config comes through the bus). */
export interface BusRuntime {
  /** The router's choice: the transport carrying `pattern` for `topic`. */
  transportFor(topic: string, pattern: Pattern): Driver;
  /** Every distinct transport that any of `patterns` for `topic` maps to. */
  transportsFor(topic: string, patterns: readonly Pattern[]): Map<Driver, Set<Pattern>>;
  /** A transport's name and scheme, for diagnostics events. */
  refOf(driver: Driver): TransportRef;
  /** The bus itself, for diagnostics events. */
  readonly bus: Bus;
  readonly serializer: Serializer;
  readonly logger: Logger;
  readonly controlExchange: string;
  readonly rpc: HybridbusConfig['rpc'];
  readonly notifications: HybridbusConfig['notifications'];
}
