import { describe, expect, it, onTestFinished } from 'vitest';
import { Elbv2TargetGroupClients } from '../../../hub/aws/elbv2-target-group-clients.js';
import { startElbv2Simulator } from '../../../hub/aws/simulator/index.js';
import { CountingSimulator } from '../../support/counting-simulator.js';

const REGION = 'eu-west-1';
const MASTER = { accessKeyId: 'AKIDTEST', secretAccessKey: 'x' };
const ROLE_A = 'arn:aws:iam::111111111111:role/tgfed';
const ROLE_B = 'arn:aws:iam::222222222222:role/tgfed';
const ROLE_DENIED = 'arn:aws:iam::333333333333:role/tgfed';

async function setUp() {
  const simulator = new CountingSimulator({ requireKnownRoles: true });
  simulator.allowRole(ROLE_A, { externalId: 'ext-a' });
  simulator.allowRole(ROLE_B, { externalId: 'ext-b' });
  simulator.allowRole(ROLE_DENIED, { externalId: 'the-right-one' });
  const server = await startElbv2Simulator({ simulator });
  onTestFinished(() => server.close());
  const clients = new Elbv2TargetGroupClients({
    elbv2: { endpoint: server.url, credentials: MASTER },
    sts: { endpoint: server.url, maxAttempts: 1 },
  });
  onTestFinished(() => clients.close());
  return { simulator, clients };
}

describe('Elbv2TargetGroupClients.warmUp', () => {
  it('assumes each role once before any call, and the calls then assume none', async () => {
    const { simulator, clients } = await setUp();
    const arn = simulator.createTargetGroup({
      account: '111111111111',
      region: REGION,
      name: 'web',
      port: 8080,
    });
    const a = { roleArn: ROLE_A, externalId: 'ext-a', region: REGION };
    const b = { roleArn: ROLE_B, externalId: 'ext-b', region: REGION };

    const failed = await clients.warmUp([a, b, a, { roleArn: '', externalId: '', region: REGION }]);

    expect(failed).toEqual([]);
    expect(Object.fromEntries(simulator.assumed)).toEqual({ [ROLE_A]: 1, [ROLE_B]: 1 });
    expect(clients.clientCount).toBe(2);
    const api = clients.forGroup({ arn, accountId: '111111111111', ...a });
    await api.registerTargets([{ id: '10.0.0.1', port: 8080 }]);
    expect(await api.describeTargetHealth()).toHaveLength(1);
    expect(simulator.assumed.get(ROLE_A)).toBe(1);
  });

  it('reports the roles it cannot assume, without failing the others', async () => {
    const { simulator, clients } = await setUp();

    const failed = await clients.warmUp([
      { roleArn: ROLE_DENIED, externalId: 'a-wrong-one', region: REGION },
      { roleArn: ROLE_B, externalId: 'ext-b', region: REGION },
    ]);

    expect(failed.map(({ roleArn, region }) => ({ roleArn, region }))).toEqual([
      { roleArn: ROLE_DENIED, region: REGION },
    ]);
    expect(String(failed[0]?.error)).toMatch(/not authorized/i);
    expect(simulator.assumed.get(ROLE_B)).toBe(1);
  });
});
