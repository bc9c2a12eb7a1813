/**
 * Test support: talking to a topology as its users do: the ECS API through the load
 * balancer (AWS SDK, SigV4, the berth CA), the resource API (admin client), the berth CLI.
 */
import { Agent as HttpsAgent } from 'node:https';
import { ECSClient, DescribeTasksCommand, StartTaskCommand, type Task as EcsTask } from '@aws-sdk/client-ecs';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { Task, TaskDefinition } from '../../pkg/api/kinds.ts';
import { runCli, type CliDeps } from '../../pkg/cli/commands.ts';
import { Client } from '../../pkg/client/client.ts';
import { eventually } from './fleet.ts';
import type { Topology, TopoHost } from './topology.ts';

/** An ECS SDK client through the load balancer, verifying the apiservers against the berth CA. */
export function ecsClient(t: Topology): ECSClient {
  return new ECSClient({
    endpoint: t.url,
    region: 'us-east-1',
    credentials: t.accessKey,
    maxAttempts: 3,
    requestHandler: new NodeHttpHandler({ httpsAgent: new HttpsAgent({ ca: t.caPem, keepAlive: true }) }),
  });
}

/** `berth ARGS` as a user runs it against the topology (a client of the load balancer with the CA). */
export async function berth(t: Topology, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const client = new Client({ server: t.url, token: t.adminToken, ca: t.caPem });
  const deps: CliDeps = {
    io: { out: (s) => void (out += s), err: (s) => void (err += s), stdin: async () => '' },
    version: 'test',
    connect: async () => ({ client, namespace: 'default' }),
  };
  try {
    return { code: await runCli(argv, deps), out, err };
  } finally {
    client.close();
  }
}

export async function registerTaskDefinition(t: Topology, name: string, spec: Record<string, unknown>): Promise<TaskDefinition> {
  return t.client.create<TaskDefinition>({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec } as TaskDefinition);
}

/** StartTask on one host's instance (ECS API); returns the task's id (its resource name). */
export async function startTaskOn(t: Topology, ecs: ECSClient, h: TopoHost, taskDefinition: string, env: Record<string, string> = {}, container?: string): Promise<string> {
  const out = await ecs.send(
    new StartTaskCommand({
      cluster: 'default',
      taskDefinition,
      containerInstances: [h.instanceId],
      ...(container ? { overrides: { containerOverrides: [{ name: container, environment: Object.entries(env).map(([name, value]) => ({ name, value })) }] } } : {}),
    }),
  );
  if (out.failures?.length) throw new Error(`StartTask on ${h.name}: ${JSON.stringify(out.failures)}`);
  return out.tasks![0].taskArn!.split('/').pop()!;
}

export async function describeTask(ecs: ECSClient, id: string): Promise<EcsTask> {
  const out = await ecs.send(new DescribeTasksCommand({ cluster: 'default', tasks: [id] }));
  return out.tasks![0];
}

export async function waitTask(ecs: ECSClient, id: string, status: 'RUNNING' | 'STOPPED', timeoutMs = 120_000): Promise<EcsTask> {
  return eventually(async () => {
    const task = await describeTask(ecs, id);
    if (status === 'RUNNING' && task.lastStatus === 'STOPPED') throw new Error(`task ${id} stopped: ${task.stoppedReason} ${JSON.stringify(task.containers?.map((c) => c.reason))}`);
    return task.lastStatus === status ? task : undefined;
  }, timeoutMs, `task ${id} ${status}`);
}

/** The address a host advertises for its bridge-mode host ports (the instance attribute berth.host-ip). */
export function hostIpOf(ci: { spec: { attributes?: Array<{ name: string; value?: string }> } }): string | undefined {
  return ci.spec.attributes?.find((a) => a.name === 'berth.host-ip')?.value;
}

/** Tasks of the default cluster, live (not STOPPED), by instance. */
export async function liveTasks(t: Topology): Promise<Task[]> {
  return (await t.client.list<Task>('Task', 'default')).items.filter((x) => x.status?.lastStatus !== 'STOPPED' && x.spec.desiredStatus !== 'STOPPED');
}
