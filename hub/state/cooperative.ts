/**
 * Long computations that share the event loop.
 *
 * A worker resolves pools of thousands of targets (decoding, collecting, placing) while its other
 * reconciles wait for AWS responses, Redis replies and tokens. Each step of a resolution is
 * milliseconds to tens of milliseconds of CPU, and the awaits between them resume at once
 * (their promises have settled), so without a turn of the loop those replies waited for whole
 * resolutions. Written as steps, a computation lets the loop take its other callbacks every
 * {@link SLICE_MS} when run with {@link runSliced}, and runs straight through with
 * {@link runSteps}, so the synchronous API stays for callers that need it.
 *
 * Measured in the fleet bench's cold start (README, "Benchmarks"): the time from the agents'
 * sync to the last registration fell from 5.04 to 4.75 s (means of four alternating runs). The
 * loop is still late by tens of milliseconds there, because the machine's cores are full; what
 * changed is that a reply no longer waits behind a whole resolution.
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
