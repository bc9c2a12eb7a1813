import { expect } from 'chai';
import {
  ClientException,
  ClusterContainsContainerInstancesException,
  ClusterNotFoundException,
  CreateClusterCommand,
  CreateServiceCommand,
  DeleteAttributesCommand,
  DeleteClusterCommand,
  DeleteServiceCommand,
  DeregisterContainerInstanceCommand,
  DeregisterTaskDefinitionCommand,
  DescribeClustersCommand,
  DescribeContainerInstancesCommand,
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  InvalidParameterException,
  ListAttributesCommand,
  ListClustersCommand,
  ListContainerInstancesCommand,
  ListServicesCommand,
  ListTaskDefinitionFamiliesCommand,
  ListTaskDefinitionsCommand,
  ListTasksCommand,
  PutAttributesCommand,
  RegisterContainerInstanceCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  ServiceNotActiveException,
  ServiceNotFoundException,
  StartTaskCommand,
  StopTaskCommand,
  UpdateContainerInstancesStateCommand,
  UpdateServiceCommand,
  paginateListTaskDefinitions,
  type Resource,
} from '@aws-sdk/client-ecs';
import { resources, startEcsServer, thrown, type EcsTestServer } from './support.ts';

const ACCOUNT = '000000000000';
const arn = (rest: string) => `arn:aws:ecs:us-east-1:${ACCOUNT}:${rest}`;
const V = '/apis/berth.dev/v1';
/** the ECS Developer Guide's AWS CLI walk-through, step 5 */
const sleep360 = {
  family: 'sleep360',
  containerDefinitions: [{ name: 'sleep', image: 'busybox', cpu: 10, command: ['sleep', '360'], memory: 10, essential: true }],
};
const value = (rs: Resource[] | undefined, name: string) => rs?.find((r) => r.name === name);

