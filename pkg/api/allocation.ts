import { z } from 'zod';
import { effectiveTaskDefinition, type ContainerDefinition, type DaemonTaskDefinitionSpec, type TaskDefinitionSpec } from './taskdefinition.ts';
import { EcsResource, type HostPortAssignment, type TaskOverride } from './resources.ts';

/**
 * Resource arithmetic shared by the scheduler (planning) and the apiserver's binding call
 * (the one place allocations are committed): what a task needs, what an instance has, and
 * the allocation record that keeps `remainingResources` exact.
 */

export interface PortNeed {
  containerName: string;
  containerPort: number;
  protocol: 'tcp' | 'udp';
  /** fixed host port; absent = dynamic (chosen at binding from the instance's range) */
  hostPort?: number;
}

export interface TaskDemand {
  cpu: number;
  memory: number;
  /** host ports the task needs on the instance (bridge and host network modes only) */
  ports: PortNeed[];
}

/** Memory a container reserves on the instance: its soft limit when set, else its hard limit (ECS). */
export const containerMemory = (c: Pick<ContainerDefinition, 'memory' | 'memoryReservation'>) => c.memoryReservation ?? c.memory ?? 0;

export function demandOf(
  stored: TaskDefinitionSpec | DaemonTaskDefinitionSpec,
  overrides?: TaskOverride,
  opts: { daemon?: boolean } = {},
): TaskDemand {
  const spec = effectiveTaskDefinition(stored, !!opts.daemon);
  const ov = new Map((overrides?.containerOverrides ?? []).map((o) => [o.name, o]));
  const containers = (spec.containerDefinitions as ContainerDefinition[]).map((c) => {
    const o = ov.get(c.name);
    return { ...c, cpu: o?.cpu ?? c.cpu, memory: o?.memory ?? c.memory, memoryReservation: o?.memoryReservation ?? c.memoryReservation };
  });
  const taskCpu = overrides?.cpu ?? spec.cpu;
  const taskMem = overrides?.memory ?? spec.memory;
  const cpu = taskCpu !== undefined ? Number(taskCpu) : containers.reduce((s, c) => s + (c.cpu ?? 0), 0);
  const memory = taskMem !== undefined ? Number(taskMem) : containers.reduce((s, c) => s + containerMemory(c), 0);
  const mode = opts.daemon ? 'daemon_bridge' : ((spec as TaskDefinitionSpec).networkMode ?? 'bridge');
  const ports: PortNeed[] = [];
  if (mode === 'bridge' || mode === 'host') {
    for (const c of containers) {
      for (const p of c.portMappings ?? []) {
        const fixed = mode === 'host' ? p.containerPort : p.hostPort || undefined;
        ports.push({ containerName: c.name, containerPort: p.containerPort, protocol: p.protocol ?? 'tcp', ...(fixed ? { hostPort: fixed } : {}) });
      }
    }
  }
  return { cpu, memory, ports };
}

/** What an instance registered: ECS Resource list -> numbers and port sets. */
export interface Capacity {
  cpu: number;
  memory: number;
  reservedTcp: number[];
  reservedUdp: number[];
}

export function capacityOf(registered: EcsResource[] | undefined): Capacity {
  const get = (n: string) => registered?.find((r) => r.name === n);
  return {
    cpu: get('CPU')?.integerValue ?? 0,
    memory: get('MEMORY')?.integerValue ?? 0,
    reservedTcp: (get('PORTS')?.stringSetValue ?? []).map(Number),
    reservedUdp: (get('PORTS_UDP')?.stringSetValue ?? []).map(Number),
  };
}

export const TaskAllocation = z.strictObject({
  cpu: z.number(),
  memory: z.number(),
  tcp: z.array(z.number().int()),
  udp: z.array(z.number().int()),
});
export type TaskAllocation = z.infer<typeof TaskAllocation>;

