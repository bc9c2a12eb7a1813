import { readFileSync } from 'node:fs';
import * as sdk from '@aws-sdk/client-ecs';
import { expect } from 'chai';
import type { z } from 'zod';
import { ClusterSpec, DaemonSpec, DeploymentCircuitBreaker, DeploymentConfiguration, NetworkConfiguration, ServiceSpec, TaskOverride, ContainerOverride } from '../../pkg/api/resources.ts';
import { ContainerDefinition, DaemonTaskDefinitionSpec, HealthCheck, LinuxParameters, LogConfiguration, MountPoint, PortMapping, TaskDefinitionSpec, Volume, DockerVolumeConfiguration } from '../../pkg/api/taskdefinition.ts';
import { TaskSpec } from '../../pkg/api/resources.ts';
import { resources, startEcsServer, type EcsTestServer } from './support.ts';

/**
 * "Accepted means honoured" on the ECS face: every member of the requests that create or
 * change something, as the AWS SDK's own schema lists them (so a member the SDK gains fails
 * here until it has an entry), is either the target of the call, becomes a field of a berth
 * spec (walked field by field in test/api/accepted.test.ts and test/agent/parameters.test.ts),
 * is honoured as a named test proves, is owned by other work, or is refused: a real signed
 * call with it is an InvalidParameterException or ClientException naming it, and creates nothing.
 */

const TARGET = 'AmazonEC2ContainerServiceV20141113.';
const ACCOUNT = '000000000000';
const arn = (rest: string) => `arn:aws:ecs:us-east-1:${ACCOUNT}:${rest}`;
/** the member names of an SDK structure schema (`RunTaskRequest$`: [3, namespace, name, traits, members, schemas]) */
const sdkMembers = (name: string): string[] => ((sdk as unknown as Record<string, unknown[]>)[`${name}$`][4] as string[]).slice();

type Member =
  /** names what the call acts on, or how (cluster, serviceName, count, ...) */
  | { target: string }
  /** becomes this top-level field of this berth schema */
  | { spec: z.ZodType; field?: string }
  /** honoured, as `file :: title` proves */
  | { proof: string }
  /** owned by other work */
  | { owned: string }
  /** refused: this value is a 4xx naming the member */
  | { refused: unknown };

const refused = (v: unknown): Member => ({ refused: v });
const LB: Member = { proof: 'test/e2e/loadbalancing.test.ts :: serves through HAProxy from all 3 tasks, and rolls and scales without a failed request' };
const noCapacityProviders = refused([{ capacityProvider: 'FARGATE' }]);

const SERVICE_COMMON: Record<string, Member> = {
  cluster: { target: 'the cluster' },
  taskDefinition: { spec: ServiceSpec },
  desiredCount: { spec: ServiceSpec },
  deploymentConfiguration: { spec: ServiceSpec },
  placementConstraints: { spec: ServiceSpec },
  placementStrategy: { spec: ServiceSpec },
  healthCheckGracePeriodSeconds: { spec: ServiceSpec },
  enableECSManagedTags: { spec: ServiceSpec },
  propagateTags: { spec: ServiceSpec },
  loadBalancers: LB,
  availabilityZoneRebalancing: refused('ENABLED'),
  capacityProviderStrategy: noCapacityProviders,
  platformVersion: refused('LATEST'),
  networkConfiguration: refused({ awsvpcConfiguration: { subnets: ['subnet-1'], securityGroups: ['sg-1'] } }),
  serviceRegistries: refused([{ registryArn: 'arn:aws:servicediscovery:us-east-1:0:service/srv-1' }]),
  serviceConnectConfiguration: refused({ enabled: true }),
  volumeConfigurations: refused([{ name: 'ebs' }]),
  vpcLatticeConfigurations: refused([{ roleArn: 'r', targetGroupArn: 't', portName: 'p' }]),
  gatewayConnectors: refused([{ name: 'g' }]),
  monitoring: refused({ enabled: true }),
  deploymentController: refused({ type: 'CODE_DEPLOY' }),
  enableExecuteCommand: refused(true),
};

const TASK_COMMON: Record<string, Member> = {
  cluster: { target: 'the cluster' },
  taskDefinition: { spec: TaskSpec },
  group: { spec: TaskSpec },
  startedBy: { spec: TaskSpec },
  tags: { spec: TaskSpec },
  overrides: { spec: TaskSpec },
  enableECSManagedTags: { proof: 'test/ecsapi/accepted.test.ts :: RunTask and StartTask tag their tasks' },
  propagateTags: { proof: 'test/ecsapi/accepted.test.ts :: RunTask and StartTask tag their tasks' },
  enableExecuteCommand: refused(true),
  networkConfiguration: refused({ awsvpcConfiguration: { subnets: ['subnet-1'] } }),
  referenceId: refused('ref-1'),
  volumeConfigurations: refused([{ name: 'ebs' }]),
};

