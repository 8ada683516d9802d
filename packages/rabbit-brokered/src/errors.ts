/**
 * Errors this driver adds to core's. Both extend core classes, so code that matches on core's
 * `instanceof` keeps working; the `code` says more.
 */
import { HybridbusError, MessageDeliveryFailure } from '@hybridbus/core';

/**
 * The broker connection dropped while a call waited for its reply (or a send for its confirm
 * and it could not retry). The request may or may not have been handled.
 */
export class ConnectionLost extends MessageDeliveryFailure {
  override readonly code = 'HB_CONNECTION_LOST';
}

/**
 * The broker refused to declare a queue or exchange, typically `406 PRECONDITION_FAILED`
 * because a peer declared the same name with other flags (durable, auto-delete, arguments).
 */
export class TopologyError extends HybridbusError {
  override readonly code = 'HB_TOPOLOGY';
}
