import { randomUUID } from 'node:crypto';
import type { MetricReader } from '@opentelemetry/sdk-metrics';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import type { Logger } from '../logging/logger.js';
import { silentLogger } from '../logging/logger.js';

/** Options of {@link startTelemetry}; exporters are configured by the `OTEL_*` variables only. */
export interface TelemetryOptions {
  /** `service.name`, e.g. `tgfed-hub` (`OTEL_SERVICE_NAME` overrides it). */
  serviceName: string;
  /**
   * `service.instance.id`: the hub or worker id, or a random id per process start.
   * @default a random UUID
   */
  serviceInstanceId?: string;
  /** More resource attributes, e.g. the agent's cluster id; `OTEL_RESOURCE_ATTRIBUTES` wins. */
  attributes?: Readonly<Record<string, string>>;
  /**
   * Where the `OTEL_*` variables are read (tests pass their own).
   * @default process.env
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** Readers besides the configured ones (tests collect through these). @default [] */
  metricReaders?: readonly MetricReader[];
  /** Span processors besides the configured ones (tests). @default [] */
  spanProcessors?: readonly SpanProcessor[];
  /** @default silentLogger() */
  logger?: Logger;
}

/** Metric exporters tgfed knows (`prometheus` is the `/metrics` endpoint, always served). */
export type MetricExporterName = 'otlp' | 'prometheus' | 'console';
/** Span exporters tgfed knows. */
export type TraceExporterName = 'otlp' | 'console';
/** OTLP encodings tgfed ships: protobuf or JSON over HTTP (`grpc` falls back to protobuf). */
export type OtlpProtocol = 'http/protobuf' | 'http/json';

/** {@link TelemetryOptions} with the environment read and checked. */
export interface CompiledTelemetryOptions {
  readonly serviceName: string;
  readonly serviceInstanceId: string;
  readonly attributes: Readonly<Record<string, string>>;
  /** OTEL_SDK_DISABLED: no instrument records, no exporter, `/metrics` is not served. */
  readonly disabled: boolean;
  readonly metricExporters: readonly MetricExporterName[];
  readonly traceExporters: readonly TraceExporterName[];
  /** Full URL of the OTLP metrics endpoint (`…/v1/metrics`). */
  readonly otlpMetricsUrl: string;
  /** Full URL of the OTLP traces endpoint (`…/v1/traces`). */
  readonly otlpTracesUrl: string;
  readonly otlpMetricsProtocol: OtlpProtocol;
  readonly otlpTracesProtocol: OtlpProtocol;
  /** OTEL_METRIC_EXPORT_INTERVAL. */
  readonly metricExportIntervalMs: number;
  /** OTEL_METRIC_EXPORT_TIMEOUT. */
  readonly metricExportTimeoutMs: number;
  readonly metricReaders: readonly MetricReader[];
  readonly spanProcessors: readonly SpanProcessor[];
  readonly logger: Logger;
}

const DEFAULT_OTLP_ENDPOINT = 'http://localhost:4318';

/**
 * Reads the standard variables (the only place tgfed reads them), warning about malformed values
 * and falling back to the default, as the OpenTelemetry SDKs do:
 *
 * - `OTEL_SDK_DISABLED=true`: everything off.
 * - `OTEL_METRICS_EXPORTER` / `OTEL_TRACES_EXPORTER`: comma-separated `otlp`, `console`, `none`
 *   (metrics also accept `prometheus`, which the health listener's `/metrics` serves anyway).
 *   Unset means `otlp` when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or the
 *   signal's own), otherwise nothing: a process nobody configured does not try to push to
 *   localhost every minute.
 * - `OTEL_EXPORTER_OTLP_[METRICS_|TRACES_]ENDPOINT`, `…_PROTOCOL`, `OTEL_METRIC_EXPORT_INTERVAL`,
 *   `OTEL_METRIC_EXPORT_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`. Headers,
 *   compression, certificates and timeouts of the OTLP exporters are read by the exporters.
 */
