/**
 * A small HTTP endpoint for scrapers and probes, on node:http alone:
 *
 *   GET /metrics  the registry in Prometheus text format (with the registry's own content type)
 *   GET /healthz  `bus.health()` as JSON: 200 when the bus state is `connected` or `degraded`
 *                 (it still carries messages; the body's `state` and each transport's `reason`
 *                 say what is wrong), 503 when `down` (a transport cannot send)
 *
 * HEAD works as GET without a body; another method on those paths gets 405, another path 404.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bus } from '@hybridbus/core';
import { register as globalRegistry } from 'prom-client';
import type { MetricsRegistry } from './metrics.js';

export interface ServeOptions {
  /** Whose health `/healthz` reports. */
  readonly bus: Pick<Bus, 'health'>;
  /** What `/metrics` serves (default: prom-client's global `register`). */
  readonly registry?: MetricsRegistry | undefined;
  /** The address to bind (default "127.0.0.1": metrics stay local unless asked otherwise). */
  readonly host?: string | undefined;
  /** The port; 0 takes a free one (see `port` and `url` on the result). */
  readonly port: number;
}

export interface ObservabilityServer {
  /** "http://host:port", with the bound port (an IPv6 host in brackets). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stop listening and close open (keep-alive) connections. */
  close(): Promise<void>;
}

const ROUTES = new Set(['/metrics', '/healthz']);

async function respond(req: http.IncomingMessage, res: http.ServerResponse, options: ServeOptions, registry: MetricsRegistry): Promise<void> {
  // Only the path counts: a scraper may add a query string.
  const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
  const send = (status: number, type: string, body: string, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (!ROUTES.has(path)) return send(404, 'text/plain; charset=utf-8', 'not found: try /metrics or /healthz\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain; charset=utf-8', `method not allowed: ${path} takes GET or HEAD\n`, { Allow: 'GET, HEAD' });
  if (path === '/metrics') return send(200, registry.contentType, await registry.metrics());
  const health = options.bus.health();
  send(health.state === 'down' ? 503 : 200, 'application/json; charset=utf-8', `${JSON.stringify(health)}\n`);
}

/** Serve `/metrics` and `/healthz` on `host:port`; resolves once listening. */
export function serveObservability(options: ServeOptions): Promise<ObservabilityServer> {
  const registry = options.registry ?? (globalRegistry as MetricsRegistry);
  const host = options.host ?? '127.0.0.1';
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    return Promise.reject(new RangeError(`serveObservability port: must be an integer from 0 to 65535 (0 for a free one): value was ${JSON.stringify(options.port)}`));
  }
  const server = http.createServer((req, res) => {
    respond(req, res, options, registry).catch((err: unknown) => {
      // A failing collect() must cost one scrape, not the process.
      if (res.headersSent) res.destroy();
      else {
        const body = `error: ${err instanceof Error ? err.message : String(err)}\n`;
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`serveObservability: cannot listen on ${host}:${options.port}: ${err.message}`, { cause: err })));
    server.listen(options.port, host, () => {
      const { address, port } = server.address() as AddressInfo;
      const shown = address.includes(':') ? `[${address}]` : address;
      resolve({
        url: `http://${shown}:${port}`,
        host: address,
        port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}
