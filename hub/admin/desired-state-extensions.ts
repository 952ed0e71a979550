import { TargetGroupStatus, type Binding } from '../../shared/index.js';
import type { GroupDesiredState } from '../federation/target-group-desired-state.js';
import type { ReconcileTrigger, TargetGroupStatusSource } from './admin-extensions.js';
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

/**
 * `GetTargetGroupStatus` from the hub's side only: the group's definition, the bindings that
 * target it, the desired target count and the conflicts. The actual and owned targets, the last
 * reconcile and held operations are the workers' (#5): until they report, those fields stay at
 * zero and `in_sync` is false.
 */
export class DesiredTargetGroupStatus implements TargetGroupStatusSource {
  readonly #desired: DesiredStateResolver;

  constructor(desired: DesiredStateResolver) {
    this.#desired = desired;
  }

  async targetGroupStatus(arn: string): Promise<TargetGroupStatus | undefined> {
    const state = await this.#desired.resolve(arn);
    if (state.targetGroup === undefined) return undefined;
    return TargetGroupStatus.fromPartial({
      targetGroup: state.targetGroup,
      bindings: state.bindings,
      desiredTargets: state.targets.size,
      inSync: false,
      conflicts: state.conflicts,
    });
  }
}

/**
 * `TriggerReconcile` on the reconcile queues: an `operator` reconcile of a group some binding
 * targets (joining a pending one if there is). `refresh` is accepted but not carried: the job
 * contract has no such field yet, and the workers (#5) decide when to Describe.
 */
export class QueueReconcileTrigger implements ReconcileTrigger {
  readonly #bindings: BindingSource;
  readonly #queue: OperatorReconcileQueue;

  constructor(bindings: BindingSource, queue: OperatorReconcileQueue) {
    this.#bindings = bindings;
    this.#queue = queue;
  }

  async triggerReconcile(targetGroupArn: string): Promise<string> {
    const bindings = await this.#bindings.list();
    if (!bindings.some((b) => targets(b, targetGroupArn))) {
      throw new AdminNotFoundError(`no binding targets target group ${targetGroupArn}`);
    }
    return (await this.#queue.request(targetGroupArn, 'operator')).jobId;
  }
}
