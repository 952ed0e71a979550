/**
 * The exposed Prometheus metric names of the metrics contract, by type. The alert rules and the
 * Grafana dashboard in deploy/ may use only these; test/unit/telemetry/contract-names.test.ts
 * checks that the components expose exactly these names and types.
 */
export const contractMetrics: Readonly<Record<string, 'counter' | 'gauge' | 'histogram'>> = {
  // agent
  tgfed_agent_hub_connected: 'gauge',
  tgfed_agent_endpoints: 'gauge',
  tgfed_agent_batches_sent_total: 'counter',
  tgfed_agent_endpoint_changes_sent_total: 'counter',
  tgfed_agent_bytes_sent_total: 'counter',
  tgfed_agent_nacks_total: 'counter',
  tgfed_agent_resyncs_total: 'counter',
  tgfed_agent_ack_latency_seconds: 'histogram',
  // hub
  tgfed_hub_clusters: 'gauge',
  tgfed_hub_cluster_connected: 'gauge',
  tgfed_hub_cluster_stale: 'gauge',
  tgfed_hub_cluster_endpoints: 'gauge',
  tgfed_hub_batches_total: 'counter',
  tgfed_hub_endpoint_changes_total: 'counter',
  tgfed_hub_endpoints_rejected_total: 'counter',
  tgfed_hub_agent_streams_total: 'counter',
  tgfed_hub_agent_streams_rejected_total: 'counter',
  tgfed_hub_admin_calls_rejected_total: 'counter',
  tgfed_hub_apply_duration_seconds: 'histogram',
  tgfed_hub_binding_conflicts: 'gauge',
  tgfed_hub_recovery_in_progress: 'gauge',
  tgfed_hub_reconciles_kept_back: 'gauge',
  tgfed_hub_recovery_timeouts_total: 'counter',
  // workers
  tgfed_queue_jobs: 'gauge',
  tgfed_queue_oldest_job_age_seconds: 'gauge',
  tgfed_reconciles_total: 'counter',
  tgfed_reconcile_duration_seconds: 'histogram',
  tgfed_reconcile_errors_total: 'counter',
  tgfed_aws_calls_total: 'counter',
  tgfed_aws_call_duration_seconds: 'histogram',
  tgfed_aws_throttles_total: 'counter',
  tgfed_pool_placement_claims_lost_total: 'counter',
  tgfed_aws_rate_limit_per_second: 'gauge',
  tgfed_drift_repairs_total: 'counter',
  tgfed_held_operations: 'gauge',
  tgfed_target_group_targets: 'gauge',
  tgfed_target_group_capacity: 'gauge',
  tgfed_targets_changed_total: 'counter',
  tgfed_propagation_latency_seconds: 'histogram',
};

/**
 * The metric names a PromQL expression uses that the contract does not define. Histogram series
 * (`_bucket`, `_count`, `_sum`) count as their histogram; a counter must be used by its
 * `_total` name and a gauge or histogram by its own.
 */
export function unknownMetrics(expr: string): string[] {
  const unknown = new Set<string>();
  for (const [name] of expr.matchAll(/\btgfed_[a-z0-9_]+/g)) {
    const histogram = /^(.*)_(bucket|count|sum)$/.exec(name)?.[1];
    const known =
      (contractMetrics[name] !== undefined && contractMetrics[name] !== 'histogram') ||
      (histogram !== undefined && contractMetrics[histogram] === 'histogram');
    if (!known) unknown.add(name);
  }
  return [...unknown];
}

/** Every contract metric an expression uses (histograms by their base name). */
export function usedMetrics(expr: string): string[] {
  return [...expr.matchAll(/\btgfed_[a-z0-9_]+/g)].map(
    ([name]) => /^(.*)_(bucket|count|sum)$/.exec(name)?.[1] ?? name,
  );
}
