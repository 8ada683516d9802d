import type { Context } from './message.js';

/**
 * Converts entities (arguments, results, payloads) and contexts to and from JSON-safe values
 * (oslo's Serializer). The default passes them through: drivers encode JSON.
 */
export interface Serializer {
  serializeEntity(context: Context, entity: unknown): unknown;
  deserializeEntity(context: Context, entity: unknown): unknown;
  serializeContext(context: Context): Record<string, unknown>;
  deserializeContext(context: Record<string, unknown>): Context;
}

export const jsonSerializer: Serializer = {
  serializeEntity: (_ctx, entity) => entity,
  deserializeEntity: (_ctx, entity) => entity,
  serializeContext: (ctx) => ({ ...ctx }),
  deserializeContext: (ctx) => ctx,
};
