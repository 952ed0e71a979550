import { describe, expect, it } from 'vitest';
import { nextWindowTickMs, windowPhaseMs } from '../../../hub/queue/reconcile-contract.js';

describe('window grid', () => {
  it('gives each pool a phase within the window, the same every time', () => {
    const phases = Array.from({ length: 200 }, (_, i) => windowPhaseMs(`svc-${i}`, 500));
    for (const phase of phases) {
      expect(phase).toBeGreaterThanOrEqual(0);
      expect(phase).toBeLessThan(500);
      expect(Number.isInteger(phase)).toBe(true);
    }
    expect(windowPhaseMs('svc-7', 500)).toBe(phases[7]);
    // Spread over the window, not bunched on a few ticks.
    expect(new Set(phases.map((p) => Math.floor(p / 50))).size).toBe(10);
    expect(windowPhaseMs('svc-7', 0)).toBe(0);
  });

  it('finds the first tick strictly after a time', () => {
    // Ticks at 120, 620, 1120, ...
    expect(nextWindowTickMs(1_000, 500, 120)).toBe(1_120);
    expect(nextWindowTickMs(1_119, 500, 120)).toBe(1_120);
    expect(nextWindowTickMs(1_120, 500, 120)).toBe(1_620);
    expect(nextWindowTickMs(1_121, 500, 120)).toBe(1_620);
    expect(nextWindowTickMs(50, 500, 120)).toBe(120);
    for (let t = 10_000; t < 11_000; t += 7) {
      const tick = nextWindowTickMs(t, 500, 333);
      expect(tick).toBeGreaterThan(t);
      expect(tick - t).toBeLessThanOrEqual(500);
      expect((tick - 333) % 500).toBe(0);
    }
    // No window: at once.
    expect(nextWindowTickMs(1_000, 0, 0)).toBe(1_000);
  });
});
