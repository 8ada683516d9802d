// Filled in by the tracing work (OpenTelemetry through @opentelemetry/api).
export interface TracingOptions {}
export function instrumentTracing(_options: TracingOptions = {}): () => void {
  throw new Error('not yet');
}
