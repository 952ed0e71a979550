import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ATTR_TGFED_CLUSTER_ID,
  MetricName,
  compileTelemetryOptions,
  startHealthServer,
  startTelemetry,
  tgfedVersion,
  type HealthServer,
  type Logger,
  type Telemetry,
} from '../../../shared/index.js';
import { PrometheusScrape } from '../../support/prometheus-text.js';

/** An OTLP/HTTP receiver on loopback that keeps every request. */
interface Received {
  path: string;
  contentType: string;
  body: Buffer;
}

let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];

beforeAll(async () => {
  receiver = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body: Buffer.concat(chunks),
      });
      const json = (req.headers['content-type'] ?? '').includes('json');
      res
        .writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' })
        .end(json ? '{}' : undefined);
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

let telemetry: Telemetry | undefined;
let health: HealthServer | undefined;

afterEach(async () => {
  await health?.close();
  await telemetry?.shutdown();
  health = undefined;
  telemetry = undefined;
  received.length = 0;
});

/** A logger that keeps the messages of its warnings. */
function recordingLogger(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const logger = pino(
    { level: 'warn' },
    { write: (line: string) => warnings.push((JSON.parse(line) as { msg: string }).msg) },
  );
  return { logger, warnings };
}

async function metricsResponse(t: Telemetry): Promise<Response> {
  health = await startHealthServer({
    address: '127.0.0.1:0',
    live: () => ({ ok: true, detail: {} }),
    ready: () => ({ ok: true, detail: {} }),
    metrics: t.metricsEndpoint,
  });
  return fetch(`http://127.0.0.1:${health.port}/metrics`);
}

describe('compileTelemetryOptions', () => {
  it('exports nothing when no OTEL_* variable asks for it', () => {
    const o = compileTelemetryOptions({ serviceName: 'tgfed-hub', env: {} });
    expect(o.disabled).toBe(false);
    expect(o.metricExporters).toEqual([]);
    expect(o.traceExporters).toEqual([]);
  });

  it('exports OTLP to the endpoint OTEL_EXPORTER_OTLP_ENDPOINT names, per signal path', () => {
    const o = compileTelemetryOptions({
      serviceName: 'tgfed-hub',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' },
    });
    expect(o.metricExporters).toEqual(['otlp']);
    expect(o.traceExporters).toEqual(['otlp']);
    expect(o.otlpMetricsUrl).toBe('http://collector:4318/v1/metrics');
    expect(o.otlpTracesUrl).toBe('http://collector:4318/v1/traces');
    expect(o.otlpMetricsProtocol).toBe('http/protobuf');
  });

  it('lets the signal variables win and "none" switch a signal off', () => {
    const o = compileTelemetryOptions({
      serviceName: 'tgfed-hub',
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://metrics:9000/push',
        OTEL_TRACES_EXPORTER: 'none',
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
        OTEL_METRIC_EXPORT_INTERVAL: '15000',
      },
    });
    expect(o.otlpMetricsUrl).toBe('http://metrics:9000/push');
    expect(o.otlpMetricsProtocol).toBe('http/json');
    expect(o.traceExporters).toEqual([]);
    expect(o.metricExportIntervalMs).toBe(15_000);
  });

  it('warns about malformed values and falls back to the defaults', () => {
    const { logger, warnings } = recordingLogger();
    const o = compileTelemetryOptions({
      serviceName: 'tgfed-hub',
      logger,
      env: {
        OTEL_METRICS_EXPORTER: 'otlp,zipkin',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_METRIC_EXPORT_INTERVAL: 'soon',
        OTEL_SDK_DISABLED: 'yes',
      },
    });
    expect(o.metricExporters).toEqual(['otlp']);
    expect(o.otlpMetricsProtocol).toBe('http/protobuf');
    expect(o.metricExportIntervalMs).toBe(60_000);
    expect(o.disabled).toBe(false);
    // zipkin, the interval, OTEL_SDK_DISABLED, and grpc once per signal.
    expect(warnings).toHaveLength(5);
  });

  it('takes OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over the component defaults', () => {
    const o = compileTelemetryOptions({
      serviceName: 'tgfed-agent',
      attributes: { [ATTR_TGFED_CLUSTER_ID]: 'a', 'deployment.environment.name': 'dev' },
      env: {
        OTEL_SERVICE_NAME: 'agent-eu',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,team=plat%20form',
      },
    });
    expect(o.serviceName).toBe('agent-eu');
    expect(o.attributes).toEqual({
      [ATTR_TGFED_CLUSTER_ID]: 'a',
      'deployment.environment.name': 'prod',
      team: 'plat form',
    });
  });
});

