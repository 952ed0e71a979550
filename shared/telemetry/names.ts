/**
 * Every metric name, attribute key and attribute value tgfed records, in one place (BullMQ keeps
 * its own in `enums/telemetry-attributes.ts`). The alert rules and the dashboard in deploy/ and
 * the metrics contract use the exposed names, so a rename here is a breaking change there.
 *
 * Metric names are the names Prometheus sees on `/metrics`, minus the `_total` that the
 * OpenTelemetry Prometheus exporter appends to every monotonic counter. The exporter appends no
 * unit suffix, so units that belong in the exposed name (`_seconds`) are part of the instrument
 * name, and OTLP receivers see the same names as the scrape.
 *
 * Metric attribute keys are the contract's label names (`cluster`, `account`, …): Prometheus
 * exposition turns dots into underscores, so a semantic-convention key such as
 * `cloud.account.id` would be exposed as `cloud_account_id`. Spans use the semantic conventions
 * (`rpc.*`, `messaging.*`, `aws.*`, `cloud.*`) below, and `tgfed.*` for tgfed's own.
 */

// --- resource --------------------------------------------------------------------------------

/** `service.name` of each component. */
export const SERVICE_NAMES = {
  agent: 'tgfed-agent',
  hub: 'tgfed-hub',
  worker: 'tgfed-worker',
} as const;

/** Resource attribute: the cluster an agent speaks for. */
export const ATTR_TGFED_CLUSTER_ID = 'tgfed.cluster.id';

/** The instrumentation scope of every tgfed instrument. */
export const TGFED_METER_NAME = 'tgfed';

// --- metrics

/** Instrument names (the exposed Prometheus names, without `_total`). */
export const MetricName = {
  AGENT_HUB_CONNECTED: 'tgfed_agent_hub_connected',
  AGENT_ENDPOINTS: 'tgfed_agent_endpoints',
  AGENT_BATCHES_SENT: 'tgfed_agent_batches_sent',
  AGENT_ENDPOINT_CHANGES_SENT: 'tgfed_agent_endpoint_changes_sent',
  AGENT_BYTES_SENT: 'tgfed_agent_bytes_sent',
  AGENT_NACKS: 'tgfed_agent_nacks',
  AGENT_RESYNCS: 'tgfed_agent_resyncs',
  AGENT_ACK_LATENCY: 'tgfed_agent_ack_latency_seconds',
  HUB_CLUSTERS: 'tgfed_hub_clusters',
  HUB_CLUSTER_CONNECTED: 'tgfed_hub_cluster_connected',
  HUB_CLUSTER_STALE: 'tgfed_hub_cluster_stale',
  HUB_CLUSTER_ENDPOINTS: 'tgfed_hub_cluster_endpoints',
  HUB_BATCHES: 'tgfed_hub_batches',
  HUB_ENDPOINT_CHANGES: 'tgfed_hub_endpoint_changes',
  HUB_ENDPOINTS_REJECTED: 'tgfed_hub_endpoints_rejected',
  HUB_AGENT_STREAMS: 'tgfed_hub_agent_streams',
  HUB_AGENT_STREAMS_REJECTED: 'tgfed_hub_agent_streams_rejected',
  HUB_ADMIN_CALLS_REJECTED: 'tgfed_hub_admin_calls_rejected',
  HUB_APPLY_DURATION: 'tgfed_hub_apply_duration_seconds',
  HUB_BINDING_CONFLICTS: 'tgfed_hub_binding_conflicts',
  HUB_RECOVERY_IN_PROGRESS: 'tgfed_hub_recovery_in_progress',
  HUB_RECONCILES_KEPT_BACK: 'tgfed_hub_reconciles_kept_back',
  HUB_RECOVERY_TIMEOUTS: 'tgfed_hub_recovery_timeouts',
  QUEUE_JOBS: 'tgfed_queue_jobs',
  QUEUE_OLDEST_JOB_AGE: 'tgfed_queue_oldest_job_age_seconds',
  RECONCILES: 'tgfed_reconciles',
  RECONCILE_DURATION: 'tgfed_reconcile_duration_seconds',
  RECONCILE_ERRORS: 'tgfed_reconcile_errors',
  AWS_CALLS: 'tgfed_aws_calls',
  AWS_CALL_DURATION: 'tgfed_aws_call_duration_seconds',
  AWS_THROTTLES: 'tgfed_aws_throttles',
  AWS_RATE_LIMIT: 'tgfed_aws_rate_limit_per_second',
  DRIFT_REPAIRS: 'tgfed_drift_repairs',
  HELD_OPERATIONS: 'tgfed_held_operations',
  TARGET_GROUP_TARGETS: 'tgfed_target_group_targets',
  TARGET_GROUP_CAPACITY: 'tgfed_target_group_capacity',
  TARGETS_CHANGED: 'tgfed_targets_changed',
  PROPAGATION_LATENCY: 'tgfed_propagation_latency_seconds',
  POOL_PLACEMENT_CLAIMS_LOST: 'tgfed_pool_placement_claims_lost',
} as const;

