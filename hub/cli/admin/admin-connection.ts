import * as grpc from '@grpc/grpc-js';
import {
  AdminServiceClient,
  type ApplyBindingRequest,
  type ApplyBindingResponse,
  type DeleteBindingRequest,
  type DeleteBindingResponse,
  type GetClusterRequest,
  type GetClusterResponse,
  type GetTargetGroupStatusRequest,
  type GetTargetGroupStatusResponse,
  type ListAlertsResponse,
  type ListBindingsResponse,
  type ListClustersResponse,
  type ReleaseHeldOperationRequest,
  type ReleaseHeldOperationResponse,
  type TriggerReconcileRequest,
  type TriggerReconcileResponse,
} from '../../../shared/index.js';
import type { HubTarget } from './hub-target.js';

/** The hub's admin API as the commands use it: one promise per RPC. */
export interface AdminApi {
  listClusters(): Promise<ListClustersResponse>;
  getCluster(request: GetClusterRequest): Promise<GetClusterResponse>;
  listBindings(): Promise<ListBindingsResponse>;
  applyBinding(request: ApplyBindingRequest): Promise<ApplyBindingResponse>;
  deleteBinding(request: DeleteBindingRequest): Promise<DeleteBindingResponse>;
  getTargetGroupStatus(request: GetTargetGroupStatusRequest): Promise<GetTargetGroupStatusResponse>;
  triggerReconcile(request: TriggerReconcileRequest): Promise<TriggerReconcileResponse>;
  listAlerts(): Promise<ListAlertsResponse>;
  releaseHeldOperation(request: ReleaseHeldOperationRequest): Promise<ReleaseHeldOperationResponse>;
}

/** An open admin API connection. */
export interface AdminConnection {
  readonly api: AdminApi;
  close(): void;
}

/** Opens an {@link AdminConnection} to a resolved hub; injected so tests can substitute it. */
export type AdminConnector = (target: HubTarget) => AdminConnection;

function channelCredentials(target: HubTarget): grpc.ChannelCredentials {
  if (target.security.kind === 'insecure') return grpc.credentials.createInsecure();
  const { ca, cert, key } = target.security;
  return grpc.credentials.createSsl(ca ?? null, key ?? null, cert ?? null);
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (err: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/**
 * A grpc-js `AdminService` client for `target`: the bearer token on every call (as metadata,
 * which plaintext channels allow too) and a deadline of `target.timeoutMs` on each.
 */
export function connectAdmin(target: HubTarget): AdminConnection {
  const options: grpc.ClientOptions = {};
  if (target.security.kind === 'tls' && target.security.serverName !== undefined) {
    options['grpc.ssl_target_name_override'] = target.security.serverName;
    options['grpc.default_authority'] = target.security.serverName;
  }
  const client = new AdminServiceClient(target.address, channelCredentials(target), options);
  const call = <Req, Res>(method: UnaryMethod<Req, Res>, request: Req): Promise<Res> =>
    new Promise((resolve, reject) => {
      const metadata = new grpc.Metadata();
      if (target.token !== undefined) metadata.set('authorization', `Bearer ${target.token}`);
      method(request, metadata, { deadline: Date.now() + target.timeoutMs }, (err, response) =>
        err ? reject(err) : resolve(response),
      );
    });
  const api: AdminApi = {
    listClusters: () => call(client.listClusters.bind(client), {}),
    getCluster: (request) => call(client.getCluster.bind(client), request),
    listBindings: () => call(client.listBindings.bind(client), {}),
    applyBinding: (request) => call(client.applyBinding.bind(client), request),
    deleteBinding: (request) => call(client.deleteBinding.bind(client), request),
    getTargetGroupStatus: (request) => call(client.getTargetGroupStatus.bind(client), request),
    triggerReconcile: (request) => call(client.triggerReconcile.bind(client), request),
    listAlerts: () => call(client.listAlerts.bind(client), {}),
    releaseHeldOperation: (request) => call(client.releaseHeldOperation.bind(client), request),
  };
  return { api, close: () => client.close() };
}
