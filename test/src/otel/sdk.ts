/**
 * The OpenTelemetry SDK as an application would register it, for the tracing tests and their
 * child processes: a BasicTracerProvider with a SimpleSpanProcessor, AsyncLocalStorage contexts
 * and the W3C Trace Context propagator, all through the api's setGlobal* functions. Spans are
 * flattened to plain records, so a child process can send them to the test as JSON.
 */
import { context, propagation, trace, type AttributeValue } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { BasicTracerProvider, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';

/** A finished span, as JSON. */
export interface SpanRecord {
  readonly name: string;
  /** SpanKind's number (api's enum). */
  readonly kind: number;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly attributes: Readonly<Record<string, AttributeValue | undefined>>;
  /** SpanStatusCode's number, and the status message. */
  readonly status: { readonly code: number; readonly message?: string | undefined };
  /** Event names ("exception", …). */
  readonly events: readonly string[];
  /** Where it was recorded: "test" or "peer". */
  readonly process: string;
}

export function toRecord(s: ReadableSpan, process: string): SpanRecord {
  const { traceId, spanId } = s.spanContext();
  return {
    name: s.name,
    kind: s.kind,
    traceId,
    spanId,
    parentSpanId: s.parentSpanContext?.spanId,
    attributes: { ...s.attributes },
    status: { code: s.status.code, message: s.status.message },
    events: s.events.map((e) => e.name),
    process,
  };
}

/** Hands every finished span to `sink` as a record. */
export class RecordingExporter implements SpanExporter {
  constructor(
    private readonly sink: (span: SpanRecord) => void,
    private readonly process: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    for (const s of spans) this.sink(toRecord(s, this.process));
    done({ code: ExportResultCode.SUCCESS });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Register the SDK globally (once per process); spans go to `exporter` as each ends. */
export function registerSdk(exporter: SpanExporter): BasicTracerProvider {
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return provider;
}
