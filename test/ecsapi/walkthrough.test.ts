import { expect } from 'chai';
import {
  CreateClusterCommand,
  CreateServiceCommand,
  DeleteServiceCommand,
  DescribeContainerInstancesCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  ECSClient,
  ListContainerInstancesCommand,
  ListServicesCommand,
  ListTaskDefinitionsCommand,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  ServiceNotActiveException,
  StopTaskCommand,
  UpdateServiceCommand,
  waitUntilServicesStable,
  waitUntilTasksRunning,
  waitUntilTasksStopped,
} from '@aws-sdk/client-ecs';
import { Client } from '../../pkg/client/client.ts';
import { eventually, type Fleet, type Running } from '../support/fleet.ts';
import { startEcsControlPlane, thrown, type EcsTestServer } from './support.ts';

const arn = (rest: string) => `arn:aws:ecs:us-east-1:000000000000:${rest}`;
const waiter = (client: ECSClient) => ({ client, minDelay: 1, maxDelay: 1, maxWaitTime: 60 });

/**
 * The ECS Developer Guide's "Using the AWS CLI with Amazon ECS" (steps 1-9) redone through the SDK against
 * berth with real agents (hollow runtime) and the real controllers, then a service, with
 * the SDK's own waiters.
 */
describe('ECS API walk-through of the ECS Developer Guide with agents and controllers (embedded store)', function () {
  this.timeout(120_000);
  let s: EcsTestServer;
  let ecs: ECSClient;
  let client: Client;
  let fleet: Fleet;
  let cp: Running;
  let env: Awaited<ReturnType<typeof startEcsControlPlane>>;
  let taskArn: string;

  before(async () => {
    env = await startEcsControlPlane({ inactiveRetentionMs: 6000 });
    ({ s, ecs, cp } = env);
    ({ client, fleet } = cp);
  });
  after(async () => env?.stop());

  it('step 1: create-cluster', async () => {
    const out = await ecs.send(new CreateClusterCommand({ clusterName: 'MyCluster' }));
    expect(out.cluster).to.include({ clusterName: 'MyCluster', status: 'ACTIVE', clusterArn: arn('cluster/MyCluster') });
  });

  it('steps 3-4: list-container-instances and describe-container-instances (the agents registered)', async () => {
    const list = await eventually(async () => {
      const l = await ecs.send(new ListContainerInstancesCommand({ cluster: 'default' }));
      return l.containerInstanceArns?.length === 2 && l;
    }, 20_000, 'two instances');
    const ids = list.containerInstanceArns!.map((a) => a.split('/').pop()!);
    const out = await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'default', containerInstances: ids }));
    expect(out.failures).to.deep.equal([]);
    for (const ci of out.containerInstances!) {
      expect(ci).to.include({ status: 'ACTIVE', agentConnected: true });
      expect(ci.registeredResources?.map((r) => r.name)).to.include.members(['CPU', 'MEMORY', 'PORTS', 'PORTS_UDP']);
      expect(ci.registeredResources?.find((r) => r.name === 'CPU')?.integerValue).to.equal(2048);
      expect(ci.remainingResources?.find((r) => r.name === 'CPU')?.integerValue).to.equal(2048);
    }
  });

  it('steps 5-6: register-task-definition and list-task-definitions', async () => {
    const out = await ecs.send(
      new RegisterTaskDefinitionCommand({ family: 'sleep360', containerDefinitions: [{ name: 'sleep', image: 'busybox', cpu: 10, command: ['sleep', '360'], memory: 10, essential: true }] }),
    );
    expect(out.taskDefinition).to.include({ family: 'sleep360', revision: 1, taskDefinitionArn: arn('task-definition/sleep360:1') });
    expect((await ecs.send(new ListTaskDefinitionsCommand({}))).taskDefinitionArns).to.deep.equal([arn('task-definition/sleep360:1')]);
  });

  it('steps 7-9: run-task, list-tasks, describe-tasks (RUNNING, via the tasksRunning waiter)', async () => {
    const run = await ecs.send(new RunTaskCommand({ cluster: 'default', taskDefinition: 'sleep360:1', count: 1 }));
    expect(run.failures).to.deep.equal([]);
    const t = run.tasks![0];
    expect(t).to.include({ lastStatus: 'PENDING', desiredStatus: 'RUNNING', taskDefinitionArn: arn('task-definition/sleep360:1'), clusterArn: arn('cluster/default') });
    expect(t.containerInstanceArn).to.match(/container-instance\/default\/[0-9a-f]{32}$/);
    taskArn = t.taskArn!;
    expect((await ecs.send(new ListTasksCommand({ cluster: 'default' }))).taskArns).to.deep.equal([taskArn]);
    await waitUntilTasksRunning(waiter(ecs), { cluster: 'default', tasks: [taskArn] });
    const d = await ecs.send(new DescribeTasksCommand({ cluster: 'default', tasks: [taskArn.split('/').pop()!] }));
    expect(d.tasks?.[0]).to.include({ lastStatus: 'RUNNING', desiredStatus: 'RUNNING' });
    expect(d.tasks?.[0].startedAt).to.be.instanceOf(Date);
    expect(d.tasks?.[0].containers?.[0]).to.include({ name: 'sleep', lastStatus: 'RUNNING' });
    expect(d.tasks?.[0].containers?.[0].networkBindings).to.deep.equal([]);
  });

  it('stop-task: the agent stops it (tasksStopped waiter) and the resources are released', async () => {
    await ecs.send(new StopTaskCommand({ cluster: 'default', task: taskArn, reason: 'walk-through done' }));
    await waitUntilTasksStopped(waiter(ecs), { cluster: 'default', tasks: [taskArn] });
    const d = await ecs.send(new DescribeTasksCommand({ cluster: 'default', tasks: [taskArn] }));
    expect(d.tasks?.[0]).to.include({ lastStatus: 'STOPPED', desiredStatus: 'STOPPED', stopCode: 'UserInitiated', stoppedReason: 'walk-through done' });
    expect(d.tasks?.[0].stoppedAt).to.be.instanceOf(Date);
    const ci = await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'default', containerInstances: [d.tasks![0].containerInstanceArn!] }));
    expect(ci.containerInstances?.[0].remainingResources?.find((r) => r.name === 'CPU')?.integerValue).to.equal(2048);
  });

  it('a service reaches a steady state (servicesStable waiter), scales, and is deleted', async () => {
    const created = await ecs.send(new CreateServiceCommand({ cluster: 'default', serviceName: 'sleepers', taskDefinition: 'sleep360', desiredCount: 3 }));
    expect(created.service?.status).to.equal('ACTIVE');
    await waitUntilServicesStable(waiter(ecs), { cluster: 'default', services: ['sleepers'] });
    const d = await ecs.send(new DescribeServicesCommand({ cluster: 'default', services: ['sleepers'] }));
    const svc = d.services![0];
    expect(svc).to.include({ desiredCount: 3, runningCount: 3, pendingCount: 0 });
    expect(svc.deployments).to.have.length(1);
    expect(svc.deployments?.[0]).to.include({ status: 'PRIMARY', desiredCount: 3, runningCount: 3, taskDefinition: arn('task-definition/sleep360:1') });
    expect(svc.deployments?.[0].id).to.match(/^ecs-svc\//);
    expect(svc.deployments?.[0].createdAt).to.be.instanceOf(Date);
    expect((await ecs.send(new ListTasksCommand({ cluster: 'default', serviceName: 'sleepers' }))).taskArns).to.have.length(3);
    await ecs.send(new UpdateServiceCommand({ cluster: 'default', service: 'sleepers', desiredCount: 1 }));
    await eventually(async () => (await ecs.send(new ListTasksCommand({ cluster: 'default', serviceName: 'sleepers' }))).taskArns?.length === 1, 30_000, 'scaled to 1');
    await waitUntilServicesStable(waiter(ecs), { cluster: 'default', services: ['sleepers'] });
    const del = await ecs.send(new DeleteServiceCommand({ cluster: 'default', service: 'sleepers', force: true }));
    expect(del.service?.status).to.equal('DRAINING');
    // a DRAINING service is no longer listed, only described
    expect((await ecs.send(new ListServicesCommand({ cluster: 'default' }))).serviceArns).to.deep.equal([]);
    // the controller stops its tasks; the service becomes INACTIVE and stays describable
    const inactive = await eventually(async () => {
      const r = await ecs.send(new DescribeServicesCommand({ cluster: 'default', services: ['sleepers'] }));
      return r.services?.[0]?.status === 'INACTIVE' && r.services[0];
    }, 30_000, 'service INACTIVE');
    expect(inactive).to.include({ serviceName: 'sleepers', serviceArn: arn('service/default/sleepers'), desiredCount: 0 });
    const live = (await ecs.send(new ListTasksCommand({ cluster: 'default', serviceName: 'sleepers', desiredStatus: 'RUNNING' }))).taskArns;
    expect(live).to.deep.equal([]);
    expect((await ecs.send(new ListServicesCommand({ cluster: 'default' }))).serviceArns).to.deep.equal([]);
    const e = await thrown(() => ecs.send(new UpdateServiceCommand({ cluster: 'default', service: 'sleepers', desiredCount: 1 })));
    expect(e).to.be.instanceOf(ServiceNotActiveException);
    // the name is free again: a new service of that name starts from nothing
    const again = await ecs.send(new CreateServiceCommand({ cluster: 'default', serviceName: 'sleepers', taskDefinition: 'sleep360', desiredCount: 1 }));
    expect(again.service).to.include({ status: 'ACTIVE', desiredCount: 1 });
    await waitUntilServicesStable(waiter(ecs), { cluster: 'default', services: ['sleepers'] });
    const now = (await ecs.send(new DescribeServicesCommand({ cluster: 'default', services: ['sleepers'] }))).services![0];
    expect(now).to.include({ status: 'ACTIVE', runningCount: 1 });
    expect(now.deployments).to.have.length(1);
    await ecs.send(new DeleteServiceCommand({ cluster: 'default', service: 'sleepers', force: true }));
    await eventually(async () => (await ecs.send(new DescribeServicesCommand({ cluster: 'default', services: ['sleepers'] }))).services?.[0]?.status === 'INACTIVE', 30_000, 'INACTIVE again');
    // after the retention (a few seconds here, an hour by default) it is gone
    await eventually(async () => (await ecs.send(new DescribeServicesCommand({ cluster: 'default', services: ['sleepers'] }))).failures?.[0]?.reason === 'MISSING', 30_000, 'INACTIVE record expired');
  });
});
