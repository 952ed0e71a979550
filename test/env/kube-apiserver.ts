import { generateKeyPair, randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePort } from './free-port.js';
import { startManagedProcess, type ManagedProcess } from './managed-process.js';
import { createTestCertificateAuthority, type TestKeyPair } from './test-certificates.js';
import type { TestenvManifest } from './testenv-manifest.js';

/** A real kube-apiserver backed by its own etcd, both on free loopback ports. */
export interface KubeApiserver {
  /** https:// URL of the API server. */
  readonly url: string;
  /** Kubeconfig of a cluster-admin user (group system:masters). */
  readonly kubeconfigPath: string;
  /** Folder with the run's certificates, keys and kubeconfig. */
  readonly dir: string;
  /** http:// client URL of etcd; its JSON gateway serves /v3/kv/range, /v3/kv/compaction etc. */
  readonly etcdUrl: string;
  readonly etcd: ManagedProcess;
  /** The running API server process (a new one after {@link KubeApiserver.restartApiserver}). */
  readonly apiserver: ManagedProcess;
  /**
   * Stops the API server (SIGTERM, as a rolling update would) and starts it again on the same
   * port against the same etcd; resolves once /readyz answers 200.
   */
  restartApiserver(): Promise<void>;
  /** Stops the API server, then etcd; both always run. Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@link startKubeApiserver}. */
export interface KubeApiserverOptions {
  /** Extra kube-apiserver flags, e.g. `--watch-cache=false`. */
  apiserverArgs?: string[];
}

const adminUser = 'tgfed-test-admin';
// Only the default `kubernetes` Service takes an address from it; nothing routes there.
const serviceClusterIpRange = '10.0.0.0/24';
const kubernetesServiceIp = '10.0.0.1';

interface ApiserverPki {
  caPem: string;
  serving: TestKeyPair;
  serviceAccountPublicKeyPem: string;
  serviceAccountPrivateKeyPem: string;
}

/** A throwaway CA with a serving certificate for 127.0.0.1, and a service-account key pair. */
async function createPki(): Promise<ApiserverPki> {
  const [ca, serviceAccountKeys] = await Promise.all([
    createTestCertificateAuthority('tgfed kube-apiserver CA'),
    // ECDSA P-256: generated in microseconds, where RSA takes tens of milliseconds.
    promisify(generateKeyPair)('ec', { namedCurve: 'P-256' }),
  ]);
  const serving = await ca.issue({
    commonName: 'kube-apiserver',
    ipAddresses: ['127.0.0.1', kubernetesServiceIp],
    dnsNames: ['localhost', 'kubernetes.default.svc'],
  });
  return {
    caPem: ca.caPem,
    serving,
    serviceAccountPublicKeyPem: serviceAccountKeys.publicKey
      .export({ type: 'spki', format: 'pem' })
      .toString(),
    serviceAccountPrivateKeyPem: serviceAccountKeys.privateKey
      .export({ type: 'pkcs8', format: 'pem' })
      .toString(),
  };
}

/** True once etcd answers its health endpoint with a healthy member. */
async function etcdHealthy(clientUrl: string): Promise<boolean> {
  const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) });
  if (!response.ok) return false;
  const body = (await response.json()) as { health?: unknown };
  return body.health === 'true';
}

/** GET on the API server with the admin token, trusting only the run's CA; resolves the status. */
async function apiserverStatus(url: string, caPem: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      ca: caPem,
      headers: { authorization: `Bearer ${token}` },
      timeout: 2_000,
    });
    req.once('response', (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.once('error', reject);
    req.end();
  });
}

/**
 * Starts etcd and kube-apiserver with everything they need in a fresh temporary folder: a CA and
 * serving certificate, a service-account key pair, a static token for a system:masters user and
 * a kubeconfig for that user. Resolves once /readyz answers 200.
 */
