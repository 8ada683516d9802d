/** The error this driver adds to core's; it extends a core class, so `instanceof` keeps working. */
import { HybridbusError } from '@hybridbus/core';

/**
 * The broker refused to declare a queue or exchange, typically `406 PRECONDITION_FAILED`
 * because a peer declared the same name with other flags (durable, auto-delete, arguments).
 */
export class TopologyError extends HybridbusError {
  override readonly code = 'HB_TOPOLOGY';
}
