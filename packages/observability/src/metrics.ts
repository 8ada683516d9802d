// Filled in by the metrics work (prom-client).
export interface MetricsOptions {}
export function registerMetrics(_options: MetricsOptions = {}): () => void {
  throw new Error('not yet');
}