export function compileTelemetryOptions(options: TelemetryOptions): CompiledTelemetryOptions {
  const env = options.env ?? process.env;
  const logger = options.logger ?? silentLogger();
  const get = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const disabled = parseBoolean(get('OTEL_SDK_DISABLED'), 'OTEL_SDK_DISABLED', logger);
  const base = get('OTEL_EXPORTER_OTLP_ENDPOINT');
  const metricsEndpoint = get('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT');
  const tracesEndpoint = get('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const metricExporters = parseExporters(
    get('OTEL_METRICS_EXPORTER'),
    'OTEL_METRICS_EXPORTER',
    ['otlp', 'prometheus', 'console'] as const,
    base !== undefined || metricsEndpoint !== undefined,
    logger,
  );
  const traceExporters = parseExporters(
    get('OTEL_TRACES_EXPORTER'),
    'OTEL_TRACES_EXPORTER',
    ['otlp', 'console'] as const,
    base !== undefined || tracesEndpoint !== undefined,
    logger,
  );
  const resourceAttributes = parseResourceAttributes(get('OTEL_RESOURCE_ATTRIBUTES'), logger);
  const serviceName = get('OTEL_SERVICE_NAME') ?? options.serviceName;
  return {
    serviceName,
    serviceInstanceId: options.serviceInstanceId ?? randomUUID(),
    attributes: { ...options.attributes, ...resourceAttributes },
    disabled,
    metricExporters: disabled ? [] : metricExporters,
    traceExporters: disabled ? [] : traceExporters,
    otlpMetricsUrl: metricsEndpoint ?? signalUrl(base ?? DEFAULT_OTLP_ENDPOINT, 'v1/metrics'),
    otlpTracesUrl: tracesEndpoint ?? signalUrl(base ?? DEFAULT_OTLP_ENDPOINT, 'v1/traces'),
    otlpMetricsProtocol: parseProtocol(
      get('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL') ?? get('OTEL_EXPORTER_OTLP_PROTOCOL'),
      logger,
    ),
    otlpTracesProtocol: parseProtocol(
      get('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? get('OTEL_EXPORTER_OTLP_PROTOCOL'),
      logger,
    ),
    metricExportIntervalMs: parseMs(
      get('OTEL_METRIC_EXPORT_INTERVAL'),
      60_000,
      'OTEL_METRIC_EXPORT_INTERVAL',
      logger,
    ),
    metricExportTimeoutMs: parseMs(
      get('OTEL_METRIC_EXPORT_TIMEOUT'),
      30_000,
      'OTEL_METRIC_EXPORT_TIMEOUT',
      logger,
    ),
    metricReaders: [...(options.metricReaders ?? [])],
    spanProcessors: [...(options.spanProcessors ?? [])],
    logger,
  };
}

function parseBoolean(value: string | undefined, name: string, logger: Logger): boolean {
  if (value === undefined) return false;
  const v = value.toLowerCase();
  if (v === 'true') return true;
  if (v !== 'false')
    logger.warn({ [name]: value }, `${name} is neither true nor false; using false`);
  return false;
}

function parseExporters<T extends string>(
  value: string | undefined,
  name: string,
  known: readonly T[],
  endpointSet: boolean,
  logger: Logger,
): T[] {
  if (value === undefined) return endpointSet ? (['otlp'] as T[]) : [];
  const names = value
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '');
  if (names.includes('none')) return [];
  const chosen: T[] = [];
  for (const n of names) {
    if ((known as readonly string[]).includes(n)) {
      if (!chosen.includes(n as T)) chosen.push(n as T);
    } else {
      logger.warn(
        { [name]: value, exporter: n },
        `${name} names an exporter tgfed does not ship; ignored`,
      );
    }
  }
  return chosen;
}

function parseProtocol(value: string | undefined, logger: Logger): OtlpProtocol {
  if (value === undefined || value === 'http/protobuf') return 'http/protobuf';
  if (value === 'http/json') return 'http/json';
  logger.warn(
    { OTEL_EXPORTER_OTLP_PROTOCOL: value },
    'tgfed exports OTLP over HTTP only (http/protobuf or http/json); using http/protobuf',
  );
  return 'http/protobuf';
}

function parseMs(
  value: string | undefined,
  fallback: number,
  name: string,
  logger: Logger,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (Number.isInteger(n) && n > 0) return n;
  logger.warn(
    { [name]: value },
    `${name} is not a positive integer of milliseconds; using ${fallback}`,
  );
  return fallback;
}

/** `key=value,key2=value2`, values percent-encoded (W3C Baggage octets), per the spec. */
function parseResourceAttributes(
  value: string | undefined,
  logger: Logger,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (value === undefined) return out;
  for (const pair of value.split(',')) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? '' : pair.slice(0, eq).trim();
    if (key === '') {
      if (pair.trim() !== '') {
        logger.warn(
          { OTEL_RESOURCE_ATTRIBUTES: value },
          'OTEL_RESOURCE_ATTRIBUTES has an entry without key=value; ignored',
        );
      }
      continue;
    }
    try {
      out[key] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      logger.warn({ key }, 'OTEL_RESOURCE_ATTRIBUTES has a malformed value; ignored');
    }
  }
  return out;
}

function signalUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path}`;
}