// --- metric attribute keys

/** Metric attribute keys: the label names of the contract. */
export const MetricLabel = {
  CLUSTER: 'cluster',
  REASON: 'reason',
  STATE: 'state',
  RESULT: 'result',
  SHARD: 'shard',
  ACCOUNT: 'account',
  REGION: 'region',
  OUTCOME: 'outcome',
  TARGET_GROUP: 'target_group',
  ERROR: 'error',
  OPERATION: 'operation',
  CLASS: 'class',
  CHANGE: 'change',
} as const;

// --- metric attribute values -----------------------------------------------------------------

/** `state` of `tgfed_hub_clusters`. */
export type HubClusterState = 'connected' | 'disconnected' | 'stale';
/** `result` of `tgfed_hub_batches_total`. */
export type HubBatchResult = 'applied' | 'rejected';
/** `reason` of `tgfed_hub_endpoints_rejected_total`. */
export type EndpointRejectionReason = 'address_not_allowed' | 'limit_exceeded' | 'invalid';
/** `reason` of `tgfed_hub_agent_streams_rejected_total`: why a stream or one of its batches was refused. */
export type AgentStreamRejectionReason =
  | 'too_many_streams'
  | 'unauthenticated'
  | 'permission_denied'
  | 'malformed'
  | 'protocol_violation'
  | 'sequence'
  | 'digest_mismatch'
  | 'heartbeat_timeout';
/** `reason` of `tgfed_hub_admin_calls_rejected_total`. */
export type AdminCallRejectionReason = 'unauthenticated' | 'permission_denied' | 'invalid_argument';
/** `state` of `tgfed_queue_jobs`. */
export type QueueJobState = 'waiting' | 'active' | 'delayed';
/** `outcome` of `tgfed_reconciles_total`. */
export type ReconcileOutcomeLabel = 'in_sync' | 'applied' | 'held' | 'throttled' | 'failed';
/** `error` of `tgfed_reconcile_errors_total`. */
export type ReconcileErrorLabel =
  'access_denied' | 'not_found' | 'quota_exceeded' | 'invalid_target' | 'throttling' | 'transient';
/** `result` of `tgfed_aws_calls_total`. */
export type AwsCallResult = 'ok' | 'throttled' | 'error';
/** `change` of `tgfed_targets_changed_total`. */
export type TargetChange = 'registered' | 'deregistered';
/**
 * `outcome` of `tgfed_pool_placement_claims_lost_total`: the target went to the group claimed
 * for it, or stayed (that group had no room).
 */
export type PlacementClaimOutcome = 'adopted' | 'kept';

// --- histogram buckets -----------------------------------------------------------------------

/** Seconds, from a fast loopback ack to a reconcile that waited minutes for its AWS tokens. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30, 60, 120, 300,
];

// --- spans

/**
 * Span names. One trace per agent batch: `tgfed.agent.batch` (agent, producer) → `tgfed.hub.apply`
 * (hub, consumer; parent from the batch's trace context) → `EVALSHA tgfedApplyBatch` (the fenced
 * Redis write) and `tgfed.reconcile.enqueue` (producer, one per target group). The worker's
 * `tgfed.reconcile` span (consumer) starts a trace of its own and links to the enqueue span of
 * every request its job coalesced; the ELBv2 and STS calls are its children, named as
 * @opentelemetry/instrumentation-aws-sdk names them (`<Service>.<Operation>`).
 */
