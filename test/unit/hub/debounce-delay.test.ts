import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { debounceDelay } from '../../../hub/queue/reconcile-contract.js';

describe('debounceDelay', () => {
  it('runs a change at the end of the wall-clock window it falls in', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 42 }),
        fc.integer({ min: 1, max: 60_000 }),
        (now, windowMs) => {
          const delay = debounceDelay(now, windowMs);
          expect(delay).toBeGreaterThan(0);
          expect(delay).toBeLessThanOrEqual(windowMs);
          expect((now + delay) % windowMs).toBe(0);
        },
      ),
    );
  });

  it('gives changes within one window the same end, and none without a window', () => {
    expect(1_000 + debounceDelay(1_000, 500)).toBe(1_500);
    expect(1_001 + debounceDelay(1_001, 500)).toBe(1_500);
    expect(1_499 + debounceDelay(1_499, 500)).toBe(1_500);
    expect(debounceDelay(1_234, 0)).toBe(0);
  });
});
