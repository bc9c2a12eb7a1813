import { expect } from 'chai';
import {
  AccessDeniedException,
  ClientException,
  ClusterNotFoundException,
  CreateClusterCommand,
  CreateDaemonCommand,
  CreateServiceCommand,
  DaemonNotActiveException,
  DaemonNotFoundException,
  DeleteDaemonCommand,
  DeleteDaemonTaskDefinitionCommand,
  DescribeClustersCommand,
  DescribeContainerInstancesCommand,
  DescribeDaemonCommand,
  DescribeDaemonTaskDefinitionCommand,
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  InvalidParameterException,
  ListContainerInstancesCommand,
  ListDaemonsCommand,
  ListDaemonTaskDefinitionsCommand,
  ListTagsForResourceCommand,
  ListTasksCommand,
  RegisterContainerInstanceCommand,
  RegisterDaemonTaskDefinitionCommand,
  RegisterTaskDefinitionCommand,
  ResourceNotFoundException,
  RunTaskCommand,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateDaemonCommand,
  waitUntilDaemonActive,
  waitUntilDaemonTaskDefinitionActive,
  waitUntilDaemonTaskDefinitionDeleted,
} from '@aws-sdk/client-ecs';
import { Client } from '../../pkg/client/client.ts';
import { eventually, type Fleet, type Running } from '../support/fleet.ts';
import { resources, startEcsControlPlane, startEcsServer, thrown, type EcsTestServer } from './support.ts';

const ACCOUNT = '000000000000';
const arn = (rest: string) => `arn:aws:ecs:us-east-1:${ACCOUNT}:${rest}`;
const V = '/apis/berth.dev/v1';
const TARGET = 'AmazonEC2ContainerServiceV20141113.';
const waiter = (client: ECSClient) => ({ client, minDelay: 1, maxDelay: 1, maxWaitTime: 30 });

/** ECS's managed daemons documentation: "Creating a daemon task definition", the CLI's JSON file */
const myDaemonTask = {
  family: 'my-daemon-task',
  containerDefinitions: [
    { name: 'daemon-container', image: 'public.ecr.aws/docker/library/busybox:latest', essential: true, command: ['sh', '-c', "while true; do echo 'Daemon running'; sleep 30; done"], memoryReservation: 512 },
  ],
};
/** ECS's managed daemons documentation: the log collector with a bind mount (a memory reservation added: EC2 needs one) */
const logCollector = {
  family: 'log-collector',
  containerDefinitions: [{ name: 'log-collector', image: 'fluent/fluentd:latest', memoryReservation: 64, mountPoints: [{ sourceVolume: 'var-log', containerPath: '/var/log' }] }],
  volumes: [{ name: 'var-log', host: { sourcePath: '/var/log' } }],
};

