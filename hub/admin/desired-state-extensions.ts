import {
  HeldOperation,
  ListenerWeight,
  ReconcileOutcome,
  TargetGroupStatus,
  type Binding,
} from '../../shared/index.js';
import { isPresent } from '../aws/index.js';
import type { GroupDesiredState } from '../federation/target-group-desired-state.js';
import type {
  GroupListenerWeight,
  HeldDeregistration,
  ReconcileOutcomeKind,
  TargetGroupRecord,
} from '../reconcile/index.js';
import type {
  HeldOperationReleaser,
  ReconcileTrigger,
  TargetGroupStatusSource,
} from './admin-extensions.js';
import { AdminNotFoundError } from './errors.js';

/** Resolves one target group's desired state (a `TargetGroupDesiredState`). */
export interface DesiredStateResolver {
  resolve(targetGroupArn: string): Promise<GroupDesiredState>;
}

/** Enqueues an operator reconcile (a `BullMqReconcileSink`). */
export interface OperatorReconcileQueue {
  request(targetGroupArn: string, reason: 'operator'): Promise<{ readonly jobId: string }>;
}

/** The stored bindings (a `BindingStore`). */
export interface BindingSource {
  list(): Promise<Binding[]>;
}

function targets(binding: Binding, arn: string): boolean {
  switch (binding.target?.$case) {
    case 'targetGroup':
      return binding.target.targetGroup.arn === arn;
    case 'pool':
      return binding.target.pool.groups.some((g) => g.arn === arn);
    default:
      return false;
  }
}

/** The workers' records of target groups (a `TargetGroupRecords`). */
export interface TargetGroupRecordSource {
  read(arn: string): Promise<TargetGroupRecord>;
  requestRefresh(arn: string): Promise<void>;
  release(id: string, releasedBy: string): Promise<HeldDeregistration | undefined>;
}

const OUTCOMES: Record<ReconcileOutcomeKind, ReconcileOutcome> = {
  'in-sync': ReconcileOutcome.RECONCILE_OUTCOME_IN_SYNC,
  applied: ReconcileOutcome.RECONCILE_OUTCOME_APPLIED,
  held: ReconcileOutcome.RECONCILE_OUTCOME_HELD,
  throttled: ReconcileOutcome.RECONCILE_OUTCOME_THROTTLED,
  failed: ReconcileOutcome.RECONCILE_OUTCOME_FAILED,
};

/** A held deregistration as the admin API shows it. */
export function heldOperationMessage(held: HeldDeregistration): HeldOperation {
  return HeldOperation.fromPartial({
    id: held.id,
    targetGroupArn: held.targetGroupArn,
    deregistrations: held.deregistrations,
    targetsBefore: held.targetsBefore,
    reason:
      held.releasedBy === undefined
        ? held.reason
        : `${held.reason}; released by ${held.releasedBy}`,
    heldSinceUnixMs: held.heldSinceMs,
  });
}

/** A pool group's weight in its listener rule as the admin API shows it. */
export function listenerWeightMessage(weight: GroupListenerWeight): ListenerWeight {
  return ListenerWeight.fromPartial({
    listenerRuleArn: weight.listenerRuleArn,
    readyTargets: weight.readyTargets,
    weight: weight.weight ?? 0,
    outcome: weight.outcome,
    error: weight.error ?? '',
    updatedUnixMs: weight.atMs,
  });
}

/**
 * `GetTargetGroupStatus`: the hub's side (definition, bindings, desired targets, conflicts)
 * from a fresh resolution, and the workers' side (actual and owned targets, last reconcile,
 * held operations) from their records. `in_sync` holds when every desired target is present
 * and owned, nothing tgfed owns is left over, and the last reconcile did not fail.
 */
export class DesiredTargetGroupStatus implements TargetGroupStatusSource {
  readonly #desired: DesiredStateResolver;
  readonly #records: TargetGroupRecordSource | undefined;

  constructor(desired: DesiredStateResolver, records?: TargetGroupRecordSource) {
    this.#desired = desired;
    this.#records = records;
  }

  async targetGroupStatus(arn: string): Promise<TargetGroupStatus | undefined> {
    const state = await this.#desired.resolve(arn);
    const record = await this.#records?.read(arn);
    const definition = state.targetGroup ?? record?.definition;
    if (definition === undefined) return undefined;
    let actual = 0;
    let inSync = record !== undefined && record.last !== undefined;
    for (const [key, health] of record?.actual ?? []) {
      if (!isPresent(health)) continue;
      actual++;
      if (!state.targets.has(key) && record?.owned.has(key) === true) inSync = false;
    }
    for (const key of state.targets.keys()) {
      const health = record?.actual.get(key);
      if (health === undefined || !isPresent(health)) inSync = false;
    }
    const last = record?.last;
    if (last !== undefined && (last.outcome === 'failed' || last.outcome === 'throttled')) {
      inSync = false;
    }
    return TargetGroupStatus.fromPartial({
      targetGroup: definition,
      bindings: state.bindings,
      desiredTargets: state.targets.size,
      actualTargets: actual,
      ownedTargets: record?.owned.size ?? 0,
      inSync,
      lastOutcome:
        last === undefined
          ? ReconcileOutcome.RECONCILE_OUTCOME_UNSPECIFIED
          : OUTCOMES[last.outcome],
      lastError: last?.error ?? '',
      lastReconcileUnixMs: last === undefined ? 0 : last.startedAtMs + last.durationMs,
      heldOperations: record?.held === undefined ? [] : [heldOperationMessage(record.held)],
      conflicts: state.conflicts,
      ...(record?.listenerWeight === undefined
        ? {}
        : { listenerWeight: listenerWeightMessage(record.listenerWeight) }),
    });
  }
}

/**
 * `TriggerReconcile` on the reconcile queues: an `operator` reconcile of a group some binding
 * targets (joining a pending one if there is), which runs at once rather than after the
 * debounce. `refresh` marks the group's cache for a describe first.
 */
export class QueueReconcileTrigger implements ReconcileTrigger {
  readonly #bindings: BindingSource;
  readonly #queue: OperatorReconcileQueue;
  readonly #records: TargetGroupRecordSource | undefined;

  constructor(
    bindings: BindingSource,
    queue: OperatorReconcileQueue,
    records?: TargetGroupRecordSource,
  ) {
    this.#bindings = bindings;
    this.#queue = queue;
    this.#records = records;
  }

  async triggerReconcile(targetGroupArn: string, options: { refresh: boolean }): Promise<string> {
    const bindings = await this.#bindings.list();
    if (!bindings.some((b) => targets(b, targetGroupArn))) {
      throw new AdminNotFoundError(`no binding targets target group ${targetGroupArn}`);
    }
    if (options.refresh) await this.#records?.requestRefresh(targetGroupArn);
    return (await this.#queue.request(targetGroupArn, 'operator')).jobId;
  }
}

/**
 * `ReleaseHeldOperation`: the operator override of the mass-deregistration guard. The release
 * is recorded with the group and an operator reconcile applies it at once.
 */
export class QueueHeldOperationReleaser implements HeldOperationReleaser {
  readonly #records: TargetGroupRecordSource;
  readonly #queue: OperatorReconcileQueue;

  constructor(records: TargetGroupRecordSource, queue: OperatorReconcileQueue) {
    this.#records = records;
    this.#queue = queue;
  }

  async releaseHeldOperation(id: string, releasedBy: string): Promise<HeldOperation | undefined> {
    const released = await this.#records.release(id, releasedBy);
    if (released === undefined) return undefined;
    await this.#queue.request(released.targetGroupArn, 'operator');
    return heldOperationMessage(released);
  }
}
