import type {
  Binding,
  ClusterSelector,
  LabelSelector,
  Logger,
  ServiceSelector,
  Subscription,
} from '../../shared/index.js';
import { matchesLabelSelector, silentLogger } from '../../shared/index.js';
import type { BindingStore } from './binding-store.js';

/** Bindings at one bindings revision (a {@link BindingStore} snapshot, or bindings from a file). */
export interface BindingsAtRevision {
  revision: number;
  bindings: readonly Binding[];
  /** The store's generation (see `BindingSnapshot`); absent for bindings from a file. */
  generation?: string;
}

/** What a cluster's agent must watch, derived from the bindings. */
export interface SubscriptionSource {
  subscriptionFor(clusterId: string, clusterLabels: Readonly<Record<string, string>>): Subscription;
}

function isEmptyLabelSelector(selector: LabelSelector | undefined): boolean {
  return (
    selector === undefined ||
    (Object.keys(selector.matchLabels).length === 0 && selector.matchExpressions.length === 0)
  );
}

/** The ARNs of the target groups a binding targets: its one group, or its pool's groups. */
export function targetGroupArnsOf(binding: Pick<Binding, 'target'>): string[] {
  switch (binding.target?.$case) {
    case 'targetGroup':
      return [binding.target.targetGroup.arn];
    case 'pool':
      return binding.target.pool.groups.map((g) => g.arn);
    default:
      return [];
  }
}

/**
 * True when a binding's cluster selector lets the cluster feed it: a listed name, or matching
 * labels. A selector with neither (or none at all) selects every cluster.
 */
export function selectsCluster(
  selector: ClusterSelector | undefined,
  clusterId: string,
  clusterLabels: Readonly<Record<string, string>>,
): boolean {
  const names = selector?.names ?? [];
  const labels = isEmptyLabelSelector(selector?.labels) ? undefined : selector?.labels;
  if (names.length === 0 && labels === undefined) return true;
  if (names.includes(clusterId)) return true;
  return labels !== undefined && matchesLabelSelector(labels, clusterLabels);
}

/** A canonical text of a selector, so that equal selectors from two bindings count once. */
function selectorKey(selector: ServiceSelector): string {
  const labels = isEmptyLabelSelector(selector.labels) ? undefined : selector.labels;
  return JSON.stringify([
    selector.namespace,
    selector.name,
    labels === undefined
      ? null
      : [
          Object.entries(labels.matchLabels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
          labels.matchExpressions.map((e) => [e.key, e.operator, [...e.values].sort()]),
        ],
  ]);
}

/**
 * The subscription of one cluster: the union of the service selectors of every binding that
 * selects the cluster, deduplicated and in a stable order, at the snapshot's revision. Nothing
 * selected gives an empty subscription (the agent then sends nothing).
 */
export function resolveSubscription(
  snapshot: BindingsAtRevision,
  clusterId: string,
  clusterLabels: Readonly<Record<string, string>>,
): Subscription {
  const selectors = new Map<string, ServiceSelector>();
  for (const binding of snapshot.bindings) {
    if (binding.services === undefined) continue;
    if (!selectsCluster(binding.clusters, clusterId, clusterLabels)) continue;
    const key = selectorKey(binding.services);
    if (!selectors.has(key)) selectors.set(key, binding.services);
  }
  return {
    version: snapshot.revision,
    selectors: [...selectors.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, s]) => s),
  };
}

/**
 * Resolves subscriptions from the latest bindings snapshot it was given; {@link follow} keeps it
 * current from a {@link BindingStore} and tells listeners when subscriptions may have changed, so
 * that streams can push the new subscription to their agents.
 */
export class BindingSubscriptionResolver implements SubscriptionSource {
  #snapshot: BindingsAtRevision;
  readonly #listeners = new Set<(revision: number) => void>();

  constructor(snapshot: BindingsAtRevision = { revision: 0, bindings: [] }) {
    this.#snapshot = snapshot;
  }

  /** The bindings revision the subscriptions are computed from. */
  get revision(): number {
    return this.#snapshot.revision;
  }

  subscriptionFor(
    clusterId: string,
    clusterLabels: Readonly<Record<string, string>>,
  ): Subscription {
    return resolveSubscription(this.#snapshot, clusterId, clusterLabels);
  }

  /** Replaces the bindings and tells listeners. */
  update(snapshot: BindingsAtRevision): void {
    this.#snapshot = snapshot;
    for (const listener of this.#listeners) listener(snapshot.revision);
  }

  /** Calls `listener` with the new revision after every update; returns the unsubscribe. */
  onUpdate(listener: (revision: number) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Loads the store's bindings and reloads them on every change notification (reloads are
   * serialized and coalesced: a burst of changes costs at most one reload after the current).
   * Resolves after the first load; returns the function that stops following.
   */
  async follow(store: BindingStore, logger: Logger = silentLogger()): Promise<() => void> {
    let running: Promise<void> | undefined;
    let again = false;
    const reload = (): Promise<void> => {
      if (running !== undefined) {
        again = true;
        return running;
      }
      running = store
        .snapshot()
        .then(
          (snapshot) => {
            // A store emptied by a Redis loss and not yet written again keeps the subscriptions
            // (the hub writes the bindings back): agents must not be told to watch nothing.
            const known = this.#snapshot.generation;
            if (snapshot.generation === '' && known !== undefined && known !== '') return;
            if (
              snapshot.revision !== this.#snapshot.revision ||
              snapshot.generation !== this.#snapshot.generation
            ) {
              this.update(snapshot);
            }
          },
          (err: unknown) => logger.warn({ err }, 'cannot reload bindings'),
        )
        .finally(() => {
          running = undefined;
          if (again) {
            again = false;
            void reload();
          }
        });
      return running;
    };
    // Watch before the first load, so that no change falls between the two.
    const stop = await store.watch(() => void reload());
    // The first load fails loudly instead of leaving every cluster with an empty subscription.
    const first = store.snapshot().then((snapshot) => this.update(snapshot));
    running = first.then(
      () => undefined,
      () => undefined,
    );
    try {
      await first;
    } catch (err) {
      stop();
      throw err;
    } finally {
      running = undefined;
      if (again) {
        again = false;
        void reload();
      }
    }
    return stop;
  }
}
