/**
 * The Redis key schema of the hub's endpoint state.
 *
 * Every key of one cluster carries the hash tag `{c:<clusterId>}`: a batch's Lua script, which
 * checks the cluster's lease and writes many services, touches keys of one slot only (Redis
 * Cluster refuses cross-slot scripts), while different clusters hash to different slots and
 * spread over all masters. A single global tag would put the whole fleet on one node.
 *
 * ```
 * <prefix>:{c:<id>}:lease           string  lease value (token/hub id), PX = lease TTL
 * <prefix>:{c:<id>}:services        hash    service key → service meta (digest, count, labels)
 * <prefix>:{c:<id>}:totals          hash    endpoints, services
 * <prefix>:{c:<id>}:svc:<ns>/<name> hash    canonical address → encoded endpoint record
 * <prefix>:{c:<id>}:session         hash    the latest admitted stream (ClusterSessionRecords)
 * <prefix>:clusters                 set     every cluster admitted since Redis last lost it
 * <prefix>:epoch                    string  storage epoch (detects a Redis loss)
 * ```
 *
 * The clusters index is the one global key the ingest writes, once per admitted stream (a SADD
 * of a member it mostly holds already): it lets a worker list the clusters that may hold state
 * with one read instead of a SCAN of the keyspace at every resolution.
 */
export class StateKeys {
  /** @param prefix distinguishes installations (and tests) sharing one Redis. */
  constructor(readonly prefix = 'tgfed') {}

  /** The hash tag of a cluster. Braces are not allowed in cluster ids, so the tag is exact. */
  clusterTag(clusterId: string): string {
    return `{c:${clusterId}}`;
  }

  lease(clusterId: string): string {
    return `${this.prefix}:${this.clusterTag(clusterId)}:lease`;
  }

  services(clusterId: string): string {
    return `${this.prefix}:${this.clusterTag(clusterId)}:services`;
  }

  totals(clusterId: string): string {
    return `${this.prefix}:${this.clusterTag(clusterId)}:totals`;
  }

  /** The record of the cluster's latest admitted stream (hub, agent, synced, last seen). */
  session(clusterId: string): string {
    return `${this.prefix}:${this.clusterTag(clusterId)}:session`;
  }

  /** The endpoints of one service; `serviceKey` is `namespace/name`. */
  service(clusterId: string, serviceKey: string): string {
    return `${this.prefix}:${this.clusterTag(clusterId)}:svc:${serviceKey}`;
  }

  /** The set of cluster ids whose streams were admitted: every cluster that may hold state. */
  clusters(): string {
    return `${this.prefix}:clusters`;
  }

  epoch(): string {
    return `${this.prefix}:epoch`;
  }
}