/**
 * What a binding must know of its instance at commit: the instance's placement state and
 * what it offers. Every write that changes one of these fields of the ContainerInstance
 * copies them into the allocation record in the same txn, so a binding, which compares the
 * record, never commits on an instance that was drained, disconnected or re-registered
 * smaller meanwhile -- and a heartbeat, which changes none of them, never conflicts with it.
 */
export const InstanceGate = z.strictObject({
  /** ACTIVE, DRAINING or INACTIVE, as the scheduler reads it */
  status: z.string(),
  agentConnected: z.boolean(),
  registeredResources: z.array(EcsResource),
  dynamicHostPortRange: z.tuple([z.number().int(), z.number().int()]).optional(),
});
export type InstanceGate = z.infer<typeof InstanceGate>;

/** The allocation record of one instance: `/berth/allocations/<cluster>/<instance>`. */
export const Allocation = z.strictObject({
  cpu: z.number(),
  memory: z.number(),
  tasks: z.record(z.string(), TaskAllocation),
  /** the instance's gate (absent in records written before it existed) */
  instance: InstanceGate.optional(),
});
export type Allocation = z.infer<typeof Allocation>;

/** The instance fields a binding depends on. */
export function gateOf(ci: {
  spec: { status?: string; registeredResources?: EcsResource[]; dynamicHostPortRange?: [number, number] };
  status?: { status?: string; agentConnected?: boolean };
}): InstanceGate {
  const status = ci.spec.status === 'ACTIVE' || ci.spec.status === undefined ? (ci.status?.status === 'INACTIVE' ? 'INACTIVE' : 'ACTIVE') : ci.spec.status;
  return {
    status,
    agentConnected: ci.status?.agentConnected ?? false,
    registeredResources: ci.spec.registeredResources ?? [],
    ...(ci.spec.dynamicHostPortRange ? { dynamicHostPortRange: ci.spec.dynamicHostPortRange } : {}),
  };
}

export const emptyAllocation = (): Allocation => ({ cpu: 0, memory: 0, tasks: {} });

export function usedPorts(a: Allocation, cap: Capacity): { tcp: Set<number>; udp: Set<number> } {
  const tcp = new Set(cap.reservedTcp);
  const udp = new Set(cap.reservedUdp);
  for (const t of Object.values(a.tasks)) {
    t.tcp.forEach((p) => tcp.add(p));
    t.udp.forEach((p) => udp.add(p));
  }
  return { tcp, udp };
}

export type FitFailure = 'RESOURCE:CPU' | 'RESOURCE:MEMORY' | 'RESOURCE:PORTS';

/**
 * Does a task with these host ports fit on the instance now? Undefined when it fits, or
 * the ECS reason it does not, with a sentence.
 */
export function fitFailure(
  cap: Capacity,
  a: Allocation,
  demand: TaskDemand,
  hostPorts: HostPortAssignment[],
): { reason: FitFailure; detail: string } | undefined {
  if (a.cpu + demand.cpu > cap.cpu) return { reason: 'RESOURCE:CPU', detail: `needs ${demand.cpu} CPU units, ${cap.cpu - a.cpu} remain` };
  if (a.memory + demand.memory > cap.memory) return { reason: 'RESOURCE:MEMORY', detail: `needs ${demand.memory} MiB, ${cap.memory - a.memory} remain` };
  if (hostPorts.length === 0) return undefined; // the common case: no host port to check
  const used = usedPorts(a, cap);
  const mine = { tcp: new Set<number>(), udp: new Set<number>() };
  for (const hp of hostPorts) {
    const set = hp.protocol === 'udp' ? used.udp : used.tcp;
    const own = hp.protocol === 'udp' ? mine.udp : mine.tcp;
    if (set.has(hp.hostPort) || own.has(hp.hostPort)) return { reason: 'RESOURCE:PORTS', detail: `host port ${hp.protocol}/${hp.hostPort} is in use` };
    own.add(hp.hostPort);
  }
  return undefined;
}

