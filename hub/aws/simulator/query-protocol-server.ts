import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../../shared/index.js';
import { silentLogger } from '../../../shared/index.js';
import {
  Elbv2Simulator,
  Elbv2SimulatorError,
  type Elbv2Action,
  type Elbv2Caller,
  type Elbv2Request,
  type Elbv2SimulatorOptions,
  type SimulatedTargetDescription,
  type SimulatedTargetGroup,
  type SimulatedTargetHealth,
} from './elbv2-simulator.js';
import { ActionParamError, actionsParam, listenersXml, rulesXml } from './listener-query.js';

/** Options for {@link startElbv2Simulator}; the model options apply unless `simulator` is given. */
export interface Elbv2SimulatorServerOptions extends Elbv2SimulatorOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  /** Larger request bodies are refused with 413. @default 1048576 */
  maxBodyBytes?: number;
  /** Serve this model instead of a new one built from the options. */
  simulator?: Elbv2Simulator;
  /** Closing waits this long for requests in flight, then drops connections. @default 2000 */
  closeGraceMs?: number;
  /** @default a silent logger */
  logger?: Logger;
}

/** Lifecycle of an {@link Elbv2SimulatorServer}. */
export type Elbv2SimulatorServerState = 'listening' | 'closing' | 'closed';

const ELBV2_NAMESPACE = 'http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/';
const STS_NAMESPACE = 'https://sts.amazonaws.com/doc/2011-06-15/';
const ELBV2_ACTIONS: ReadonlySet<string> = new Set<Elbv2Action>([
  'CreateTargetGroup',
  'DeleteTargetGroup',
  'DescribeTargetGroups',
  'RegisterTargets',
  'DeregisterTargets',
  'DescribeTargetHealth',
  'DescribeRules',
  'DescribeListeners',
  'ModifyRule',
  'ModifyListener',
]);
// Credential=<AKID>/<yyyymmdd>/<region>/<service>/aws4_request
const CREDENTIAL_SCOPE = /Credential=([^/,\s]+)\/\d{8}\/([^/,\s]+)\/([^/,\s]+)\/aws4_request/;

/** Escapes text for an XML element. */
function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function el(name: string, ...children: string[]): string {
  return `<${name}>${children.join('')}</${name}>`;
}

function leaf(name: string, value: string | number | undefined): string {
  return value === undefined ? '' : el(name, escapeXml(String(value)));
}

function members(items: readonly string[]): string {
  return items.map((item) => el('member', item)).join('');
}

function targetGroupXml(group: SimulatedTargetGroup): string {
  return el(
    'member',
    leaf('TargetGroupArn', group.targetGroupArn),
    leaf('TargetGroupName', group.targetGroupName),
    leaf('Protocol', group.protocol),
    leaf('Port', group.port),
    leaf('VpcId', group.vpcId),
    leaf('TargetType', group.targetType),
    leaf('IpAddressType', 'ipv4'),
    el('LoadBalancerArns', members(group.loadBalancerArns.map(escapeXml))),
  );
}

function targetHealthXml(health: SimulatedTargetHealth): string {
  return el(
    'member',
    el(
      'Target',
      leaf('Id', health.id),
      leaf('Port', health.port),
      leaf('AvailabilityZone', health.availabilityZone),
    ),
    leaf('HealthCheckPort', health.port),
    el(
      'TargetHealth',
      leaf('State', health.state),
      leaf('Reason', health.reason),
      leaf('Description', health.description),
    ),
  );
}

/** A request the server refuses before it reaches the model. */
function badRequest(code: string, message: string, status = 400): Elbv2SimulatorError {
  return new Elbv2SimulatorError(code, message, status);
}

