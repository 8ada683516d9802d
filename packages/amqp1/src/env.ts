/** What the driver's parts share: options, the carrier, and how targets become addresses and keys. */
import type { Logger, Target } from '@hybridbus/core';
import type { NameService } from '@hybridbus/nameservice';
import type { DriverCapabilities } from '@hybridbus/core/driver';
import type { Addresser } from './addressing.js';
import type { Carrier } from './carrier.js';
import type { DirectListener } from './listener.js';
import type { Amqp1Options } from './options.js';
import type { Peer } from './peer.js';
import type { SharedRegistrations } from './registrations.js';

/** What actually carries the messages, once known. */
export type Amqp1Kind = 'broker' | 'router' | 'rabbitmq' | 'direct';

export interface Env {
  readonly options: Amqp1Options;
  readonly logger: Logger;
  readonly name: string;
  readonly controlExchange: string;
  readonly carrier: Carrier;
  /** True in direct mode: servers listen, the name service finds them. */
  readonly direct: boolean;
  /** Direct mode: this process's listener (made when its first server or listener starts). */
  listener(): Promise<DirectListener>;
  kind(): Amqp1Kind;
  /** The driver was closed: replies and heartbeats stop (TransportClosed tells core so). */
  closed(): boolean;
  capabilities(): DriverCapabilities;
  /** The addresses to use towards `peer` (oslo's `dynamic` mode decides by what it announced). */
  addresser(peer: Peer): Addresser;
  /** Direct mode: the address forms a listener answers to (both, unless addressing_mode fixes one). */
  addressers(): readonly Addresser[];
  /** Direct mode: the name service servers register in. */
  nameService(): NameService;
  /** Direct mode: registrations in it, shared by this process's subscriptions of a key. */
  readonly registrations: SharedRegistrations;
  /** Where a fanout to the target goes on `peer` (RabbitMQ: through its amq.topic exchange). */
  fanoutAddress(peer: Peer, target: Target): string;
  /** Name-service keys (direct mode): a request's, the topic's, the topic's notifications'. */
  rpcKey(target: Target): string;
  groupKey(target: Target): string;
  notifyKey(target: Target): string;
}
