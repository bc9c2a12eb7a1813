import { expect } from 'chai';
import {
  CreateServiceCommand,
  DescribeContainerInstancesCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  ListContainerInstancesCommand,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  UpdateServiceCommand,
  type ECSClient,
} from '@aws-sdk/client-ecs';
import { managedInstanceId } from '../../pkg/agent/agent.ts';
import { Arns } from '../../pkg/api/arn.ts';
import { instanceToEcs, taskToEcs } from '../../pkg/ecsapi/shapes.ts';
import { taskTagsOf } from '../../pkg/controller/service/controller.ts';
import { eventually } from '../support/fleet.ts';
import { startEcsControlPlane, thrown } from './support.ts';

const arn = (rest: string) => `arn:aws:ecs:us-east-1:000000000000:${rest}`;
const sleeper = { family: 'sleeper', containerDefinitions: [{ name: 'sleep', image: 'busybox', memory: 16, command: ['sleep', '360'] }] };

describe('ECS answers as ECS words them (the AWS CLI walk-through, through the SDK)', function () {
  this.timeout(90_000);
  let env: Awaited<ReturnType<typeof startEcsControlPlane>>;
  let ecs: ECSClient;

  before(async () => {
    env = await startEcsControlPlane();
    ecs = env.ecs;
  });
  after(async () => env?.stop());

  it('register-task-definition of the same content registers a new revision each time', async () => {
    const one = await ecs.send(new RegisterTaskDefinitionCommand(sleeper));
    const two = await ecs.send(new RegisterTaskDefinitionCommand(sleeper));
    expect([one.taskDefinition?.revision, two.taskDefinition?.revision]).to.deep.equal([1, 2]);
    expect(two.taskDefinition?.taskDefinitionArn).to.equal(arn('task-definition/sleeper:2'));
  });

  it('accepts the current API members it can honour, refuses the others by name', async () => {
    const ok = await ecs.send(new RegisterTaskDefinitionCommand({ ...sleeper, family: 'members', enableFaultInjection: false, volumes: [{ name: 'v', configuredAtLaunch: false }] }));
    expect(ok.taskDefinition).to.deep.include({ enableFaultInjection: false, volumes: [{ name: 'v', configuredAtLaunch: false }] });
    const efs = await thrown(() => ecs.send(new RegisterTaskDefinitionCommand({ ...sleeper, family: 'members', volumes: [{ name: 'v', efsVolumeConfiguration: { fileSystemId: 'fs-1' } }] })));
    expect(efs.name).to.equal('ClientException');
    expect(efs.message).to.match(/volumes\[0\]\.efsVolumeConfiguration.*not supported by berth/);
    const atLaunch = await thrown(() => ecs.send(new RegisterTaskDefinitionCommand({ ...sleeper, family: 'members', volumes: [{ name: 'v', configuredAtLaunch: true }] })));
    expect(atLaunch.message).to.match(/volumes\[0\]\.configuredAtLaunch/);
  });

  it('create-service answers with its PRIMARY deployment; update-service to a new revision answers with the new one', async () => {
    const created = (await ecs.send(new CreateServiceCommand({ serviceName: 'web', taskDefinition: 'sleeper', desiredCount: 1, enableECSManagedTags: true }))).service!;
    expect(created.deployments).to.have.length(1);
    expect(created.deployments![0]).to.include({ status: 'PRIMARY', taskDefinition: arn('task-definition/sleeper:2'), desiredCount: 1, rolloutState: 'IN_PROGRESS' });
    expect(created.deployments![0].id).to.match(/^ecs-svc\//);
    // the first task runs before the update (as the walk-through waits for services-stable): a deployment whose
    // tasks never started is replaced outright, and the answer would rightly show the new one alone
    await eventually(async () => (await ecs.send(new DescribeServicesCommand({ services: ['web'] }))).services?.[0]?.runningCount === 1, 30_000, 'web running');
    await ecs.send(new RegisterTaskDefinitionCommand({ ...sleeper, containerDefinitions: [{ ...sleeper.containerDefinitions[0], command: ['sleep', '361'] }] }));
    const updated = (await ecs.send(new UpdateServiceCommand({ service: 'web', taskDefinition: 'sleeper:3' }))).service!;
    expect(updated.deployments?.map((d) => [d.status, d.taskDefinition])).to.deep.equal([
      ['PRIMARY', arn('task-definition/sleeper:3')],
      ['ACTIVE', arn('task-definition/sleeper:2')],
    ]);
  });

  it("enableECSManagedTags gives the service's tasks aws:ecs:clusterName and aws:ecs:serviceName", async () => {
    const arns = await eventually(async () => {
      const l = (await ecs.send(new ListTasksCommand({ serviceName: 'web' }))).taskArns;
      return l?.length ? l : undefined;
    }, 30_000, 'a task of the service');
    const t = (await ecs.send(new DescribeTasksCommand({ tasks: arns, include: ['TAGS'] }))).tasks![0];
    expect(t.tags).to.deep.include.members([
      { key: 'aws:ecs:clusterName', value: 'default' },
      { key: 'aws:ecs:serviceName', value: 'web' },
    ]);
  });

  it("an unplaceable task's event names the closest instance by its id, in ECS's words", async () => {
    await ecs.send(new RegisterTaskDefinitionCommand({ family: 'huge', containerDefinitions: [{ name: 'x', image: 'busybox', memory: 4096 }] }));
    await ecs.send(new CreateServiceCommand({ serviceName: 'huge', taskDefinition: 'huge', desiredCount: 1 }));
    const ids = (await ecs.send(new ListContainerInstancesCommand({}))).containerInstanceArns!.map((a) => a.split('/').pop()!);
    const msg = await eventually(async () => {
      const e = (await ecs.send(new DescribeServicesCommand({ services: ['huge'] }))).services![0].events ?? [];
      return e.find((x) => x.message?.includes('unable to place'))?.message;
    }, 30_000, 'an unable-to-place event');
    const m = /^\(service huge\) was unable to place a task because no container instance met all of its requirements\. The closest matching container-instance ([0-9a-f]{32}) has insufficient memory available\./.exec(msg);
    expect(m, msg).to.not.equal(null);
    expect(ids).to.include(m![1]);
  });

  it('describe-container-instances gives each host a stable managed-instance id (mi- and 17 hex digits)', async () => {
    const ids = (await ecs.send(new ListContainerInstancesCommand({}))).containerInstanceArns!;
    const cis = (await ecs.send(new DescribeContainerInstancesCommand({ containerInstances: ids }))).containerInstances!;
    const ec2 = cis.map((c) => c.ec2InstanceId);
    for (const id of ec2) expect(id).to.match(/^mi-[0-9a-f]{17}$/);
    expect(new Set(ec2).size).to.equal(2);
  });
});

describe('managed-instance ids and managed tags (pure)', () => {
  it('a fingerprint always gives the same mi- id; another host another', () => {
    expect(managedInstanceId('m:abc')).to.equal(managedInstanceId('m:abc')).and.match(/^mi-[0-9a-f]{17}$/);
    expect(managedInstanceId('m:abc')).to.not.equal(managedInstanceId('m:abd'));
  });
  const svc = (spec: Record<string, unknown>) => ({ metadata: { name: 's', namespace: 'c' }, spec: { taskDefinition: 'x', schedulingStrategy: 'REPLICA', ...spec } }) as never;
  const table: Array<[string, Record<string, unknown>, unknown]> = [
    ['nothing to propagate', { tags: [{ key: 'a', value: '1' }] }, {}],
    ['propagateTags SERVICE', { tags: [{ key: 'a', value: '1' }], propagateTags: 'SERVICE' }, { tags: [{ key: 'a', value: '1' }] }],
    ['managed tags only', { enableECSManagedTags: true }, { tags: [{ key: 'aws:ecs:clusterName', value: 'c' }, { key: 'aws:ecs:serviceName', value: 's' }] }],
    ['both', { tags: [{ key: 'a' }], propagateTags: 'SERVICE', enableECSManagedTags: true }, { tags: [{ key: 'a' }, { key: 'aws:ecs:clusterName', value: 'c' }, { key: 'aws:ecs:serviceName', value: 's' }] }],
  ];
  for (const [what, spec, want] of table) it(what, () => expect(taskTagsOf(svc(spec))).to.deep.equal(want));
});

describe('a task as ECS answers it (pure)', () => {
  const arns = new Arns();
  const td = (networkMode: string, memory?: number) =>
    ({ metadata: { name: 'app:1' }, spec: { networkMode, containerDefinitions: [{ name: 'a', image: 'busybox', cpu: 10, memory: memory ?? 10 }, { name: 'b', image: 'busybox', memoryReservation: 6 }] } }) as never;
  const eni = [{ id: 'eni', type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: '10.0.0.2' }] }];
  const task = (lastStatus: string, c: string) =>
    ({
      metadata: { name: 'f'.repeat(32), namespace: 'default', creationTimestamp: '2026-12-02T00:00:00Z' },
      spec: { taskDefinition: 'app:1', desiredStatus: 'RUNNING', containerInstance: 'i1' },
      status: { lastStatus, healthStatus: 'UNKNOWN', attachments: eni, containers: ['a', 'b'].map((name) => ({ name, lastStatus: c, networkBindings: [], healthStatus: 'UNKNOWN' })) },
    }) as never;
  const instance = { spec: { attributes: [{ name: 'ecs.cpu-architecture', value: 'arm64' }] } } as never;
  const table: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
    ['PENDING: no health, no network bindings yet', { t: task('PENDING', 'PENDING'), td: td('bridge') }, { healthStatus: undefined, bindings: [undefined, undefined] }],
    ['RUNNING: health and network bindings', { t: task('RUNNING', 'RUNNING'), td: td('bridge') }, { healthStatus: 'UNKNOWN', bindings: [[], []] }],
    ["memory: the containers' limits or reservations summed", { t: task('RUNNING', 'RUNNING'), td: td('bridge', 20) }, { memory: '26' }],
    ['a bridge task has no ENI attachment', { t: task('RUNNING', 'RUNNING'), td: td('bridge') }, { attachments: [] }],
    ["an awsvpc task's ENI attachment, its id UUID-shaped", { t: task('RUNNING', 'RUNNING'), td: td('awsvpc') }, { attachmentId: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/ }],
    ['tags: an empty list unless asked for', { t: task('RUNNING', 'RUNNING'), td: td('bridge') }, { tags: [] }],
    ["attributes: the instance's CPU architecture", { t: task('RUNNING', 'RUNNING'), td: td('bridge'), instance }, { attributes: [{ name: 'ecs.cpu-architecture', value: 'arm64' }] }],
  ];
  for (const [what, given, want] of table) {
    it(what, () => {
      const out = taskToEcs(given.t as never, arns, given.td as never, [], given.instance as never) as Record<string, any>;
      if ('healthStatus' in want) expect(out.healthStatus).to.equal(want.healthStatus);
      if ('bindings' in want) expect(out.containers.map((c: { networkBindings?: unknown }) => c.networkBindings)).to.deep.equal(want.bindings);
      if ('memory' in want) expect(out.memory).to.equal(want.memory);
      if ('attachments' in want) expect(out.attachments).to.deep.equal(want.attachments);
      if ('attachmentId' in want) expect(out.attachments[0].id).to.match(want.attachmentId as RegExp);
      if ('tags' in want) expect(out.tags).to.deep.equal(want.tags);
      if ('attributes' in want) expect(out.attributes).to.deep.equal(want.attributes);
    });
  }
});

describe("a container instance's versionInfo as ECS answers it (pure)", () => {
  const ci = (versionInfo: Record<string, string>) =>
    ({ metadata: { name: 'i1', namespace: 'default', resourceVersion: '7' }, spec: { status: 'ACTIVE', ec2InstanceId: 'mi-0', registeredResources: [] }, status: { versionInfo } }) as never;
  const table: Array<[string, Record<string, string>, Record<string, string>]> = [
    ['the Docker version in the ECS agent\'s words', { agentVersion: '0.1.0', dockerVersion: '27.5.1' }, { agentVersion: '0.1.0', dockerVersion: 'DockerVersion: 27.5.1' }],
    ['already in them: kept', { dockerVersion: 'DockerVersion: 27.5.1' }, { dockerVersion: 'DockerVersion: 27.5.1' }],
    ['no Docker (the hollow runtime): none shown', { agentVersion: '0.1.0' }, { agentVersion: '0.1.0' }],
  ];
  for (const [what, given, want] of table) it(what, () => expect(instanceToEcs(ci(given), new Arns()).versionInfo).to.deep.equal(want));
});
