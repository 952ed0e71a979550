/** Hub admin: `AdminService`, the operator API, with its authentication and roles. */
export {
  AdminAuthenticator,
  hashAdminToken,
  type AdminCall,
  type AdminPrincipal,
} from './admin-authenticator.js';
export type {
  AdminExtensions,
  AlertSource,
  HeldOperationReleaser,
  ReconcileTrigger,
  TargetGroupStatusSource,
} from './admin-extensions.js';
export {
  FIELD_VIOLATIONS_TRAILER,
  adminStatusOf,
  fieldViolationsMetadata,
  fieldViolationsOf,
} from './admin-grpc-status.js';
export {
  DesiredTargetGroupStatus,
  QueueHeldOperationReleaser,
  QueueReconcileTrigger,
  heldOperationMessage,
  type BindingSource,
  type DesiredStateResolver,
  type OperatorReconcileQueue,
  type TargetGroupRecordSource,
} from './desired-state-extensions.js';
export { registerAdminMetrics } from './admin-metrics.js';
export { AdminCounters, AdminService, type AdminServiceDeps } from './admin-service.js';
export {
  ClusterInventory,
  type ClusterConnections,
  type ClusterDetail,
} from './cluster-inventory.js';
export {
  AdminInvalidRequestError,
  AdminNotFoundError,
  AdminNotImplementedError,
  AdminPermissionDeniedError,
  AdminUnauthenticatedError,
} from './errors.js';
export { addIntrospection, findProtoDir } from './grpc-introspection.js';
