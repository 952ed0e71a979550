/** Hub ingest: serves `AgentService.Sync` (authentication, lease, validation, acks). */
export { AddressPolicy, type AddressPolicyOptions } from './address-policy.js';
export {
  AgentAuthenticator,
  hashAgentToken,
  type AgentAuthenticatorOptions,
  type AgentIdentity,
  type AuthenticatableCall,
} from './agent-authenticator.js';
export { ClusterSession, type ClusterSessionState } from './cluster-session.js';
export {
  ClusterMismatchError,
  HeartbeatTimeoutError,
  HubClosingError,
  ProtocolOrderError,
  StreamLimitError,
  UnauthenticatedError,
} from './errors.js';
export { grpcStatusOf } from './grpc-status.js';
export { IngestCounters, type ClusterIngestCounts } from './ingest-counters.js';
export { registerIngestMetrics } from './ingest-metrics.js';
export {
  RecordingReconcileSink,
  type InitialSyncHold,
  type ReconcileSink,
} from './reconcile-sink.js';
export type { SubscriptionSource } from './subscription-source.js';
export {
  SyncService,
  agentServerOptions,
  type SyncServiceDeps,
  type SyncServiceState,
} from './sync-service.js';
export {
  compileSyncServiceOptions,
  type CompiledSyncServiceOptions,
  type StreamLimitOptions,
  type SyncServiceOptions,
} from './sync-service-options.js';