export const SpanName = {
  AGENT_BATCH: 'tgfed.agent.batch',
  HUB_APPLY: 'tgfed.hub.apply',
  HUB_STORE_WRITE: 'EVALSHA tgfedApplyBatch',
  RECONCILE_ENQUEUE: 'tgfed.reconcile.enqueue',
  RECONCILE: 'tgfed.reconcile',
} as const;

/** The instrumentation scope of tgfed's spans. */
export const TGFED_TRACER_NAME = 'tgfed';

/** Span attribute keys: semantic conventions first, `tgfed.*` for tgfed's own. */
export const SpanAttribute = {
  RPC_SYSTEM: 'rpc.system',
  RPC_SERVICE: 'rpc.service',
  RPC_METHOD: 'rpc.method',
  MESSAGING_SYSTEM: 'messaging.system',
  MESSAGING_OPERATION_TYPE: 'messaging.operation.type',
  MESSAGING_OPERATION_NAME: 'messaging.operation.name',
  MESSAGING_DESTINATION_NAME: 'messaging.destination.name',
  MESSAGING_MESSAGE_ID: 'messaging.message.id',
  MESSAGING_BATCH_MESSAGE_COUNT: 'messaging.batch.message_count',
  DB_SYSTEM_NAME: 'db.system.name',
  DB_OPERATION_NAME: 'db.operation.name',
  DB_STORED_PROCEDURE_NAME: 'db.stored_procedure.name',
  CLOUD_PROVIDER: 'cloud.provider',
  CLOUD_ACCOUNT_ID: 'cloud.account.id',
  CLOUD_REGION: 'cloud.region',
  AWS_REQUEST_ID: 'aws.request_id',
  HTTP_RESPONSE_STATUS_CODE: 'http.response.status_code',
  ERROR_TYPE: 'error.type',
  TGFED_CLUSTER_ID: ATTR_TGFED_CLUSTER_ID,
  TGFED_TARGET_GROUP_ARN: 'tgfed.target_group.arn',
  TGFED_BATCH_SEQUENCE: 'tgfed.batch.sequence',
  TGFED_BATCH_PHASE: 'tgfed.batch.phase',
  TGFED_ENDPOINT_CHANGES: 'tgfed.batch.endpoint_changes',
  /** `namespace/name` of the services a batch changed (at most {@link MAX_LISTED_SERVICES}). */
  TGFED_BATCH_SERVICES: 'tgfed.batch.services',
  TGFED_BATCH_SERVICE_COUNT: 'tgfed.batch.service_count',
  TGFED_BATCH_REJECTIONS: 'tgfed.batch.rejections',
  /** Target groups a hub apply enqueued reconciles for. */
  TGFED_BATCH_TARGET_GROUPS: 'tgfed.batch.target_groups',
  /** Of those, the groups whose reconcile waits for the end of a cluster's initial sync. */
  TGFED_BATCH_DEFERRED_TARGET_GROUPS: 'tgfed.batch.deferred_target_groups',
  /** True when an enqueue joined a job already pending for the group. */
  TGFED_RECONCILE_COALESCED: 'tgfed.reconcile.coalesced',
  TGFED_RECONCILE_REASON: 'tgfed.reconcile.reason',
  TGFED_RECONCILE_OUTCOME: 'tgfed.reconcile.outcome',
  TGFED_RECONCILE_REGISTERED: 'tgfed.reconcile.registered',
  TGFED_RECONCILE_DEREGISTERED: 'tgfed.reconcile.deregistered',
  TGFED_RECONCILE_CALLS: 'tgfed.reconcile.calls',
  TGFED_RECONCILE_CALLS_DESCRIBE: 'tgfed.reconcile.calls.describe',
  TGFED_RECONCILE_CALLS_REGISTER: 'tgfed.reconcile.calls.register',
  TGFED_RECONCILE_CALLS_DEREGISTER: 'tgfed.reconcile.calls.deregister',
  /** Requests whose trace links the reconcile carries (coalesced ones included). */
  TGFED_RECONCILE_LINKS: 'tgfed.reconcile.links',
  /** Links left off beyond `MAX_TRACE_LINKS` (the producer side trims the oldest as well). */
  TGFED_RECONCILE_LINKS_DROPPED: 'tgfed.reconcile.links_dropped',
  TGFED_SHARD: 'tgfed.queue.shard',
} as const;

/** Most service keys listed on a batch span; the count is always there. */
export const MAX_LISTED_SERVICES = 32;
