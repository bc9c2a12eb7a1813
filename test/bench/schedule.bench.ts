/**
 * Placement time of one batch (pure `schedule`, no I/O): 5,000 pending tasks of 50 services
 * on 2,000 instances in 3 availability zones, per placement strategy chain, with the batch's
 * tasks grouped by service (as the placement controller's batches mostly are: a service
 * creates its tasks together) and interleaved (round robin over the services). The median of 5
 * runs after one warm-up. A measurement, not a test: on a shared machine, compare runs made
 * back to back.
 *
 *   npx tsx test/bench/schedule.bench.ts [instances] [tasks]
 */
import { emptyAllocation } from '../../pkg/api/allocation.ts';
import type { PlacementStrategy } from '../../pkg/api/taskdefinition.ts';
import { schedule, type InstanceView, type TaskRequest } from '../../pkg/scheduler/scheduler.ts';

const N = Number(process.argv[2] ?? 2000);
const T = Number(process.argv[3] ?? 5000);
let seed = 7;
const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;

const instances = (): InstanceView[] =>
  Array.from({ length: N }, (_, k) => ({
    name: `i${k}`,
    status: 'ACTIVE',
    agentConnected: true,
    attributes: { 'ecs.availability-zone': ['a', 'b', 'c'][k % 3] },
    capacity: { cpu: 8192, memory: 32768, reservedTcp: [], reservedUdp: [] },
    allocation: { ...emptyAllocation(), cpu: Math.floor(rnd() * 16) * 256, memory: Math.floor(rnd() * 16) * 1024 },
    taskGroups: new Map(),
    runningTasksCount: 0,
  }));

const chains: Record<string, PlacementStrategy[]> = {
  'spread(instanceId)': [{ type: 'spread', field: 'instanceId' }],
  'spread(az), spread(instanceId)': [{ type: 'spread', field: 'attribute:ecs.availability-zone' }, { type: 'spread', field: 'instanceId' }],
  'spread(az), binpack(memory)': [{ type: 'spread', field: 'attribute:ecs.availability-zone' }, { type: 'binpack', field: 'memory' }],
  'spread(instanceId), binpack(memory)': [{ type: 'spread', field: 'instanceId' }, { type: 'binpack', field: 'memory' }],
  'binpack(memory)': [{ type: 'binpack', field: 'memory' }],
};

for (const [label, strategies] of Object.entries(chains)) for (const order of ['grouped', 'interleaved'] as const) {
  const service = (k: number) => (order === 'grouped' ? Math.floor((k * 50) / T) : k % 50);
  const tasks: TaskRequest[] = Array.from({ length: T }, (_, k) => ({ name: `t${k}`, group: `service:s${service(k)}`, demand: { cpu: 64, memory: 256, ports: [] }, strategies }));
  const times: number[] = [];
  let placed = 0;
  for (let run = 0; run < 6; run++) {
    const pool = instances();
    const t0 = performance.now();
    const r = schedule(pool, tasks, rnd);
    const ms = performance.now() - t0;
    if (run > 0) times.push(ms);
    placed = r.placements.length;
  }
  times.sort((a, b) => a - b);
  console.log(`${label.padEnd(36)} ${order.padEnd(11)} ${N} instances x ${T} tasks: median ${times[Math.floor(times.length / 2)].toFixed(0)} ms (min ${times[0].toFixed(0)}, max ${times[times.length - 1].toFixed(0)}), ${placed} placed`);
}
