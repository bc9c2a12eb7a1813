/**
 * The agent checkpoint's cost per change (review R2-5): N tasks of 2 containers on an
 * instance, then a burst of N task-state changes (what a deploy, a drain or a dockerd
 * restart produces), as the task runners make them (`recordTaskState`). Reports the time the
 * changes held the event loop (their synchronous part) and until all were on disk. A
 * measurement, not a test: on a shared machine, compare runs made back to back.
 *
 *   npx tsx test/bench/checkpoint.bench.ts [N...]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Checkpoint } from '../../pkg/agent/checkpoint.ts';

const sizes = process.argv.slice(2).map(Number);
for (const n of sizes.length ? sizes : [100, 400, 1600]) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-ckpt-bench-'));
  const cp = new Checkpoint(dir);
  const arn = (k: number) => `arn:aws:ecs:us-east-1:000000000000:task/default/${k.toString(16).padStart(32, '0')}`;
  const state = (known: 'RUNNING' | 'STOPPED') => ({
    desiredStatus: 'RUNNING' as const,
    known,
    knownAt: Date.now(),
    containers: { app: { known, startedAt: Date.now(), restartCount: 0 }, side: { known, startedAt: Date.now(), restartCount: 0 } },
  });
  for (let k = 0; k < n; k++) {
    await cp.recordContainerName(arn(k), 'app', `ecs-app-${k}`);
    await cp.recordContainerName(arn(k), 'side', `ecs-side-${k}`);
  }
  await Promise.all(Array.from({ length: n }, (_, k) => cp.recordTaskState(arn(k), state('RUNNING'))));
  let blocked = 0;
  const t0 = performance.now();
  const writes: Promise<unknown>[] = [];
  for (let k = 0; k < n; k++) {
    const s = performance.now();
    writes.push(cp.recordTaskState(arn(k), state('STOPPED')));
    blocked += performance.now() - s;
  }
  await Promise.all(writes);
  const total = performance.now() - t0;
  console.log(`${n} tasks: ${n} changes held the event loop ${blocked.toFixed(0)} ms in all (${(blocked / n).toFixed(3)} ms each); all on disk after ${total.toFixed(0)} ms`);
  await rm(dir, { recursive: true, force: true });
}
