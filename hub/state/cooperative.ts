/**
 * Long computations that share the event loop.
 *
 * A worker resolves pools of thousands of targets (decoding, collecting, placing) while its other
 * reconciles wait for AWS responses, Redis replies and tokens. Each step of a resolution is tens
 * of milliseconds of CPU, and the awaits between them resume at once: measured in a fleet cold
 * start, a worker's event loop was then late by 40-100 ms half of the time and up to 250 ms, so
 * every round trip of every other reconcile took that much longer, and the first calls of the
 * first pools resolved went out 0.7-0.9 s after the sync ended while their accounts' buckets sat
 * full. Written as steps, a computation lets the loop take its other callbacks every
 * {@link SLICE_MS} when run with {@link runSliced}, and runs straight through with
 * {@link runSteps}, so the synchronous API stays for callers that need it.
 */

/** A computation that yields (nothing) where it may pause and returns its result. */
export type Steps<T> = Generator<void, T, void>;

/**
 * Longest stretch of CPU before {@link runSliced} lets the event loop run: short next to a
 * round trip under load, long next to a turn of the loop.
 */
export const SLICE_MS = 8;

/** Runs `steps` to the end without pausing. */
export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const next = steps.next();
    if (next.done === true) return next.value;
  }
}

/** A turn of the event loop: I/O callbacks and timers due run before this resolves. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Runs `steps`, letting the event loop run whenever a stretch of them took `sliceMs`. */
export async function runSliced<T>(steps: Steps<T>, sliceMs: number = SLICE_MS): Promise<T> {
  let sliceStart = performance.now();
  for (;;) {
    const next = steps.next();
    if (next.done === true) return next.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await nextTurn();
      sliceStart = performance.now();
    }
  }
}

/**
 * A clock for loops that are not written as steps: `due()` is true once the current slice has
 * run `sliceMs`, and `pause()` lets the event loop run and starts the next slice.
 */
export class Slices {
  readonly #sliceMs: number;
  #sliceStart = performance.now();

  constructor(sliceMs: number = SLICE_MS) {
    this.#sliceMs = sliceMs;
  }

  due(): boolean {
    return performance.now() - this.#sliceStart >= this.#sliceMs;
  }

  async pause(): Promise<void> {
    await nextTurn();
    this.#sliceStart = performance.now();
  }
}
