/** Options of {@link CachedSample}. */
export interface CachedSampleOptions {
  /**
   * How long a sample answers scrapes before the next one is read.
   * @default 5000
   */
  maxAgeMs?: number;
  /** @default Date.now */
  clock?: () => number;
}

/**
 * A value that costs I/O to read (Redis calls), for observable instruments: a scrape reads it at
 * most once per `maxAgeMs`, concurrent scrapes share one read, and a failed read answers with the
 * last good sample (or rejects when there is none, so the series is left out).
 */
export class CachedSample<T> {
  readonly #read: () => Promise<T>;
  readonly #maxAgeMs: number;
  readonly #clock: () => number;
  #value: { value: T; atMs: number } | undefined;
  #reading: Promise<T> | undefined;

  constructor(read: () => Promise<T>, options: CachedSampleOptions = {}) {
    this.#read = read;
    this.#maxAgeMs = options.maxAgeMs ?? 5_000;
    this.#clock = options.clock ?? Date.now;
  }

  /** The current sample, read now if the last one is older than `maxAgeMs`. */
  get(): Promise<T> {
    const cached = this.#value;
    if (cached !== undefined && this.#clock() - cached.atMs < this.#maxAgeMs) {
      return Promise.resolve(cached.value);
    }
    this.#reading ??= this.#read()
      .then(
        (value) => {
          this.#value = { value, atMs: this.#clock() };
          return value;
        },
        (err: unknown) => {
          if (this.#value !== undefined) return this.#value.value;
          throw err;
        },
      )
      .finally(() => {
        this.#reading = undefined;
      });
    return this.#reading;
  }
}