const DAEMON_COMMON: Record<string, Member> = {
  daemonTaskDefinitionArn: { spec: DaemonSpec, field: 'daemonTaskDefinition' },
  deploymentConfiguration: { proof: 'test/ecsapi/daemons.test.ts :: UpdateDaemon rolls the daemon to another revision' },
  capacityProviderArns: refused(['arn:aws:ecs:us-east-1:0:capacity-provider/cp']),
  propagateTags: refused('DAEMON'),
  enableECSManagedTags: refused(true),
  enableExecuteCommand: refused(true),
  critical: refused(true),
};

const TD_COMMON: Record<string, Member> = {
  family: { target: 'the family' },
  taskRoleArn: refused('arn:aws:iam::0:role/app'),
};

const OPS: Record<string, { members: Record<string, Member>; base: (m: string) => Record<string, unknown>; gone?: (m: string) => [string, Record<string, unknown>] }> = {
  CreateService: {
    members: {
      ...SERVICE_COMMON,
      serviceName: { target: 'the service' },
      clientToken: { spec: ServiceSpec },
      launchType: { spec: ServiceSpec },
      role: { spec: ServiceSpec },
      schedulingStrategy: { spec: ServiceSpec },
      tags: { spec: ServiceSpec },
    },
    base: (m) => ({ cluster: 'default', serviceName: `svc-${m}`, taskDefinition: 'web', desiredCount: 0 }),
    gone: (m) => ['DescribeServices', { cluster: 'default', services: [`svc-${m}`] }],
  },
  UpdateService: {
    members: {
      ...SERVICE_COMMON,
      service: { target: 'the service' },
      forceNewDeployment: { proof: 'test/ecsapi/forced.test.ts :: with no other change: the answer already shows the new PRIMARY deployment' },
    },
    base: () => ({ cluster: 'default', service: 'existing' }),
  },
  RunTask: {
    members: { ...TASK_COMMON, count: { proof: 'test/ecsapi/operations.test.ts :: RunTask refuses count 11' }, launchType: { spec: TaskSpec }, placementConstraints: { spec: TaskSpec }, placementStrategy: { spec: TaskSpec }, clientToken: { spec: TaskSpec }, capacityProviderStrategy: noCapacityProviders, platformVersion: refused('LATEST') },
    base: () => ({ cluster: 'default', taskDefinition: 'web', startedBy: 'walk' }),
  },
  StartTask: {
    members: { ...TASK_COMMON, containerInstances: { spec: TaskSpec, field: 'containerInstance' } },
    base: () => ({ cluster: 'default', taskDefinition: 'web', containerInstances: ['none'], startedBy: 'walk' }),
  },
  CreateCluster: {
    members: {
      clusterName: { target: 'the cluster' },
      tags: { spec: ClusterSpec },
      settings: { spec: ClusterSpec },
      configuration: { spec: ClusterSpec },
      capacityProviders: refused(['FARGATE']),
      defaultCapacityProviderStrategy: noCapacityProviders,
      serviceConnectDefaults: refused({ namespace: 'ns' }),
    },
    base: (m) => ({ clusterName: `cl-${m}` }),
    gone: (m) => ['DescribeClusters', { clusters: [`cl-${m}`] }],
  },
  CreateDaemon: {
    members: { ...DAEMON_COMMON, daemonName: { target: 'the daemon' }, clusterArn: { target: 'the cluster' }, tags: { spec: DaemonSpec }, clientToken: { spec: DaemonSpec } },
    base: (m) => ({ daemonName: `dm-${m}`, clusterArn: arn('cluster/default'), daemonTaskDefinitionArn: arn('daemon-task-definition/d:1') }),
    gone: (m) => ['DescribeDaemon', { daemonArn: arn(`daemon/default/dm-${m}`) }],
  },
  UpdateDaemon: {
    members: { ...DAEMON_COMMON, daemonArn: { target: 'the daemon' } },
    base: () => ({ daemonArn: arn('daemon/default/existing'), daemonTaskDefinitionArn: arn('daemon-task-definition/d:1') }),
  },
  RegisterTaskDefinition: {
    members: {
      ...TD_COMMON,
      ...Object.fromEntries(['containerDefinitions', 'executionRoleArn', 'networkMode', 'volumes', 'placementConstraints', 'requiresCompatibilities', 'cpu', 'memory', 'tags', 'pidMode', 'ipcMode'].map((k) => [k, { spec: TaskDefinitionSpec }])),
      proxyConfiguration: refused({ containerName: 'app' }),
      inferenceAccelerators: refused([{ deviceName: 'd', deviceType: 'eia2.medium' }]),
      ephemeralStorage: refused({ sizeInGiB: 30 }),
      runtimePlatform: refused({ operatingSystemFamily: 'WINDOWS_SERVER_2022_CORE' }),
      enableFaultInjection: refused(true),
    },
    base: (m) => ({ family: `td-${m}`, containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16 }] }),
    gone: (m) => ['DescribeTaskDefinition', { taskDefinition: `td-${m}` }],
  },
  RegisterDaemonTaskDefinition: {
    members: {
      ...TD_COMMON,
      ...Object.fromEntries(['containerDefinitions', 'executionRoleArn', 'cpu', 'memory', 'volumes', 'tags'].map((k) => [k, { spec: DaemonTaskDefinitionSpec }])),
      pidMode: refused('host'),
      ipcMode: refused('host'),
    },
    base: (m) => ({ family: `dtd-${m}`, containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16 }] }),
    gone: (m) => ['DescribeDaemonTaskDefinition', { daemonTaskDefinitionArn: `dtd-${m}` }],
  },
};

