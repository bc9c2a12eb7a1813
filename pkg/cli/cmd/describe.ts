import type { Command } from 'commander';
import type { ContainerInstance, Service, Task } from '../../api/kinds.ts';
import type { Target } from '../../api/loadbalancing.ts';
import { serviceTaskDefinition, taskRevision } from '../../api/resolved.ts';
import type { AnyObj, Client } from '../../client/client.ts';
import { target, type CommandContext } from '../command.ts';
import { describeLines, renderTable } from '../printers.ts';

/** `berth describe KIND [NAME]`: services with deployments, targets and events; instances with resources and tasks. */
export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'describe')
    .argument('<kind>')
    .argument('[name]')
    .action(async (kindWord: string, name: string | undefined, _f: unknown, cmd: Command) => {
      const t = target(kindWord, name); // validated before connecting
      const { client, namespace } = await ctx.conn(cmd);
      const ns = t.kind.namespaced ? namespace : undefined;
      const objs = t.name ? [await client.get(t.kind, ns, t.name)] : (await client.listAll(t.kind, ns)).items;
      const blocks: string[] = [];
      for (const obj of objs) {
        if (t.kind.kind === 'Service') {
          const tasks = (await client.listAll<Task>('Task', ns, { fieldSelector: `spec.group=service:${obj.metadata.name}` })).items;
          blocks.push([...serviceDescribe(obj as unknown as Service, tasks), ...(await serviceTargetLines(client, obj as unknown as Service))].join('\n'));
        } else if (t.kind.kind === 'ContainerInstance') {
          const tasks = (await client.listAll<Task>('Task', ns, { fieldSelector: `spec.containerInstance=${obj.metadata.name}` })).items;
          blocks.push(instanceDescribe(obj as unknown as ContainerInstance, tasks).join('\n'));
        } else blocks.push(describeLines({ name: obj.metadata.name, namespace: obj.metadata.namespace, labels: obj.metadata.labels, annotations: obj.metadata.annotations, created: obj.metadata.creationTimestamp, spec: obj.spec, status: obj.status }).join('\n'));
      }
      ctx.io.out(blocks.join('\n\n') + '\n');
    });
}

const indented = (text: string, pad: string) => text.trimEnd().split('\n').map((l) => pad + l);

function serviceDescribe(s: Service, tasks: Task[]): string[] {
  const st = s.status;
  const dc = s.spec.deploymentConfiguration;
  const lines = [
    `Name:                ${s.metadata.name}`,
    `Cluster:             ${s.metadata.namespace}`,
    `ARN:                 ${st?.serviceArn ?? ''}`,
    `Status:              ${st?.status ?? ''}`,
    `Task Definition:     ${serviceTaskDefinition(s)}`,
    `Scheduling:          ${s.spec.schedulingStrategy}`,
    `Desired/Running/Pending: ${s.spec.desiredCount ?? 0}/${st?.runningCount ?? 0}/${st?.pendingCount ?? 0}`,
    `Deployment Config:   minimumHealthyPercent=${dc?.minimumHealthyPercent} maximumPercent=${dc?.maximumPercent}${dc?.deploymentCircuitBreaker?.enable ? ' circuitBreaker' + (dc.deploymentCircuitBreaker.rollback ? '+rollback' : '') : ''}`,
    `Placement:           ${(s.spec.placementStrategy ?? [{ type: 'spread', field: 'instanceId' }]).map((p) => `${p.type}${p.field ? `(${p.field})` : ''}`).join(', ')}${s.spec.placementConstraints?.length ? '; ' + s.spec.placementConstraints.map((c) => `${c.type}${c.expression ? ` ${c.expression}` : ''}`).join(', ') : ''}`,
    'Deployments:',
  ];
  const deps = st?.deployments ?? [];
  if (!deps.length) lines.push('  <none>');
  else
    lines.push(
      ...indented(
        renderTable({
          columnDefinitions: [{ name: 'Id' }, { name: 'Status' }, { name: 'Task-Definition' }, { name: 'Desired' }, { name: 'Running' }, { name: 'Pending' }, { name: 'Failed' }, { name: 'Rollout' }],
          rows: deps.map((d) => ({ cells: [d.id, d.status, d.taskDefinition, d.desiredCount, d.runningCount, d.pendingCount, d.failedTasks, d.rolloutState] })),
        }),
        '  ',
      ),
    );
  const live = tasks.filter((t) => t.status?.lastStatus !== 'STOPPED');
  lines.push(`Tasks:               ${live.length} live, ${tasks.length - live.length} stopped`);
  lines.push('Events (newest first):');
  const ev = (st?.events ?? []).slice(0, 10);
  if (!ev.length) lines.push('  <none>');
  for (const e of ev) lines.push(`  ${e.createdAt}  ${e.message}`);
  return lines;
}

