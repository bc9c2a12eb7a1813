import { expect } from 'chai';
import { CreateServiceCommand, DescribeServicesCommand, DescribeTasksCommand, ListTasksCommand, RegisterTaskDefinitionCommand, UpdateServiceCommand, type ECSClient, type UpdateServiceCommandOutput } from '@aws-sdk/client-ecs';
import { eventually } from '../support/fleet.ts';
import { expectRestart } from '../support/restart.ts';
import { startEcsControlPlane, thrown } from './support.ts';
import type { Service } from '../../pkg/api/kinds.ts';

describe('UpdateService forceNewDeployment through the AWS SDK (real controllers, hollow agents)', function () {
  this.timeout(120_000);
  let env: Awaited<ReturnType<typeof startEcsControlPlane>>;
  let ecs: ECSClient;

  before(async () => {
    env = await startEcsControlPlane();
    ecs = env.ecs;
    await ecs.send(new RegisterTaskDefinitionCommand({ family: 'web', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, command: ['sleep', '3600'] }] }));
    await ecs.send(new CreateServiceCommand({ cluster: 'default', serviceName: 'web', taskDefinition: 'web', desiredCount: 2, deploymentConfiguration: { minimumHealthyPercent: 50, maximumPercent: 100 } }));
  });
  after(async () => {
    await env?.stop();
  });

  it('with no other change: the answer already shows the new PRIMARY deployment; every task is replaced by one of the same revision', async () => {
    let answer: UpdateServiceCommandOutput | undefined;
    const r = await expectRestart(env.cp.client, 'default', 'web', async () => {
      answer = await ecs.send(new UpdateServiceCommand({ cluster: 'default', service: 'web', forceNewDeployment: true }));
    }, { desired: 2, minPct: 50, maxPct: 100 });
    const deps = answer!.service!.deployments!;
    expect(deps.map((d) => d.status)).to.deep.equal(['PRIMARY', 'ACTIVE']);
    expect(deps[0].id).to.not.equal(r.oldDeployment);
    expect(deps[0].id).to.equal(r.service.status!.deployments![0].id);
    expect(deps[0].taskDefinition).to.equal(deps[1].taskDefinition);
    expect(deps[0].taskDefinition).to.match(/:task-definition\/web:1$/);
    expect(deps[0].rolloutState).to.equal('IN_PROGRESS');
    const d = await ecs.send(new DescribeServicesCommand({ cluster: 'default', services: ['web'] }));
    expect(d.services![0].deployments!.map((x) => [x.id, x.status, x.rolloutState])).to.deep.equal([[deps[0].id, 'PRIMARY', 'COMPLETED']]);
  });

  it('with a scale in the same call: one new deployment at the new count', async () => {
    const r = await expectRestart(env.cp.client, 'default', 'web', async () => {
      const out = await ecs.send(new UpdateServiceCommand({ cluster: 'default', service: 'web', forceNewDeployment: true, desiredCount: 3, deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200 } }));
      expect(out.service!.deployments![0]).to.include({ status: 'PRIMARY', desiredCount: 3 });
    }, { desired: 3, desiredBefore: 2, minPct: 0, maxPct: 200 });
    expect(r.after).to.have.length(3);
  });

  it("a service's tasks carry the task definition's tags (propagateTags) and ECS's managed tags (enableECSManagedTags)", async () => {
    await ecs.send(new RegisterTaskDefinitionCommand({ family: 'tagged', tags: [{ key: 'team', value: 'web' }], containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16, command: ['sleep', '3600'] }] }));
    await ecs.send(new CreateServiceCommand({ cluster: 'default', serviceName: 'tagged', taskDefinition: 'tagged', desiredCount: 1, propagateTags: 'TASK_DEFINITION', enableECSManagedTags: true }));
    const arns = await eventually(async () => {
      const l = await ecs.send(new ListTasksCommand({ cluster: 'default', serviceName: 'tagged' }));
      return l.taskArns?.length === 1 && l.taskArns;
    }, 20_000, 'the service\'s task');
    const d = await ecs.send(new DescribeTasksCommand({ cluster: 'default', tasks: arns, include: ['TAGS'] }));
    expect(d.tasks![0].tags).to.deep.include.members([
      { key: 'team', value: 'web' },
      { key: 'aws:ecs:serviceName', value: 'tagged' },
      { key: 'aws:ecs:clusterName', value: 'default' },
    ]);
  });

  it('a DAEMON service refuses forceNewDeployment, naming it (it rolls by revision)', async () => {
    await ecs.send(new CreateServiceCommand({ cluster: 'default', serviceName: 'everywhere', taskDefinition: 'web', schedulingStrategy: 'DAEMON' }));
    const e = await thrown(() => ecs.send(new UpdateServiceCommand({ cluster: 'default', service: 'everywhere', forceNewDeployment: true })));
    expect(e.name).to.equal('InvalidParameterException');
    expect(e.message).to.include('forceNewDeployment');
    expect((await env.cp.client.get<Service>('Service', 'default', 'everywhere')).spec.restartedAt).to.equal(undefined);
  });
});