for (const store of (process.env.ONLY_STORE ? [process.env.ONLY_STORE] : ['embedded', 'etcd']) as Array<'embedded' | 'etcd'>) {
  describe(`ECS API daemons and tags through @aws-sdk/client-ecs (${store} store)`, function () {
    this.timeout(120_000);
    let s: EcsTestServer;
    let ecs: ECSClient;

    before(async () => {
      s = await startEcsServer({ store });
      ecs = s.client();
    });
    after(async () => s?.stop());

    describe('daemon task definitions', () => {
      it('RegisterDaemonTaskDefinition takes the managed daemons documentation\'s JSON and answers with the revision ARN', async () => {
        const out = await ecs.send(new RegisterDaemonTaskDefinitionCommand(myDaemonTask));
        expect(out.daemonTaskDefinitionArn).to.equal(arn('daemon-task-definition/my-daemon-task:1'));
        // the same object on the resource API: a DaemonTaskDefinition revision
        const r = await s.api.call('GET', `${V}/daemontaskdefinitions/my-daemon-task:1`);
        expect(r.status).to.equal(200);
        expect(r.body.status).to.include({ family: 'my-daemon-task', revision: 1, status: 'ACTIVE' });
        expect(r.body.spec.containerDefinitions[0]).to.include({ name: 'daemon-container', memoryReservation: 512 });
        // a changed definition is the next revision
        const two = await ecs.send(new RegisterDaemonTaskDefinitionCommand({ ...myDaemonTask, cpu: '256', memory: '512', tags: [{ key: 'team', value: 'obs' }] }));
        expect(two.daemonTaskDefinitionArn).to.equal(arn('daemon-task-definition/my-daemon-task:2'));
        // daemon_bridge, the only network mode, may be named (the SDK has no such member: the raw wire)
        const same = await s.raw(`${TARGET}RegisterDaemonTaskDefinition`, JSON.stringify({ ...myDaemonTask, cpu: '256', memory: '512', tags: [{ key: 'team', value: 'obs' }], networkMode: 'daemon_bridge' }));
        expect(same.status, JSON.stringify(same.body)).to.equal(200);
        expect(same.body).to.deep.equal({ daemonTaskDefinitionArn: arn('daemon-task-definition/my-daemon-task:2') });
        const lc = await ecs.send(new RegisterDaemonTaskDefinitionCommand(logCollector));
        expect(lc.daemonTaskDefinitionArn).to.equal(arn('daemon-task-definition/log-collector:1'));
        await waitUntilDaemonTaskDefinitionActive(waiter(ecs), { daemonTaskDefinition: 'log-collector' });
      });

      it('refuses what daemon task definitions do not take, naming it', async () => {
        // members ECS's daemon shapes do not have (the SDK drops them: the raw wire)
        const e = await s.raw(`${TARGET}RegisterDaemonTaskDefinition`, JSON.stringify({ ...myDaemonTask, networkMode: 'bridge' }));
        expect(e.status).to.equal(400);
        expect(e.body.__type).to.equal('ClientException');
        expect(e.body.message).to.match(/networkMode/);
        const e2 = await s.raw(`${TARGET}RegisterDaemonTaskDefinition`, JSON.stringify({ family: 'ports', containerDefinitions: [{ name: 'x', image: 'busybox', memory: 16, portMappings: [{ containerPort: 80 }] }] }));
        expect(e2.body.__type).to.equal('ClientException');
        expect(e2.body.message).to.match(/portMappings/);
        const e6 = await thrown(() => ecs.send(new RegisterDaemonTaskDefinitionCommand({ family: 'vols', containerDefinitions: [{ name: 'x', image: 'busybox', memory: 16 }], volumes: [{ name: 'v' } as never] })));
        expect(e6).to.be.instanceOf(ClientException);
        expect(e6.message).to.match(/sourcePath/);
        const e3 = await thrown(() => ecs.send(new RegisterDaemonTaskDefinitionCommand({ containerDefinitions: myDaemonTask.containerDefinitions } as never)));
        expect(e3).to.be.instanceOf(InvalidParameterException);
        expect(e3.message).to.match(/'family'/);
        const e4 = await thrown(() => ecs.send(new RegisterDaemonTaskDefinitionCommand({ ...myDaemonTask, pidMode: 'shared' })));
        expect(e4).to.be.instanceOf(InvalidParameterException);
        expect(e4.message).to.equal('pidMode is not supported by berth.');
        const e5 = await thrown(() => ecs.send(new RegisterDaemonTaskDefinitionCommand({ ...myDaemonTask, tags: [{ key: 'aws:owner', value: 'x' }] })));
        expect(e5).to.be.instanceOf(InvalidParameterException);
      });

      it('DescribeDaemonTaskDefinition by family (latest ACTIVE), family:revision and ARN', async () => {
        const out = await ecs.send(new DescribeDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'my-daemon-task' }));
        const td = out.daemonTaskDefinition!;
        expect(td).to.deep.include({
          daemonTaskDefinitionArn: arn('daemon-task-definition/my-daemon-task:2'),
          family: 'my-daemon-task',
          revision: 2,
          status: 'ACTIVE',
          cpu: '256',
          memory: '512',
          // cpu 0 is the container default, as ECS shows it
          containerDefinitions: [{ ...myDaemonTask.containerDefinitions[0], cpu: 0 }],
          volumes: [],
        });
        expect(td.registeredAt).to.be.instanceOf(Date);
        expect(td.deleteRequestedAt).to.equal(undefined);
        expect((await ecs.send(new DescribeDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'my-daemon-task:1' }))).daemonTaskDefinition?.revision).to.equal(1);
        const byArn = await ecs.send(new DescribeDaemonTaskDefinitionCommand({ daemonTaskDefinition: arn('daemon-task-definition/log-collector:1') }));
        expect(byArn.daemonTaskDefinition?.volumes).to.deep.equal(logCollector.volumes);
        expect(byArn.daemonTaskDefinition?.containerDefinitions?.[0].mountPoints?.[0]).to.deep.include(logCollector.containerDefinitions[0].mountPoints[0]);
        // on the wire: epoch seconds, and no networkMode (ECS's shape has none)
        const raw = await s.raw(`${TARGET}DescribeDaemonTaskDefinition`, JSON.stringify({ daemonTaskDefinition: 'log-collector:1' }));
        expect(raw.body.daemonTaskDefinition.registeredAt).to.be.a('number');
        expect(raw.body.daemonTaskDefinition).to.not.have.property('networkMode');
        for (const ref of ['nope', 'nope:1', arn('task-definition/my-daemon-task:1')]) {
          const e = await thrown(() => ecs.send(new DescribeDaemonTaskDefinitionCommand({ daemonTaskDefinition: ref })));
          expect(e, ref).to.be.instanceOf(ClientException);
        }
      });

      it('ListDaemonTaskDefinitions: familyPrefix, family, LAST_REGISTERED, sort and paging', async () => {
        const all = await ecs.send(new ListDaemonTaskDefinitionsCommand({}));
        expect(all.daemonTaskDefinitions?.map((d) => d.arn)).to.deep.equal(['log-collector:1', 'my-daemon-task:1', 'my-daemon-task:2'].map((n) => arn(`daemon-task-definition/${n}`)));
        expect(all.daemonTaskDefinitions?.[0].status).to.equal('ACTIVE');
        expect(all.daemonTaskDefinitions?.[0].registeredAt).to.be.instanceOf(Date);
        const mine = await ecs.send(new ListDaemonTaskDefinitionsCommand({ familyPrefix: 'my-', sort: 'DESC' }));
        expect(mine.daemonTaskDefinitions?.map((d) => d.arn)).to.deep.equal([arn('daemon-task-definition/my-daemon-task:2'), arn('daemon-task-definition/my-daemon-task:1')]);
        expect((await ecs.send(new ListDaemonTaskDefinitionsCommand({ family: 'my-daemon' }))).daemonTaskDefinitions).to.deep.equal([]);
        const last = await ecs.send(new ListDaemonTaskDefinitionsCommand({ revision: 'LAST_REGISTERED' }));
        expect(last.daemonTaskDefinitions?.map((d) => d.arn)).to.deep.equal([arn('daemon-task-definition/log-collector:1'), arn('daemon-task-definition/my-daemon-task:2')]);
        const arns: string[] = [];
        let nextToken: string | undefined;
        do {
          const p = await ecs.send(new ListDaemonTaskDefinitionsCommand({ maxResults: 2, nextToken }));
          expect(p.daemonTaskDefinitions!.length).to.be.at.most(2);
          arns.push(...p.daemonTaskDefinitions!.map((d) => d.arn!));
          nextToken = p.nextToken;
        } while (nextToken);
        expect(arns).to.deep.equal(all.daemonTaskDefinitions?.map((d) => d.arn));
        const e = await thrown(() => ecs.send(new ListDaemonTaskDefinitionsCommand({ maxResults: 101 })));
        expect(e).to.be.instanceOf(InvalidParameterException);
      });
    });

    describe('daemons', () => {
      let daemonArn: string;
      let createdAt: Date;
      let deploymentArn: string;

      it('CreateDaemon makes a Daemon in the cluster and answers in ECS shape', async () => {
        const out = await ecs.send(
          new CreateDaemonCommand({
            daemonName: 'monitor',
            clusterArn: arn('cluster/default'),
            daemonTaskDefinitionArn: arn('daemon-task-definition/my-daemon-task:1'),
            capacityProviderArns: [],
            tags: [{ key: 'team', value: 'obs' }],
            clientToken: 'monitor-token',
            critical: false,
          }),
        );
        daemonArn = out.daemonArn!;
        expect(daemonArn).to.equal(arn('daemon/default/monitor'));
        expect(out.status).to.equal('ACTIVE');
        expect(out.createdAt).to.be.instanceOf(Date);
        expect(out.deploymentArn).to.match(new RegExp(`^${arn('daemon-deployment/default/monitor/')}[A-Za-z0-9]{21}$`));
        createdAt = out.createdAt!;
        deploymentArn = out.deploymentArn!;
        // the object the daemon controller runs
        const r = await s.api.call('GET', `${V}/namespaces/default/daemons/monitor`);
        expect(r.body.spec).to.deep.equal({ daemonTaskDefinition: 'my-daemon-task:1', clientToken: 'monitor-token', tags: [{ key: 'team', value: 'obs' }] });
        expect(r.body.status.daemonArn).to.equal(daemonArn);
        // the family resolves to its latest revision; the cluster by name or default
        await ecs.send(new CreateDaemonCommand({ daemonName: 'logs', daemonTaskDefinitionArn: 'log-collector', capacityProviderArns: [] }));
        expect((await s.api.call('GET', `${V}/namespaces/default/daemons/logs`)).body.spec.daemonTaskDefinition).to.equal('log-collector:1');
        await waitUntilDaemonActive(waiter(ecs), { daemonArn: 'logs' });
      });

      it('CreateDaemon is idempotent on the same request; a clash or a bad request is refused', async () => {
        const again = await ecs.send(new CreateDaemonCommand({ daemonName: 'monitor', daemonTaskDefinitionArn: 'my-daemon-task:1', capacityProviderArns: [], tags: [{ key: 'team', value: 'obs' }], clientToken: 'monitor-token' }));
        expect(again).to.deep.include({ daemonArn, status: 'ACTIVE', createdAt, deploymentArn });
        const clash = await thrown(() => ecs.send(new CreateDaemonCommand({ daemonName: 'monitor', daemonTaskDefinitionArn: 'my-daemon-task:2', capacityProviderArns: [], clientToken: 'monitor-token' })));
        expect(clash).to.be.instanceOf(InvalidParameterException);
        expect(clash.message).to.equal('Creation of daemon was not idempotent.');
        const cases: Array<[object, new (...a: never[]) => Error, RegExp]> = [
          [{ clusterArn: arn('cluster/nope') }, ClusterNotFoundException, /Cluster not found/],
          [{ daemonTaskDefinitionArn: 'nope' }, ClientException, /not found/],
          [{ daemonTaskDefinitionArn: arn('task-definition/my-daemon-task:1') }, ClientException, /not a daemon task definition ARN/],
          [{ daemonName: 'no spaces' }, InvalidParameterException, /letters, digits/],
          [{ capacityProviderArns: [arn('capacity-provider/mine')] }, InvalidParameterException, /capacityProviderArns is not supported/],
          [{ critical: true }, InvalidParameterException, /critical/],
          [{ propagateTags: 'DAEMON' }, InvalidParameterException, /propagateTags/],
          [{ deploymentConfiguration: { drainPercent: 120 } }, InvalidParameterException, /drainPercent/],
          [{ deploymentConfiguration: { bakeTimeInMinutes: 5 } }, InvalidParameterException, /bakeTimeInMinutes/],
        ];
        for (const [patch, type, message] of cases) {
          const e = await thrown(() => ecs.send(new CreateDaemonCommand({ daemonName: 'other', daemonTaskDefinitionArn: 'my-daemon-task', capacityProviderArns: [], ...patch })));
          expect(e, JSON.stringify(patch)).to.be.instanceOf(type);
          expect(e.message, JSON.stringify(patch)).to.match(message);
        }
        const e = await thrown(() => ecs.send(new CreateDaemonCommand({ daemonTaskDefinitionArn: 'my-daemon-task' } as never)));
        expect(e).to.be.instanceOf(InvalidParameterException);
        expect(e.message).to.match(/'daemonName'/);
        expect((await s.api.call('GET', `${V}/namespaces/default/daemons/other`)).status).to.equal(404);
      });

      it('DescribeDaemon by ARN or name: its current revision and deployment', async () => {
        const out = await ecs.send(new DescribeDaemonCommand({ daemonArn }));
        const d = out.daemon!;
        expect(d).to.deep.include({ daemonArn, clusterArn: arn('cluster/default'), status: 'ACTIVE', deploymentArn, createdAt });
        expect(d.updatedAt?.getTime()).to.equal(createdAt.getTime());
        expect(d.currentRevisions).to.have.length(1);
        expect(d.currentRevisions?.[0]).to.deep.include({ totalRunningCount: 0, totalWithoutDaemonCount: 0 });
        expect(d.currentRevisions?.[0].arn).to.match(new RegExp(`^${arn('daemon-revision/default/monitor/')}[0-9]+$`));
        // the same revision id on every read
        expect((await ecs.send(new DescribeDaemonCommand({ daemonArn: 'monitor' }))).daemon?.currentRevisions?.[0].arn).to.equal(d.currentRevisions?.[0].arn);
        const raw = await s.raw(`${TARGET}DescribeDaemon`, JSON.stringify({ daemonArn }));
        expect(raw.body.daemon.createdAt).to.be.a('number');
      });

      it('DescribeDaemon of an unknown daemon is DaemonNotFoundException; of an unknown cluster ClusterNotFoundException', async () => {
        for (const daemonArn of ['nope', arn('daemon/default/nope')]) {
          const e = await thrown(() => ecs.send(new DescribeDaemonCommand({ daemonArn })));
          expect(e, daemonArn).to.be.instanceOf(DaemonNotFoundException);
          expect(e.message).to.equal('Daemon not found.');
          expect(e.$metadata.httpStatusCode).to.equal(400);
        }
        expect(await thrown(() => ecs.send(new DescribeDaemonCommand({ daemonArn: arn('daemon/nope/monitor') })))).to.be.instanceOf(ClusterNotFoundException);
        expect(await thrown(() => ecs.send(new DescribeDaemonCommand({ daemonArn: arn('service/default/monitor') })))).to.be.instanceOf(InvalidParameterException);
        expect(await thrown(() => ecs.send(new DescribeDaemonCommand({} as never)))).to.be.instanceOf(InvalidParameterException);
      });

      it('ListDaemons lists a cluster\'s daemons, with paging', async () => {
        const all = await ecs.send(new ListDaemonsCommand({}));
        expect(all.daemonSummariesList?.map((d) => d.daemonArn)).to.deep.equal([arn('daemon/default/logs'), daemonArn]);
        expect(all.daemonSummariesList?.[1]).to.deep.include({ daemonArn, status: 'ACTIVE', createdAt });
        const p1 = await ecs.send(new ListDaemonsCommand({ clusterArn: 'default', maxResults: 1 }));
        expect(p1.daemonSummariesList?.map((d) => d.daemonArn)).to.deep.equal([arn('daemon/default/logs')]);
        const p2 = await ecs.send(new ListDaemonsCommand({ clusterArn: arn('cluster/default'), maxResults: 1, nextToken: p1.nextToken }));
        expect(p2.daemonSummariesList?.map((d) => d.daemonArn)).to.deep.equal([daemonArn]);
        expect(p2.nextToken).to.equal(undefined);
        await ecs.send(new CreateClusterCommand({ clusterName: 'empty' }));
        expect((await ecs.send(new ListDaemonsCommand({ clusterArn: 'empty' }))).daemonSummariesList).to.deep.equal([]);
        expect(await thrown(() => ecs.send(new ListDaemonsCommand({ clusterArn: 'nope' })))).to.be.instanceOf(ClusterNotFoundException);
      });

      it('UpdateDaemon rolls the daemon to another revision: a new deployment', async () => {
        const out = await ecs.send(
          new UpdateDaemonCommand({ daemonArn, daemonTaskDefinitionArn: arn('daemon-task-definition/my-daemon-task:2'), capacityProviderArns: [], deploymentConfiguration: { drainPercent: 50 } }),
        );
        expect(out).to.deep.include({ daemonArn, status: 'ACTIVE', createdAt });
        expect(out.updatedAt!.getTime()).to.be.greaterThanOrEqual(createdAt.getTime());
        expect(out.deploymentArn).to.not.equal(deploymentArn);
        const r = await s.api.call('GET', `${V}/namespaces/default/daemons/monitor`);
        // no instances yet: 50% of none is still one at a time
        expect(r.body.spec).to.deep.include({ daemonTaskDefinition: 'my-daemon-task:2', deploymentConfiguration: { maxUnavailable: 1 } });
        expect(r.body.metadata.generation).to.equal(2);
        const d = await ecs.send(new DescribeDaemonCommand({ daemonArn }));
        expect(d.daemon?.deploymentArn).to.equal(out.deploymentArn);
        expect(d.daemon?.updatedAt?.getTime()).to.equal(out.updatedAt?.getTime());
        const e = await thrown(() => ecs.send(new UpdateDaemonCommand({ daemonArn: 'nope', daemonTaskDefinitionArn: 'my-daemon-task', capacityProviderArns: [] })));
        expect(e).to.be.instanceOf(DaemonNotFoundException);
        const e2 = await thrown(() => ecs.send(new UpdateDaemonCommand({ daemonArn, daemonTaskDefinitionArn: 'nope', capacityProviderArns: [] })));
        expect(e2).to.be.instanceOf(ClientException);
      });

      it('DeleteDaemonTaskDefinition: the revision is DELETE_IN_PROGRESS while a daemon uses it, then DELETED', async () => {
        const inUse = await ecs.send(new RegisterDaemonTaskDefinitionCommand({ ...logCollector, memory: '128' }));
        expect(inUse.daemonTaskDefinitionArn).to.equal(arn('daemon-task-definition/log-collector:2'));
        await ecs.send(new UpdateDaemonCommand({ daemonArn: 'logs', daemonTaskDefinitionArn: 'log-collector:2', capacityProviderArns: [] }));
        const out = await ecs.send(new DeleteDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'log-collector:2' }));
        expect(out.daemonTaskDefinitionArn).to.equal(arn('daemon-task-definition/log-collector:2'));
        const d = await ecs.send(new DescribeDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'log-collector:2' }));
        expect(d.daemonTaskDefinition?.status).to.equal('DELETE_IN_PROGRESS');
        expect(d.daemonTaskDefinition?.deleteRequestedAt).to.be.instanceOf(Date);
        // the family now resolves to revision 1; a deleted revision runs no new daemon
        expect((await ecs.send(new DescribeDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'log-collector' }))).daemonTaskDefinition?.revision).to.equal(1);
        const e = await thrown(() => ecs.send(new CreateDaemonCommand({ daemonName: 'late', daemonTaskDefinitionArn: 'log-collector:2', capacityProviderArns: [] })));
        expect(e).to.be.instanceOf(ClientException);
        expect(e.message).to.match(/not ACTIVE/);
        const listed = await ecs.send(new ListDaemonTaskDefinitionsCommand({ status: 'DELETE_IN_PROGRESS' }));
        expect(listed.daemonTaskDefinitions?.map((t) => `${t.arn} ${t.status}`)).to.deep.equal([`${arn('daemon-task-definition/log-collector:2')} DELETE_IN_PROGRESS`]);
        // not ACTIVE: not again; a revision is needed
        expect(await thrown(() => ecs.send(new DeleteDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'log-collector:2' })))).to.be.instanceOf(ClientException);
        expect(await thrown(() => ecs.send(new DeleteDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'log-collector' })))).to.be.instanceOf(ClientException);
        // once no daemon runs it, it is DELETED (the SDK's waiter)
        await ecs.send(new UpdateDaemonCommand({ daemonArn: 'logs', daemonTaskDefinitionArn: 'log-collector:1', capacityProviderArns: [] }));
        await waitUntilDaemonTaskDefinitionDeleted(waiter(ecs), { daemonTaskDefinition: 'log-collector:2' });
        const all = await ecs.send(new ListDaemonTaskDefinitionsCommand({ status: 'ALL', familyPrefix: 'log-' }));
        expect(all.daemonTaskDefinitions?.map((t) => t.status)).to.deep.equal(['ACTIVE', 'DELETED']);
      });

      it('DeleteDaemon: DELETE_IN_PROGRESS until the daemon controller lets it go; then it is not ACTIVE', async () => {
        const out = await ecs.send(new DeleteDaemonCommand({ daemonArn: 'logs' }));
        expect(out).to.deep.include({ daemonArn: arn('daemon/default/logs'), status: 'DELETE_IN_PROGRESS' });
        expect(out.updatedAt).to.be.instanceOf(Date);
        // no controller runs here: the finalizer holds it
        const r = await s.api.call('GET', `${V}/namespaces/default/daemons/logs`);
        expect(r.body.metadata.deletionTimestamp).to.be.a('string');
        expect((await ecs.send(new DescribeDaemonCommand({ daemonArn: 'logs' }))).daemon?.status).to.equal('DELETE_IN_PROGRESS');
        expect((await ecs.send(new ListDaemonsCommand({}))).daemonSummariesList?.map((d) => d.status)).to.deep.equal(['DELETE_IN_PROGRESS', 'ACTIVE']);
        for (const cmd of [new DeleteDaemonCommand({ daemonArn: 'logs' }), new UpdateDaemonCommand({ daemonArn: 'logs', daemonTaskDefinitionArn: 'log-collector', capacityProviderArns: [] })]) {
          const e = await thrown(() => ecs.send(cmd as never));
          expect(e).to.be.instanceOf(DaemonNotActiveException);
        }
        expect(await thrown(() => ecs.send(new DeleteDaemonCommand({ daemonArn: arn('daemon/default/nope') })))).to.be.instanceOf(DaemonNotFoundException);
        // the name is taken while it is being deleted
        const e = await thrown(() => ecs.send(new CreateDaemonCommand({ daemonName: 'logs', daemonTaskDefinitionArn: 'log-collector:1', capacityProviderArns: [] })));
        expect(e).to.be.instanceOf(InvalidParameterException);
      });

      it('a viewer may describe daemons but not create, update or delete them', async () => {
        const viewer = s.client({ key: s.viewer });
        expect((await viewer.send(new DescribeDaemonCommand({ daemonArn }))).daemon?.daemonArn).to.equal(daemonArn);
        expect((await viewer.send(new ListDaemonTaskDefinitionsCommand({}))).daemonTaskDefinitions?.length).to.be.greaterThan(0);
        for (const cmd of [
          new CreateDaemonCommand({ daemonName: 'v', daemonTaskDefinitionArn: 'my-daemon-task', capacityProviderArns: [] }),
          new UpdateDaemonCommand({ daemonArn, daemonTaskDefinitionArn: 'my-daemon-task:1', capacityProviderArns: [] }),
          new DeleteDaemonCommand({ daemonArn }),
          new RegisterDaemonTaskDefinitionCommand({ ...myDaemonTask, family: 'v' }),
          new DeleteDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'my-daemon-task:1' }),
        ]) {
          const e = await thrown(() => viewer.send(cmd as never));
          expect(e, cmd.constructor.name).to.be.instanceOf(AccessDeniedException);
        }
      });
    });

    describe('tags', () => {
      let ciArn: string;
      let taskArn: string;
      const svcArn = arn('service/tagged/svc');

      before(async () => {
        await ecs.send(new CreateClusterCommand({ clusterName: 'tagged' }));
        const ci = await ecs.send(new RegisterContainerInstanceCommand({ cluster: 'tagged', totalResources: resources(1024, 1024), tags: [{ key: 'rack', value: 'r1' }] }));
        ciArn = ci.containerInstance!.containerInstanceArn!;
        expect(ci.containerInstance?.tags).to.deep.equal([{ key: 'rack', value: 'r1' }]);
        await ecs.send(new RegisterTaskDefinitionCommand({ family: 'tagged-app', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16 }], tags: [{ key: 'app', value: 'a' }] }));
        const run = await ecs.send(new RunTaskCommand({ cluster: 'tagged', taskDefinition: 'tagged-app', tags: [{ key: 'run', value: '1' }] }));
        taskArn = run.tasks![0].taskArn!;
        await ecs.send(new CreateServiceCommand({ cluster: 'tagged', serviceName: 'svc', taskDefinition: 'tagged-app', desiredCount: 0, tags: [{ key: 'svc', value: 's' }] }));
      });

      it('TagResource, ListTagsForResource and UntagResource round-trip on every kind of resource', async () => {
        const targets: Array<[string, Array<{ key: string; value?: string }>]> = [
          [arn('cluster/tagged'), []],
          [svcArn, [{ key: 'svc', value: 's' }]],
          [taskArn, [{ key: 'run', value: '1' }]],
          [arn('task-definition/tagged-app:1'), [{ key: 'app', value: 'a' }]],
          [ciArn, [{ key: 'rack', value: 'r1' }]],
          [arn('daemon/default/monitor'), [{ key: 'team', value: 'obs' }]],
          [arn('daemon-task-definition/my-daemon-task:2'), [{ key: 'team', value: 'obs' }]],
        ];
        for (const [resourceArn, initial] of targets) {
          const list = async () => (await ecs.send(new ListTagsForResourceCommand({ resourceArn }))).tags;
          expect(await list(), resourceArn).to.deep.equal(initial);
          // new keys are added, existing keys get the new value, the others stay
          const first = initial[0]?.key ?? 'first';
          expect(await ecs.send(new TagResourceCommand({ resourceArn, tags: [{ key: first, value: 'changed' }, { key: 'env', value: 'prod' }, { key: 'bare' }] }))).to.not.have.property('tags');
          expect(await list(), resourceArn).to.deep.equal([{ key: first, value: 'changed' }, { key: 'env', value: 'prod' }, { key: 'bare' }]);
          await ecs.send(new UntagResourceCommand({ resourceArn, tagKeys: ['env', 'bare', 'never-there'] }));
          expect(await list(), resourceArn).to.deep.equal([{ key: first, value: 'changed' }]);
        }
        // the stored objects: spec.tags, written through the registry
        const r = await s.api.call('GET', `${V}/namespaces/tagged/services/svc`);
        expect(r.body.spec.tags).to.deep.equal([{ key: 'svc', value: 'changed' }]);
        expect(r.body.metadata.generation).to.equal(3);
        const cl = await s.api.call('GET', `${V}/clusters/tagged`);
        expect(cl.body.spec.tags).to.deep.equal([{ key: 'first', value: 'changed' }]);
        await ecs.send(new UntagResourceCommand({ resourceArn: arn('cluster/tagged'), tagKeys: ['first'] }));
        expect((await s.api.call('GET', `${V}/clusters/tagged`)).body.spec).to.not.have.property('tags');
      });

      it('task definition revisions stay immutable: their later tags live in an annotation', async () => {
        const r = await s.api.call('GET', `${V}/taskdefinitions/tagged-app:1`);
        expect(r.body.spec.tags).to.deep.equal([{ key: 'app', value: 'a' }]);
        expect(JSON.parse(r.body.metadata.annotations['berth.dev/tags'])).to.deep.equal([{ key: 'app', value: 'changed' }]);
        // ECS registers a new revision on every RegisterTaskDefinition, even of the same content
        // (C5): it has the call's tags, and revision 1 keeps its own
        const again = await ecs.send(new RegisterTaskDefinitionCommand({ family: 'tagged-app', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16 }], tags: [{ key: 'app', value: 'a' }] }));
        expect(again.taskDefinition?.revision).to.equal(2);
        expect(again.tags).to.deep.equal([{ key: 'app', value: 'a' }]);
        const first = await s.api.call('GET', `${V}/taskdefinitions/tagged-app:1`);
        expect(JSON.parse(first.body.metadata.annotations['berth.dev/tags'])).to.deep.equal([{ key: 'app', value: 'changed' }]);
        const dtd = await s.api.call('GET', `${V}/daemontaskdefinitions/my-daemon-task:2`);
        expect(dtd.body.spec.tags).to.deep.equal([{ key: 'team', value: 'obs' }]);
        expect(dtd.body.status.revision).to.equal(2);
      });

      it('Describe* show the tags with include TAGS, and leave them out without', async () => {
        await ecs.send(new TagResourceCommand({ resourceArn: arn('cluster/tagged'), tags: [{ key: 'c', value: '1' }] }));
        const cl = await ecs.send(new DescribeClustersCommand({ clusters: ['tagged'], include: ['TAGS'] }));
        expect(cl.clusters?.[0].tags).to.deep.equal([{ key: 'c', value: '1' }]);
        expect((await ecs.send(new DescribeClustersCommand({ clusters: ['tagged'] }))).clusters?.[0].tags).to.equal(undefined);
        const svc = await ecs.send(new DescribeServicesCommand({ cluster: 'tagged', services: ['svc'], include: ['TAGS'] }));
        expect(svc.services?.[0].tags).to.deep.equal([{ key: 'svc', value: 'changed' }]);
        expect((await ecs.send(new DescribeServicesCommand({ cluster: 'tagged', services: ['svc'] }))).services?.[0].tags).to.equal(undefined);
        const task = await ecs.send(new DescribeTasksCommand({ cluster: 'tagged', tasks: [taskArn], include: ['TAGS'] }));
        expect(task.tasks?.[0].tags).to.deep.equal([{ key: 'run', value: 'changed' }]);
        // tasks and task definitions: ECS answers an empty list when tags are not asked for
        expect((await ecs.send(new DescribeTasksCommand({ cluster: 'tagged', tasks: [taskArn] }))).tasks?.[0].tags).to.deep.equal([]);
        const td = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'tagged-app:1', include: ['TAGS'] }));
        expect(td.tags).to.deep.equal([{ key: 'app', value: 'changed' }]);
        expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'tagged-app:1' }))).tags).to.deep.equal([]);
        const ci = await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'tagged', containerInstances: [ciArn], include: ['TAGS'] }));
        expect(ci.containerInstances?.[0].tags).to.deep.equal([{ key: 'rack', value: 'changed' }]);
        expect((await ecs.send(new DescribeContainerInstancesCommand({ cluster: 'tagged', containerInstances: [ciArn] }))).containerInstances?.[0].tags).to.equal(undefined);
      });

      it('refuses bad ARNs, bad tags and missing resources with ECS\'s exceptions', async () => {
        const cases: Array<[() => Promise<unknown>, new (...a: never[]) => Error, RegExp?]> = [
          [() => ecs.send(new ListTagsForResourceCommand({ resourceArn: 'tagged' })), InvalidParameterException, /full ARN/],
          [() => ecs.send(new ListTagsForResourceCommand({ resourceArn: arn('service/tagged/nope') })), ResourceNotFoundException],
          [() => ecs.send(new TagResourceCommand({ resourceArn: arn(`task/tagged/${'a'.repeat(32)}`), tags: [{ key: 'k', value: 'v' }] })), ResourceNotFoundException],
          [() => ecs.send(new UntagResourceCommand({ resourceArn: arn('daemon/default/nope'), tagKeys: ['k'] })), ResourceNotFoundException],
          [() => ecs.send(new ListTagsForResourceCommand({ resourceArn: arn('service/nope/svc') })), ClusterNotFoundException],
          [() => ecs.send(new ListTagsForResourceCommand({ resourceArn: arn('task-definition/tagged-app') })), InvalidParameterException, /revision/],
          [() => ecs.send(new ListTagsForResourceCommand({ resourceArn: arn('capacity-provider/cp') })), InvalidParameterException, /cannot tag capacity-provider/],
          [() => ecs.send(new TagResourceCommand({ resourceArn: svcArn, tags: [{ key: 'aws:x', value: 'v' }] })), InvalidParameterException, /aws:/],
          [() => ecs.send(new TagResourceCommand({ resourceArn: svcArn, tags: [{ key: 'k'.repeat(129) }] })), InvalidParameterException, /128/],
          [() => ecs.send(new TagResourceCommand({ resourceArn: svcArn } as never)), InvalidParameterException, /'tags'/],
          [() => ecs.send(new TagResourceCommand({ resourceArn: svcArn, tags: Array.from({ length: 50 }, (_, k) => ({ key: `k${k}` })) })), InvalidParameterException, /at most 50/],
        ];
        for (const [call, type, message] of cases) {
          const e = await thrown(call);
          expect(e, String(call)).to.be.instanceOf(type);
          if (message) expect(e.message, String(call)).to.match(message);
        }
        // nothing was written
        expect((await ecs.send(new ListTagsForResourceCommand({ resourceArn: svcArn }))).tags).to.deep.equal([{ key: 'svc', value: 'changed' }]);
      });

      it('a viewer may list tags but not change them', async () => {
        const viewer = s.client({ key: s.viewer });
        expect((await viewer.send(new ListTagsForResourceCommand({ resourceArn: svcArn }))).tags).to.have.length(1);
        expect(await thrown(() => viewer.send(new TagResourceCommand({ resourceArn: svcArn, tags: [{ key: 'v', value: 'v' }] })))).to.be.instanceOf(AccessDeniedException);
        expect(await thrown(() => viewer.send(new UntagResourceCommand({ resourceArn: svcArn, tagKeys: ['svc'] })))).to.be.instanceOf(AccessDeniedException);
      });

      it('concurrent TagResource calls keep every tag', async () => {
        const resourceArn = arn('cluster/tagged');
        await Promise.all(Array.from({ length: 10 }, (_, k) => ecs.send(new TagResourceCommand({ resourceArn, tags: [{ key: `k${k}`, value: String(k) }] }))));
        const tags = (await ecs.send(new ListTagsForResourceCommand({ resourceArn }))).tags!;
        expect(tags.map((t) => t.key).sort()).to.deep.equal(['c', ...Array.from({ length: 10 }, (_, k) => `k${k}`)].sort());
      });
    });

    describe('ListTasks by daemonName', () => {
      it('lists the tasks of a daemon (group daemon:NAME) and no others', async () => {
        // what the daemon controller creates, written here through the resource API
        const r = await s.api.call('POST', `${V}/namespaces/default/tasks`, {
          apiVersion: 'berth.dev/v1',
          kind: 'Task',
          metadata: { name: 'd'.repeat(32) },
          spec: { taskDefinition: 'my-daemon-task:2', daemonTaskDefinition: 'my-daemon-task:2', group: 'daemon:monitor', startedBy: 'daemon/monitor', desiredStatus: 'RUNNING' },
        });
        expect(r.status, JSON.stringify(r.body)).to.equal(201);
        const id = arn(`task/default/${'d'.repeat(32)}`);
        expect((await ecs.send(new ListTasksCommand({ daemonName: 'monitor' }))).taskArns).to.deep.equal([id]);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'default', daemonName: 'logs' }))).taskArns).to.deep.equal([]);
        expect((await ecs.send(new ListTasksCommand({ cluster: 'tagged', daemonName: 'monitor' }))).taskArns).to.deep.equal([]);
        expect((await ecs.send(new ListTasksCommand({ daemonName: 'monitor', desiredStatus: 'STOPPED' }))).taskArns).to.deep.equal([]);
        const e = await thrown(() => ecs.send(new ListTasksCommand({ daemonName: 'monitor', serviceName: 'svc' })));
        expect(e).to.be.instanceOf(InvalidParameterException);
        // a daemon's task runs its daemon task definition
        const d = await ecs.send(new DescribeTasksCommand({ tasks: [id] }));
        expect(d.tasks?.[0]).to.include({ taskArn: id, group: 'daemon:monitor', startedBy: 'daemon/monitor', taskDefinitionArn: arn('daemon-task-definition/my-daemon-task:2') });
        expect(d.tasks?.[0].containers?.map((c) => c.name)).to.deep.equal(['daemon-container']);
      });
    });
  });
}