/** the targets of a service's tasks in each load balancer or target group, and their health */
async function serviceTargetLines(client: Client, s: Service): Promise<string[]> {
  const lbs = s.spec.loadBalancers ?? [];
  if (!lbs.length) return [];
  const { targetSetOf } = await import('../../api/loadbalancing.ts'); // only a service behind a load balancer needs it
  const lines = ['Load Balancers:'];
  for (const e of lbs) {
    const ref = targetSetOf(e);
    if (!ref) continue;
    const obj = await client.tryGet<AnyObj>(ref.kind, undefined, ref.name);
    const targets = ((obj?.status as { targets?: Target[] } | undefined)?.targets ?? []).filter((t) => t.service === `${s.metadata.namespace}/${s.metadata.name}`);
    lines.push(`  ${ref.kind === 'TargetGroup' ? 'target group' : 'load balancer'} ${ref.name} -> ${e.containerName}:${e.containerPort}${obj ? '' : ' (not found)'}`);
    lines.push('  Targets:');
    if (!targets.length) lines.push('    <none>');
    else
      lines.push(
        ...indented(
          renderTable({
            columnDefinitions: [{ name: 'Target' }, { name: 'Task' }, { name: 'State' }, { name: 'Reason' }],
            rows: targets.map((t) => ({ cells: [`${t.id}:${t.port}`, t.task.slice(t.task.indexOf('/') + 1), t.state, t.reason ?? ''] })),
          }),
          '    ',
        ),
      );
  }
  return lines;
}

function instanceDescribe(ci: ContainerInstance, tasks: Task[]): string[] {
  const res = (list: ContainerInstance['spec']['registeredResources'], n: string) => {
    const r = list?.find((x) => x.name === n);
    return r ? (r.type === 'STRINGSET' ? (r.stringSetValue ?? []).join(',') || '<none>' : String(r.integerValue ?? r.longValue ?? r.doubleValue)) : '<none>';
  };
  const lines = [
    `Name:                ${ci.metadata.name}`,
    `Cluster:             ${ci.metadata.namespace}`,
    `ARN:                 ${ci.status?.containerInstanceArn ?? ''}`,
    `Status:              ${ci.spec.status}`,
    `Agent Connected:     ${ci.status?.agentConnected ?? false}`,
    `Last Heartbeat:      ${ci.status?.lastHeartbeat ?? '<none>'}`,
    `Host:                ${ci.spec.hostname ?? '<none>'}`,
    `Versions:            agent ${ci.status?.versionInfo?.agentVersion ?? '?'}, docker ${ci.status?.versionInfo?.dockerVersion ?? '?'}`,
    'Resources:           registered        remaining',
  ];
  for (const n of ['CPU', 'MEMORY', 'PORTS', 'PORTS_UDP']) lines.push(`  ${n.padEnd(18)}${res(ci.spec.registeredResources, n).padEnd(18)}${res(ci.status?.remainingResources, n)}`);
  lines.push('Attributes:');
  for (const a of ci.spec.attributes ?? []) lines.push(`  ${a.name}${a.value !== undefined ? `=${a.value}` : ''}`);
  const live = tasks.filter((t) => t.status?.lastStatus !== 'STOPPED');
  lines.push(`Tasks (${live.length} live):`);
  for (const t of live) lines.push(`  ${t.metadata.name}  ${taskRevision(t)}  ${t.status?.lastStatus ?? ''}  ${t.spec.group ?? ''}`);
  return lines;
}
