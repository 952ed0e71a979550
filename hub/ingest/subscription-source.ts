import type { Subscription } from '../../shared/index.js';

/** Where the ingest learns which services each cluster must send (the federation layer). */
export interface SubscriptionSource {
  /** The current subscription of a cluster. */
  subscriptionFor(clusterId: string): Subscription;
  /** Calls `listener` when any subscription may have changed; returns an unsubscribe. */
  onChange(listener: () => void): () => void;
}
