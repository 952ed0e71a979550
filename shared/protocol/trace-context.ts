import type { TraceContext } from '../generated/tgfed/v1/agent.js';

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** W3C trace context in header form. */
export interface TraceHeaders {
  traceparent: string;
  tracestate: string;
}

/** The binary wire form of a `traceparent` (version 00); undefined when it is not valid. */
export function traceContextFromHeaders(headers: TraceHeaders): TraceContext | undefined {
  const match = traceparentPattern.exec(headers.traceparent);
  if (match === null) return undefined;
  const [, traceId = '', parentId = '', flags = '00'] = match;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined;
  return {
    traceId: Uint8Array.from(Buffer.from(traceId, 'hex')),
    parentId: Uint8Array.from(Buffer.from(parentId, 'hex')),
    traceFlags: Number.parseInt(flags, 16),
    tracestate: headers.tracestate,
  };
}

/** The header form of a wire trace context; undefined when the ids have the wrong sizes. */
export function traceHeadersFromContext(
  context: TraceContext | undefined,
): TraceHeaders | undefined {
  if (context === undefined || context.traceId.length !== 16 || context.parentId.length !== 8) {
    return undefined;
  }
  const flags = (context.traceFlags & 0xff).toString(16).padStart(2, '0');
  return {
    traceparent: `00-${Buffer.from(context.traceId).toString('hex')}-${Buffer.from(context.parentId).toString('hex')}-${flags}`,
    tracestate: context.tracestate,
  };
}
