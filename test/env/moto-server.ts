import { randomInt } from 'node:crypto';
import type { STSClientConfig } from '@aws-sdk/client-sts';
import { freePort } from './free-port.js';
import { startManagedProcess, type ManagedProcess } from './managed-process.js';

/** Account that moto serves for any access key it did not issue itself. */
export const MOTO_DEFAULT_ACCOUNT_ID = '123456789012';

/** Region the tests use against moto. */
export const MOTO_REGION = 'us-east-1';

/** Static credentials that moto maps to {@link MOTO_DEFAULT_ACCOUNT_ID}. */
export const MOTO_TEST_CREDENTIALS = {
  accessKeyId: 'AKIATGFEDTESTKEY0001',
  secretAccessKey: 'tgfed-test-secret',
} as const;

/** Credentials in any form the AWS SDK v3 clients accept: static, or a provider. */
export type AwsTestCredentials = NonNullable<STSClientConfig['credentials']>;

/** The standard AWS SDK v3 client settings for talking to moto; fits every v3 client. */
export interface AwsTestClientConfig {
  region: string;
  endpoint: string;
  credentials: AwsTestCredentials;
}

/** A real moto server on a free loopback port. */
export interface MotoServer {
  /** http:// endpoint for every AWS service moto emulates (ELBv2, STS, EC2, ...). */
  readonly endpoint: string;
  readonly port: number;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

/** True once moto's dashboard answers, i.e. the server routes requests. */
async function dashboardAnswers(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1_000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

/** Starts `moto_server` (the binary from the provisioned venv) on 127.0.0.1 and a free port. */
export async function startMotoServer(binary: string): Promise<MotoServer> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  // MOTO_ACCOUNT_ID would pin every request to one account and defeat AssumeRole account switching.
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
  delete env['MOTO_ACCOUNT_ID'];
  const moto = await startManagedProcess({
    name: 'moto',
    command: binary,
    args: ['--host', '127.0.0.1', '--port', String(port)],
    env,
    ready: () => dashboardAnswers(endpoint),
    readyTimeoutMs: 30_000,
  });
  return { endpoint, port, process: moto, stop: () => moto.stop() };
}

/**
 * Client settings for moto at `endpoint`: region, endpoint and credentials, nothing else, so
 * code under test sees the same configuration surface as against AWS.
 * @param credentials defaults to {@link MOTO_TEST_CREDENTIALS} (moto's default account)
 */
export function awsClientConfig(
  endpoint: string,
  credentials: AwsTestCredentials = MOTO_TEST_CREDENTIALS,
): AwsTestClientConfig {
  return { region: MOTO_REGION, endpoint, credentials };
}

/** A random 12-digit account id, so that each test owns its accounts in the shared moto. */
export function uniqueAccountId(): string {
  let id: string;
  do id = String(randomInt(100_000_000_000, 999_999_999_999));
  while (id === MOTO_DEFAULT_ACCOUNT_ID);
  return id;
}
