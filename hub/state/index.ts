/** Hub state in Redis: connections, key schema, endpoint sets, leases, storage epoch. */
export {
  ClusterEndpointStore,
  type ClusterTotals,
  type ServiceWrite,
  type StoredService,
} from './cluster-endpoint-store.js';
export { nextTurn, runSliced, runSteps, Slices, SLICE_MS, type Steps } from './cooperative.js';
export { ClusterEndpointCache } from './cluster-endpoint-cache.js';
export {
  ClusterSessionRecords,
  leaseHolderOf,
  parseClusterSessionRecord,
  sessionConnection,
  type ClusterSessionRecord,
  type SessionConnection,
} from './cluster-session-records.js';
export { ClusterLease, type HeldLease, type LeaseAttempt } from './cluster-lease.js';
export {
  decodeEndpointRecord,
  decodeServiceMeta,
  encodeEndpointRecord,
  encodeServiceMeta,
  type ServiceMeta,
} from './endpoint-record-codec.js';
export {
  LeaseLostError,
  StateUnavailableError,
  StorageLostError,
  StoredValueError,
} from './errors.js';
export { hashEntries, hashFieldChunks, sameValueFieldChunks } from './hash-entries.js';
export {
  createRedis,
  type ClusterRedisSettings,
  type RedisClient,
  type RedisSettings,
  type SentinelRedisSettings,
  type StandaloneRedisSettings,
} from './redis-connection.js';
export { StateKeys } from './state-keys.js';
export { StorageEpoch, type EpochCheck } from './storage-epoch.js';
