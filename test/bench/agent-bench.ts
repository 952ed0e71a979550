// Agent benchmark (issue #3): RSS and CPU of the agent process for a 10,000-endpoint cluster
// under steady churn, and bytes on the wire per endpoint change, next to DESIGN.md's targets.
//
//   npm run bench:agent [-- --endpoints 10000 --services 20 --churn 200 --seconds 30]
//
// Real components: a private etcd + kube-apiserver, the bundled agent (dist/bundle/tgfed-agent.mjs)
// in its own process, and a gRPC test hub in this process that counts the bytes it receives.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type V1EndpointSlice,
} from '@kubernetes/client-node';
import { startKubeApiserver } from '../env/kube-apiserver.js';
import { loadTestenvManifest } from '../env/testenv-manifest.js';
import { waitFor } from '../env/wait-for.js';
import { manyEndpointSlices } from '../support/endpoint-slices.js';
import { TestHub } from '../support/test-hub.js';

const { values: args } = parseArgs({
  options: {
    endpoints: { type: 'string', default: '10000' },
    services: { type: 'string', default: '20' },
    churn: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '30' },
    // V8 flags of the agent process: the recommended production flags (README, "Running the
    // agent"). Without them V8 sizes its heap for throughput and the agent idles at ~300 MB.
    'node-options': { type: 'string', default: '--max-semi-space-size=2 --max-old-space-size=128' },
  },
});
const endpoints = Number(args.endpoints);
const services = Number(args.services);
const churnPerSecond = Number(args.churn);
const seconds = Number(args.seconds);
const root = new URL('../../', import.meta.url).pathname;
const namespace = 'bench';
const clusterId = 'bench';

function procStatus(pid: number): { rssMb: number; hwmMb: number; cpuMs: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime, in clock ticks (100/s)
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, cpuMs: ticks * 10 };
}

console.log(`building dist/ ...`);
const build = spawnSync(`${root}node_modules/.bin/tsc`, ['-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: 'inherit',
});
if (build.status !== 0) process.exit(1);

const kube = await startKubeApiserver(loadTestenvManifest());
const hub = await TestHub.start({ heartbeatIntervalMs: 5_000 });
const kc = new KubeConfig();
kc.loadFromFile(kube.kubeconfigPath);
const discovery = kc.makeApiClient(DiscoveryV1Api);
await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });

const perService = Math.ceil(endpoints / services);
const slices: V1EndpointSlice[] = [];
for (let s = 0; s < services; s++) {
  slices.push(...manyEndpointSlices(namespace, `svc-${s}`, perService, 100, 1 + s));
}
console.log(`creating ${slices.length} EndpointSlices with ${perService * services} endpoints ...`);
for (let i = 0; i < slices.length; i += 20) {
  await Promise.all(
    slices.slice(i, i + 20).map(async (body, j) => {
      slices[i + j] = await discovery.createNamespacedEndpointSlice({ namespace, body });
    }),
  );
}

const agent = spawn(
  process.execPath,
  [
    // The bundled agent, as it is deployed (scripts/bundle.mjs).
    'dist/bundle/tgfed-agent.mjs',
    `--cluster-id=${clusterId}`,
    `--hub-address=${hub.address}`,
    '--insecure',
    `--kubeconfig=${kube.kubeconfigPath}`,
    `--namespaces=${namespace}`,
    '--health-address=127.0.0.1:0',
    '--log-level=warn',
  ],
  {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, NODE_OPTIONS: args['node-options'] },
  },
);
const pid = agent.pid!;
// Never leave the agent behind, whatever happens to this process.
process.on('exit', () => agent.kill('SIGKILL'));
const heldEndpoints = () =>
  [...hub.cluster(clusterId).values()].reduce((n, s) => n + s.endpoints.size, 0);
const startedAt = Date.now();
await waitFor(() => heldEndpoints() === perService * services, {
  what: 'the initial sync',
  timeoutMs: 120_000,
});
const initialSyncMs = Date.now() - startedAt;
const afterSync = procStatus(pid);

