import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  ROOT_CONTEXT,
  SpanStatusCode,
  context,
  isSpanContextValid,
  trace,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type SpanOptions,
  type Tracer,
} from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import type { TraceHeaders } from '../protocol/trace-context.js';
import { SpanAttribute } from './names.js';

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The remote span context a W3C `traceparent` names; undefined when it is not valid. */
export function spanContextFromTraceparent(
  traceparent: string,
  tracestate = '',
): SpanContext | undefined {
  const match = traceparentPattern.exec(traceparent);
  if (match === null) return undefined;
  const [, traceId = '', spanId = '', flags = '00'] = match;
  const spanContext: SpanContext = {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16) & 0x01,
    isRemote: true,
    ...(tracestate === '' ? {} : { traceState: new TraceState(tracestate) }),
  };
  return isSpanContextValid(spanContext) ? spanContext : undefined;
}

/** The W3C headers of a span context; undefined for the invalid one of a no-op span. */
export function traceHeadersOf(spanContext: SpanContext): TraceHeaders | undefined {
  if (!isSpanContextValid(spanContext)) return undefined;
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0');
  return {
    traceparent: `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`,
    tracestate: spanContext.traceState?.serialize() ?? '',
  };
}

/**
 * A context whose parent is the remote span the headers name (a batch's trace context), never
 * the caller's: the hub applies many batches on one long-lived stream, and each belongs to the
 * trace of its own batch. The root context when there are no valid headers.
 */
export function remoteParentContext(headers: TraceHeaders | undefined): Context {
  const parent =
    headers === undefined
      ? undefined
      : spanContextFromTraceparent(headers.traceparent, headers.tracestate);
  return parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
}

/** Span links to the spans the `traceparent`s name; invalid ones are left out. */
export function linksFromTraceparents(traceparents: readonly string[]): Link[] {
  const links: Link[] = [];
  for (const traceparent of traceparents) {
    const spanContext = spanContextFromTraceparent(traceparent);
    if (spanContext !== undefined) links.push({ context: spanContext });
  }
  return links;
}

/**
 * Runs `work` in a new span made active (its awaits and the spans started within it see it as
 * their parent), records a thrown error on it, and ends it. `parent` overrides the active context.
 */
export function withSpan<T>(
  tracer: Tracer,
  name: string,
  options: SpanOptions,
  work: (span: Span) => Promise<T>,
  parent: Context = context.active(),
): Promise<T> {
  return tracer.startActiveSpan(name, options, parent, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      markSpanFailed(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Sets a span's status to ERROR with the error's message, type and exception event. */
export function markSpanFailed(span: Span, err: unknown): void {
  const error = err instanceof Error ? err : new Error(String(err));
  span.recordException(error);
  span.setAttribute(SpanAttribute.ERROR_TYPE, error.name);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
}

let contextManagerInstalled = false;

/**
 * Installs the AsyncLocalStorage context manager once per process, so the span made active by a
 * hub apply or a reconcile is the parent of the spans started across its awaits (the Redis write,
 * the enqueue, the AWS calls). Process-wide by nature, but it holds no provider: every component
 * still takes its tracer from its own `Telemetry`. Leaves a manager someone else set alone.
 */
export function installContextManager(): void {
  if (contextManagerInstalled) return;
  contextManagerInstalled = true;
  const manager = new AsyncLocalStorageContextManager().enable();
  if (!context.setGlobalContextManager(manager)) manager.disable();
}