/** `Prefix.member.N` values in order of N. */
function listParam(params: URLSearchParams, prefix: string): string[] | undefined {
  const pattern = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.member\\.(\\d+)$`);
  const found: [number, string][] = [];
  for (const [key, value] of params) {
    const m = pattern.exec(key);
    if (m !== null) found.push([Number(m[1]), value]);
  }
  if (found.length === 0) return undefined;
  return found.sort((a, b) => a[0] - b[0]).map(([, value]) => value);
}

function integerParam(name: string, value: string | null): number | undefined {
  if (value === null) return undefined;
  if (!/^\d{1,9}$/.test(value)) {
    throw badRequest('ValidationError', `Value '${value}' for ${name} is not an integer`);
  }
  return Number(value);
}

function requiredParam(params: URLSearchParams, name: string): string {
  const value = params.get(name);
  if (value === null || value === '') {
    throw badRequest('ValidationError', `${name} is required`);
  }
  return value;
}

/** `Targets.member.N.{Id,Port,AvailabilityZone}` in order of N. */
function targetsParam(params: URLSearchParams): SimulatedTargetDescription[] | undefined {
  const byIndex = new Map<number, Map<string, string>>();
  for (const [key, value] of params) {
    const m = /^Targets\.member\.(\d+)\.(Id|Port|AvailabilityZone)$/.exec(key);
    if (m === null) continue;
    const index = Number(m[1]);
    const fields = byIndex.get(index) ?? new Map<string, string>();
    fields.set(m[2] ?? '', value);
    byIndex.set(index, fields);
  }
  if (byIndex.size === 0) return undefined;
  return [...byIndex.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([index, fields]) => {
      const id = fields.get('Id');
      if (id === undefined) {
        throw badRequest('ValidationError', `Targets.member.${index}.Id is required`);
      }
      const target: SimulatedTargetDescription = { id };
      const port = integerParam(`Targets.member.${index}.Port`, fields.get('Port') ?? null);
      if (port !== undefined) target.port = port;
      const zone = fields.get('AvailabilityZone');
      if (zone !== undefined) target.availabilityZone = zone;
      return target;
    });
}

function elbv2Request(action: Elbv2Action, params: URLSearchParams): Elbv2Request {
  try {
    return requestOf(action, params);
  } catch (err) {
    if (err instanceof ActionParamError) throw badRequest('ValidationError', err.message);
    throw err;
  }
}

function requestOf(action: Elbv2Action, params: URLSearchParams): Elbv2Request {
  switch (action) {
    case 'DescribeRules': {
      const request: Elbv2Request<'DescribeRules'> = { action };
      const arns = listParam(params, 'RuleArns');
      if (arns !== undefined) request.ruleArns = arns;
      const listenerArn = params.get('ListenerArn');
      if (listenerArn !== null) request.listenerArn = listenerArn;
      return request;
    }
    case 'DescribeListeners': {
      const request: Elbv2Request<'DescribeListeners'> = { action };
      const arns = listParam(params, 'ListenerArns');
      if (arns !== undefined) request.listenerArns = arns;
      const loadBalancerArn = params.get('LoadBalancerArn');
      if (loadBalancerArn !== null) request.loadBalancerArn = loadBalancerArn;
      return request;
    }
    case 'ModifyRule': {
      const request: Elbv2Request<'ModifyRule'> = {
        action,
        ruleArn: requiredParam(params, 'RuleArn'),
      };
      const actions = actionsParam(params, 'Actions');
      if (actions !== undefined) request.actions = actions;
      return request;
    }
    case 'ModifyListener': {
      const request: Elbv2Request<'ModifyListener'> = {
        action,
        listenerArn: requiredParam(params, 'ListenerArn'),
      };
      const actions = actionsParam(params, 'DefaultActions');
      if (actions !== undefined) request.defaultActions = actions;
      return request;
    }
    case 'CreateTargetGroup': {
      const targetType = params.get('TargetType');
      if (targetType !== null && targetType !== 'ip') {
        throw badRequest(
          'ValidationError',
          `The simulator supports TargetType 'ip' only, got '${targetType}'`,
        );
      }
      const request: Elbv2Request<'CreateTargetGroup'> = {
        action,
        name: requiredParam(params, 'Name'),
      };
      const port = integerParam('Port', params.get('Port'));
      if (port !== undefined) request.port = port;
      const protocol = params.get('Protocol');
      if (protocol !== null) request.protocol = protocol;
      const vpcId = params.get('VpcId');
      if (vpcId !== null) request.vpcId = vpcId;
      return request;
    }
    case 'DeleteTargetGroup':
      return { action, targetGroupArn: requiredParam(params, 'TargetGroupArn') };
    case 'DescribeTargetGroups': {
      const request: Elbv2Request<'DescribeTargetGroups'> = { action };
      const arns = listParam(params, 'TargetGroupArns');
      if (arns !== undefined) request.targetGroupArns = arns;
      const names = listParam(params, 'Names');
      if (names !== undefined) request.names = names;
      return request;
    }
    case 'RegisterTargets':
    case 'DeregisterTargets':
      return {
        action,
        targetGroupArn: requiredParam(params, 'TargetGroupArn'),
        targets: targetsParam(params) ?? [],
      };
    case 'DescribeTargetHealth': {
      const request: Elbv2Request<'DescribeTargetHealth'> = {
        action,
        targetGroupArn: requiredParam(params, 'TargetGroupArn'),
      };
      const targets = targetsParam(params);
      if (targets !== undefined) request.targets = targets;
      return request;
    }
  }
}

interface Credential {
  accessKeyId: string;
  region: string;
}

// Signatures are not verified: the simulator trusts the credential scope, which is all it needs
// to pick the account and region.
function credentialOf(req: IncomingMessage): Credential {
  const header = req.headers.authorization;
  const m = header === undefined ? null : CREDENTIAL_SCOPE.exec(header);
  if (m === null) {
    throw badRequest(
      'MissingAuthenticationToken',
      'Request is missing a SigV4 Authorization header with a credential scope',
      403,
    );
  }
  return { accessKeyId: m[1] ?? '', region: m[2] ?? '' };
}

class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
}

function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      // Stop reading without destroying the socket, so the 413 answer still reaches the client.
      req.off('data', onData);
      req.pause();
      reject(new BodyTooLargeError(`request body exceeds ${maxBytes} bytes`));
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

/**
 * Serves an {@link Elbv2Simulator} over HTTP in the awsQuery protocol, so the real AWS SDK v3
 * reaches it through its `endpoint` setting: ELBv2 (version 2015-12-01) and STS (AssumeRole,
 * GetCallerIdentity) on one port, told apart by `Action`.
 */
export class Elbv2SimulatorServer {
  readonly simulator: Elbv2Simulator;
  readonly #server: Server;
  readonly #logger: Logger;
  readonly #maxBodyBytes: number;
  readonly #closeGraceMs: number;
  #state: Elbv2SimulatorServerState = 'listening';
  #closed: Promise<void> | undefined;

  private constructor(
    server: Server,
    simulator: Elbv2Simulator,
    options: Elbv2SimulatorServerOptions,
  ) {
    this.#server = server;
    this.simulator = simulator;
    this.#logger = options.logger ?? silentLogger();
    this.#maxBodyBytes = options.maxBodyBytes ?? 1 << 20;
    this.#closeGraceMs = options.closeGraceMs ?? 2000;
  }

  /** Starts listening; see {@link startElbv2Simulator}. */
  static async start(options: Elbv2SimulatorServerOptions = {}): Promise<Elbv2SimulatorServer> {
    for (const name of ['maxBodyBytes', 'closeGraceMs'] as const) {
      const value = options[name];
      if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
        throw new Error(
          `ELBv2 simulator server option ${name} must be a positive integer, got ${value}`,
        );
      }
    }
    const simulator = options.simulator ?? new Elbv2Simulator(options);
    const server = createServer();
    const instance = new Elbv2SimulatorServer(server, simulator, options);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      instance.#serve(req, res).catch((err: unknown) => {
        instance.#logger.error({ err }, 'ELBv2 simulator failed to answer a request');
        res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    instance.#logger.info({ url: instance.url }, 'ELBv2 simulator listening');
    return instance;
  }

  /** `http://<host>:<port>`, for the SDK's `endpoint` setting. */
  get url(): string {
    const address = this.#server.address() as AddressInfo | null;
    if (address === null) throw new Error('ELBv2 simulator server is not listening');
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  get state(): Elbv2SimulatorServerState {
    return this.#state;
  }

  /** Stops accepting connections, waits `closeGraceMs` for calls in flight, then drops them. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    this.#logger.info('ELBv2 simulator closing');
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const timer = setTimeout(() => this.#server.closeAllConnections(), this.#closeGraceMs);
    try {
      await closed;
    } finally {
      clearTimeout(timer);
      this.#state = 'closed';
      this.#logger.info('ELBv2 simulator closed');
    }
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    let namespace = ELBV2_NAMESPACE;
    let status = 200;
    let body: string;
    try {
      if (req.method !== 'POST') {
        throw badRequest(
          'MethodNotAllowed',
          `Method ${req.method ?? '?'} is not supported; use POST`,
          405,
        );
      }
      let text: string;
      try {
        text = await readBody(req, this.#maxBodyBytes);
      } catch (err) {
        if (err instanceof BodyTooLargeError) {
          res.setHeader('connection', 'close');
          throw badRequest('RequestEntityTooLarge', err.message, 413);
        }
        throw badRequest('MalformedQueryString', 'The request body could not be read');
      }
      const params = new URLSearchParams(text);
      const action = params.get('Action');
      if (action === null || action === '') throw badRequest('MissingAction', 'Action is required');
      if (action === 'AssumeRole' || action === 'GetCallerIdentity') namespace = STS_NAMESPACE;
      body = this.#answer(action, params, credentialOf(req), requestId);
    } catch (err) {
      const error =
        err instanceof Elbv2SimulatorError
          ? err
          : new Elbv2SimulatorError('InternalFailure', 'The simulator failed unexpectedly', 500);
      if (!(err instanceof Elbv2SimulatorError)) {
        this.#logger.error({ err, requestId }, 'ELBv2 simulator request failed unexpectedly');
      }
      status = error.httpStatus;
      body =
        `<ErrorResponse xmlns="${namespace}">` +
        el(
          'Error',
          leaf('Type', error.type),
          leaf('Code', error.code),
          leaf('Message', error.message),
        ) +
        leaf('RequestId', requestId) +
        '</ErrorResponse>';
    }
    const latencyMs = this.simulator.latencyFor();
    if (latencyMs > 0) await sleep(latencyMs);
    res.writeHead(status, {
      'content-type': 'text/xml',
      'x-amzn-requestid': requestId,
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  #answer(
    action: string,
    params: URLSearchParams,
    credential: Credential,
    requestId: string,
  ): string {
    const respond = (xmlns: string, result: string): string =>
      `<${action}Response xmlns="${xmlns}">${result}` +
      el('ResponseMetadata', leaf('RequestId', requestId)) +
      `</${action}Response>`;
    if (action === 'AssumeRole') {
      const request: Parameters<Elbv2Simulator['assumeRole']>[0] = {
        roleArn: requiredParam(params, 'RoleArn'),
        sessionName: requiredParam(params, 'RoleSessionName'),
      };
      const externalId = params.get('ExternalId');
      if (externalId !== null) request.externalId = externalId;
      const duration = integerParam('DurationSeconds', params.get('DurationSeconds'));
      if (duration !== undefined) request.durationSeconds = duration;
      const credentials = this.simulator.assumeRole(request);
      const identity = this.simulator.identityOf(credentials.accessKeyId);
      return respond(
        STS_NAMESPACE,
        el(
          'AssumeRoleResult',
          el(
            'Credentials',
            leaf('AccessKeyId', credentials.accessKeyId),
            leaf('SecretAccessKey', credentials.secretAccessKey),
            leaf('SessionToken', credentials.sessionToken),
            leaf('Expiration', credentials.expiration.toISOString()),
          ),
          el('AssumedRoleUser', leaf('Arn', identity.arn), leaf('AssumedRoleId', identity.userId)),
        ),
      );
    }
    if (action === 'GetCallerIdentity') {
      const identity = this.simulator.identityOf(credential.accessKeyId);
      return respond(
        STS_NAMESPACE,
        el(
          'GetCallerIdentityResult',
          leaf('Arn', identity.arn),
          leaf('UserId', identity.userId),
          leaf('Account', identity.account),
        ),
      );
    }
    if (!ELBV2_ACTIONS.has(action)) {
      throw badRequest('InvalidAction', `The action ${action} is not valid for this endpoint`);
    }
    const caller: Elbv2Caller = {
      account: this.simulator.accountOfAccessKey(credential.accessKeyId),
      region: credential.region,
    };
    return respond(
      ELBV2_NAMESPACE,
      this.#elbv2Result(caller, elbv2Request(action as Elbv2Action, params)),
    );
  }

  #elbv2Result(caller: Elbv2Caller, request: Elbv2Request): string {
    const resultTag = `${request.action}Result`;
    switch (request.action) {
      case 'CreateTargetGroup': {
        const { targetGroup } = this.simulator.handle(caller, request);
        return el(resultTag, el('TargetGroups', targetGroupXml(targetGroup)));
      }
      case 'DescribeTargetGroups': {
        const { targetGroups } = this.simulator.handle(caller, request);
        return el(resultTag, el('TargetGroups', targetGroups.map(targetGroupXml).join('')));
      }
      case 'DescribeTargetHealth': {
        const { targetHealthDescriptions } = this.simulator.handle(caller, request);
        return el(
          resultTag,
          el('TargetHealthDescriptions', targetHealthDescriptions.map(targetHealthXml).join('')),
        );
      }
      case 'DeleteTargetGroup':
      case 'RegisterTargets':
      case 'DeregisterTargets':
        this.simulator.handle(caller, request);
        return `<${resultTag}/>`;
      case 'DescribeRules':
      case 'ModifyRule':
        return el(resultTag, rulesXml(this.simulator.handle(caller, request).rules));
      case 'DescribeListeners':
      case 'ModifyListener':
        return el(resultTag, listenersXml(this.simulator.handle(caller, request).listeners));
    }
  }
}

/**
 * Starts an ELBv2 + STS simulator on `host:port` (default 127.0.0.1, a free port). Point the SDK
 * at `server.url` with the `endpoint` client option or `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`
 * / `AWS_ENDPOINT_URL_STS`.
 */
export function startElbv2Simulator(
  options: Elbv2SimulatorServerOptions = {},
): Promise<Elbv2SimulatorServer> {
  return Elbv2SimulatorServer.start(options);
}
