// Filled in by the metrics work (/metrics and /healthz).
export interface ServeOptions {}
export interface ObservabilityServer { close(): Promise<void> }
export function serveObservability(_options: ServeOptions): Promise<ObservabilityServer> {
  throw new Error('not yet');
}
