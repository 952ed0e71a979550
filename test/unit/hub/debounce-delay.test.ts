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
          expect(delay).toBeGreaterThanOrEqual(windowMs / 2);
          expect(delay).toBeLessThan(windowMs * 1.5);
          expect((now + delay) % windowMs).toBe(0);
        },
      ),
    );
  });

  it('gives changes close together the same end, at least half a window on', () => {
    expect(1_000 + debounceDelay(1_000, 500)).toBe(1_500);
    expect(1_001 + debounceDelay(1_001, 500)).toBe(1_500);
    expect(1_250 + debounceDelay(1_250, 500)).toBe(1_500);
    // Less than half a window before a boundary: the next one.
    expect(1_251 + debounceDelay(1_251, 500)).toBe(2_000);
    expect(1_499 + debounceDelay(1_499, 500)).toBe(2_000);
    expect(debounceDelay(1_234, 0)).toBe(0);
  });
});
