/**
 * Which targets a load balancer or target group holds, as one pure function: from the
 * targets it holds now and the endpoints the services' tasks want registered, the new list
 * and what changed per service (for ECS's service events). No I/O, no clock but `now`.
 *
 * - A task's endpoint is registered once the task is RUNNING (`initial`, reason
 *   Elb.RegistrationInProgress); berth-lb's health checks then move it to `healthy` or
 *   `unhealthy`, and this function keeps what they found.
 * - A task being deregistered (the service asked it to drain before its stop, or it is
 *   stopping) keeps its target as `draining` (Target.DeregistrationInProgress) until it has
 *   stopped: the data plane sends it no new requests meanwhile.
 * - A target whose task stopped, is gone, or no longer belongs to a service registering
 *   here, is removed.
 */
import { isIP } from 'node:net';
import type { Target } from '../../api/loadbalancing.ts';
import type { Task, ContainerInstance } from '../../api/kinds.ts';
import type { TaskDefinitionSpec } from '../../api/taskdefinition.ts';

export interface WantedTarget {
  id: string;
  port: number;
  task: string;
  service: string;
  draining: boolean;
}

export interface TargetsPlan {
  targets: Target[];
  /** per service key: how many targets were registered, began draining, were deregistered */
  registered: Map<string, number>;
  draining: Map<string, number>;
  deregistered: Map<string, number>;
}

const endpointKey = (t: { id: string; port: number }) => `${t.id}:${t.port}`;
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

export function planTargets(existing: Target[], wanted: WantedTarget[], now: number): TargetsPlan {
  const iso = new Date(now).toISOString();
  const before = new Map(existing.map((t) => [endpointKey(t), t]));
  const out: Target[] = [];
  const plan: TargetsPlan = { targets: out, registered: new Map(), draining: new Map(), deregistered: new Map() };
  const kept = new Set<string>();
  for (const w of wanted) {
    const k = endpointKey(w);
    if (kept.has(k)) continue;
    let prev = before.get(k);
    if (prev && prev.task !== w.task) {
      // the endpoint now belongs to another task (a host port reused): the old target is gone
      bump(plan.deregistered, prev.service);
      prev = undefined;
    }
    if (w.draining) {
      if (!prev) continue; // never registered: nothing to drain
      kept.add(k);
      if (prev.state !== 'draining') bump(plan.draining, w.service);
      out.push({ ...prev, state: 'draining', reason: 'Target.DeregistrationInProgress', description: 'Target deregistration is in progress', drainingSince: prev.drainingSince ?? iso });
      continue;
    }
    kept.add(k);
    if (prev && prev.state !== 'draining') {
      out.push(prev);
      continue;
    }
    if (!prev) bump(plan.registered, w.service);
    // a draining target never comes back (its task is stopping); a new one starts at initial
    out.push(prev ?? { id: w.id, port: w.port, task: w.task, service: w.service, state: 'initial', reason: 'Elb.RegistrationInProgress', description: 'Target registration is in progress', registeredAt: iso });
  }
  // what is not kept is deregistered (a replaced endpoint was counted above)
  for (const t of existing) if (!kept.has(endpointKey(t))) bump(plan.deregistered, t.service);
  out.sort((a, b) => a.id.localeCompare(b.id) || a.port - b.port);
  return plan;
}

/** The address a task's container port is reached at: the instance's (bridge, host) or the task's own (awsvpc). */
export function endpointOf(task: Task, instance: ContainerInstance | undefined, td: TaskDefinitionSpec | undefined, containerName: string, containerPort: number): { id: string; port: number } | undefined {
  const mode = td?.networkMode ?? 'bridge';
  if (mode === 'awsvpc') {
    const ip = task.status?.attachments?.flatMap((a) => a.details ?? []).find((d) => d.name === 'privateIPv4Address')?.value;
    // the task's node writes it: only an address is an endpoint (it goes into the data plane's commands)
    return ip && isIP(ip) ? { id: ip, port: containerPort } : undefined;
  }
  const address = instance?.status?.registeredAddress?.replace(/^::ffff:/, '');
  if (!address || !isIP(address)) return undefined;
  if (mode === 'host') {
    const m = td?.containerDefinitions.find((c) => c.name === containerName)?.portMappings?.find((p) => p.containerPort === containerPort);
    return { id: address, port: m?.hostPort || containerPort };
  }
  const bound = task.status?.containers?.find((c) => c.name === containerName)?.networkBindings?.find((b) => b.containerPort === containerPort && (b.protocol ?? 'tcp') === 'tcp')?.hostPort;
  const assigned = task.spec.hostPorts?.find((h) => h.containerName === containerName && h.containerPort === containerPort && h.protocol === 'tcp')?.hostPort;
  const port = bound || assigned;
  return port ? { id: address, port } : undefined;
}

/** The service events ECS writes for these changes. */
export function targetEvents(plan: TargetsPlan, serviceName: (key: string) => string, where: string, classic: boolean): Array<{ service: string; message: string }> {
  const out: Array<{ service: string; message: string }> = [];
  const what = classic ? 'instances' : 'targets';
  for (const [s, n] of plan.registered) out.push({ service: s, message: `(service ${serviceName(s)}) registered ${n} ${what} in (${where})` });
  for (const [s, n] of plan.draining) out.push({ service: s, message: `(service ${serviceName(s)}) has begun draining connections on ${n} tasks.` });
  for (const [s, n] of plan.deregistered) out.push({ service: s, message: `(service ${serviceName(s)}) deregistered ${n} ${what} in (${where})` });
  return out;
}
