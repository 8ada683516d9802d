/** A promise or promise-like value: what an endpoint may return instead of its result. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as { then?: unknown } | null | undefined)?.then === 'function';
}