/** The host ports match the demand: every need has exactly one assignment, fixed ones as fixed. */
export function hostPortsMismatch(demand: TaskDemand, hostPorts: HostPortAssignment[]): string | undefined {
  if (hostPorts.length !== demand.ports.length) return `the task needs ${demand.ports.length} host ports, ${hostPorts.length} were given`;
  const left = [...hostPorts];
  for (const need of demand.ports) {
    const i = left.findIndex(
      (h) => h.containerName === need.containerName && h.containerPort === need.containerPort && h.protocol === need.protocol && (need.hostPort === undefined || h.hostPort === need.hostPort),
    );
    if (i < 0) return `no host port given for ${need.containerName} ${need.protocol}/${need.containerPort}${need.hostPort ? ` (fixed at ${need.hostPort})` : ''}`;
    if (left[i].hostPort < 1 || left[i].hostPort > 65535) return `host port ${left[i].hostPort} is out of range`;
    left.splice(i, 1);
  }
  return undefined;
}

export function allocate(a: Allocation, taskId: string, demand: TaskDemand, hostPorts: HostPortAssignment[]): Allocation {
  const t: TaskAllocation = {
    cpu: demand.cpu,
    memory: demand.memory,
    tcp: hostPorts.filter((h) => h.protocol === 'tcp').map((h) => h.hostPort),
    udp: hostPorts.filter((h) => h.protocol === 'udp').map((h) => h.hostPort),
  };
  return { cpu: a.cpu + t.cpu, memory: a.memory + t.memory, tasks: { ...a.tasks, [taskId]: t } };
}

export function release(a: Allocation, taskId: string): Allocation {
  const t = a.tasks[taskId];
  if (!t) return a;
  const tasks = { ...a.tasks };
  delete tasks[taskId];
  return { cpu: a.cpu - t.cpu, memory: a.memory - t.memory, tasks };
}

/** remainingResources in ECS's shape. */
export function remainingResources(cap: Capacity, a: Allocation): EcsResource[] {
  const used = usedPorts(a, cap);
  const sorted = (s: Set<number>) => [...s].sort((x, y) => x - y).map(String);
  return [
    { name: 'CPU', type: 'INTEGER', integerValue: cap.cpu - a.cpu },
    { name: 'MEMORY', type: 'INTEGER', integerValue: cap.memory - a.memory },
    { name: 'PORTS', type: 'STRINGSET', stringSetValue: sorted(used.tcp) },
    { name: 'PORTS_UDP', type: 'STRINGSET', stringSetValue: sorted(used.udp) },
  ];
}

/** Host ports in use on an instance, by protocol (anything that answers `has`). */
export interface PortsInUse {
  tcp: { has(port: number): boolean };
  udp: { has(port: number): boolean };
}

/** Dynamic host ports for a task's needs, from the range, avoiding what is in use. */
export function choosePorts(demand: TaskDemand, used: PortsInUse, range: [number, number]): HostPortAssignment[] | string {
  const out: HostPortAssignment[] = [];
  // what this task takes itself, on top of what is in use (the in-use sets are not copied)
  const mine = { tcp: new Set<number>(), udp: new Set<number>() };
  for (const need of demand.ports) {
    const inUse = used[need.protocol];
    const own = mine[need.protocol];
    const set = { has: (p: number) => inUse.has(p) || own.has(p) };
    if (need.hostPort !== undefined) {
      if (set.has(need.hostPort)) return `host port ${need.protocol}/${need.hostPort} is in use`;
      own.add(need.hostPort);
      out.push({ containerName: need.containerName, containerPort: need.containerPort, protocol: need.protocol, hostPort: need.hostPort });
      continue;
    }
    let p = range[0];
    while (p <= range[1] && set.has(p)) p++;
    if (p > range[1]) return `no free ${need.protocol} port in the dynamic range ${range[0]}-${range[1]}`;
    own.add(p);
    out.push({ containerName: need.containerName, containerPort: need.containerPort, protocol: need.protocol, hostPort: p });
  }
  return out;
}
