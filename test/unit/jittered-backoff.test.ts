import { describe, expect, it } from 'vitest';
import { JitteredBackoff, jitteredBackoff } from '../../shared/backoff/jittered-backoff.js';

/** A `random` that always answers just below 1, so each delay sits at the top of its window. */
const top = (): number => 0.999_999;

describe('jitteredBackoff', () => {
  it('doubles the window with each attempt until it reaches maxMs', () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 6, 20, 2_000].map((attempt) =>
      jitteredBackoff(attempt, { initialMs: 100, maxMs: 3_000, random: top }),
    );
    expect(ceilings).toEqual([99, 199, 399, 799, 1_599, 2_999, 2_999, 2_999, 2_999]);
  });

  it('draws uniformly from zero to the window ceiling (full jitter)', () => {
    const options = { initialMs: 100, maxMs: 10_000 };
    expect(jitteredBackoff(3, { ...options, random: () => 0 })).toBe(0);
    expect(jitteredBackoff(3, { ...options, random: () => 0.25 })).toBe(200);
    expect(jitteredBackoff(3, { ...options, random: () => 0.5 })).toBe(400);
  });

  it('stays within [0, maxMs) for any attempt with the real random source', () => {
    for (let attempt = 0; attempt < 2_000; attempt += 1) {
      const delayMs = jitteredBackoff(attempt, { initialMs: 250, maxMs: 30_000 });
      expect(delayMs).toBeGreaterThanOrEqual(0);
      expect(delayMs).toBeLessThan(30_000);
    }
  });

  it('rejects settings that cannot make a window, naming the setting', () => {
    expect(() => jitteredBackoff(0, { initialMs: 0, maxMs: 10 })).toThrow(/initialMs/);
    expect(() => jitteredBackoff(0, { initialMs: 100, maxMs: 10 })).toThrow(/maxMs/);
    expect(() => jitteredBackoff(0, { initialMs: Number.NaN, maxMs: 10 })).toThrow(/initialMs/);
    expect(() => jitteredBackoff(-1, { initialMs: 1, maxMs: 10 })).toThrow(/attempt/);
    expect(() => new JitteredBackoff({ initialMs: 5, maxMs: 1 })).toThrow(/maxMs/);
  });
});

describe('JitteredBackoff', () => {
  it('grows the window with each retry and starts over after reset', () => {
    const backoff = new JitteredBackoff({ initialMs: 250, maxMs: 30_000, random: top });
    const first = [1, 2, 3, 4, 5, 6, 7, 8, 9].map(() => backoff.next());
    expect(first).toEqual([249, 499, 999, 1_999, 3_999, 7_999, 15_999, 29_999, 29_999]);
    expect(backoff.attempts).toBe(9);

    backoff.reset();
    expect(backoff.attempts).toBe(0);
    expect(backoff.next()).toBe(249);
  });

  it('spreads the retries of clients that failed together over the whole window', () => {
    const draws = [0.1, 0.9, 0.5];
    const delays = draws.map((draw) =>
      new JitteredBackoff({ initialMs: 1_000, maxMs: 1_000, random: () => draw }).next(),
    );
    expect(delays).toEqual([100, 900, 500]);
  });
});
