import { describe, expect, it } from 'vitest';
import {
  BatchPhase,
  NackReason,
  SyncRequest,
  SyncResponse,
  digestHex,
  endpointDigest,
  traceContextFromHeaders,
  traceHeadersFromContext,
  type Endpoint,
  type EndpointBatch,
} from '../../shared/index.js';

function endpoint(i: number): Endpoint {
  return {
    address: Uint8Array.from([10, 0, (i >> 8) & 0xff, i & 0xff]),
    portSet: 1,
    ready: i % 2 === 0,
    serving: true,
    terminating: i % 2 === 1,
    zone: 1 + (i % 3),
    node: 4 + (i % 50),
    pod: { namespace: '', name: `web-7d4b9c8f6d-${i.toString(36).padStart(5, 'x')}` },
    observedOffsetMs: 250 + i,
  };
}

function deltaBatch(changes: number): EndpointBatch {
  return {
    sequence: 123_456,
    phase: BatchPhase.BATCH_PHASE_DELTA,
    observedBaseUnixMs: 1_790_000_000_000,
    strings: [],
    traceContext: traceContextFromHeaders({
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      tracestate: '',
    }),
    changes: [
      {
        service: { namespace: 'shop', name: 'web' },
        digest: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
        change: {
          $case: 'delta',
          delta: {
            portSets: [],
            upserts: Array.from({ length: changes }, (_, i) => endpoint(i)),
            removals: [],
          },
        },
      },
    ],
  };
}

function encodedSize(batch: EndpointBatch): number {
  return SyncRequest.encode({ message: { $case: 'batch', batch } }).finish().length;
}

describe('wire contract v1', () => {
  it('costs at most 64 bytes per endpoint change in a churn batch (DESIGN.md target)', () => {
    const perChange = (encodedSize(deltaBatch(101)) - encodedSize(deltaBatch(1))) / 100;
    expect(perChange).toBeLessThanOrEqual(64);
  });

  it('round-trips every agent message through the binary encoding', () => {
    const requests: SyncRequest[] = [
      {
        message: {
          $case: 'hello',
          hello: {
            clusterId: 'prod-eu-1',
            agentVersion: '0.1.0',
            sessionEpoch: new Uint8Array(16).fill(7),
            capabilities: ['interned-strings'],
          },
        },
      },
      { message: { $case: 'batch', batch: deltaBatch(3) } },
      { message: { $case: 'synced', synced: { sequence: 2 ** 40 } } },
      { message: { $case: 'heartbeat', heartbeat: { sentUnixMs: 1_790_000_000_123 } } },
    ];
    for (const request of requests) {
      expect(SyncRequest.decode(SyncRequest.encode(request).finish())).toEqual(request);
    }
  });

  it('round-trips every hub message through the binary encoding', () => {
    const responses: SyncResponse[] = [
      { message: { $case: 'ack', ack: { sequence: 9 } } },
      {
        message: {
          $case: 'nack',
          nack: {
            sequence: 10,
            reason: NackReason.NACK_REASON_ADDRESS_NOT_ALLOWED,
            message: '1 endpoint outside the allowed CIDRs',
            rejections: [
              {
                service: { namespace: 'shop', name: 'web' },
                address: Uint8Array.from([192, 168, 0, 1]),
                reason: NackReason.NACK_REASON_ADDRESS_NOT_ALLOWED,
                message: '192.168.0.1 is not in 10.0.0.0/8',
              },
            ],
          },
        },
      },
      {
        message: {
          $case: 'resyncRequest',
          resyncRequest: {
            services: [{ namespace: 'shop', name: 'web' }],
            reason: 'digest mismatch',
          },
        },
      },
      {
        message: {
          $case: 'standby',
          standby: { holderHubId: 'hub-0', leaseExpiresUnixMs: 1_790_000_010_000 },
        },
      },
    ];
    for (const response of responses) {
      expect(SyncResponse.decode(SyncResponse.encode(response).finish())).toEqual(response);
    }
  });

  it('refuses a 64-bit number it cannot represent exactly instead of rounding it', () => {
    const encoded = SyncRequest.encode({
      message: { $case: 'synced', synced: { sequence: 1 } },
    }).finish();
    // Patch the varint of `sequence` to 2^63 - 1.
    const huge = Uint8Array.from([
      ...encoded.slice(0, 3),
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0x7f,
    ]);
    huge[1] = huge.length - 2;
    expect(() => SyncRequest.decode(huge)).toThrow(/MAX_SAFE_INTEGER/);
  });

  it('carries W3C trace context in binary form and gives back the same traceparent', () => {
    const headers = {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      tracestate: 'vendor=a',
    };
    const context = traceContextFromHeaders(headers);
    expect(traceHeadersFromContext(context)).toEqual(headers);
    expect(
      traceContextFromHeaders({
        traceparent: '00-' + '0'.repeat(32) + '-00f067aa0ba902b7-01',
        tracestate: '',
      }),
    ).toBeUndefined();
    expect(traceContextFromHeaders({ traceparent: 'garbage', tracestate: '' })).toBeUndefined();
  });

  it('keeps the digest of a known endpoint set stable across versions (agents and hubs of different releases compare them)', () => {
    const endpoint = {
      address: '10.0.1.7',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' as const, appProtocol: '' }],
      ready: true,
      serving: true,
      terminating: false,
      zone: 'eu-west-1a',
      node: 'ip-10-0-1-7',
      pod: { namespace: 'shop', name: 'web-7d4b9c8f6d-x2k9p' },
    };
    expect(digestHex(endpointDigest({ app: 'web' }, [endpoint]))).toBe('12c5f45ccf58233e');
    expect(digestHex(endpointDigest({}, []))).toBe('acac86c0e609ca90');
  });
});
