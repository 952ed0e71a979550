import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MetricsEndpoint } from '../telemetry/telemetry.js';

/** One probe's verdict; `detail` goes into the response body. */
export interface ProbeResult {
  ok: boolean;
  detail: Record<string, unknown>;
}

/** Options for {@link startHealthServer}. */
export interface HealthServerOptions {
  /** `host:port`; port 0 picks a free one. */
  address: string;
  /** Process is alive and not wedged (Kubernetes restarts it otherwise). */
  live: () => ProbeResult;
  /** Ready to do its work (Kubernetes holds it out of rollouts otherwise). */
  ready: () => ProbeResult;
  /** Serves `GET /metrics` (the component's telemetry). @default no `/metrics` */
  metrics?: MetricsEndpoint | undefined;
}

/** The probe endpoints of a tgfed process. */
export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /livez` and `GET /readyz` (200 or 503, JSON body with the details), and
 * `GET /metrics` (Prometheus text) when given a metrics endpoint.
 */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const colon = options.address.lastIndexOf(':');
  const host = options.address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(options.address.slice(colon + 1));
  const server: Server = createServer((req, res) => {
    const path = req.url?.split('?', 1)[0];
    if (req.method === 'GET' && path === '/metrics' && options.metrics !== undefined) {
      options.metrics.handle(req, res);
      return;
    }
    const probe =
      req.url === '/livez' ? options.live : req.url === '/readyz' ? options.ready : undefined;
    if (req.method !== 'GET' || probe === undefined) {
      res.writeHead(404).end();
      return;
    }
    let result: ProbeResult;
    try {
      result = probe();
    } catch (err) {
      result = { ok: false, detail: { error: (err as Error).message } };
    }
    res
      .writeHead(result.ok ? 200 : 503, { 'content-type': 'application/json' })
      .end(JSON.stringify({ status: result.ok ? 'ok' : 'failing', ...result.detail }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
