// `node --expose-gc --import tsx test/bench/cachemem.probe.ts [--tasks N]`: what the apiserver's
// watch cache holds per task. N realistic tasks (~1.5 KB of JSON each: a bound, RUNNING task of
// a service with two containers) are written to an embedded store in a temp dir; a WatchCache
// syncs them (the heap measured after a full GC), then every task is updated once while the
// cache watches (its history now holds one past version per task, as during a rollout).
// Prints bytes per task for each phase. A probe, not a test: it asserts nothing.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { WatchCache } from '../../pkg/apiserver/watchcache.ts';
import { CACHE_INDEXES } from '../../pkg/apiserver/admission.ts';
import { silentLogger } from '../../pkg/log/log.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('tasks', 20_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const heap = () => {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
};

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
export function realisticTask(i: number, version = 1): object {
  const id = (i * 2654435761 >>> 0).toString(16).padStart(8, '0') + 'c0ffee' + String(i).padStart(10, '0');
  const inst = `i-${String(i % 2000).padStart(4, '0')}`;
  const taskArn = `arn:aws:ecs:${REGION}:${ACCOUNT}:task/prod/${id}`;
  const container = (name: string, image: string, port: number) => ({
    name,
    containerArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:container/prod/${id}/${name}`,
    dockerId: (id + id + id + id).slice(0, 64),
    dockerName: `ecs-web-${version}-${name}-${id.slice(0, 12)}`,
    image,
    imageDigest: 'sha256:4b5f1e0d8c7a3b2e9f6d5c4b3a2918f7e6d5c4b3a29180f7e6d5c4b3a2918f7e',
    lastStatus: 'RUNNING',
    networkBindings: [{ bindIP: '0.0.0.0', containerPort: port, hostPort: 30000 + (i % 20000), protocol: 'tcp' }],
    healthStatus: 'HEALTHY',
    cpu: '128',
    memory: '256',
  });
  return {
    apiVersion: 'berth.dev/v1',
    kind: 'Task',
    metadata: {
      name: id,
      namespace: 'prod',
      uid: `6f1c2d3e-4b5a-4c6d-8e7f-${String(i).padStart(12, '0')}`,
      generation: 2,
      creationTimestamp: '2026-12-02T17:01:02.345Z',
      labels: { 'berth.dev/service': 'web', 'berth.dev/deployment': 'ecs-svc-5d1c9a' },
      finalizers: ['berth.dev/allocation'],
    },
    spec: {
      taskDefinition: `web:${version}`,
      group: 'service:web',
      startedBy: 'ecs-svc/5d1c9a2b3c4d5e6f',
      containerInstance: inst,
      desiredStatus: 'RUNNING',
      hostPorts: [{ containerName: 'app', containerPort: 8080, hostPort: 30000 + (i % 20000), protocol: 'tcp' }],
      launchType: 'EC2',
      deploymentId: 'ecs-svc-5d1c9a',
    },
    status: {
      taskArn,
      lastStatus: 'RUNNING',
      containers: [container('app', 'registry.example.com/web/app:1.4.2', 8080), container('sidecar', 'registry.example.com/web/envoy:1.29', 9901)],
      healthStatus: 'HEALTHY',
      connectivity: 'CONNECTED',
      connectivityAt: '2026-12-02T17:01:03.001Z',
      pullStartedAt: '2026-12-02T17:01:03.101Z',
      pullStoppedAt: '2026-12-02T17:01:04.202Z',
      startedAt: '2026-12-02T17:01:05.303Z',
      version,
    },
  };
}

const dir = await mkdtemp(join(tmpdir(), 'berth-cachemem-'));
const store = await EmbeddedStore.open(join(dir, 'data'));
try {
  const key = (i: number) => `/berth/tasks/prod/${(realisticTask(i) as { metadata: { name: string } }).metadata.name}`;
  let bytes = 0;
  for (let b = 0; b < N; b += 500) {
    const ops = [];
    for (let i = b; i < Math.min(N, b + 500); i++) {
      const value = JSON.stringify(realisticTask(i));
      bytes += value.length;
      ops.push({ type: 'put' as const, key: key(i), value });
    }
    await store.txn([], ops);
  }
  const base = heap();
  const cache = new WatchCache(store, silentLogger(), CACHE_INDEXES);
  await cache.start();
  const synced = heap();
  for (let b = 0; b < N; b += 500) {
    const ops = [];
    for (let i = b; i < Math.min(N, b + 500); i++) ops.push({ type: 'put' as const, key: key(i), value: JSON.stringify(realisticTask(i, 2)) });
    const r = await store.txn([], ops);
    await cache.waitFor(r.revision);
  }
  const updated = heap();
  const out = {
    tasks: N,
    json_bytes_per_task: Math.round(bytes / N),
    cache_bytes_per_task_synced: Math.round((synced - base) / N),
    cache_bytes_per_task_with_one_past_version: Math.round((updated - base) / N),
    history_events: cache.historySize,
  };
  console.log(JSON.stringify(out, null, 2));
  cache.stop();
} finally {
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
