/**
 * @hybridbus/observability: tracing, metrics and health for a bus, each a subscriber to core's
 * diagnostics channels (packages/core/src/diagnostics.ts): nothing here runs unless enabled.
 */
export { instrumentTracing, type CarrierPropagator, type TracingOptions } from './tracing.js';
export { DEFAULT_BUCKETS, ERROR_OUTCOMES, METRIC_NAMES, registerMetrics, type MetricsOptions, type MetricsRegistry } from './metrics.js';
export { serveObservability, type ObservabilityServer, type ServeOptions } from './http.js';
