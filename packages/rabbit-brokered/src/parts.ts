/**
 * What the driver's parts (client.ts, server.ts, notifications.ts) share: the environment each
 * is built with, the properties oslo puts on every message, and a delivery's body turned back
 * into oslo's dict (or dropped, with a log, when it is not one).
 */
import type { Options } from 'amqplib';
import type { Logger } from '@hybridbus/core';
import { unenvelope } from '@hybridbus/core/driver';
import type { Delivery } from './consumer.js';
import type { Link } from './link.js';
import type { RabbitOptions } from './options.js';
import type { Sender } from './publishing.js';
import type { Subscriptions } from './subscriptions.js';
import type { Topology } from './topology.js';

export type Dict = Record<string, unknown>;

/** Given to each part's constructor by the driver: nothing is reached through the driver. */
export interface PartEnv {
  readonly options: RabbitOptions;
  readonly logger: Logger;
  /** The transport's name in the config. */
  readonly name: string;
  /** The exchange of targets without one (oslo's control_exchange). */
  readonly controlExchange: string;
  readonly link: Link;
  readonly sender: Sender;
  readonly topology: Topology;
  readonly subscriptions: Subscriptions;
}

const JSON_TYPE = 'application/json';

/** The properties oslo puts on every message (captured): the contract, headers `{}` included. */
function properties(mandatory: boolean, expirationMs?: number): Options.Publish {
  const p: Options.Publish = {
    contentType: JSON_TYPE,
    contentEncoding: 'utf-8',
    deliveryMode: 2,
    priority: 0,
    headers: {},
    mandatory,
  };
  if (expirationMs !== undefined) p.expiration = String(Math.max(1, Math.ceil(expirationMs)));
  return p;
}

// amqplib only reads these: one object each rather than one per message.
export const MANDATORY = properties(true);
export const NOT_MANDATORY = properties(false);
let lastExpiring: { ms: number; props: Options.Publish } | undefined;
/** A call's properties: its expiration is the call timeout, nearly always the same one. */
export function expiringProperties(ms: number): Options.Publish {
  if (lastExpiring?.ms !== ms) lastExpiring = { ms, props: properties(true, ms) };
  return lastExpiring.props;
}

/** The oslo dict of a delivery, or undefined (logged) when it is not one of ours. */
function parseDelivery(d: Delivery, kind: string, logger: Logger): Dict | undefined {
  const { msg } = d;
  const log = { queue: d.queue, kind, routingKey: msg.fields.routingKey, exchange: msg.fields.exchange };
  if (msg.properties.contentType !== JSON_TYPE) {
    // oslo drops these too ("Failed to process message ... skipping it").
    d.consumer.malformed();
    logger.warn({ ...log, contentType: msg.properties.contentType ?? null }, `dropping a message without content_type ${JSON_TYPE}`);
    return undefined;
  }
  try {
    // A string: core copies a Uint8Array into a new Buffer before decoding it.
    return unenvelope(msg.content.toString('utf8'));
  } catch (err) {
    d.consumer.malformed();
    logger.warn({ ...log, err }, 'dropping a malformed message');
    return undefined;
  }
}

/** A delivery that is not a valid message of its kind: dropped, with a log. */
export function dropMalformed(d: Delivery, kind: string, err: unknown, logger: Logger): void {
  d.consumer.malformed();
  logger.warn({ queue: d.queue, kind, err }, 'dropping a malformed message');
}

/**
 * A delivery as oslo's dict and as a message of its kind (`decode`: core's codec), or
 * undefined when it is not one (logged, to be dropped).
 */
export function decodeDelivery<T>(d: Delivery, kind: string, decode: (dict: Dict) => T, logger: Logger): { dict: Dict; message: T } | undefined {
  const dict = parseDelivery(d, kind, logger);
  if (!dict) return undefined;
  try {
    return { dict, message: decode(dict) };
  } catch (err) {
    dropMalformed(d, kind, err, logger);
    return undefined;
  }
}