/** RunTask/StartTask overrides, read member by member (not passed whole to a schema) */
const OVERRIDES: Record<string, Record<string, Member>> = {
  TaskOverride: {
    ...Object.fromEntries(['containerOverrides', 'cpu', 'memory', 'executionRoleArn'].map((k) => [k, { spec: TaskOverride }])),
    taskRoleArn: refused('arn:aws:iam::0:role/app'),
    inferenceAcceleratorOverrides: refused([{ deviceName: 'd', deviceType: 'eia2.medium' }]),
    ephemeralStorage: refused({ sizeInGiB: 30 }),
  },
  ContainerOverride: {
    ...Object.fromEntries(['name', 'command', 'environment', 'cpu', 'memory', 'memoryReservation'].map((k) => [k, { spec: ContainerOverride }])),
    // a task definition's environmentFiles are honoured (test/agent/secrets-docker.test.ts); an override's are not modelled
    environmentFiles: refused([{ value: 'arn:aws:s3:::bucket/app.env', type: 's3' }]),
    resourceRequirements: refused([{ type: 'GPU', value: '1' }]),
  },
};

/** SDK structures passed whole into a strict berth schema: a member the schema lacks is refused by it, naming the member. */
const WHOLE: Array<[string, z.ZodType]> = [
  ['ContainerDefinition', ContainerDefinition],
  ['LinuxParameters', LinuxParameters],
  ['PortMapping', PortMapping],
  ['LogConfiguration', LogConfiguration],
  ['HealthCheck', HealthCheck],
  ['MountPoint', MountPoint],
  ['Volume', Volume],
  ['DockerVolumeConfiguration', DockerVolumeConfiguration],
  ['DeploymentConfiguration', DeploymentConfiguration],
  ['DeploymentCircuitBreaker', DeploymentCircuitBreaker],
  ['NetworkConfiguration', NetworkConfiguration],
];
const shapeOf = (s: z.ZodType) => (s as unknown as { shape: Record<string, unknown> }).shape;

