import { setTimeout as sleep } from 'node:timers/promises';

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /** What is awaited, for the timeout message. */
  what: string;
  /** @default 30000 */
  timeoutMs?: number;
  /** @default 50 */
  intervalMs?: number;
}

/**
 * Polls `probe` until it returns a value other than `undefined`/`false`, or throws after the
 * deadline with the last error seen. Tests wait with this, never with bare sleeps.
 */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitForOptions,
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${options.what}`, { cause: lastError });
    }
    await sleep(options.intervalMs ?? 50);
  }
}
