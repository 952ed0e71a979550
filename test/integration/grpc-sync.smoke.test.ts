import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import {
  AgentServiceClient,
  AgentServiceService,
  BatchPhase,
  type AgentServiceServer,
  type SyncRequest,
  type SyncResponse,
} from '../../shared/generated/tgfed/v1/agent.js';
import { Protocol } from '../../shared/generated/tgfed/v1/endpoint.js';
import { traceContextFromHeaders, traceHeadersFromContext } from '../../shared/index.js';
import { createTestCertificateAuthority, type TestKeyPair } from '../env/test-certificates.js';

const clusterId = 'prod-eu-1';
const spiffeId = `spiffe://tgfed.test/cluster/${clusterId}`;
const digest = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

/** What the test server saw, so the test can assert on the hub's side of the stream. */
interface ServerView {
  peerSubjectAltName?: string;
  requests: SyncRequest[];
}

async function startServer(
  caPem: string,
  serverPair: TestKeyPair,
  view: ServerView,
): Promise<{ server: grpc.Server; port: number }> {
  const sync: AgentServiceServer['sync'] = (call) => {
    call.on('data', (request: SyncRequest) => {
      view.requests.push(request);
      const message = request.message;
      switch (message?.$case) {
        case 'hello':
          view.peerSubjectAltName = call.getAuthContext().sslPeerCertificate?.subjectaltname;
          call.write({
            message: {
              $case: 'welcome',
              welcome: {
                hubId: 'hub-test',
                digests: [{ service: { namespace: 'shop', name: 'web' }, digest }],
                subscription: { version: 1, selectors: [{ namespace: 'shop', name: 'web' }] },
                heartbeatIntervalMs: 5_000,
                capabilities: [],
              },
            },
          });
          break;
        case 'batch':
          call.write({ message: { $case: 'ack', ack: { sequence: message.batch.sequence } } });
          break;
        case 'synced':
          call.write({ message: { $case: 'ack', ack: { sequence: message.synced.sequence } } });
          break;
        default:
          break;
      }
    });
    call.on('end', () => call.end());
  };
  const server = new grpc.Server();
  server.addService(AgentServiceService, { sync } satisfies AgentServiceServer);
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(caPem),
    [{ cert_chain: Buffer.from(serverPair.certPem), private_key: Buffer.from(serverPair.keyPem) }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}

/** A client on loopback that verifies the hub by its DNS name (Node rejects IPs as SNI). */
function connectAgent(port: number, credentials: grpc.ChannelCredentials): AgentServiceClient {
  return new AgentServiceClient(`127.0.0.1:${port}`, credentials, {
    'grpc.ssl_target_name_override': 'localhost',
  });
}

/** Reads the next response of a stream, or fails with the stream's error. */
function nextResponse(call: grpc.ClientDuplexStream<SyncRequest, SyncResponse>) {
  return new Promise<SyncResponse>((resolve, reject) => {
    const onData = (r: SyncResponse) => (cleanup(), resolve(r));
    const onError = (e: Error) => (cleanup(), reject(e));
    const cleanup = () => {
      call.off('data', onData);
      call.off('error', onError);
    };
    call.once('data', onData);
    call.once('error', onError);
  });
}

/** The stream's first error; later ones (a refused handshake reports more than once) are swallowed. */
function streamError(call: grpc.ClientDuplexStream<SyncRequest, SyncResponse>) {
  return new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
}

describe('AgentService.Sync over mutual TLS', () => {
  const servers: grpc.Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.forceShutdown();
  });

  it('carries hello, welcome, a delta batch, the SYNCED marker and their acks both ways', async () => {
    const ca = await createTestCertificateAuthority();
    const serverPair = await ca.issue({
      commonName: 'hub',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const clientPair = await ca.issue({ commonName: clusterId, uris: [spiffeId] });
    const view: ServerView = { requests: [] };
    const { server, port } = await startServer(ca.caPem, serverPair, view);
    servers.push(server);

    const client = connectAgent(
      port,
      grpc.credentials.createSsl(
        Buffer.from(ca.caPem),
        Buffer.from(clientPair.keyPem),
        Buffer.from(clientPair.certPem),
      ),
    );
    const call = client.sync();
    const sessionEpoch = Uint8Array.from({ length: 16 }, (_, i) => i);
    call.write({
      message: {
        $case: 'hello',
        hello: {
          clusterId,
          agentVersion: '0.1.0',
          sessionEpoch,
          capabilities: ['interned-strings'],
        },
      },
    });
    const welcome = await nextResponse(call);
    expect(welcome.message?.$case).toBe('welcome');
    if (welcome.message?.$case !== 'welcome') return;
    expect(welcome.message.welcome.digests[0]?.service).toEqual({ namespace: 'shop', name: 'web' });
    expect(Buffer.from(welcome.message.welcome.digests[0]?.digest ?? [])).toEqual(
      Buffer.from(digest),
    );
    expect(welcome.message.welcome.subscription?.selectors).toEqual([
      { namespace: 'shop', name: 'web', labels: undefined },
    ]);

    call.write({
      message: {
        $case: 'batch',
        batch: {
          sequence: 1,
          phase: BatchPhase.BATCH_PHASE_DELTA,
          observedBaseUnixMs: 1_790_000_000_000,
          strings: [
            { id: 1, value: 'eu-west-1a' },
            { id: 2, value: 'ip-10-0-1-7.eu-west-1.compute.internal' },
          ],
          traceContext: traceContextFromHeaders({
            traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
            tracestate: '',
          }),
          changes: [
            {
              service: { namespace: 'shop', name: 'web' },
              digest,
              change: {
                $case: 'delta',
                delta: {
                  portSets: [
                    {
                      id: 1,
                      ports: [
                        {
                          name: 'http',
                          port: 8080,
                          protocol: Protocol.PROTOCOL_TCP,
                          appProtocol: '',
                        },
                      ],
                    },
                  ],
                  upserts: [
                    {
                      address: Uint8Array.from([10, 0, 1, 7]),
                      portSet: 1,
                      ready: true,
                      serving: true,
                      terminating: false,
                      zone: 1,
                      node: 2,
                      pod: { namespace: '', name: 'web-7d4b9c8f6d-x2k9p' },
                      observedOffsetMs: 12,
                    },
                  ],
                  removals: [
                    {
                      address: Buffer.from('fd000000000000000000000000000001', 'hex'),
                      observedOffsetMs: 3,
                    },
                  ],
                },
              },
            },
          ],
        },
      },
    });
    const ack = await nextResponse(call);
    expect(ack.message).toEqual({ $case: 'ack', ack: { sequence: 1 } });

    call.write({ message: { $case: 'synced', synced: { sequence: 2 } } });
    expect((await nextResponse(call)).message).toEqual({ $case: 'ack', ack: { sequence: 2 } });
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('data', () => undefined);
    call.end();
    expect((await status).code).toBe(grpc.status.OK);
    client.close();

    // The hub side saw the cluster's identity from its client certificate...
    expect(view.peerSubjectAltName).toContain(`URI:${spiffeId}`);
    // ...and every field of the delta as the agent sent it.
    const batch = view.requests[1]?.message;
    expect(batch?.$case).toBe('batch');
    if (batch?.$case !== 'batch') return;
    const change = batch.batch.changes[0]?.change;
    expect(change?.$case).toBe('delta');
    if (change?.$case !== 'delta') return;
    const endpoint = change.delta.upserts[0];
    expect(Buffer.from(endpoint?.address ?? [])).toEqual(Buffer.from([10, 0, 1, 7]));
    expect(endpoint).toMatchObject({ ready: true, serving: true, zone: 1, node: 2 });
    expect(endpoint?.pod?.name).toBe('web-7d4b9c8f6d-x2k9p');
    expect(change.delta.removals[0]?.address).toHaveLength(16);
    expect(change.delta.portSets[0]?.ports[0]).toMatchObject({ name: 'http', port: 8080 });
    expect(traceHeadersFromContext(batch.batch.traceContext)?.traceparent).toBe(
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    );
  });

  it('refuses a client that presents no certificate', async () => {
    const ca = await createTestCertificateAuthority();
    const serverPair = await ca.issue({ commonName: 'hub', dnsNames: ['localhost'] });
    const view: ServerView = { requests: [] };
    const { server, port } = await startServer(ca.caPem, serverPair, view);
    servers.push(server);

    const client = connectAgent(port, grpc.credentials.createSsl(Buffer.from(ca.caPem)));
    const call = client.sync();
    call.write({ message: { $case: 'heartbeat', heartbeat: { sentUnixMs: Date.now() } } });
    await expect(streamError(call)).resolves.toMatchObject({ code: grpc.status.UNAVAILABLE });
    client.close();
    expect(view.requests).toHaveLength(0);
  });

  it('refuses a client whose certificate comes from another authority', async () => {
    const ca = await createTestCertificateAuthority();
    const rogueCa = await createTestCertificateAuthority('rogue CA');
    const serverPair = await ca.issue({ commonName: 'hub', dnsNames: ['localhost'] });
    const roguePair = await rogueCa.issue({ commonName: clusterId, uris: [spiffeId] });
    const view: ServerView = { requests: [] };
    const { server, port } = await startServer(ca.caPem, serverPair, view);
    servers.push(server);

    const client = connectAgent(
      port,
      grpc.credentials.createSsl(
        Buffer.from(ca.caPem),
        Buffer.from(roguePair.keyPem),
        Buffer.from(roguePair.certPem),
      ),
    );
    const call = client.sync();
    call.write({ message: { $case: 'heartbeat', heartbeat: { sentUnixMs: Date.now() } } });
    await expect(streamError(call)).resolves.toMatchObject({ code: grpc.status.UNAVAILABLE });
    client.close();
    expect(view.requests).toHaveLength(0);
  });
});