for (const store of (process.env.ONLY_STORE ? [process.env.ONLY_STORE] : ['embedded', 'etcd']) as Array<'embedded' | 'etcd'>) {
  describe(`ECS API operations through @aws-sdk/client-ecs (${store} store)`, function () {
    this.timeout(120_000);
    let s: EcsTestServer;
    let ecs: ECSClient;
    /** the container instance registered in cluster c1 */
    let ci1: string;
    let ci1Arn: string;

    before(async () => {
      s = await startEcsServer({ store });
      ecs = s.client();
    });
    after(async () => s?.stop());

    describe('clusters', () => {
      it('CreateCluster returns ECS\'s shape, and is idempotent', async () => {
        const out = await ecs.send(new CreateClusterCommand({ clusterName: 'c1', tags: [{ key: 'team', value: 'a' }] }));
        expect(out.cluster).to.include({ clusterName: 'c1', status: 'ACTIVE', clusterArn: arn('cluster/c1'), registeredContainerInstancesCount: 0, runningTasksCount: 0, pendingTasksCount: 0, activeServicesCount: 0 });
        const again = await ecs.send(new CreateClusterCommand({ clusterName: 'c1' }));
        expect(again.cluster?.clusterArn).to.equal(arn('cluster/c1'));
        // the same object on the resource API
        const r = await s.api.call('GET', `${V}/clusters/c1`);
        expect(r.status).to.equal(200);
        expect(r.body.spec.tags).to.deep.equal([{ key: 'team', value: 'a' }]);
      });

      it('CreateCluster refuses a bad name with InvalidParameterException', async () => {
        const e = await thrown(() => ecs.send(new CreateClusterCommand({ clusterName: 'no spaces' })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.match(/letters, digits, hyphens/);
      });

      it('DescribeClusters reports missing clusters as failures; names and ARNs both work', async () => {
        const out = await ecs.send(new DescribeClustersCommand({ clusters: ['c1', arn('cluster/default'), 'nope'], include: ['TAGS'] }));
        expect(out.clusters?.map((c) => c.clusterName)).to.deep.equal(['c1', 'default']);
        expect(out.clusters?.[0].tags).to.deep.equal([{ key: 'team', value: 'a' }]);
        expect(out.failures).to.deep.equal([{ arn: arn('cluster/nope'), reason: 'MISSING' }]);
        const dflt = await ecs.send(new DescribeClustersCommand({}));
        expect(dflt.clusters?.map((c) => c.clusterName)).to.deep.equal(['default']);
      });

      it('ListClusters pages with maxResults and nextToken', async () => {
        const all = await ecs.send(new ListClustersCommand({}));
        expect(all.clusterArns).to.deep.equal([arn('cluster/c1'), arn('cluster/default')]);
        const p1 = await ecs.send(new ListClustersCommand({ maxResults: 1 }));
        expect(p1.clusterArns).to.deep.equal([arn('cluster/c1')]);
        expect(p1.nextToken).to.be.a('string');
        const p2 = await ecs.send(new ListClustersCommand({ maxResults: 1, nextToken: p1.nextToken }));
        expect(p2.clusterArns).to.deep.equal([arn('cluster/default')]);
        expect(p2.nextToken).to.equal(undefined);
        const e = await thrown(() => ecs.send(new ListClustersCommand({ nextToken: 'garbage' })));
        expect(e).to.be.instanceOf(InvalidParameterException);
      });

      it('a missing cluster is ClusterNotFoundException', async () => {
        for (const cmd of [new ListServicesCommand({ cluster: 'nope' }), new ListTasksCommand({ cluster: 'nope' }), new DeleteClusterCommand({ cluster: 'nope' })]) {
          const e = await thrown(() => ecs.send(cmd as never));
          expect(e).to.be.instanceOf(ClusterNotFoundException);
          expect(e.message).to.equal('Cluster not found.');
          expect(e.$metadata.httpStatusCode).to.equal(400);
        }
      });

      it('DeleteCluster deletes an empty cluster', async () => {
        await ecs.send(new CreateClusterCommand({ clusterName: 'gone' }));
        const out = await ecs.send(new DeleteClusterCommand({ cluster: arn('cluster/gone') }));
        expect(out.cluster).to.include({ clusterName: 'gone', status: 'INACTIVE' });
        expect((await s.api.call('GET', `${V}/clusters/gone`)).status).to.equal(404);
        const d = await ecs.send(new DescribeClustersCommand({ clusters: ['gone'] }));
        expect(d.failures?.[0].reason).to.equal('MISSING');
      });
    });

    describe('container instances and attributes', () => {
      it('RegisterContainerInstance creates an instance with its resources (ECS\'s shape)', async () => {
        const out = await ecs.send(
          new RegisterContainerInstanceCommand({
            cluster: 'c1',
            totalResources: resources(1024, 512),
            versionInfo: { agentVersion: '1.0.0', dockerVersion: 'DockerVersion: 24.0' },
            attributes: [{ name: 'stack', value: 'prod' }],
            instanceIdentityDocument: JSON.stringify({ instanceId: 'i-0123456789abcdef0' }),
          }),
        );
        const ci = out.containerInstance!;
        expect(ci.containerInstanceArn).to.match(new RegExp(`^${arn('container-instance/c1/')}[0-9a-f]{32}$`));
        ci1Arn = ci.containerInstanceArn!;
        ci1 = ci1Arn.split('/').pop()!;
        expect(ci).to.include({ status: 'ACTIVE', agentConnected: true, ec2InstanceId: 'i-0123456789abcdef0', runningTasksCount: 0, pendingTasksCount: 0 });
        expect(ci.versionInfo).to.deep.equal({ agentVersion: '1.0.0', dockerVersion: 'DockerVersion: 24.0' });
        expect(value(ci.registeredResources, 'CPU')).to.deep.equal({ name: 'CPU', type: 'INTEGER', integerValue: 1024, longValue: 0, doubleValue: 0 });
        expect(value(ci.registeredResources, 'PORTS')?.stringSetValue).to.deep.equal(['22', '2375', '2376', '51678']);
        expect(value(ci.remainingResources, 'MEMORY')?.integerValue).to.equal(512);
        expect(ci.registeredAt).to.be.instanceOf(Date);
        const c = await ecs.send(new DescribeClustersCommand({ clusters: ['c1'] }));
        expect(c.clusters?.[0].registeredContainerInstancesCount).to.equal(1);
      });

      it('RegisterContainerInstance without totalResources is InvalidParameterException', async () => {
        const e = await thrown(() => ecs.send(new RegisterContainerInstanceCommand({ cluster: 'c1' })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.match(/registeredResources/);
      });

      it('ListContainerInstances filters by status and by a cluster query', async () => {
        expect((await ecs.send(new ListContainerInstancesCommand({ cluster: 'c1' }))).containerInstanceArns).to.deep.equal([ci1Arn]);
        expect((await ecs.send(new ListContainerInstancesCommand({ cluster: 'c1', status: 'DRAINING' }))).containerInstanceArns).to.deep.equal([]);
        expect((await ecs.send(new ListContainerInstancesCommand({ cluster: 'c1', filter: 'attribute:stack == prod' }))).containerInstanceArns).to.deep.equal([ci1Arn]);
        expect((await ecs.send(new ListContainerInstancesCommand({ cluster: 'c1', filter: 'attribute:stack == dev' }))).containerInstanceArns).to.deep.equal([]);
        const e = await thrown(() => ecs.send(new ListContainerInstancesCommand({ cluster: 'c1', filter: 'attribute:stack ==' })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect((await ecs.send(new ListContainerInstancesCommand({ cluster: 'default' }))).containerInstanceArns).to.deep.equal([]);
      });

      it('DescribeContainerInstances by id and ARN, with MISSING failures', async () => {
        const out = await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'c1', containerInstances: [ci1, ci1Arn, 'f'.repeat(32)] }));
        expect(out.containerInstances?.map((c) => c.containerInstanceArn)).to.deep.equal([ci1Arn, ci1Arn]);
        expect(out.failures).to.deep.equal([{ arn: arn(`container-instance/c1/${'f'.repeat(32)}`), reason: 'MISSING' }]);
        const e = await thrown(() => ecs.send(new DescribeContainerInstancesCommand({ cluster: 'c1', containerInstances: [] })));
        expect(e).to.be.instanceOf(InvalidParameterException);
      });

      it('PutAttributes, ListAttributes, DeleteAttributes', async () => {
        const put = await ecs.send(new PutAttributesCommand({ cluster: 'c1', attributes: [{ name: 'disk', value: 'ssd', targetId: ci1Arn }, { name: 'gpu', targetId: ci1 }] }));
        expect(put.attributes).to.have.length(2);
        const listed = await ecs.send(new ListAttributesCommand({ cluster: 'c1', targetType: 'container-instance' }));
        expect(listed.attributes?.map((a) => `${a.name}=${a.value ?? ''}@${a.targetId}`).sort()).to.deep.equal([`disk=ssd@${ci1Arn}`, `gpu=@${ci1Arn}`, `stack=prod@${ci1Arn}`]);
        const byName = await ecs.send(new ListAttributesCommand({ cluster: 'c1', targetType: 'container-instance', attributeName: 'disk', attributeValue: 'ssd' }));
        expect(byName.attributes?.map((a) => a.name)).to.deep.equal(['disk']);
        // overwrite a value
        await ecs.send(new PutAttributesCommand({ cluster: 'c1', attributes: [{ name: 'disk', value: 'hdd', targetId: ci1 }] }));
        await ecs.send(new DeleteAttributesCommand({ cluster: 'c1', attributes: [{ name: 'gpu', targetId: ci1Arn }] }));
        const r = await s.api.call('GET', `${V}/namespaces/c1/containerinstances/${ci1}`);
        expect(r.body.spec.attributes).to.deep.equal([
          { name: 'stack', value: 'prod' },
          { name: 'disk', value: 'hdd' },
        ]);
        const e = await thrown(() => ecs.send(new PutAttributesCommand({ cluster: 'c1', attributes: [{ name: 'x', targetId: 'a'.repeat(32) }] })));
        expect(e.name).to.equal('TargetNotFoundException');
        const e2 = await thrown(() => ecs.send(new PutAttributesCommand({ cluster: 'c1', attributes: [{ name: 'x' }] })));
        expect(e2).to.be.instanceOf(InvalidParameterException);
      });
    });

    describe('task definitions', () => {
      it('RegisterTaskDefinition takes the ECS Developer Guide\'s JSON and returns its shape (revision 1)', async () => {
        const out = await ecs.send(new RegisterTaskDefinitionCommand(sleep360 as never));
        const td = out.taskDefinition!;
        expect(td).to.include({ family: 'sleep360', revision: 1, status: 'ACTIVE', taskDefinitionArn: arn('task-definition/sleep360:1'), networkMode: 'bridge' });
        expect(td.containerDefinitions?.[0]).to.deep.include({ name: 'sleep', image: 'busybox', cpu: 10, memory: 10, essential: true, command: ['sleep', '360'], environment: [], mountPoints: [], portMappings: [], volumesFrom: [] });
        expect(td.volumes).to.deep.equal([]);
        expect(td.registeredAt).to.be.instanceOf(Date);
        // the same object as `berth get td` sees it
        const r = await s.api.call('GET', `${V}/taskdefinitions/sleep360:1`);
        expect(r.body.status.family).to.equal('sleep360');
      });

      it('a changed definition registers the next revision', async () => {
        const out = await ecs.send(new RegisterTaskDefinitionCommand({ ...sleep360, containerDefinitions: [{ ...sleep360.containerDefinitions[0], command: ['sleep', '300'] }] } as never));
        expect(out.taskDefinition?.revision).to.equal(2);
        await ecs.send(new RegisterTaskDefinitionCommand({ family: 'big', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 2048 }] }));
        await ecs.send(new RegisterTaskDefinitionCommand({ family: 'web', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16, portMappings: [{ containerPort: 80, hostPort: 8080 }] }] }));
      });

      it('refuses an invalid definition with ClientException naming the field', async () => {
        const e = await thrown(() => ecs.send(new RegisterTaskDefinitionCommand({ family: 'bad', containerDefinitions: [{ name: 'x', memory: 1 }] } as never)));
        expect(e).to.be.instanceOf(ClientException);
        expect(e.message).to.match(/containerDefinitions\[0\]\.(image|memory)/);
        const e2 = await thrown(() => ecs.send(new RegisterTaskDefinitionCommand({ containerDefinitions: [] } as never)));
        expect(e2).to.be.instanceOf(InvalidParameterException);
        expect(e2.message).to.match(/'family'/);
      });

      it('DescribeTaskDefinition by family (latest ACTIVE), family:revision and ARN', async () => {
        expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'sleep360' }))).taskDefinition?.revision).to.equal(2);
        expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'sleep360:1' }))).taskDefinition?.containerDefinitions?.[0].command).to.deep.equal(['sleep', '360']);
        expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: arn('task-definition/sleep360:2') }))).taskDefinition?.revision).to.equal(2);
        const e = await thrown(() => ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'nope' })));
        expect(e).to.be.instanceOf(ClientException);
      });

      it('ListTaskDefinitions (familyPrefix, sort, paging) and ListTaskDefinitionFamilies', async () => {
        const all = await ecs.send(new ListTaskDefinitionsCommand({}));
        expect(all.taskDefinitionArns).to.deep.equal(['big:1', 'sleep360:1', 'sleep360:2', 'web:1'].map((n) => arn(`task-definition/${n}`)));
        const desc = await ecs.send(new ListTaskDefinitionsCommand({ familyPrefix: 'sleep360', sort: 'DESC' }));
        expect(desc.taskDefinitionArns).to.deep.equal([arn('task-definition/sleep360:2'), arn('task-definition/sleep360:1')]);
        const pages: string[] = [];
        for await (const p of paginateListTaskDefinitions({ client: ecs, pageSize: 1 }, {})) pages.push(...(p.taskDefinitionArns ?? []));
        expect(pages).to.deep.equal(all.taskDefinitionArns);
        const fams = await ecs.send(new ListTaskDefinitionFamiliesCommand({}));
        expect(fams.families).to.deep.equal(['big', 'sleep360', 'web']);
        expect((await ecs.send(new ListTaskDefinitionFamiliesCommand({ familyPrefix: 'sl' }))).families).to.deep.equal(['sleep360']);
      });

      it('DeregisterTaskDefinition makes a revision INACTIVE', async () => {
        const out = await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: 'sleep360:2' }));
        expect(out.taskDefinition).to.include({ revision: 2, status: 'INACTIVE' });
        expect(out.taskDefinition?.deregisteredAt).to.be.instanceOf(Date);
        // the family now resolves to revision 1
        expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'sleep360' }))).taskDefinition?.revision).to.equal(1);
        expect((await ecs.send(new ListTaskDefinitionsCommand({ status: 'INACTIVE' }))).taskDefinitionArns).to.deep.equal([arn('task-definition/sleep360:2')]);
        const e = await thrown(() => ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: 'sleep360' })));
        expect(e).to.be.instanceOf(ClientException);
      });
    });

    describe('tasks', () => {
      let taskArns: string[] = [];

      it('RunTask refuses count 11 with InvalidParameterException', async () => {
        const e = await thrown(() => ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:1', count: 11 })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.match(/between 1 and 10/);
        const e2 = await thrown(() => ecs.send(new RunTaskCommand({ cluster: 'c1', count: 1 } as never)));
        expect(e2).to.be.instanceOf(InvalidParameterException);
        const e3 = await thrown(() => ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'nope' })));
        expect(e3).to.be.instanceOf(ClientException);
        const e4 = await thrown(() => ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:2' })));
        expect(e4).to.be.instanceOf(ClientException);
        expect(e4.message).to.match(/inactive/);
      });

      it('RunTask on a cluster without instances is InvalidParameterException', async () => {
        const e = await thrown(() => ecs.send(new RunTaskCommand({ taskDefinition: 'sleep360:1' })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.equal('No Container Instances were found in your cluster.');
      });

      it('RunTask of a task too big for every instance: failures RESOURCE:MEMORY and no task created', async () => {
        const out = await ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'big', count: 2 }));
        expect(out.tasks).to.deep.equal([]);
        expect(out.failures).to.deep.equal([{ arn: ci1Arn, reason: 'RESOURCE:MEMORY', detail: 'needs 2048 MiB, 512 remain' }]);
        const r = await s.api.call('GET', `${V}/namespaces/c1/tasks`);
        expect(r.body.items).to.deep.equal([]);
      });

      it('RunTask that fits creates bound tasks (the shape of the ECS Developer Guide\'s step 7)', async () => {
        const out = await ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:1', count: 2, startedBy: 'me' }));
        expect(out.failures).to.deep.equal([]);
        expect(out.tasks).to.have.length(2);
        for (const t of out.tasks!) {
          expect(t.taskArn).to.match(new RegExp(`^${arn('task/c1/')}[0-9a-f]{32}$`));
          expect(t).to.include({ clusterArn: arn('cluster/c1'), containerInstanceArn: ci1Arn, taskDefinitionArn: arn('task-definition/sleep360:1'), lastStatus: 'PENDING', desiredStatus: 'RUNNING', startedBy: 'me', group: 'family:sleep360', launchType: 'EC2' });
          expect(t.overrides?.containerOverrides).to.deep.equal([{ name: 'sleep' }]);
          expect(t.containers).to.have.length(1);
          expect(t.containers?.[0]).to.include({ name: 'sleep', lastStatus: 'PENDING', taskArn: t.taskArn });
          expect(t.containers?.[0].containerArn).to.match(new RegExp(`^${arn('container/c1/')}`));
          expect(t.createdAt).to.be.instanceOf(Date);
        }
        taskArns = out.tasks!.map((t) => t.taskArn!);
        // the world: bound in the store, resources charged on the instance
        const id = taskArns[0].split('/').pop();
        const r = await s.api.call('GET', `${V}/namespaces/c1/tasks/${id}`);
        expect(r.body.spec.containerInstance).to.equal(ci1);
        const ci = await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'c1', containerInstances: [ci1] }));
        expect(value(ci.containerInstances?.[0].remainingResources, 'MEMORY')?.integerValue).to.equal(512 - 20);
        expect(value(ci.containerInstances?.[0].remainingResources, 'CPU')?.integerValue).to.equal(1024 - 20);
        expect(ci.containerInstances?.[0].pendingTasksCount).to.equal(2);
      });

      it('RunTask charges fixed host ports: a second task needing the same port fails RESOURCE:PORTS', async () => {
        const one = await ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'web' }));
        expect(one.tasks).to.have.length(1);
        const two = await ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'web' }));
        expect(two.tasks).to.deep.equal([]);
        expect(two.failures?.map((f) => f.reason)).to.deep.equal(['RESOURCE:PORTS']);
        await ecs.send(new StopTaskCommand({ cluster: 'c1', task: one.tasks![0].taskArn }));
      });

      it('RunTask is idempotent on clientToken', async () => {
        const a = await ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:1', clientToken: 'tok-1' }));
        const b = await ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:1', clientToken: 'tok-1' }));
        expect(a.tasks).to.have.length(1);
        expect(b.tasks?.map((t) => t.taskArn)).to.deep.equal(a.tasks?.map((t) => t.taskArn));
        taskArns.push(a.tasks![0].taskArn!);
      });

      it('ListTasks with filters', async () => {
        const all = await ecs.send(new ListTasksCommand({ cluster: 'c1' }));
        expect(all.taskArns?.slice().sort()).to.deep.equal(taskArns.slice().sort());
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1', startedBy: 'me' }))).taskArns).to.have.length(2);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1', family: 'sleep360' }))).taskArns).to.have.length(3);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1', family: 'web' }))).taskArns).to.have.length(0);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1', containerInstance: ci1Arn }))).taskArns).to.have.length(3);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1', serviceName: 'none' }))).taskArns).to.have.length(0);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1', desiredStatus: 'STOPPED' }))).taskArns).to.have.length(1); // the web task
        const page = await ecs.send(new ListTasksCommand({ cluster: 'c1', maxResults: 2 }));
        expect(page.taskArns).to.have.length(2);
        expect(page.nextToken).to.be.a('string');
      });

      it('DescribeTasks by id and ARN, with MISSING failures', async () => {
        const id = taskArns[0].split('/').pop()!;
        const out = await ecs.send(new DescribeTasksCommand({ cluster: 'c1', tasks: [id, taskArns[1], 'a'.repeat(32)] }));
        expect(out.tasks?.map((t) => t.taskArn)).to.deep.equal([taskArns[0], taskArns[1]]);
        expect(out.failures).to.deep.equal([{ arn: arn(`task/c1/${'a'.repeat(32)}`), reason: 'MISSING' }]);
        expect(out.tasks?.[0].cpu).to.equal('10');
      });

      it('StopTask stops a task; DescribeTasks and ListTasks show it', async () => {
        const out = await ecs.send(new StopTaskCommand({ cluster: 'c1', task: taskArns[0], reason: 'done here' }));
        expect(out.task).to.include({ taskArn: taskArns[0], desiredStatus: 'STOPPED', stoppedReason: 'done here', stopCode: 'UserInitiated' });
        const d = await ecs.send(new DescribeTasksCommand({ cluster: 'c1', tasks: [taskArns[0]] }));
        expect(d.tasks?.[0]).to.include({ desiredStatus: 'STOPPED', stopCode: 'UserInitiated', stoppedReason: 'done here' });
        const r = await s.api.call('GET', `${V}/namespaces/c1/tasks/${taskArns[0].split('/').pop()}`);
        expect(r.body.spec).to.include({ desiredStatus: 'STOPPED', stopCode: 'UserInitiated', stopReason: 'done here' });
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1', desiredStatus: 'STOPPED' }))).taskArns).to.include(taskArns[0]);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'c1' }))).taskArns).to.not.include(taskArns[0]);
        const e = await thrown(() => ecs.send(new StopTaskCommand({ cluster: 'c1', task: 'b'.repeat(32) })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.equal('The referenced task was not found.');
      });

      it('StartTask binds to the named instances; unknown ones are MISSING', async () => {
        const out = await ecs.send(new StartTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:1', containerInstances: [ci1Arn, 'c'.repeat(32)], overrides: { containerOverrides: [{ name: 'sleep', memory: 20 }] } }));
        expect(out.tasks).to.have.length(1);
        expect(out.tasks?.[0].containerInstanceArn).to.equal(ci1Arn);
        expect(out.tasks?.[0].overrides?.containerOverrides).to.deep.equal([{ name: 'sleep', memory: 20 }]);
        expect(out.failures).to.deep.equal([{ arn: arn(`container-instance/c1/${'c'.repeat(32)}`), reason: 'MISSING' }]);
        const big = await ecs.send(new StartTaskCommand({ cluster: 'c1', taskDefinition: 'big', containerInstances: [ci1] }));
        expect(big.tasks).to.deep.equal([]);
        expect(big.failures?.[0]).to.include({ arn: ci1Arn, reason: 'RESOURCE:MEMORY' });
        const e = await thrown(() => ecs.send(new StartTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:1', containerInstances: Array.from({ length: 11 }, () => ci1) })));
        expect(e).to.be.instanceOf(InvalidParameterException);
      });

      it('UpdateContainerInstancesState drains an instance; RunTask then places nothing on it', async () => {
        const out = await ecs.send(new UpdateContainerInstancesStateCommand({ cluster: 'c1', containerInstances: [ci1, 'd'.repeat(32)], status: 'DRAINING' }));
        expect(out.containerInstances?.[0].status).to.equal('DRAINING');
        expect(out.failures).to.deep.equal([{ arn: arn(`container-instance/c1/${'d'.repeat(32)}`), reason: 'MISSING' }]);
        expect((await ecs.send(new ListContainerInstancesCommand({ cluster: 'c1', status: 'DRAINING' }))).containerInstanceArns).to.deep.equal([ci1Arn]);
        const run = await ecs.send(new RunTaskCommand({ cluster: 'c1', taskDefinition: 'sleep360:1' }));
        expect(run.tasks).to.deep.equal([]);
        expect(run.failures?.[0].arn).to.equal(ci1Arn);
        const e = await thrown(() => ecs.send(new UpdateContainerInstancesStateCommand({ cluster: 'c1', containerInstances: [ci1], status: 'INACTIVE' as never })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        await ecs.send(new UpdateContainerInstancesStateCommand({ cluster: 'c1', containerInstances: [ci1], status: 'ACTIVE' }));
      });
    });

    describe('concurrent RunTask calls', () => {
      it('never over-commit an instance: the binder decides, losers come back as failures', async () => {
        await ecs.send(new CreateClusterCommand({ clusterName: 'race' }));
        await ecs.send(new RegisterTaskDefinitionCommand({ family: 'half', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 100 }] }));
        const reg = await ecs.send(new RegisterContainerInstanceCommand({ cluster: 'race', totalResources: resources(4096, 500) }));
        const ci = reg.containerInstance!.containerInstanceArn!;
        const results = await Promise.all(Array.from({ length: 10 }, () => ecs.send(new RunTaskCommand({ cluster: 'race', taskDefinition: 'half' }))));
        const started = results.flatMap((r) => r.tasks ?? []);
        expect(started).to.have.length(5);
        for (const r of results) {
          if (r.tasks?.length) expect(r.failures).to.deep.equal([]);
          else expect(r.failures?.map((f) => `${f.arn} ${f.reason}`)).to.deep.equal([`${ci} RESOURCE:MEMORY`]);
        }
        const d = await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'race', containerInstances: [ci] }));
        expect(value(d.containerInstances?.[0].remainingResources, 'MEMORY')?.integerValue).to.equal(0);
        // nothing unplaced was left behind
        const all = (await s.api.call('GET', `${V}/namespaces/race/tasks`)).body.items as Array<{ spec: { containerInstance?: string } }>;
        expect(all).to.have.length(5);
        expect(all.every((t) => t.spec.containerInstance === ci.split('/').pop())).to.equal(true);
      });
    });

    describe('services', () => {
      it('CreateService returns the service; a clashing name is not idempotent; a clientToken is', async () => {
        const input = {
          cluster: 'c1',
          serviceName: 'sleeper',
          taskDefinition: 'sleep360',
          desiredCount: 2,
          clientToken: 'svc-token',
          placementStrategy: [{ type: 'spread' as const, field: 'instanceId' }],
          deploymentConfiguration: { maximumPercent: 150 },
        };
        const out = await ecs.send(new CreateServiceCommand(input));
        const svc = out.service!;
        expect(svc).to.include({ serviceName: 'sleeper', serviceArn: arn('service/c1/sleeper'), clusterArn: arn('cluster/c1'), status: 'ACTIVE', desiredCount: 2, runningCount: 0, pendingCount: 0, taskDefinition: arn('task-definition/sleep360:1'), schedulingStrategy: 'REPLICA', launchType: 'EC2' });
        expect(svc.deploymentConfiguration).to.deep.include({ maximumPercent: 150, minimumHealthyPercent: 100 });
        expect(svc.placementStrategy).to.deep.equal([{ type: 'spread', field: 'instanceId' }]);
        expect(svc.createdAt).to.be.instanceOf(Date);
        // the same request again (the task definition by family or by the revision it resolved to) is the same service
        const same = await ecs.send(new CreateServiceCommand(input));
        expect(same.service).to.deep.equal(svc);
        expect((await ecs.send(new CreateServiceCommand({ ...input, taskDefinition: 'sleep360:1' }))).service?.serviceArn).to.equal(svc.serviceArn);
        // nothing new was written
        const stored = await s.api.call('GET', `${V}/namespaces/c1/services/sleeper`);
        expect(stored.body.metadata.generation).to.equal(1);
        // a clashing name with other parameters, or the same parameters with another token (or none), is not
        for (const other of [
          { ...input, desiredCount: 1 },
          { ...input, placementStrategy: undefined },
          { ...input, clientToken: 'other-token' },
          { ...input, clientToken: undefined },
          { cluster: 'c1', serviceName: 'sleeper', taskDefinition: 'sleep360', desiredCount: 1 },
        ]) {
          const e = await thrown(() => ecs.send(new CreateServiceCommand(other)));
          expect(e, JSON.stringify(other)).to.be.instanceOf(InvalidParameterException);
          expect(e.message).to.equal('Creation of service was not idempotent.');
        }
        const e2 = await thrown(() => ecs.send(new CreateServiceCommand({ cluster: 'c1', serviceName: 'x', taskDefinition: 'nope', desiredCount: 1 })));
        expect(e2).to.be.instanceOf(InvalidParameterException);
        const e3 = await thrown(() => ecs.send(new CreateServiceCommand({ cluster: 'c1', serviceName: 'd', taskDefinition: 'sleep360', schedulingStrategy: 'DAEMON', desiredCount: 2 })));
        expect(e3).to.be.instanceOf(InvalidParameterException);
        expect(e3.message).to.equal('The daemon scheduling strategy does not support a desired count for services.');
      });

      it('DescribeServices shows deployments and events (epoch timestamps), and MISSING failures', async () => {
        // what the service controller writes, written here through the resource API
        const at = '2025-01-02T03:04:05.000Z';
        const r = await s.api.call(
          'PATCH',
          `${V}/namespaces/c1/services/sleeper/status`,
          {
            status: {
              runningCount: 1,
              pendingCount: 1,
              deployments: [{ id: 'ecs-svc/1234', status: 'PRIMARY', taskDefinition: 'sleep360:1', desiredCount: 2, pendingCount: 1, runningCount: 1, failedTasks: 0, rolloutState: 'IN_PROGRESS', createdAt: at, updatedAt: at }],
              events: [{ id: 'e1', createdAt: at, message: '(service sleeper) has started 2 tasks.' }],
            },
          },
          { contentType: 'application/merge-patch+json' },
        );
        expect(r.status, JSON.stringify(r.body)).to.equal(200);
        const out = await ecs.send(new DescribeServicesCommand({ cluster: 'c1', services: ['sleeper', arn('service/c1/nope')] }));
        const svc = out.services![0];
        expect(svc).to.include({ runningCount: 1, pendingCount: 1 });
        expect(svc.deployments?.[0]).to.deep.include({ id: 'ecs-svc/1234', status: 'PRIMARY', taskDefinition: arn('task-definition/sleep360:1'), desiredCount: 2, runningCount: 1, pendingCount: 1, rolloutState: 'IN_PROGRESS' });
        expect(svc.deployments?.[0].createdAt?.toISOString()).to.equal(at);
        expect(svc.events).to.deep.equal([{ id: 'e1', createdAt: new Date(at), message: '(service sleeper) has started 2 tasks.' }]);
        expect(out.failures).to.deep.equal([{ arn: arn('service/c1/nope'), reason: 'MISSING' }]);
        const raw = await s.raw('AmazonEC2ContainerServiceV20141113.DescribeServices', JSON.stringify({ cluster: 'c1', services: ['sleeper'] }));
        expect(raw.body.services[0].deployments[0].createdAt).to.equal(Date.parse(at) / 1000);
        const e = await thrown(() => ecs.send(new DescribeServicesCommand({ cluster: 'c1', services: Array.from({ length: 11 }, (_, k) => `s${k}`) })));
        expect(e).to.be.instanceOf(InvalidParameterException);
      });

      it('UpdateService changes the desired count and task definition', async () => {
        await ecs.send(new RegisterTaskDefinitionCommand({ family: 'sleep360', containerDefinitions: [{ name: 'sleep', image: 'busybox', memory: 12 }] }));
        const out = await ecs.send(new UpdateServiceCommand({ cluster: 'c1', service: 'sleeper', desiredCount: 3, taskDefinition: 'sleep360', forceNewDeployment: true }));
        expect(out.service).to.include({ desiredCount: 3, taskDefinition: arn('task-definition/sleep360:3') });
        const r = await s.api.call('GET', `${V}/namespaces/c1/services/sleeper`);
        expect(r.body.spec).to.include({ desiredCount: 3, taskDefinition: 'sleep360:3' });
        expect(r.body.metadata.generation).to.equal(2);
        const e = await thrown(() => ecs.send(new UpdateServiceCommand({ cluster: 'c1', service: 'nope', desiredCount: 1 })));
        expect(e).to.be.instanceOf(ServiceNotFoundException);
        const e2 = await thrown(() => ecs.send(new UpdateServiceCommand({ cluster: 'c1', service: 'sleeper', desiredCount: -1 })));
        expect(e2).to.be.instanceOf(InvalidParameterException);
      });

      it('ListServices', async () => {
        await ecs.send(new CreateServiceCommand({ cluster: 'c1', serviceName: 'zero', taskDefinition: 'sleep360', desiredCount: 0 }));
        expect((await ecs.send(new ListServicesCommand({ cluster: 'c1' }))).serviceArns).to.deep.equal([arn('service/c1/sleeper'), arn('service/c1/zero')]);
        expect((await ecs.send(new ListServicesCommand({ cluster: 'c1', schedulingStrategy: 'DAEMON' }))).serviceArns).to.deep.equal([]);
        expect((await ecs.send(new ListServicesCommand({}))).serviceArns).to.deep.equal([]);
      });

      it('DeleteService refuses a scaled service unless forced, then it drains', async () => {
        const e = await thrown(() => ecs.send(new DeleteServiceCommand({ cluster: 'c1', service: 'sleeper' })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.equal('The service cannot be stopped while it is scaled above 0.');
        const out = await ecs.send(new DeleteServiceCommand({ cluster: 'c1', service: 'sleeper', force: true }));
        expect(out.service).to.include({ serviceName: 'sleeper', status: 'DRAINING', desiredCount: 0 });
        const d = await ecs.send(new DescribeServicesCommand({ cluster: 'c1', services: ['sleeper'] }));
        expect(d.services?.[0].status).to.equal('DRAINING');
        const r = await s.api.call('GET', `${V}/namespaces/c1/services/sleeper`);
        expect(r.body.metadata.deletionTimestamp).to.be.a('string');
        const e2 = await thrown(() => ecs.send(new UpdateServiceCommand({ cluster: 'c1', service: 'sleeper', desiredCount: 1 })));
        expect(e2).to.be.instanceOf(ServiceNotActiveException);
        const e3 = await thrown(() => ecs.send(new DeleteServiceCommand({ cluster: 'c1', service: 'nope' })));
        expect(e3).to.be.instanceOf(ServiceNotFoundException);
        // a DRAINING service is described but no longer listed
        expect((await ecs.send(new ListServicesCommand({ cluster: 'c1' }))).serviceArns).to.deep.equal([arn('service/c1/zero')]);
        // a service at 0 needs no force
        expect((await ecs.send(new DeleteServiceCommand({ cluster: 'c1', service: 'zero' }))).service?.status).to.equal('DRAINING');
      });
    });

    describe('deregistration and cluster deletion', () => {
      it('DeregisterContainerInstance refuses an instance with tasks unless forced', async () => {
        const e = await thrown(() => ecs.send(new DeregisterContainerInstanceCommand({ cluster: 'c1', containerInstance: ci1 })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.match(/not stopped/);
        const e2 = await thrown(() => ecs.send(new DeleteClusterCommand({ cluster: 'c1' })));
        expect(e2).to.be.instanceOf(ClusterContainsContainerInstancesException);
        const out = await ecs.send(new DeregisterContainerInstanceCommand({ cluster: 'c1', containerInstance: ci1Arn, force: true }));
        expect(out.containerInstance).to.include({ containerInstanceArn: ci1Arn, status: 'INACTIVE' });
        expect((await ecs.send(new ListContainerInstancesCommand({ cluster: 'c1' }))).containerInstanceArns).to.deep.equal([]);
        // its tasks were recorded STOPPED
        const tasks = (await s.api.call('GET', `${V}/namespaces/c1/tasks`)).body.items as Array<{ status: { lastStatus: string } }>;
        expect(tasks.length).to.be.greaterThan(0);
        expect(tasks.every((t) => t.status.lastStatus === 'STOPPED')).to.equal(true);
        // like ECS, a deregistered instance is no longer listed but still described, INACTIVE
        const d = await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'c1', containerInstances: [ci1] }));
        expect(d.failures).to.deep.equal([]);
        expect(d.containerInstances?.[0]).to.include({ containerInstanceArn: ci1Arn, status: 'INACTIVE', agentConnected: false });
        // and it no longer holds the cluster
        expect((await s.api.call('GET', `${V}/namespaces/c1/containerinstances/${ci1}`)).status).to.equal(404);
      });
    });
  });
}
