import { describe, expect, it } from 'vitest';
import { CachedSample } from '../../../shared/index.js';

describe('CachedSample', () => {
  it('reads at most once per maxAgeMs, and concurrent callers share one read', async () => {
    let now = 0;
    let reads = 0;
    const sample = new CachedSample(() => Promise.resolve(++reads), {
      maxAgeMs: 5_000,
      clock: () => now,
    });
    expect(await Promise.all([sample.get(), sample.get(), sample.get()])).toEqual([1, 1, 1]);
    now = 4_999;
    expect(await sample.get()).toBe(1);
    now = 5_000;
    expect(await sample.get()).toBe(2);
    expect(reads).toBe(2);
  });

  it('answers with the last good sample when a read fails, and fails without one', async () => {
    let now = 0;
    let fail = true;
    const sample = new CachedSample(
      () => (fail ? Promise.reject(new Error('Redis down')) : Promise.resolve(now)),
      { maxAgeMs: 10, clock: () => now },
    );
    await expect(sample.get()).rejects.toThrow('Redis down');
    fail = false;
    now = 1;
    expect(await sample.get()).toBe(1);
    fail = true;
    now = 50;
    expect(await sample.get()).toBe(1);
  });
});