// Steady churn: every 100 ms flip the readiness of one endpoint in each of k random slices.
console.log(`churning ${churnPerSecond} endpoint changes/s for ${seconds} s ...`);
const bytesBefore = hub.stats.deltaBytes;
const changesBefore = hub.stats.deltaEndpointChanges;
let apiChanges = 0;
let peakRssMb = afterSync.rssMb;
const cpuBefore = procStatus(pid).cpuMs;
const churnStart = Date.now();
const perTick = Math.max(1, Math.round(churnPerSecond / 10));
while (Date.now() - churnStart < seconds * 1_000) {
  const tickStart = Date.now();
  // Distinct slices per tick: concurrent writes to one slice would conflict (409).
  const picked = new Set<number>();
  while (picked.size < Math.min(perTick, slices.length))
    picked.add(Math.floor(Math.random() * slices.length));
  await Promise.all(
    [...picked].map(async (index) => {
      const slice = slices[index]!;
      const e = slice.endpoints![Math.floor(Math.random() * slice.endpoints!.length)]!;
      const ready = !(e.conditions?.ready ?? true);
      e.conditions = { ready, serving: ready, terminating: false };
      slices[index] = await discovery.replaceNamespacedEndpointSlice({
        namespace,
        name: slice.metadata!.name!,
        body: slice,
      });
      apiChanges++;
    }),
  );
  peakRssMb = Math.max(peakRssMb, procStatus(pid).rssMb);
  await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - tickStart))));
}
const churnMs = Date.now() - churnStart;
const cpuAfter = procStatus(pid).cpuMs;

// Correctness: the hub ends with exactly the API's state.
const expected = new Map<string, boolean>();
for (const s of slices)
  for (const e of s.endpoints ?? []) expected.set(e.addresses[0]!, e.conditions?.ready ?? true);
await waitFor(
  () => {
    for (const held of hub.cluster(clusterId).values()) {
      for (const [address, record] of held.endpoints)
        if (expected.get(address) !== record.ready) return false;
    }
    return heldEndpoints() === expected.size;
  },
  { what: 'the hub to converge', timeoutMs: 60_000 },
);
const final = procStatus(pid);
const wireBytes = hub.stats.deltaBytes - bytesBefore;
const wireChanges = hub.stats.deltaEndpointChanges - changesBefore;

agent.kill('SIGTERM');
await new Promise((r) => agent.once('exit', r));
hub.stop();
await kube.stop();

const rows: [string, string, string, string][] = [];
const row = (measure: string, figure: number, unit: string, target: number | undefined) => {
  const ratio = target === undefined ? '' : (figure / target).toFixed(2);
  const verdict = target === undefined ? '' : figure <= target ? 'pass' : 'FAIL';
  rows.push([
    measure,
    `${figure.toFixed(1)} ${unit}`,
    target === undefined ? '-' : `<= ${target} ${unit}`,
    `${ratio} ${verdict}`,
  ]);
};
row(
  `agent RSS, peak during churn (${perService * services} endpoints)`,
  Math.max(peakRssMb, final.rssMb),
  'MB',
  150,
);
row('agent RSS high-water mark (VmHWM)', final.hwmMb, 'MB', 150);
row('agent CPU during churn', ((cpuAfter - cpuBefore) / churnMs) * 100, '% of a core', undefined);
row('bytes on the wire per endpoint change sent', wireBytes / Math.max(1, wireChanges), 'B', 64);
row(
  'bytes on the wire per endpoint change made in the API',
  wireBytes / Math.max(1, apiChanges),
  'B',
  64,
);
row('initial sync (list + resync) time', initialSyncMs, 'ms', undefined);
const width = rows.reduce((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), [] as number[]);
console.log(
  `\nagent benchmark: ${apiChanges} API changes in ${(churnMs / 1000).toFixed(1)} s, ${wireChanges} endpoint changes on the wire`,
);
for (const r of [['measure', 'figure', 'target', 'ratio'], ...rows]) {
  console.log(r.map((c, i) => c.padEnd(width[i] ?? 0)).join('  '));
}