describe('accepted means honoured: every member of the ECS requests that create or change something', function () {
  this.timeout(60_000);
  let s: EcsTestServer;
  let ecs: sdk.ECSClient;
  const call = async (op: string, body: Record<string, unknown>) => s.raw(`${TARGET}${op}`, JSON.stringify(body));

  before(async () => {
    s = await startEcsServer();
    ecs = s.client();
    await ecs.send(new sdk.RegisterTaskDefinitionCommand({ family: 'web', tags: [{ key: 'team', value: 'web' }], containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16 }] }));
    await ecs.send(new sdk.RegisterDaemonTaskDefinitionCommand({ family: 'd', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 16 }] }));
    await ecs.send(new sdk.CreateServiceCommand({ cluster: 'default', serviceName: 'existing', taskDefinition: 'web', desiredCount: 0 }));
    await ecs.send(new sdk.CreateDaemonCommand({ daemonName: 'existing', clusterArn: arn('cluster/default'), daemonTaskDefinitionArn: arn('daemon-task-definition/d:1'), capacityProviderArns: [] }));
  });
  after(async () => s?.stop());

  it('the walk has an entry for every member the SDK knows (a new member needs one)', () => {
    for (const [op, o] of Object.entries(OPS)) {
      const want = sdkMembers(`${op}Request`).sort();
      expect(Object.keys(o.members).sort(), op).to.deep.equal(want);
    }
    for (const [shape, members] of Object.entries(OVERRIDES)) expect(Object.keys(members).sort(), shape).to.deep.equal(sdkMembers(shape).sort());
  });

  it('the tests named as proofs exist', () => {
    const all = [...Object.values(OPS).flatMap((o) => Object.values(o.members)), ...Object.values(OVERRIDES).flatMap((m) => Object.values(m))];
    for (const h of all) {
      if (!('proof' in h)) continue;
      const [file, title] = h.proof.split(' :: ');
      expect(readFileSync(file, 'utf8'), h.proof).to.include(title);
    }
  });

  it('members that become a spec field are fields of that schema', () => {
    const all = [...Object.values(OPS).flatMap((o) => Object.entries(o.members)), ...Object.values(OVERRIDES).flatMap((m) => Object.entries(m))];
    for (const [member, h] of all) if ('spec' in h) expect(shapeOf(h.spec), member).to.have.property(h.field ?? member);
  });

  it('structures passed whole to a strict schema: every member berth lacks is refused naming it', () => {
    for (const [name, schema] of WHOLE) {
      for (const m of sdkMembers(name).filter((k) => !(k in shapeOf(schema)))) {
        const r = schema.safeParse({ [m]: 'x' });
        expect(r.success, `${name}.${m}`).to.equal(false);
        expect(r.error!.issues.some((i) => i.code === 'unrecognized_keys' && (i as { keys: string[] }).keys.includes(m)), `${name}.${m} refused by name`).to.equal(true);
      }
    }
  });

  for (const [op, o] of Object.entries(OPS)) {
    for (const [member, h] of Object.entries(o.members)) {
      if (!('refused' in h)) continue;
      it(`${op} ${member}: refused naming it, nothing created`, async () => {
        const r = await call(op, { ...o.base(member), [member]: h.refused });
        expect(r.status, JSON.stringify(r.body)).to.equal(400);
        expect(r.body.__type).to.be.oneOf(['InvalidParameterException', 'ClientException']);
        expect(r.body.message, JSON.stringify(r.body)).to.include(member);
        if (o.gone) {
          const [describe, body] = o.gone(member);
          const d = await call(describe, body);
          const b = d.body ?? {};
          const left = d.status === 200 ? [...(b.services ?? []), ...(b.clusters ?? []), ...[b.taskDefinition, b.daemon, b.daemonTaskDefinition].filter(Boolean)].filter((x: { status?: string }) => x.status !== 'INACTIVE') : [];
          if (process.env.WALK_VERBOSE) console.log(op, member, '->', r.body.message);
          expect(left, `${describe} finds nothing`).to.deep.equal([]);
        }
      });
    }
  }

  for (const [shape, members] of Object.entries(OVERRIDES)) {
    for (const [member, h] of Object.entries(members)) {
      if (!('refused' in h)) continue;
      it(`RunTask overrides (${shape}) ${member}: refused naming it`, async () => {
        const overrides = shape === 'TaskOverride' ? { [member]: h.refused } : { containerOverrides: [{ name: 'app', [member]: h.refused }] };
        const r = await call('RunTask', { cluster: 'default', taskDefinition: 'web', overrides });
        expect(r.status, JSON.stringify(r.body)).to.equal(400);
        expect(r.body.message).to.include(member);
      });
    }
  }

  it('RunTask and StartTask tag their tasks: propagateTags TASK_DEFINITION and enableECSManagedTags', async () => {
    const reg = await ecs.send(new sdk.RegisterContainerInstanceCommand({ cluster: 'default', totalResources: resources(1024, 512) }));
    const instance = reg.containerInstance!.containerInstanceArn!;
    const run = await ecs.send(new sdk.RunTaskCommand({ cluster: 'default', taskDefinition: 'web', propagateTags: 'TASK_DEFINITION', enableECSManagedTags: true, tags: [{ key: 'own', value: '1' }] }));
    const start = await ecs.send(new sdk.StartTaskCommand({ cluster: 'default', taskDefinition: 'web', containerInstances: [instance], propagateTags: 'TASK_DEFINITION' }));
    const plain = await ecs.send(new sdk.RunTaskCommand({ cluster: 'default', taskDefinition: 'web' }));
    const d = await ecs.send(new sdk.DescribeTasksCommand({ cluster: 'default', tasks: [run.tasks![0].taskArn!, start.tasks![0].taskArn!, plain.tasks![0].taskArn!], include: ['TAGS'] }));
    const tagsOf = (a: string) => d.tasks!.find((t) => t.taskArn === a)!.tags ?? [];
    expect(tagsOf(run.tasks![0].taskArn!)).to.deep.equal([{ key: 'own', value: '1' }, { key: 'team', value: 'web' }, { key: 'aws:ecs:clusterName', value: 'default' }]);
    expect(tagsOf(start.tasks![0].taskArn!)).to.deep.equal([{ key: 'team', value: 'web' }]);
    expect(tagsOf(plain.tasks![0].taskArn!)).to.deep.equal([]);
  });
});
