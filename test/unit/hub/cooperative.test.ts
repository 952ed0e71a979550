import { describe, expect, it } from 'vitest';
import { runSliced, runSteps, Slices, type Steps } from '../../../hub/state/cooperative.js';

/** Three steps that note, at each, whether `seen()` already holds; returns the notes. */
function* watching(seen: () => boolean): Steps<boolean[]> {
  const notes: boolean[] = [];
  for (let i = 0; i < 3; i++) {
    notes.push(seen());
    yield;
  }
  notes.push(seen());
  return notes;
}

describe('cooperative steps', () => {
  it('runSteps runs every step at once and returns the result', () => {
    let ran = false;
    setImmediate(() => (ran = true));
    expect(runSteps(watching(() => ran))).toEqual([false, false, false, false]);
  });

  it('runSliced lets the event loop run between steps once a slice is used up', async () => {
    let ran = false;
    setImmediate(() => (ran = true));
    // A slice of 0 ms is always used up: the loop runs after the first step.
    expect(
      await runSliced(
        watching(() => ran),
        0,
      ),
    ).toEqual([false, true, true, true]);
  });

  it('runSliced runs straight through while the slice lasts', async () => {
    let ran = false;
    setImmediate(() => (ran = true));
    expect(
      await runSliced(
        watching(() => ran),
        60_000,
      ),
    ).toEqual([false, false, false, false]);
  });

  it('passes a step that throws to the caller', async () => {
    function* failing(): Steps<number> {
      yield;
      throw new Error('bad step');
    }
    await expect(runSliced(failing(), 0)).rejects.toThrow('bad step');
    expect(() => runSteps(failing())).toThrow('bad step');
  });

  it('Slices is due once its slice is used up, and pause starts the next one', async () => {
    expect(new Slices(60_000).due()).toBe(false);
    const slices = new Slices(0);
    expect(slices.due()).toBe(true);
    let ran = false;
    setImmediate(() => (ran = true));
    await slices.pause();
    expect(ran).toBe(true);
  });
});
