import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { waitFor } from '../../env/wait-for.js';
import { AwsRequestGate } from '../../support/aws-request-gate.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { startTgfedProcess, type TgfedProcess } from '../../support/tgfed-process.js';

// Workers as real processes (hub/worker-main.ts), each reaching the ELBv2 simulator through its
// own gate; one is killed with SIGKILL while it is inside RegisterTargets.

const clusters = [{ id: 'east', block: 1 }];

let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;
const gates: AwsRequestGate[] = [];
const workers: TgfedProcess[] = [];

function expected(hosts: readonly number[]): string[] {
  return hosts.map((h) => `${webIp(1, h)}:8080`).sort();
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

async function startWorker(name: string, gate: AwsRequestGate): Promise<TgfedProcess> {
  const url = await gate.listen();
  const worker = await startTgfedProcess({
    kind: 'worker',
    name,
    dir: fed.dir,
    settings: {
      redisUrl: inject('redisUrl'),
      redisKeyPrefix: fed.keyPrefix,
      clustersFile: join(fed.dir, 'clusters.yaml'),
      reconcileShardCount: 4,
      reconcileDebounceMs: 200,
      reconcileChunkSize: 2,
      lockDurationMs: 2_000,
      followUpMs: 1_000,
      driftIntervalMs: 600_000,
      shutdownGraceMs: 1_000,
    },
    env: {
      AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: url,
      AWS_ENDPOINT_URL_STS: url,
      AWS_ACCESS_KEY_ID: `AKIDWORKER${name.toUpperCase().replace(/[^A-Z0-9]/g, '')}`,
      AWS_SECRET_ACCESS_KEY: 'secret',
      AWS_REGION: REGION,
    },
  });
  workers.push(worker);
  return worker;
}

beforeAll(async () => {
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  fed = new TestFederation({ name: 'rel-wkill', redisUrl: inject('redisUrl'), clusters });
  await fed.start();
});

afterAll(async () => {
  for (const w of workers) await w.process.stop(2_000).catch(() => undefined);
  for (const g of gates) await g.close().catch(() => undefined);
  await fed?.close();
  await simServer?.close();
});

describe('A worker process killed with SIGKILL inside RegisterTargets', () => {
  it('is finished by the other worker: every target registered exactly once, no change lost, nothing deregistered', async () => {
    const arn = sim.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: 'rel-wkill',
      port: 8080,
    });
    const a = new AwsRequestGate(simServer.url);
    const b = new AwsRequestGate(simServer.url);
    gates.push(a, b);
    // Both hold: whichever worker takes the group first is the one that dies in the call.
    a.holdRegistrations = true;
    b.holdRegistrations = true;
    const [workerA, workerB] = await Promise.all([
      startWorker('rel-wkill-a', a),
      startWorker('rel-wkill-b', b),
    ]);

    await fed.applyBinding(
      binding({
        name: 'wkill',
        clusters: { names: ['east'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    fed.setEndpoints('east', range(1, 5));
    await waitFor(() => a.held + b.held > 0, {
      what: 'a worker to be inside RegisterTargets',
      timeoutMs: 20_000,
    });
    const [doomed, survivorGate] = a.held > 0 ? [workerA, b] : [workerB, a];
    // Never two reconciles of one group at once: the other worker is not in the call too.
    expect(a.held > 0 && b.held > 0).toBe(false);

    await doomed.process.kill();
    // A change while the group's job is orphaned must not be lost either.
    fed.setEndpoints('east', range(1, 6));
    survivorGate.holdRegistrations = false;

    await waitFor(
      () => JSON.stringify(sim.registered(arn)) === JSON.stringify(expected(range(1, 6))),
      {
        what: 'the survivor to register every target',
        timeoutMs: 30_000,
      },
    );
    const counts = Object.fromEntries(sim.registrations.get(arn) ?? []);
    expect(counts).toEqual(Object.fromEntries(expected(range(1, 6)).map((t) => [t, 1])));
    expect(sim.deregistrations.get(arn)).toBeUndefined();
    const status = await waitFor(
      async () => {
        const s = await fed.status(arn);
        return s?.inSync === true ? s : undefined;
      },
      { what: 'the group status to report in sync', timeoutMs: 10_000 },
    );
    expect(status).toMatchObject({ desiredTargets: 6, actualTargets: 6, ownedTargets: 6 });
    // The survivor never had a request held: only the dead worker was ever inside the call.
    expect(survivorGate.held).toBe(0);
  });
});
