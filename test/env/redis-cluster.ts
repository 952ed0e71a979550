import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';
import { startManagedProcess, type ManagedProcess } from './managed-process.js';
import { waitFor } from './wait-for.js';

/** Number of hash slots of every Redis Cluster. */
const SLOTS = 16_384;

/** One master of a {@link RedisCluster}. */
export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
  /** The Redis Cluster bus port (set explicitly, not port + 10000). */
  readonly busPort: number;
  /** The node's first and last hash slot. */
  readonly slots: readonly [number, number];
  readonly process: ManagedProcess;
}

/** A real Redis Cluster of masters only, each a redis-server on free loopback ports. */
export interface RedisCluster {
  readonly nodes: readonly RedisClusterNode[];
  /** `host:port` of every node, the form hub options take. */
  readonly addresses: readonly string[];
  /** Milliseconds from the first spawn to cluster_state:ok on every node. */
  readonly startupMs: number;
  stop(): Promise<void>;
}

/** Options for {@link startRedisCluster}. */
export interface RedisClusterOptions {
  /** @default 3 */
  masters?: number;
  /** @default 30000 */
  readyTimeoutMs?: number;
}

/** Splits 0..16383 into `count` contiguous ranges, as `redis-cli --cluster create` does. */
function slotRanges(count: number): [number, number][] {
  const ranges: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const first = Math.floor((i * SLOTS) / count);
    const last = Math.floor(((i + 1) * SLOTS) / count) - 1;
    ranges.push([first, last]);
  }
  return ranges;
}

/** `CLUSTER INFO` as a field map. */
function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}

/**
 * Starts `masters` redis-server processes in cluster mode, each in its own temporary folder, and
 * forms the cluster without redis-cli: each node takes a config epoch and a contiguous slot range
 * (CLUSTER SET-CONFIG-EPOCH, CLUSTER ADDSLOTSRANGE), every node meets the others (CLUSTER MEET
 * with the explicit bus port), and the call returns once every node reports cluster_state:ok with
 * every slot assigned and every node known. Started per test file, stopped by the test.
 */
export async function startRedisCluster(
  binary: string,
  options: RedisClusterOptions = {},
): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  if (!Number.isInteger(masters) || masters < 1) throw new Error(`masters must be >= 1`);
  const host = '127.0.0.1';
  const started = Date.now();
  const nodes: RedisClusterNode[] = [];
  const admins: Redis[] = [];
  const stop = async (): Promise<void> => {
    for (const admin of admins.splice(0)) admin.disconnect();
    await Promise.all(nodes.map((n) => n.process.stop()));
  };
  try {
    const ranges = slotRanges(masters);
    // Distinct ports for every client and bus listener of the cluster.
    const ports = new Set<number>();
    const take = async (): Promise<number> => {
      for (;;) {
        const port = await freePort();
        if (!ports.has(port)) {
          ports.add(port);
          return port;
        }
      }
    };
    const planned: { port: number; busPort: number; slots: [number, number] }[] = [];
    for (const slots of ranges) planned.push({ port: await take(), busPort: await take(), slots });

    const processes = await Promise.allSettled(
      planned.map(async ({ port, busPort, slots }, i) => {
        const dir = mkdtempSync(join(tmpdir(), `tgfed-redis-cluster-${i}-`));
        const process = await startManagedProcess({
          name: `redis-cluster-${i}`,
          command: binary,
          args: [
            '--port',
            String(port),
            '--bind',
            host,
            '--dir',
            dir,
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, 'nodes.conf'),
            '--cluster-port',
            String(busPort),
            '--cluster-node-timeout',
            '5000',
            '--save',
            '',
            '--appendonly',
            'no',
            // BullMQ requires this policy: evicting queue keys would lose jobs.
            '--maxmemory-policy',
            'noeviction',
          ],
          ready: async () => {
            const probe = new Redis({
              host,
              port,
              lazyConnect: true,
              maxRetriesPerRequest: 0,
              retryStrategy: () => null,
            });
            // A refused connection is the answer "not yet"; connect() rejects with it.
            probe.on('error', () => undefined);
            try {
              await probe.connect();
              return (await probe.ping()) === 'PONG';
            } finally {
              probe.disconnect();
            }
          },
        });
        nodes.push({ host, port, busPort, slots, process });
      }),
    );
    const failed = processes.find((p) => p.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    nodes.sort((a, b) => a.slots[0] - b.slots[0]);

    for (const node of nodes) {
      admins.push(new Redis({ host: node.host, port: node.port, maxRetriesPerRequest: 1 }));
    }
    // Distinct config epochs up front, as redis-cli does, so no epoch collision must be resolved.
    await Promise.all(
      admins.map(async (admin, i) => {
        const node = nodes[i];
        if (node === undefined) return;
        await admin.call('CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1));
        await admin.call('CLUSTER', 'ADDSLOTSRANGE', String(node.slots[0]), String(node.slots[1]));
      }),
    );
    // Every node meets every other one: no node waits for gossip to learn of a third.
    for (const [i, admin] of admins.entries()) {
      for (const node of nodes.slice(i + 1)) {
        await admin.call('CLUSTER', 'MEET', node.host, String(node.port), String(node.busPort));
      }
    }
    await waitFor(
      async () => {
        for (const admin of admins) {
          const info = parseInfo(String(await admin.call('CLUSTER', 'INFO')));
          if (
            info.get('cluster_state') !== 'ok' ||
            info.get('cluster_slots_assigned') !== String(SLOTS) ||
            info.get('cluster_known_nodes') !== String(masters)
          ) {
            return false;
          }
        }
        return true;
      },
      { what: `the ${masters}-master Redis Cluster to be ok`, timeoutMs: options.readyTimeoutMs },
    );
    for (const admin of admins.splice(0)) admin.disconnect();
    return {
      nodes,
      addresses: nodes.map((n) => `${n.host}:${n.port}`),
      startupMs: Date.now() - started,
      stop,
    };
  } catch (err) {
    const tails = nodes.map((n) => `${n.process.name}:\n${n.process.logTail(15)}`).join('\n');
    await stop();
    throw new Error(`Redis Cluster did not form${tails === '' ? '' : `; last output:\n${tails}`}`, {
      cause: err,
    });
  }
}