describe('Telemetry', () => {
  it('serves Prometheus text on /metrics with the resource on target_info', async () => {
    telemetry = startTelemetry({
      serviceName: 'tgfed-agent',
      serviceInstanceId: 'agent-0',
      attributes: { [ATTR_TGFED_CLUSTER_ID]: 'east' },
      env: {},
    });
    telemetry.meter.createCounter(MetricName.AGENT_BATCHES_SENT).add(3, { cluster: 'east' });
    const response = await metricsResponse(telemetry);
    expect(response.status).toBe(200);
    const scrape = new PrometheusScrape(await response.text());
    expect(scrape.value('tgfed_agent_batches_sent_total', { cluster: 'east' })).toBe(3);
    expect(scrape.find('tgfed_agent_batches_sent_total')[0]?.labels).toEqual({ cluster: 'east' });
    expect(
      scrape.find('target_info', {
        service_name: 'tgfed-agent',
        service_instance_id: 'agent-0',
        service_version: tgfedVersion(),
        tgfed_cluster_id: 'east',
      }),
    ).toHaveLength(1);
  });

  it('pushes nothing when the exporters are switched off, even with an endpoint set', async () => {
    telemetry = startTelemetry({
      serviceName: 'tgfed-worker',
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
        OTEL_METRICS_EXPORTER: 'prometheus',
        OTEL_TRACES_EXPORTER: 'none',
      },
    });
    telemetry.meter.createCounter(MetricName.RECONCILES).add(1);
    telemetry.tracer().startSpan('reconcile').end();
    await telemetry.forceFlush();
    await telemetry.shutdown();
    expect(received).toEqual([]);
    // The scrape endpoint is the component's own: it is served whatever the exporters.
    expect(telemetry.metricsEndpoint).toBeDefined();
  });

  it('pushes metrics as OTLP/HTTP JSON to the configured endpoint when shut down', async () => {
    telemetry = startTelemetry({
      serviceName: 'tgfed-worker',
      serviceInstanceId: 'worker-7',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' },
    });
    telemetry.meter
      .createCounter(MetricName.RECONCILES)
      .add(2, { account: '111111111111', outcome: 'applied' });
    await telemetry.shutdown(5_000);
    const metrics = received.filter((r) => r.path === '/v1/metrics');
    expect(metrics).toHaveLength(1);
    expect(metrics[0]?.contentType).toContain('application/json');
    const body = JSON.parse(metrics[0]?.body.toString('utf8') ?? '{}') as {
      resourceMetrics: {
        resource: { attributes: { key: string; value: { stringValue?: string } }[] };
        scopeMetrics: {
          metrics: {
            name: string;
            sum?: { dataPoints: { asDouble?: number; asInt?: string | number }[] };
          }[];
        }[];
      }[];
    };
    const resource = body.resourceMetrics[0]?.resource.attributes ?? [];
    const attr = (key: string) => resource.find((a) => a.key === key)?.value.stringValue;
    expect(attr('service.name')).toBe('tgfed-worker');
    expect(attr('service.instance.id')).toBe('worker-7');
    const metric = body.resourceMetrics[0]?.scopeMetrics[0]?.metrics.find(
      (m) => m.name === 'tgfed_reconciles',
    );
    const point = metric?.sum?.dataPoints[0];
    expect(Number(point?.asDouble ?? point?.asInt)).toBe(2);
  });

  it('pushes metrics and spans as OTLP/HTTP protobuf by default', async () => {
    telemetry = startTelemetry({
      serviceName: 'tgfed-hub',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl },
    });
    telemetry.meter.createCounter(MetricName.HUB_BATCHES).add(1, { cluster: 'a' });
    telemetry.tracer().startSpan('apply').end();
    await telemetry.shutdown(5_000);
    const metrics = received.find((r) => r.path === '/v1/metrics');
    const traces = received.find((r) => r.path === '/v1/traces');
    expect(metrics?.contentType).toBe('application/x-protobuf');
    // Protobuf keeps strings as UTF-8: the names are in the message as they are.
    expect(metrics?.body.includes('tgfed_hub_batches')).toBe(true);
    expect(metrics?.body.includes('tgfed-hub')).toBe(true);
    expect(traces?.body.includes('apply')).toBe(true);
  });

  it('is off with OTEL_SDK_DISABLED: no /metrics, instruments record nothing', async () => {
    telemetry = startTelemetry({
      serviceName: 'tgfed-hub',
      env: { OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl },
    });
    expect(telemetry.options.metricExporters).toEqual([]);
    expect(telemetry.metricsEndpoint).toBeUndefined();
    telemetry.meter.createCounter(MetricName.HUB_BATCHES).add(1);
    expect((await metricsResponse(telemetry)).status).toBe(404);
    await telemetry.shutdown();
    expect(received).toEqual([]);
  });

  it('shuts down once, however often asked', async () => {
    telemetry = startTelemetry({ serviceName: 'tgfed-hub', env: {} });
    const first = telemetry.shutdown();
    expect(telemetry.shutdown()).toBe(first);
    await first;
    expect(telemetry.state).toBe('closed');
  });
});
