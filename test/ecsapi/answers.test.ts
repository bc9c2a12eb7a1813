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