export async function startKubeApiserver(
  manifest: TestenvManifest,
  options: KubeApiserverOptions = {},
): Promise<KubeApiserver> {
  const dir = await mkdtemp(join(tmpdir(), 'tgfed-kube-'));
  const pkiDir = join(dir, 'pki');
  const etcdDataDir = join(dir, 'etcd-data');
  await mkdir(pkiDir);
  const [pki, etcdClientPort, etcdPeerPort, securePort] = await Promise.all([
    createPki(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const token = randomBytes(24).toString('hex');
  const url = `https://127.0.0.1:${securePort}`;
  const kubeconfigPath = join(dir, 'kubeconfig.yaml');
  const file = (name: string): string => join(pkiDir, name);
  await Promise.all([
    writeFile(file('ca.crt'), pki.caPem),
    writeFile(file('apiserver.crt'), pki.serving.certPem),
    writeFile(file('apiserver.key'), pki.serving.keyPem, { mode: 0o600 }),
    writeFile(file('sa.pub'), pki.serviceAccountPublicKeyPem),
    writeFile(file('sa.key'), pki.serviceAccountPrivateKeyPem, { mode: 0o600 }),
    // token,user,uid,"group,..."; system:masters is allowed everything before RBAC is asked.
    writeFile(file('tokens.csv'), `${token},${adminUser},${adminUser},"system:masters"\n`, {
      mode: 0o600,
    }),
    writeFile(
      kubeconfigPath,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'tgfed-test',
            cluster: {
              server: url,
              'certificate-authority-data': Buffer.from(pki.caPem).toString('base64'),
            },
          },
        ],
        users: [{ name: adminUser, user: { token } }],
        contexts: [{ name: 'tgfed-test', context: { cluster: 'tgfed-test', user: adminUser } }],
        'current-context': 'tgfed-test',
      }),
      { mode: 0o600 },
    ),
  ]);

  const etcdClientUrl = `http://127.0.0.1:${etcdClientPort}`;
  const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  const etcd = await startManagedProcess({
    name: 'etcd',
    command: manifest.etcd,
    args: [
      '--name=tgfed-test',
      `--data-dir=${etcdDataDir}`,
      `--listen-client-urls=${etcdClientUrl}`,
      `--advertise-client-urls=${etcdClientUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=tgfed-test=${etcdPeerUrl}`,
      '--initial-cluster-state=new',
      // Throwaway data: skipping fsync makes every API write several times faster.
      '--unsafe-no-fsync',
      // A single member elects itself only after an election timeout (default 1 s).
      '--heartbeat-interval=10',
      '--election-timeout=100',
      '--log-level=warn',
    ],
    ready: () => etcdHealthy(etcdClientUrl),
    readyTimeoutMs: 30_000,
  });

  const startApiserver = (): Promise<ManagedProcess> =>
    startManagedProcess({
      name: 'kube-apiserver',
      command: manifest.kubeApiserver,
      args: [
        `--etcd-servers=${etcdClientUrl}`,
        // The machines have no default route, so the address cannot be derived from one. The
        // `kubernetes` Endpoints reject a loopback address, so the API server logs a sync error
        // periodically; nothing here uses them.
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${securePort}`,
        `--tls-cert-file=${file('apiserver.crt')}`,
        `--tls-private-key-file=${file('apiserver.key')}`,
        // Otherwise it would try to write into /var/run/kubernetes.
        `--cert-dir=${pkiDir}`,
        `--token-auth-file=${file('tokens.csv')}`,
        '--anonymous-auth=false',
        '--authorization-mode=RBAC',
        `--service-account-issuer=${url}`,
        `--service-account-key-file=${file('sa.pub')}`,
        `--service-account-signing-key-file=${file('sa.key')}`,
        `--service-cluster-ip-range=${serviceClusterIpRange}`,
        ...(options.apiserverArgs ?? []),
      ],
      ready: async () => (await apiserverStatus(`${url}/readyz`, pki.caPem, token)) === 200,
      readyTimeoutMs: 90_000,
    });
  let apiserver: ManagedProcess;
  try {
    apiserver = await startApiserver();
  } catch (err) {
    await etcd.stop();
    await rm(etcdDataDir, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    const errors: unknown[] = [];
    const attempt = async (step: () => Promise<void>): Promise<void> => {
      try {
        await step();
      } catch (err) {
        errors.push(err);
      }
    };
    await attempt(() => apiserver.stop());
    await attempt(() => etcd.stop());
    // The etcd data holds preallocated 64 MB WAL files and nothing a failure report needs;
    // the logs live with each process, certificates and kubeconfig stay in `dir`.
    await attempt(() => rm(etcdDataDir, { recursive: true, force: true }));
    if (errors.length > 0) throw new AggregateError(errors, 'kube-apiserver: stop failed');
  };

  const restartApiserver = async (): Promise<void> => {
    if (stopped) throw new Error('kube-apiserver: restart after stop');
    await apiserver.stop();
    apiserver = await startApiserver();
  };

  return {
    url,
    kubeconfigPath,
    dir,
    etcdUrl: etcdClientUrl,
    etcd,
    get apiserver() {
      return apiserver;
    },
    restartApiserver,
    stop: () => (stopped ??= stop()),
  };
}
