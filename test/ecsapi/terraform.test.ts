import { expect } from 'chai';
import {
  DeregisterContainerInstanceCommand,
  DescribeClustersCommand,
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ListContainerInstancesCommand,
  ListTasksCommand,
  UpdateServiceCommand,
  type ECSClient,
} from '@aws-sdk/client-ecs';
import { eventually, type HollowAgent } from '../support/fleet.ts';
import { terraformAvailable, terraformDir, type TfDir } from '../support/terraform.ts';
import { startEcsControlPlane } from './support.ts';

const arn = (rest: string) => `arn:aws:ecs:us-east-1:000000000000:${rest}`;

/**
 * A cluster, a task definition with a volume, mountPoints and volumesFrom, a service with
 * ECS-managed tags and a forced deployment whenever its trigger changes, and the cluster's
 * (empty) capacity providers.
 */
const CONFIG = (redeploy: string) => `
resource "aws_ecs_cluster" "c" {
  name = "tf"
}
resource "aws_ecs_cluster_capacity_providers" "c" {
  cluster_name       = aws_ecs_cluster.c.name
  capacity_providers = []
}
resource "aws_ecs_task_definition" "web" {
  family = "tfweb"
  volume {
    name      = "data"
    host_path = "/srv/data"
  }
  container_definitions = jsonencode([
    { name = "app", image = "busybox", memory = 16, essential = true, command = ["sleep", "3600"],
      mountPoints = [{ sourceVolume = "data", containerPath = "/data" }] },
    { name = "side", image = "busybox", memory = 16, essential = false, command = ["sleep", "3600"],
      volumesFrom = [{ sourceContainer = "app", readOnly = true }] }
  ])
}
resource "aws_ecs_service" "web" {
  name                    = "web"
  cluster                 = aws_ecs_cluster.c.id
  task_definition         = aws_ecs_task_definition.web.arn
  desired_count           = 1
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  tags                    = { app = "web" }
  force_new_deployment    = true
  triggers                = { redeploy = "${redeploy}" }
}
`;

/**
 * Terraform 1.11 with hashicorp/aws 5.100 (from the machine's filesystem mirror, `init`
 * offline) against berth's ECS endpoint: one apply, an empty plan, a forced deployment from a
 * changed trigger, an import, a destroy. One step per test (each terraform command takes
 * minutes on a loaded machine), in order, on one working directory.
 */