/**
 * A daemon run end to end: created through the SDK, run by the real daemon controller on
 * real agents (hollow runtime), rolled to a new revision, and deleted; its tasks found by
 * ListTasks with daemonName.
 */
for (const store of (process.env.ONLY_STORE ? [process.env.ONLY_STORE] : ['embedded', 'etcd']) as Array<'embedded' | 'etcd'>) {
  describe(`ECS API daemons with agents and controllers (${store} store)`, function () {
    this.timeout(120_000);
    let s: EcsTestServer;
    let ecs: ECSClient;
    let client: Client;
    let fleet: Fleet;
    let cp: Running;
    let env: Awaited<ReturnType<typeof startEcsControlPlane>>;
    const daemonArn = arn('daemon/default/agentd');
    const runningTasks = async (daemonName = 'agentd') => {
      const l = await ecs.send(new ListTasksCommand({ cluster: 'default', daemonName }));
      if (!l.taskArns?.length) return [];
      return (await ecs.send(new DescribeTasksCommand({ cluster: 'default', tasks: l.taskArns }))).tasks!.filter((t) => t.lastStatus === 'RUNNING');
    };

    before(async () => {
      env = await startEcsControlPlane({ store });
      ({ s, ecs, cp } = env);
      ({ client, fleet } = cp);
    });
    after(async () => env?.stop());

    it('runs one task of a daemon on every instance; ListTasks by daemonName finds them', async () => {
      await ecs.send(new RegisterDaemonTaskDefinitionCommand({ family: 'agentd', containerDefinitions: [{ name: 'agent', image: 'busybox', memory: 32, command: ['sleep', '3600'] }] }));
      // an application task beside it, which daemonName must not list
      await ecs.send(new RegisterTaskDefinitionCommand({ family: 'app', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 32, command: ['sleep', '3600'] }] }));
      const app = await ecs.send(new RunTaskCommand({ cluster: 'default', taskDefinition: 'app' }));
      expect(app.tasks).to.have.length(1);
      const created = await ecs.send(new CreateDaemonCommand({ daemonName: 'agentd', daemonTaskDefinitionArn: 'agentd', capacityProviderArns: [] }));
      expect(created.daemonArn).to.equal(daemonArn);
      const tasks = await eventually(async () => {
        const r = await runningTasks();
        return r.length === 2 && r;
      }, 30_000, 'a daemon task on each instance');
      const instances = (await ecs.send(new ListContainerInstancesCommand({ cluster: 'default' }))).containerInstanceArns!;
      expect(tasks.map((t) => t.containerInstanceArn).sort()).to.deep.equal([...instances].sort());
      for (const t of tasks) {
        expect(t).to.include({ group: 'daemon:agentd', startedBy: 'daemon/agentd', desiredStatus: 'RUNNING', taskDefinitionArn: arn('daemon-task-definition/agentd:1') });
        expect(t.containers?.[0]).to.include({ name: 'agent', lastStatus: 'RUNNING' });
      }
      expect(tasks.map((t) => t.taskArn)).to.not.include(app.tasks![0].taskArn);
      expect((await ecs.send(new ListTasksCommand({ cluster: 'default' }))).taskArns).to.have.length(3);
      const d = await eventually(async () => {
        const d = (await ecs.send(new DescribeDaemonCommand({ daemonArn }))).daemon!;
        return d.currentRevisions?.[0].totalRunningCount === 2 && d;
      }, 20_000, 'DescribeDaemon counts');
      expect(d.currentRevisions).to.have.length(1);
      expect(d.currentRevisions?.[0].totalWithoutDaemonCount).to.equal(0);
      // the Daemon's status, as the controller writes it (it follows the tasks' events)
      const st = await eventually(async () => {
        const r = await s.api.call('GET', `${V}/namespaces/default/daemons/agentd`);
        return r.body.status?.runningCount === 2 && r.body.status;
      }, 20_000, 'daemon status');
      expect(st).to.include({ desiredCount: 2, runningCount: 2 });
    });

    it('starts the daemon on an instance that joins later', async () => {
      const [added] = await fleet.add(1);
      const tasks = await eventually(async () => {
        const r = await runningTasks();
        return r.length === 3 && r;
      }, 30_000, 'the daemon on the new instance');
      expect(tasks.map((t) => t.containerInstanceArn)).to.include(arn(`container-instance/default/${added.agent.instanceId}`));
    });

    it('UpdateDaemon rolls every instance to the new revision', async () => {
      const two = await ecs.send(new RegisterDaemonTaskDefinitionCommand({ family: 'agentd', containerDefinitions: [{ name: 'agent', image: 'busybox', memory: 48, command: ['sleep', '3600'] }] }));
      await ecs.send(new UpdateDaemonCommand({ daemonArn, daemonTaskDefinitionArn: two.daemonTaskDefinitionArn, capacityProviderArns: [], deploymentConfiguration: { drainPercent: 34 } }));
      expect((await s.api.call('GET', `${V}/namespaces/default/daemons/agentd`)).body.spec.deploymentConfiguration).to.deep.equal({ maxUnavailable: 2 });
      await eventually(async () => {
        const r = await runningTasks();
        const live = (await ecs.send(new ListTasksCommand({ cluster: 'default', daemonName: 'agentd' }))).taskArns!;
        return r.length === 3 && live.length === 3 && r.every((t) => t.taskDefinitionArn === arn('daemon-task-definition/agentd:2'));
      }, 30_000, 'rolled to revision 2');
      const d = await eventually(async () => {
        const d = (await ecs.send(new DescribeDaemonCommand({ daemonArn }))).daemon!;
        return d.currentRevisions?.length === 1 && d.currentRevisions[0].totalRunningCount === 3 && d;
      }, 20_000, 'one current revision');
      expect(d.currentRevisions?.[0].arn).to.match(new RegExp(`^${arn('daemon-revision/default/agentd/')}`));
      // the old tasks were stopped by the scheduler
      const stopped = (await ecs.send(new ListTasksCommand({ cluster: 'default', daemonName: 'agentd', desiredStatus: 'STOPPED' }))).taskArns!;
      expect(stopped).to.have.length(3);
    });

    it('DeleteDaemon stops its tasks; then the daemon is gone', async () => {
      const out = await ecs.send(new DeleteDaemonCommand({ daemonArn }));
      expect(out.status).to.equal('DELETE_IN_PROGRESS');
      await eventually(async () => (await thrown(() => ecs.send(new DescribeDaemonCommand({ daemonArn })))) instanceof DaemonNotFoundException, 30_000, 'daemon gone');
      expect((await ecs.send(new ListTasksCommand({ cluster: 'default', daemonName: 'agentd' }))).taskArns).to.deep.equal([]);
      expect((await ecs.send(new ListDaemonsCommand({}))).daemonSummariesList).to.deep.equal([]);
      // the application task was left alone
      expect((await ecs.send(new ListTasksCommand({ cluster: 'default' }))).taskArns).to.have.length(1);
      // no daemon runs revision 2 any more: deleting it makes it DELETED at once
      await ecs.send(new DeleteDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'agentd:2' }));
      await eventually(async () => (await ecs.send(new DescribeDaemonTaskDefinitionCommand({ daemonTaskDefinition: 'agentd:2' }))).daemonTaskDefinition?.status === 'DELETED', 20_000, 'DELETED');
    });
  });
}
