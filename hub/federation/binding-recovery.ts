import type { Binding, Logger } from '../../shared/index.js';
import { silentLogger } from '../../shared/index.js';
import type { BindingSnapshot, BindingStore, RestoredBindings } from './binding-store.js';

/** Counters of {@link BindingRecovery}, for metrics and tests. */
export class BindingRecoveryCounters {
  /** Storage losses after which this replica wrote bindings back. */
  restores = 0;
  /** Bindings this replica wrote back, over every restore. */
  restoredBindings = 0;
  /** Storage losses after which another replica had already restored (nothing written here). */
  alreadyRestored = 0;
  failures = 0;
}

/**
 * Keeps the last bindings this replica saw in the store, so that after a Redis loss the bindings
 * applied through the admin API come back too, not only those of the declarative file
 * (DESIGN.md: losing Redis loses nothing a resync cannot rebuild).
 *
 * What is remembered only moves within one store generation: a snapshot of a store emptied by
 * the loss, or written since the loss but not yet restored, never replaces it. After
 * {@link restore}, the store's bindings (restored or restored by another replica) are remembered.
 */
export class BindingRecovery {
  readonly counters = new BindingRecoveryCounters();
  readonly #store: BindingStore;
  readonly #fileBindings: readonly Binding[];
  readonly #logger: Logger;
  #remembered: BindingSnapshot | undefined;
  #stopWatching: (() => void) | undefined;
  #reloading: Promise<void> | undefined;
  #again = false;

  constructor(
    store: BindingStore,
    options: { fileBindings?: readonly Binding[]; logger?: Logger } = {},
  ) {
    this.#store = store;
    this.#fileBindings = options.fileBindings ?? [];
    this.#logger = options.logger ?? silentLogger();
  }

  /** The last bindings remembered, once started. */
  get remembered(): BindingSnapshot | undefined {
    return this.#remembered;
  }

  /** Follows the store (watch, then a first load). Resolves after the first load. */
  async start(): Promise<void> {
    this.#stopWatching = await this.#store.watch(() => this.#reload());
    this.#remember(await this.#store.snapshot());
  }

  stop(): void {
    this.#stopWatching?.();
    this.#stopWatching = undefined;
  }

  /**
   * Writes back, after the loss detected at storage epoch `epoch`, the union of the bindings
   * file and the remembered bindings (remembered ones win: they are newer), unless another
   * replica already did. Bindings written since the loss are left alone. Never throws: a failure
   * is logged and counted.
   */
  async restore(epoch: string): Promise<RestoredBindings | undefined> {
    const byName = new Map<string, Binding>();
    for (const binding of this.#fileBindings) byName.set(binding.name, binding);
    for (const binding of this.#remembered?.bindings ?? []) byName.set(binding.name, binding);
    const floor = (this.#remembered?.revision ?? 0) + 1;
    try {
      const outcome = await this.#store.restore(epoch, [...byName.values()], floor);
      if (outcome.performed) {
        this.counters.restores++;
        this.counters.restoredBindings += outcome.restored.length;
        this.#logger.warn(
          {
            epoch,
            restored: outcome.restored.length,
            alreadyPresent: outcome.present.length,
            fromFile: this.#fileBindings.length,
            remembered: this.#remembered?.bindings.length ?? 0,
            revision: outcome.revision,
            names: outcome.restored,
          },
          'bindings written back after a Redis loss',
        );
      } else {
        this.counters.alreadyRestored++;
        this.#logger.info({ epoch }, 'bindings already written back by another hub replica');
      }
      // Whoever restored, the store holds the bindings again: remember them from now on.
      this.#remembered = await this.#store.snapshot();
      return outcome;
    } catch (err) {
      this.counters.failures++;
      this.#logger.error({ err, epoch }, 'cannot write the bindings back after a Redis loss');
      return undefined;
    }
  }

  #remember(snapshot: BindingSnapshot): void {
    const known = this.#remembered;
    if (
      known === undefined ||
      known.generation === '' ||
      (snapshot.generation === known.generation && snapshot.revision >= known.revision)
    ) {
      this.#remembered = snapshot;
    }
  }

  #reload(): void {
    if (this.#reloading !== undefined) {
      this.#again = true;
      return;
    }
    this.#reloading = this.#store
      .snapshot()
      .then(
        (snapshot) => this.#remember(snapshot),
        (err: unknown) => this.#logger.warn({ err }, 'cannot reload the bindings to remember'),
      )
      .finally(() => {
        this.#reloading = undefined;
        if (this.#again) {
          this.#again = false;
          this.#reload();
        }
      });
  }
}
