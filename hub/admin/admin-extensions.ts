import type { Alert, HeldOperation, TargetGroupStatus } from '../../shared/index.js';

/**
 * Parts of the admin API served by hub components that other issues build (resolution, queue,
 * reconcile, alerts, guard). Each is optional: an unwired one answers UNIMPLEMENTED.
 */

/** Target-group status: desired vs actual vs owned, last reconcile, held operations, conflicts. */
export interface TargetGroupStatusSource {
  /** The status, or undefined when no binding targets the group. */
  targetGroupStatus(arn: string): Promise<TargetGroupStatus | undefined>;
}

/** Enqueues a reconcile of one target group outside the normal triggers. */
export interface ReconcileTrigger {
  /** Returns the job id; rejects with `AdminNotFoundError` for an unknown group. */
  triggerReconcile(targetGroupArn: string, options: { refresh: boolean }): Promise<string>;
}

/** Firing alerts, the same conditions as the Prometheus rules. */
export interface AlertSource {
  firingAlerts(): Promise<Alert[]>;
}

/** The operator override of the mass-deregistration guard. */
export interface HeldOperationReleaser {
  /** Releases the held operation; undefined when there is none with that id. */
  releaseHeldOperation(id: string, releasedBy: string): Promise<HeldOperation | undefined>;
}

/** The optional admin components, as {@link AdminService} takes them. */
export interface AdminExtensions {
  targetGroups?: TargetGroupStatusSource;
  reconcile?: ReconcileTrigger;
  alerts?: AlertSource;
  heldOperations?: HeldOperationReleaser;
}
