import * as grpc from '@grpc/grpc-js';
import { Binding, silentLogger, type AdminServiceServer, type Logger } from '../../shared/index.js';
import {
  BindingValidationError,
  BindingVersionConflictError,
  type BindingStore,
} from '../federation/binding-store.js';
import { validateBinding } from '../federation/binding-validation.js';
import type { AdminAuthenticator, AdminPrincipal } from './admin-authenticator.js';
import type { AdminExtensions } from './admin-extensions.js';
import { adminStatusOf } from './admin-grpc-status.js';
import type { ClusterInventory } from './cluster-inventory.js';
import {
  AdminInvalidRequestError,
  AdminNotFoundError,
  AdminNotImplementedError,
  AdminPermissionDeniedError,
} from './errors.js';

/** The collaborators of {@link AdminService}. */
export interface AdminServiceDeps {
  readonly authenticator: AdminAuthenticator;
  readonly bindings: BindingStore;
  readonly clusters: ClusterInventory;
  /** Components from other hub areas; an absent one answers UNIMPLEMENTED. */
  readonly extensions?: AdminExtensions;
  readonly logger?: Logger;
}

/** Counters of the admin API, for metrics and tests. */
export class AdminCounters {
  calls = 0;
  unauthenticated = 0;
  permissionDenied = 0;
  invalidArguments = 0;
  failures = 0;
}

type Method = keyof AdminServiceServer & string;

// The proto says: read methods need the read-only role, the others the admin role.
const writeMethods: ReadonlySet<Method> = new Set([
  'applyBinding',
  'deleteBinding',
  'triggerReconcile',
  'releaseHeldOperation',
]);

function notWired(what: string, issue: string): AdminNotImplementedError {
  return new AdminNotImplementedError(
    `${what} is not available: this hub has no ${issue} wired in yet`,
  );
}

/**
 * Serves `AdminService` (the operator API) on the admin listener: every call is authenticated
 * (bearer token or client certificate), authorized by role, and its errors go through one
 * mapping (`adminStatusOf`). Binding writes are logged with the caller's name.
 */
export class AdminService {
  readonly counters = new AdminCounters();
  readonly #deps: AdminServiceDeps;
  readonly #log: Logger;

  constructor(deps: AdminServiceDeps) {
    this.#deps = deps;
    this.#log = (deps.logger ?? silentLogger()).child({ component: 'admin-service' });
  }