describe('Terraform with the AWS provider against the ECS API', function () {
  // terraform starts its provider (a 700 MB binary) several times per command: ~3 min on an idle machine
  this.timeout(900_000);
  let env: Awaited<ReturnType<typeof startEcsControlPlane>>;
  let ecs: ECSClient;
  let tf: TfDir;
  let host: HollowAgent;
  let firstDeployment: string | undefined;

  before(async function () {
    if (!terraformAvailable()) return this.skip();
    env = await startEcsControlPlane();
    ecs = env.ecs;
    tf = await terraformDir({ ecsEndpoint: env.s.api.url, accessKeyId: env.s.admin.accessKeyId, secretAccessKey: env.s.admin.secretAccessKey });
    await tf.write(CONFIG('1'));
    await tf.must(['init', '-input=false']);
  });
  after(async () => {
    await tf?.remove();
    await env?.stop();
  });

  it('applies, then plans nothing (exit 0 with -detailed-exitcode)', async () => {
    await tf.must(['apply', '-auto-approve', '-input=false']);
    // an instance in the cluster Terraform made, so the service's task runs
    [host] = await env.cp.fleet.add(1, { ECS_CLUSTER: 'tf' });
    // the world as Terraform left it
    const td = (await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'tfweb' }))).taskDefinition!;
    expect(td).to.include({ family: 'tfweb', revision: 1 });
    expect(td.volumes).to.deep.equal([{ name: 'data', host: { sourcePath: '/srv/data' }, configuredAtLaunch: false }]);
    expect(td.containerDefinitions?.[0].mountPoints).to.deep.equal([{ sourceVolume: 'data', containerPath: '/data' }]);
    expect(td.containerDefinitions?.[1].volumesFrom).to.deep.equal([{ sourceContainer: 'app', readOnly: true }]);
    const svc = (await ecs.send(new DescribeServicesCommand({ cluster: 'tf', services: ['web'] }))).services![0];
    expect(svc).to.include({ status: 'ACTIVE', desiredCount: 1, enableECSManagedTags: true, propagateTags: 'SERVICE', taskDefinition: arn('task-definition/tfweb:1') });
    expect(svc.deployments?.map((d) => d.status)).to.deep.equal(['PRIMARY']);
    const cl = (await ecs.send(new DescribeClustersCommand({ clusters: ['tf'] }))).clusters![0];
    expect(cl).to.deep.include({ status: 'ACTIVE', capacityProviders: [], defaultCapacityProviderStrategy: [] });

    // nothing to change: every field the provider reads back is what it wrote
    const plan = await tf.run(['plan', '-detailed-exitcode', '-input=false']);
    expect(plan.code, plan.stdout + plan.stderr).to.equal(0);
    firstDeployment = svc.deployments![0].id;
  });

  it('force_new_deployment with a changed trigger: a new PRIMARY deployment of the same revision, whose task replaces the one running; then plans nothing', async () => {
    expect(firstDeployment).to.be.a('string');
    const running = async () => {
      const arns = (await ecs.send(new ListTasksCommand({ cluster: 'tf', serviceName: 'web' }))).taskArns ?? [];
      if (!arns.length) return undefined;
      const tasks = (await ecs.send(new DescribeTasksCommand({ cluster: 'tf', tasks: arns }))).tasks ?? [];
      return tasks.length && tasks.every((t) => t.lastStatus === 'RUNNING') ? tasks.map((t) => t.taskArn!) : undefined;
    };
    const before = await eventually(running, 30_000, "the service's task RUNNING");
    await tf.write(CONFIG('2'));
    await tf.must(['apply', '-auto-approve', '-input=false']);
    const redeployed = await eventually(async () => {
      const s = (await ecs.send(new DescribeServicesCommand({ cluster: 'tf', services: ['web'] }))).services![0];
      const now = await running();
      return s.deployments?.length === 1 && now?.length === 1 && !before.includes(now[0]) && { s, now };
    }, 60_000, 'a new deployment whose task replaced the old one');
    expect(redeployed.s.deployments![0]).to.include({ status: 'PRIMARY', taskDefinition: arn('task-definition/tfweb:1') });
    expect(redeployed.s.deployments![0].id).to.not.equal(firstDeployment);
    const replanned = await tf.run(['plan', '-detailed-exitcode', '-input=false']);
    expect(replanned.code, replanned.stdout + replanned.stderr).to.equal(0);
  });

  it('forgotten and imported again by its ARN, the task definition is what the configuration says (plans nothing)', async () => {
    await tf.must(['state', 'rm', 'aws_ecs_task_definition.web']);
    await tf.must(['import', '-input=false', 'aws_ecs_task_definition.web', arn('task-definition/tfweb:1')]);
    const again = await tf.run(['plan', '-detailed-exitcode', '-input=false']);
    expect(again.code, again.stdout + again.stderr).to.equal(0);
  });

  it('destroys', async () => {
    // the instance leaves the cluster (ECS deletes a cluster only once it has none): its task stopped first
    await ecs.send(new UpdateServiceCommand({ cluster: 'tf', service: 'web', desiredCount: 0 }));
    await eventually(async () => !(await ecs.send(new ListTasksCommand({ cluster: 'tf' }))).taskArns?.length, 30_000, 'no tasks in tf');
    await host.agent.stop();
    for (const ci of (await ecs.send(new ListContainerInstancesCommand({ cluster: 'tf' }))).containerInstanceArns ?? []) {
      await ecs.send(new DeregisterContainerInstanceCommand({ cluster: 'tf', containerInstance: ci, force: true }));
    }
    await tf.must(['destroy', '-auto-approve', '-input=false']);
    // the cluster is gone (ECS deletes a cluster only once its services are)
    expect((await ecs.send(new DescribeClustersCommand({ clusters: ['tf'] }))).failures?.[0]?.reason).to.equal('MISSING');
    expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'tfweb:1' }))).taskDefinition?.status).to.equal('INACTIVE');
  });
});
