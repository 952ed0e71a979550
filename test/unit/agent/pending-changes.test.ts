import { describe, expect, it } from 'vitest';
import { PendingChanges } from '../../../agent/publish/pending-changes.js';

const web = { namespace: 'shop', name: 'web' };
const now = 1_790_000_000_000;

/** `count` addresses from `first` on, as a rolling restart names them (new pods, old pods). */
function addresses(first: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `10.0.${(first + i) >> 8}.${(first + i) & 255}`);
}

describe('PendingChanges', () => {
  it('keeps a delta while it names no more addresses than the service holds', () => {
    const pending = new PendingChanges();
    // A 100-endpoint service restarting behind a full window: 90 addresses touched, one by one.
    for (const address of addresses(0, 90)) {
      pending.markAddresses(web, [address], false, now, 100);
    }
    const entry = pending.get('shop/web');
    expect(entry?.kind).toBe('delta');
    expect(pending.pendingAddresses).toBe(90);
    expect(pending.coalesced).toBe(89);
  });

  it('turns a delta into a replace once it names more addresses than the service holds', () => {
    const pending = new PendingChanges();
    pending.markAddresses(web, addresses(0, 100), false, now, 100);
    expect(pending.get('shop/web')?.kind).toBe('delta');
    pending.markAddresses(web, addresses(100, 1), false, now + 5, 100);
    const entry = pending.get('shop/web');
    expect(entry).toEqual({ kind: 'replace', service: web, observedAtMs: now });
    expect(pending.pendingAddresses).toBe(0);
    // Further changes join the replace: nothing more is kept per address.
    pending.markAddresses(web, addresses(200, 50), false, now + 9, 100);
    expect(pending.get('shop/web')?.kind).toBe('replace');
  });

  it('lets a small service pend up to the minimum before a replace', () => {
    const pending = new PendingChanges({ replaceMinAddresses: 64 });
    pending.markAddresses(web, addresses(0, 64), false, now, 10);
    expect(pending.get('shop/web')?.kind).toBe('delta');
    pending.markAddresses(web, addresses(64, 1), false, now, 10);
    expect(pending.get('shop/web')?.kind).toBe('replace');
  });

  it('still converts at a configured share', () => {
    const pending = new PendingChanges({ replaceShare: 0.5, replaceMinAddresses: 1 });
    pending.markAddresses(web, addresses(0, 50), false, now, 100);
    expect(pending.get('shop/web')?.kind).toBe('delta');
    pending.markAddresses(web, addresses(50, 1), false, now, 100);
    expect(pending.get('shop/web')?.kind).toBe('replace');
  });
});