  /** The grpc-js implementation of `AdminService`. */
  readonly handlers: AdminServiceServer = {
    listClusters: this.#unary('listClusters', async () => ({
      clusters: await this.#deps.clusters.list(),
    })),
    getCluster: this.#unary('getCluster', async (request) => {
      if (request.id === '') throw new AdminInvalidRequestError('id: a cluster id is required');
      const detail = await this.#deps.clusters.get(request.id);
      if (detail === undefined) throw new AdminNotFoundError(`no cluster ${request.id}`);
      return detail;
    }),
    listBindings: this.#unary('listBindings', async () => ({
      bindings: await this.#deps.bindings.list(),
    })),
    applyBinding: this.#unary('applyBinding', async (request, principal) => {
      if (request.binding === undefined) {
        throw new BindingValidationError([{ field: 'binding', description: 'required' }]);
      }
      // version 0 means "unconditional" on the wire; non-zero is a compare-and-set.
      const expectedVersion = request.binding.version === 0 ? undefined : request.binding.version;
      if (request.dryRun) return this.#dryRun(request.binding, expectedVersion);
      const applied = await this.#deps.bindings.apply(request.binding, { expectedVersion });
      if (applied.changed) {
        this.#log.info(
          { binding: applied.binding.name, version: applied.binding.version, by: principal.name },
          'binding applied',
        );
      }
      return { binding: applied.binding, changed: applied.changed };
    }),
    deleteBinding: this.#unary('deleteBinding', async (request, principal) => {
      if (request.name === '')
        throw new AdminInvalidRequestError('name: a binding name is required');
      const deleted = await this.#deps.bindings.delete(request.name, {
        expectedVersion: request.version === 0 ? undefined : request.version,
      });
      if (!deleted) throw new AdminNotFoundError(`no binding ${request.name}`);
      this.#log.info({ binding: request.name, by: principal.name }, 'binding deleted');
      return {};
    }),
    getTargetGroupStatus: this.#unary('getTargetGroupStatus', async (request) => {
      const source = this.#deps.extensions?.targetGroups;
      if (source === undefined)
        throw notWired('target group status', 'resolution/reconcile status');
      if (request.arn === '')
        throw new AdminInvalidRequestError('arn: a target group ARN is required');
      const status = await source.targetGroupStatus(request.arn);
      if (status === undefined) {
        throw new AdminNotFoundError(`no binding targets target group ${request.arn}`);
      }
      return { status };
    }),
    triggerReconcile: this.#unary('triggerReconcile', async (request, principal) => {
      const trigger = this.#deps.extensions?.reconcile;
      if (trigger === undefined) throw notWired('TriggerReconcile', 'reconcile queue');
      if (request.targetGroupArn === '') {
        throw new AdminInvalidRequestError('targetGroupArn: a target group ARN is required');
      }
      const jobId = await trigger.triggerReconcile(request.targetGroupArn, {
        refresh: request.refresh,
      });
      this.#log.info(
        { targetGroup: request.targetGroupArn, jobId, by: principal.name },
        'reconcile triggered',
      );
      return { jobId };
    }),
    listAlerts: this.#unary('listAlerts', async () => {
      const source = this.#deps.extensions?.alerts;
      if (source === undefined) throw notWired('ListAlerts', 'alert evaluation');
      return { alerts: await source.firingAlerts() };
    }),
    releaseHeldOperation: this.#unary('releaseHeldOperation', async (request, principal) => {
      const releaser = this.#deps.extensions?.heldOperations;
      if (releaser === undefined) {
        throw notWired('ReleaseHeldOperation', 'mass-deregistration guard');
      }
      if (request.id === '')
        throw new AdminInvalidRequestError('id: a held operation id is required');
      const operation = await releaser.releaseHeldOperation(request.id, principal.name);
      if (operation === undefined) throw new AdminNotFoundError(`no held operation ${request.id}`);
      this.#log.warn({ operation: request.id, by: principal.name }, 'held operation released');
      return { operation };
    }),
  };

  async #dryRun(binding: Binding, expectedVersion: number | undefined) {
    const result = validateBinding(binding);
    if (!result.ok) throw new BindingValidationError(result.violations);
    const stored = await this.#deps.bindings.get(result.binding.name);
    const storedVersion = stored?.version ?? 0;
    if (expectedVersion !== undefined && expectedVersion !== storedVersion) {
      throw new BindingVersionConflictError(result.binding.name, expectedVersion, storedVersion);
    }
    const same =
      stored !== undefined &&
      JSON.stringify(Binding.toJSON({ ...stored, version: 0, updatedUnixMs: 0 })) ===
        JSON.stringify(Binding.toJSON({ ...result.binding, version: 0, updatedUnixMs: 0 }));
    return {
      binding: same ? stored : { ...result.binding, version: storedVersion, updatedUnixMs: 0 },
      changed: !same,
    };
  }

  /** Wraps one unary method: authenticate, authorize, run, map errors to a status. */
  #unary<Req, Res>(
    method: Method,
    run: (request: Req, principal: AdminPrincipal) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      this.counters.calls++;
      let principal: AdminPrincipal;
      try {
        principal = this.#deps.authenticator.authenticate(call);
        if (writeMethods.has(method) && principal.role !== 'admin') {
          throw new AdminPermissionDeniedError(
            `${principal.name} has the ${principal.role} role; ${method} needs the admin role`,
          );
        }
      } catch (err) {
        this.#fail(method, err, callback);
        return;
      }
      run(call.request, principal).then(
        (response) => callback(null, response),
        (err: unknown) => this.#fail(method, err, callback),
      );
    };
  }

  #fail<Res>(method: Method, err: unknown, callback: grpc.sendUnaryData<Res>): void {
    const status = adminStatusOf(err, this.#log);
    switch (status.code) {
      case grpc.status.UNAUTHENTICATED:
        this.counters.unauthenticated++;
        break;
      case grpc.status.PERMISSION_DENIED:
        this.counters.permissionDenied++;
        break;
      case grpc.status.INVALID_ARGUMENT:
        this.counters.invalidArguments++;
        break;
      default:
        this.counters.failures++;
    }
    this.#log.debug({ method, code: status.code, details: status.details }, 'admin call refused');
    callback(status);
  }
}
