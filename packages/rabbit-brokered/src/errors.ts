/** The error this driver adds to core's; it extends a core class, so `instanceof` keeps working. */
import { HybridbusError } from '@hybridbus/core';

/**
 * The broker refused to declare a queue or exchange, typically `406 PRECONDITION_FAILED`
 * because a peer declared the same name with other flags (durable, auto-delete, arguments).
 */
export class TopologyError extends HybridbusError {
  override readonly code = 'HB_TOPOLOGY';
}

/**
 * The reply code of a channel-level refusal from the broker (404, 406, 403...), from the `code`
 * amqplib puts on a channel-close error; undefined for anything else (e.g. a lost connection).
 */
export function brokerRefusal(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' && code >= 300 ? code : undefined;
}
