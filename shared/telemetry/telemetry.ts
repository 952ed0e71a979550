import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  createNoopMeter,
  trace,
  type Meter,
  type Tracer,
  type TracerProvider as ApiTracerProvider,
} from '@opentelemetry/api';
import { OTLPMetricExporter as OtlpJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OtlpProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import {
  ConsoleMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type MetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BatchSpanProcessor,
  ConsoleSpanExporter,
  TracerProvider,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import {
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
} from '@opentelemetry/semantic-conventions';
import type { Logger } from '../logging/logger.js';
import { tgfedVersion } from '../version.js';
import { TGFED_METER_NAME, TGFED_TRACER_NAME } from './names.js';
import { installContextManager } from './span-context.js';
import {
  compileTelemetryOptions,
  type CompiledTelemetryOptions,
  type TelemetryOptions,
} from './telemetry-options.js';

/** Serves the Prometheus text of a process's instruments (the health listener's `/metrics`). */
export interface MetricsEndpoint {
  handle(request: IncomingMessage, response: ServerResponse): void;
}

/** Lifecycle of a {@link Telemetry}. */
export type TelemetryState = 'running' | 'closing' | 'closed';

/**
 * One process's telemetry: a MeterProvider (and, when traces are exported, a TracerProvider) with
 * the component's resource, the Prometheus reader behind `/metrics`, and whatever exporters the
 * `OTEL_*` variables ask for. No provider is registered globally, so a hub, a worker and test
 * agents can share one process; instrumentation takes {@link meter} and {@link tracer} from here.
 * When traces are on, the process gets the AsyncLocalStorage context manager (see
 * `installContextManager`), which carries the active span across awaits.
 *
 * Cost when nothing is configured: instruments record into memory, callbacks of observable
 * instruments run only when `/metrics` is scraped, no timer runs, nothing leaves the process.
 */
export class Telemetry {
  readonly options: CompiledTelemetryOptions;
  readonly resource: Resource;
  /** The instruments' meter: a no-op meter when the SDK is disabled. */
  readonly meter: Meter;
  /** `/metrics`; undefined when the SDK is disabled. */
  readonly metricsEndpoint: MetricsEndpoint | undefined;
  readonly #meterProvider: MeterProvider | undefined;
  readonly #tracerProvider: TracerProvider | undefined;
  readonly #log: Logger;
  #state: TelemetryState = 'running';
  #closing: Promise<void> | undefined;

  constructor(options: TelemetryOptions) {
    const o = compileTelemetryOptions(options);
    this.options = o;
    this.#log = o.logger.child({ component: 'telemetry' });
    this.resource = resourceFromAttributes({
      [ATTR_SERVICE_VERSION]: tgfedVersion(),
      [ATTR_SERVICE_INSTANCE_ID]: o.serviceInstanceId,
      ...o.attributes,
      [ATTR_SERVICE_NAME]: o.serviceName,
    });
    if (o.disabled) {
      this.meter = createNoopMeter();
      this.metricsEndpoint = undefined;
      this.#log.info('OTEL_SDK_DISABLED: telemetry is off');
      return;
    }

    // Pull-only: collects when scraped. Scope labels left out so series carry the contract's
    // labels only; the resource is on `target_info`.
    const prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
    this.metricsEndpoint = {
      handle: (request, response) => prometheus.getMetricsRequestHandler(request, response),
    };
    const readers: MetricReader[] = [prometheus, ...o.metricReaders];
    for (const name of o.metricExporters) {
      if (name === 'prometheus') continue;
      const exporter =
        name === 'console'
          ? new ConsoleMetricExporter()
          : o.otlpMetricsProtocol === 'http/json'
            ? new OtlpJsonMetricExporter({ url: o.otlpMetricsUrl })
            : new OtlpProtoMetricExporter({ url: o.otlpMetricsUrl });
      readers.push(
        new PeriodicExportingMetricReader({
          exporter,
          exportIntervalMillis: o.metricExportIntervalMs,
          exportTimeoutMillis: Math.min(o.metricExportTimeoutMs, o.metricExportIntervalMs),
        }),
      );
    }
    this.#meterProvider = new MeterProvider({ resource: this.resource, readers });
    this.meter = this.#meterProvider.getMeter(TGFED_METER_NAME, tgfedVersion());

    const processors: SpanProcessor[] = [...o.spanProcessors];
    for (const name of o.traceExporters) {
      processors.push(
        new BatchSpanProcessor({
          exporter:
            name === 'console'
              ? new ConsoleSpanExporter()
              : new OTLPTraceExporter({ url: o.otlpTracesUrl }),
        }),
      );
    }
    if (processors.length > 0) {
      installContextManager();
      this.#tracerProvider = new TracerProvider({
        resource: this.resource,
        spanProcessors: processors,
      });
    }
    this.#log.info(
      {
        serviceName: o.serviceName,
        metricExporters: o.metricExporters,
        traceExporters: o.traceExporters,
        ...(o.metricExporters.includes('otlp') ? { otlpMetricsUrl: o.otlpMetricsUrl } : {}),
        ...(o.traceExporters.includes('otlp') ? { otlpTracesUrl: o.otlpTracesUrl } : {}),
      },
      'telemetry started',
    );
  }

  get state(): TelemetryState {
    return this.#state;
  }

  /** The provider spans come from: the SDK's when traces are exported, else the no-op one. */
  get tracerProvider(): ApiTracerProvider {
    return this.#tracerProvider ?? noopTracerProvider;
  }

  /** A tracer of tgfed's scope. */
  tracer(name = TGFED_TRACER_NAME): Tracer {
    return this.tracerProvider.getTracer(name, tgfedVersion());
  }

  /** Pushes what is pending to the configured exporters (no-op without any). */
  async forceFlush(timeoutMs = 5_000): Promise<void> {
    await Promise.all([
      this.#meterProvider?.forceFlush({ timeoutMillis: timeoutMs }),
      this.#tracerProvider?.forceFlush({ timeoutMillis: timeoutMs }),
    ]);
  }

  /**
   * Flushes and shuts the providers down within `timeoutMs` (the rest of the component's
   * shutdown grace); what is not out by then is dropped. Never throws. Idempotent.
   */
  shutdown(timeoutMs = 5_000): Promise<void> {
    this.#closing ??= this.#shutdown(timeoutMs);
    return this.#closing;
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    this.#state = 'closing';
    const steps: [string, (() => Promise<void>) | undefined][] = [
      [
        'meter provider',
        this.#meterProvider && (() => this.#meterProvider!.shutdown({ timeoutMillis: timeoutMs })),
      ],
      ['tracer provider', this.#tracerProvider && (() => this.#tracerProvider!.shutdown())],
    ];
    await Promise.all(
      steps.map(async ([name, step]) => {
        if (step === undefined) return;
        try {
          if (!(await settlesWithin(step(), timeoutMs))) {
            this.#log.warn(
              { step: name, timeoutMs },
              'telemetry shutdown timed out; dropping the rest',
            );
          }
        } catch (err) {
          this.#log.warn({ err, step: name }, 'telemetry shutdown failed');
        }
      }),
    );
    this.#state = 'closed';
  }
}

const noopTracerProvider: ApiTracerProvider = {
  getTracer: (name, version) => trace.getTracerProvider().getTracer(name, version),
};

/** Starts a component's telemetry (see {@link Telemetry}). */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  return new Telemetry(options);
}

async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
