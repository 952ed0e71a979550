import { describe, expect, it } from 'vitest';
import { MAX_TRACE_LINKS } from '../../../hub/queue/index.js';
import { cappedTraceLinks } from '../../../hub/reconcile/reconcile-consumer.js';
import { linksFromTraceparents, spanContextFromTraceparent } from '../../../shared/index.js';

const traceparent = (n: number): string =>
  `00-${n.toString(16).padStart(32, '0')}-${(n + 1).toString(16).padStart(16, '0')}-01`;

describe('cappedTraceLinks', () => {
  it('keeps every link up to the cap', () => {
    const links = Array.from({ length: MAX_TRACE_LINKS }, (_, i) => traceparent(i + 1));
    expect(cappedTraceLinks(links)).toEqual({ kept: links, dropped: 0 });
  });

  it('beyond the cap keeps the job’s own request and the newest coalesced ones', () => {
    const links = Array.from({ length: MAX_TRACE_LINKS + 10 }, (_, i) => traceparent(i + 1));
    const { kept, dropped } = cappedTraceLinks(links);
    expect(dropped).toBe(10);
    expect(kept).toHaveLength(MAX_TRACE_LINKS);
    expect(kept[0]).toBe(links[0]);
    expect(kept.slice(1)).toEqual(links.slice(11));
  });
});

describe('span links from traceparents', () => {
  it('reads W3C traceparents as remote span contexts and leaves invalid ones out', () => {
    const links = linksFromTraceparents([
      traceparent(1),
      'garbage',
      `00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`,
    ]);
    expect(links).toEqual([
      {
        context: {
          traceId: '1'.padStart(32, '0'),
          spanId: '2'.padStart(16, '0'),
          traceFlags: 1,
          isRemote: true,
        },
      },
    ]);
    expect(spanContextFromTraceparent(traceparent(5).replace(/-01$/, '-00'))?.traceFlags).toBe(0);
  });
});
