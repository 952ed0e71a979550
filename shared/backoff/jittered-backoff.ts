/** Options for {@link JitteredBackoff} and {@link jitteredBackoff}. */
export interface JitteredBackoffOptions {
  /** Ceiling of the first delay. Must be > 0. */
  initialMs: number;
  /** Largest ceiling any delay can reach. Must be >= `initialMs`. */
  maxMs: number;
  /** Uniform random number in [0, 1); injected by tests. @default Math.random */
  random?: () => number;
}

/**
 * Delay before retry number `attempt` (0 for the first retry), with "full jitter": uniform in
 * [0, min(maxMs, initialMs * 2^attempt)). Full jitter spreads the retries of many clients that
 * failed together over the whole window, so a dead hub replica or API server is not met by a
 * reconnect stampede (AWS Architecture Blog, "Exponential Backoff And Jitter").
 */
export function jitteredBackoff(attempt: number, options: JitteredBackoffOptions): number {
  validate(options);
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`backoff attempt must be a non-negative integer, got ${attempt}`);
  }
  // 2 ** attempt becomes Infinity past 1023; Math.min still yields maxMs.
  const ceilingMs = Math.min(options.maxMs, options.initialMs * 2 ** attempt);
  const random = options.random ?? Math.random;
  return Math.floor(random() * ceilingMs);
}

/** Successive {@link jitteredBackoff} delays of one retry loop; `reset()` after a success. */
export class JitteredBackoff {
  readonly #options: JitteredBackoffOptions;
  #attempt = 0;

  constructor(options: JitteredBackoffOptions) {
    validate(options);
    this.#options = { ...options };
  }

  /** Retries handed out since the last reset. */
  get attempts(): number {
    return this.#attempt;
  }

  /** Delay before the next retry; each call doubles the ceiling up to `maxMs`. */
  next(): number {
    const delayMs = jitteredBackoff(this.#attempt, this.#options);
    this.#attempt += 1;
    return delayMs;
  }

  /** Starts again from `initialMs`. */
  reset(): void {
    this.#attempt = 0;
  }
}

function validate(options: JitteredBackoffOptions): void {
  if (!(Number.isFinite(options.initialMs) && options.initialMs > 0)) {
    throw new RangeError(`backoff initialMs must be a positive number, got ${options.initialMs}`);
  }
  if (!(Number.isFinite(options.maxMs) && options.maxMs >= options.initialMs)) {
    throw new RangeError(
      `backoff maxMs must be a number >= initialMs (${options.initialMs}), got ${options.maxMs}`,
    );
  }
}
