/**
 * Observability as an application would switch it on, for the `zmq-observed` contender: an
 * OpenTelemetry SDK recording every span (batched to an exporter that counts and drops them, so
 * the figure is the instrumentation's cost, not an exporter's), and Prometheus metrics.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator, ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import type { Bus } from '@hybridbus/core';
import { instrumentTracing, registerMetrics } from '@hybridbus/observability';

class CountingExporter implements SpanExporter {
  spans = 0;
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.spans += spans.length;
    done({ code: ExportResultCode.SUCCESS });
  }
  async shutdown(): Promise<void> {}
}

/**
 * What is switched on, to split the cost (contenders-observed.ts):
 * - `sdk`: an OTel SDK and its AsyncLocalStorage context manager registered, nothing of ours;
 * - `tracing`: that, and instrumentTracing() recording every span;
 * - `sampled`: tracing with a 1 % parent-based sampler (a common production setting);
 * - `metrics`: registerMetrics() alone;
 * - `both`: tracing (every span) and metrics;
 * - `both-sampled`: tracing with the 1 % sampler, and metrics.
 */
export type ObserveMode = 'sdk' | 'tracing' | 'sampled' | 'metrics' | 'both' | 'both-sampled';

let tracingOn = false;
let buses = 0;
const registry = new Registry();

/** Tracing once per process; metrics per bus. */
export function observe(bus: Bus, mode: ObserveMode): void {
  if (!tracingOn && mode !== 'metrics') {
    tracingOn = true;
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const sampler = mode === 'sampled' || mode === 'both-sampled' ? new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.01) }) : undefined;
    trace.setGlobalTracerProvider(new BasicTracerProvider({ ...(sampler ? { sampler } : {}), spanProcessors: [new BatchSpanProcessor(new CountingExporter())] }));
    if (mode !== 'sdk') instrumentTracing();
  }
  // A fanout server process hosts several buses: each its own `bus` label on the one registry.
  if (mode === 'metrics' || mode === 'both' || mode === 'both-sampled') registerMetrics(bus, { registry, busName: `bus${buses++}` });
}
