import type { EndpointPort, EndpointSubset } from '../../api/endpoints.ts';
import type { ContainerInstance, Task } from '../../api/kinds.ts';
import type { TaskDefinitionSpec } from '../../api/taskdefinition.ts';

/**
 * Does this task serve traffic? RUNNING, meant to keep running, and, when its task
 * definition has container health checks (on essential containers, as the service
 * scheduler counts them), reported HEALTHY. The one rule every consumer of a task's
 * endpoints uses (service discovery DNS; load balancer registration builds on it).
 */
export function taskServes(t: Pick<Task, 'spec' | 'status'>, td: Pick<TaskDefinitionSpec, 'containerDefinitions'> | undefined): boolean {
  if (t.spec.desiredStatus !== 'RUNNING' || t.status?.lastStatus !== 'RUNNING') return false;
  const checked = !!td?.containerDefinitions.some((cd) => cd.essential !== false && cd.healthCheck && cd.healthCheck.command[0] !== 'NONE');
  return !checked || t.status?.healthStatus === 'HEALTHY';
}

/** The task's own address (awsvpc): what its agent reports in the ENI attachment. */
export function taskAddress(t: Pick<Task, 'status'>): string | undefined {
  for (const a of t.status?.attachments ?? []) {
    const ip = a.details?.find((d) => d.name === 'privateIPv4Address')?.value;
    if (ip) return ip;
  }
  return t.status?.containers?.flatMap((c) => c.networkInterfaces ?? []).find((n) => n.privateIpv4Address)?.privateIpv4Address;
}

/**
 * Where clients reach a task: the instance's registered address and the host ports in
 * bridge and host mode; the task's own address and the container ports in awsvpc. Undefined
 * when that address is not known (yet), or the mode has no address (none, daemon_bridge).
 */
export function taskEndpoint(
  t: Pick<Task, 'metadata' | 'spec' | 'status'>,
  td: Pick<TaskDefinitionSpec, 'containerDefinitions' | 'networkMode'>,
  instance: Pick<ContainerInstance, 'status'> | undefined,
): EndpointSubset | undefined {
  const mode = td.networkMode ?? 'bridge';
  const mappings = td.containerDefinitions.flatMap((cd) => (cd.portMappings ?? []).map((pm) => ({ containerName: cd.name, containerPort: pm.containerPort, protocol: (pm.protocol ?? 'tcp') as 'tcp' | 'udp', hostPort: pm.hostPort })));
  let address: string | undefined;
  let ports: EndpointPort[];
  if (mode === 'awsvpc') {
    address = taskAddress(t);
    ports = mappings.map((m) => ({ containerName: m.containerName, containerPort: m.containerPort, port: m.containerPort, protocol: m.protocol }));
  } else if (mode === 'bridge' || mode === 'host') {
    address = instance?.status?.registeredAddress;
    const assigned = t.spec.hostPorts ?? [];
    const bound = (t.status?.containers ?? []).flatMap((c) => (c.networkBindings ?? []).map((b) => ({ containerName: c.name, ...b })));
    ports = [];
    for (const m of mappings) {
      const same = (x: { containerName: string; containerPort: number; protocol?: string }) => x.containerName === m.containerName && x.containerPort === m.containerPort && (x.protocol ?? 'tcp') === m.protocol;
      const port = mode === 'host' ? m.containerPort : (assigned.find(same)?.hostPort ?? bound.find(same)?.hostPort ?? m.hostPort);
      if (port) ports.push({ containerName: m.containerName, containerPort: m.containerPort, port, protocol: m.protocol });
    }
  } else return undefined;
  if (!address) return undefined;
  return {
    task: t.metadata.name,
    ...(t.status?.taskArn ? { taskArn: t.status.taskArn } : {}),
    ...(t.spec.containerInstance ? { containerInstance: t.spec.containerInstance } : {}),
    address,
    ports,
  };
}

/** A service's endpoints: one subset per task that serves and has an address, ordered by task name. */
export function planEndpoints(
  tasks: Array<Pick<Task, 'metadata' | 'spec' | 'status'>>,
  tdOf: (t: Pick<Task, 'spec'>) => TaskDefinitionSpec | undefined,
  instanceOf: (name: string) => Pick<ContainerInstance, 'status'> | undefined,
): EndpointSubset[] {
  const out: EndpointSubset[] = [];
  for (const t of tasks) {
    const td = tdOf(t);
    if (!td || !taskServes(t, td)) continue;
    const e = taskEndpoint(t, td, t.spec.containerInstance ? instanceOf(t.spec.containerInstance) : undefined);
    if (e) out.push(e);
  }
  return out.sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : 0));
}
