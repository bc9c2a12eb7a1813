import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

// ------------------------------------------------------------------ the walk-through typed into the AWS CLI

/**
 * The shape of a JSON answer: one `path:type` per member at every level (`tasks[].containers[].name:string`),
 * list elements merged, an empty list as `path:array`. Two answers of the same shape give the same set.
 */
function shapeOf(v: unknown, path = ''): string[] {
  const out = new Set<string>();
  const walk = (x: unknown, p: string) => {
    if (Array.isArray(x)) {
      out.add(`${p}:array`);
      for (const e of x) walk(e, `${p}[]`);
    } else if (x !== null && typeof x === 'object') {
      if (p) out.add(`${p}:object`);
      for (const [k, e] of Object.entries(x)) walk(e, p ? `${p}.${k}` : k);
    } else out.add(`${p}:${x === null ? 'null' : typeof x}`);
  };
  walk(v, path);
  return [...out].sort();
}

/** What the guide shows, plus the members ECS answers with today, less what berth cannot show (each a row of the README's ECS table). */
const expected = (guide: unknown, o: { today?: string[]; berthLacks?: string[]; berthAdds?: string[] } = {}) => {
  const set = new Set([...shapeOf(guide), ...(o.today ?? [])]);
  for (const k of o.berthLacks ?? []) {
    expect(set.has(k), `${k} is in what ECS answers`).to.equal(true);
    set.delete(k);
  }
  for (const k of o.berthAdds ?? []) set.add(k);
  return [...set].sort();
};

const hex32 = '[0-9a-f]{32}';
const uuid = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const ARN = {
  cluster: (n: string) => new RegExp(`^arn:aws:ecs:us-east-1:000000000000:cluster/${n}$`),
  instance: new RegExp(`^arn:aws:ecs:us-east-1:000000000000:container-instance/default/${hex32}$`),
  task: new RegExp(`^arn:aws:ecs:us-east-1:000000000000:task/default/${hex32}$`),
  container: new RegExp(`^arn:aws:ecs:us-east-1:000000000000:container/default/${hex32}/${uuid}$`),
  taskDefinition: (r: string) => new RegExp(`^arn:aws:ecs:us-east-1:000000000000:task-definition/${r}$`),
};

/** The guide's JSON answers (its "Using the AWS CLI with Amazon ECS", placeholders as it writes them). */
const GUIDE = {
  createCluster: { cluster: { clusterName: 'MyCluster', status: 'ACTIVE', clusterArn: 'arn:aws:ecs:region:aws_account_id:cluster/MyCluster' } },
  listContainerInstances: { containerInstanceArns: ['arn:aws:ecs:us-east-1:aws_account_id:container-instance/container_instance_UUID'] },
  describeContainerInstances: (() => {
    const res = [
      { integerValue: 2048, longValue: 0, type: 'INTEGER', name: 'CPU', doubleValue: 0.0 },
      { integerValue: 3955, longValue: 0, type: 'INTEGER', name: 'MEMORY', doubleValue: 0.0 },
      { name: 'PORTS', longValue: 0, doubleValue: 0.0, stringSetValue: ['2376', '22', '51678', '2375'], type: 'STRINGSET', integerValue: 0 },
    ];
    return {
      failures: [],
      containerInstances: [
        {
          status: 'ACTIVE',
          registeredResources: res,
          ec2InstanceId: 'instance_id',
          agentConnected: false,
          containerInstanceArn: 'arn:aws:ecs:us-east-1:aws_account_id:container-instance/container_instance_UUID',
          remainingResources: res,
        },
      ],
    };
  })(),
  registerTaskDefinition: {
    taskDefinition: {
      volumes: [],
      taskDefinitionArn: 'arn:aws:ec2:us-east-1:aws_account_id:task-definition/sleep360:1',
      containerDefinitions: [
        { environment: [], name: 'sleep', mountPoints: [], image: 'busybox', cpu: 10, portMappings: [], command: ['sleep', '360'], memory: 10, essential: true, volumesFrom: [] },
      ],
      family: 'sleep360',
      revision: 1,
    },
  },
  listTaskDefinitions: { taskDefinitionArns: ['arn:aws:ec2:us-east-1:aws_account_id:task-definition/sleep360:1'] },
  runTask: {
    tasks: [
      {
        taskArn: 'arn:aws:ecs:us-east-1:aws_account_id:task/task_UUID',
        overrides: { containerOverrides: [{ name: 'sleep' }] },
        lastStatus: 'PENDING',
        containerInstanceArn: 'arn:aws:ecs:us-east-1:aws_account_id:container-instance/container_instance_UUID',
        clusterArn: 'arn:aws:ecs:us-east-1:aws_account_id:cluster/default',
        desiredStatus: 'RUNNING',
        taskDefinitionArn: 'arn:aws:ecs:us-east-1:aws_account_id:task-definition/sleep360:1',
        containers: [{ containerArn: 'arn:aws:ecs:us-east-1:aws_account_id:container/container_UUID', taskArn: 'arn:aws:ecs:us-east-1:aws_account_id:task/task_UUID', lastStatus: 'PENDING', name: 'sleep' }],
      },
    ],
  },
  listTasks: { taskArns: ['arn:aws:ecs:us-east-1:aws_account_id:task/task_UUID'] },
  describeTasks: {
    failures: [],
    tasks: [
      {
        taskArn: 'arn:aws:ecs:us-east-1:aws_account_id:task/task_UUID',
        overrides: { containerOverrides: [{ name: 'sleep' }] },
        lastStatus: 'RUNNING',
        containerInstanceArn: 'arn:aws:ecs:us-east-1:aws_account_id:container-instance/container_instance_UUID',
        clusterArn: 'arn:aws:ecs:us-east-1:aws_account_id:cluster/default',
        desiredStatus: 'RUNNING',
        taskDefinitionArn: 'arn:aws:ecs:us-east-1:aws_account_id:task-definition/sleep360:1',
        containers: [
          { containerArn: 'arn:aws:ecs:us-east-1:aws_account_id:container/container_UUID', taskArn: 'arn:aws:ecs:us-east-1:aws_account_id:task/task_UUID', lastStatus: 'RUNNING', name: 'sleep', networkBindings: [] },
        ],
      },
    ],
  },
};

/**
 * Members today's ECS answers with beyond the 2015 guide's examples (the AWS CLI's current
 * examples of the same commands; the SDK's model lists each), per answer.
 */
const TASK_TODAY = [
  'attachments:array',
  'attributes:array',
  'attributes[]:object',
  'attributes[].name:string',
  'attributes[].value:string',
  'availabilityZone:string',
  'containers[].image:string',
  'containers[].networkInterfaces:array',
  'containers[].cpu:string',
  'containers[].memory:string',
  'cpu:string',
  'memory:string',
  'createdAt:number',
  'enableExecuteCommand:boolean',
  'group:string',
  'launchType:string',
  'overrides.inferenceAcceleratorOverrides:array',
  'tags:array',
  'version:number',
].map((k) => `tasks[].${k}`);
const RUNNING_TODAY = ['connectivity:string', 'connectivityAt:number', 'containers[].runtimeId:string', 'containers[].healthStatus:string', 'healthStatus:string', 'pullStartedAt:number', 'pullStoppedAt:number', 'startedAt:number'].map((k) => `tasks[].${k}`);
/** ECS's members berth has nothing for (README, "ECS operations"): no Availability Zones; the agent reports no pull times or connectivity */
const TASK_LACKS = ['tasks[].availabilityZone:string'];
const RUNNING_LACKS = ['tasks[].connectivity:string', 'tasks[].connectivityAt:number', 'tasks[].pullStartedAt:number', 'tasks[].pullStoppedAt:number'];

const awsCli = (() => {
  try {
    return execFileSync('aws', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) !== undefined;
  } catch {
    return false;
  }
})();

/**
 * The guide's steps 1-9 as it prints them, typed into the AWS CLI v1 (the guide's tool) against
 * berth with real agents: every answer, as the CLI prints it, has the guide's shape with what
 * ECS answers today, member for member (a member added or missing fails), ids and ARNs in
 * ECS's formats; and what the wire carried is what the CLI printed (no member outside the
 * AWS model, which the CLI would drop unseen).
 */
describe('the ECS Developer Guide walk-through typed into the AWS CLI v1: each answer has the shape ECS gives', function () {
  this.timeout(180_000);
  let env: Awaited<ReturnType<typeof startEcsControlPlane>>;
  let home: string;
  let aws: (...args: string[]) => Promise<{ json: any; text: string }>;
  /** the same call on the wire, signed by the SDK's signer: its members as sent */
  let wire: (action: string, body: object) => Promise<any>;

  before(async function () {
    if (!awsCli) return this.skip();
    env = await startEcsControlPlane();
    home = await mkdtemp(join(tmpdir(), 'berth-awscli-'));
    await writeFile(
      join(home, 'sleep360.json'),
      JSON.stringify({ containerDefinitions: [{ name: 'sleep', image: 'busybox', cpu: 10, command: ['sleep', '360'], memory: 10, essential: true }], family: 'sleep360' }, null, 2),
    );
    const cliEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      AWS_ACCESS_KEY_ID: env.s.admin.accessKeyId,
      AWS_SECRET_ACCESS_KEY: env.s.admin.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_CONFIG_FILE: join(home, 'none'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'none'),
      AWS_PAGER: '',
    };
    aws = (...args) =>
      new Promise((resolve, reject) =>
        execFile('aws', ['--endpoint-url', env.s.api.url, ...args], { env: cliEnv, cwd: home }, (err, stdout, stderr) =>
          err ? reject(new Error(`aws ${args.join(' ')}: ${stderr || err.message}`)) : resolve({ json: JSON.parse(stdout), text: stdout }),
        ),
      );
    wire = async (action, body) => {
      const r = await env.s.raw(`AmazonEC2ContainerServiceV20141113.${action}`, JSON.stringify(body));
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      return r.body;
    };
  });
  after(async () => {
    if (home) await rm(home, { recursive: true, force: true });
    await env?.stop();
  });

  let instanceId: string;
  let taskId: string;

  it('step 1: aws ecs create-cluster --cluster-name MyCluster', async () => {
    const { json } = await aws('ecs', 'create-cluster', '--cluster-name', 'MyCluster');
    expect(shapeOf(json)).to.deep.equal(
      expected(GUIDE.createCluster, {
        today: ['registeredContainerInstancesCount:number', 'runningTasksCount:number', 'pendingTasksCount:number', 'activeServicesCount:number', 'statistics:array', 'tags:array', 'settings:array', 'settings[]:object', 'settings[].name:string', 'settings[].value:string'].map((k) => `cluster.${k}`),
      }),
    );
    expect(json.cluster).to.include({ clusterName: 'MyCluster', status: 'ACTIVE' });
    expect(json.cluster.clusterArn).to.match(ARN.cluster('MyCluster'));
    // again: the same cluster (ECS answers CreateCluster of an existing name with it)
    expect(shapeOf(await wire('CreateCluster', { clusterName: 'MyCluster' }))).to.deep.equal(shapeOf(json));
  });

  it('step 3: aws ecs list-container-instances --cluster default', async () => {
    const { json } = await eventually(async () => {
      const r = await aws('ecs', 'list-container-instances', '--cluster', 'default');
      return r.json.containerInstanceArns.length === 2 && r;
    }, 30_000, 'two instances');
    expect(shapeOf(json)).to.deep.equal(expected(GUIDE.listContainerInstances));
    for (const a of json.containerInstanceArns) expect(a).to.match(ARN.instance);
    instanceId = json.containerInstanceArns[0].split('/').pop();
  });

  it('step 4: aws ecs describe-container-instances --cluster default --container-instances UUID', async () => {
    const { json, text } = await aws('ecs', 'describe-container-instances', '--cluster', 'default', '--container-instances', instanceId);
    const ci = (k: string) => `containerInstances[].${k}`;
    expect(shapeOf(json)).to.deep.equal(
      expected(GUIDE.describeContainerInstances, {
        today: [
          ...['version:number', 'versionInfo:object', 'versionInfo.agentVersion:string', 'versionInfo.agentHash:string', 'versionInfo.dockerVersion:string', 'runningTasksCount:number', 'pendingTasksCount:number'].map(ci),
          ...['attributes:array', 'attributes[]:object', 'attributes[].name:string', 'attributes[].value:string', 'registeredAt:number', 'attachments:array'].map(ci),
        ],
        // the hollow agents of this test have no Docker to report (a Docker host's agent does); berth's agent has no build hash
        berthLacks: [ci('versionInfo.agentHash:string'), ci('versionInfo.dockerVersion:string')],
      }),
    );
    const got = json.containerInstances[0];
    expect(got.containerInstanceArn).to.match(ARN.instance);
    expect(got.ec2InstanceId).to.match(/^mi-[0-9a-f]{17}$/);
    expect(got.registeredResources.map((r: { name: string }) => r.name)).to.deep.equal(['CPU', 'MEMORY', 'PORTS', 'PORTS_UDP']);
    // the CLI prints the doubles as the guide shows them
    expect(text).to.include('"doubleValue": 0.0').and.not.match(/"doubleValue": 0\s*,/);
    expect(shapeOf(await wire('DescribeContainerInstances', { cluster: 'default', containerInstances: [instanceId] }))).to.deep.equal(shapeOf(json));
  });

  it('steps 5-6: aws ecs register-task-definition --cli-input-json file://sleep360.json, then list-task-definitions', async () => {
    const { json } = await aws('ecs', 'register-task-definition', '--cli-input-json', `file://${join(home, 'sleep360.json')}`);
    const td = (k: string) => `taskDefinition.${k}`;
    expect(shapeOf(json)).to.deep.equal(
      expected(GUIDE.registerTaskDefinition, {
        today: [...['status:string', 'placementConstraints:array', 'compatibilities:array', 'compatibilities[]:string', 'registeredAt:number', 'registeredBy:string'].map(td), 'tags:array'],
        // who registered it: berth keeps no registering principal
        berthLacks: [td('registeredBy:string')],
        // berth answers the default network mode (bridge) where none was given (README)
        berthAdds: [td('networkMode:string')],
      }),
    );
    expect(json.taskDefinition.taskDefinitionArn).to.match(ARN.taskDefinition('sleep360:1'));
    expect(json.taskDefinition).to.include({ family: 'sleep360', revision: 1, status: 'ACTIVE' });
    expect(json.taskDefinition.compatibilities).to.deep.equal(['EXTERNAL', 'EC2']);
    expect(json.taskDefinition.containerDefinitions).to.deep.equal(GUIDE.registerTaskDefinition.taskDefinition.containerDefinitions);
    // the same shape when described
    expect(shapeOf(await wire('DescribeTaskDefinition', { taskDefinition: 'sleep360:1' }))).to.deep.equal(shapeOf(json));
    const list = await aws('ecs', 'list-task-definitions');
    expect(shapeOf(list.json)).to.deep.equal(expected(GUIDE.listTaskDefinitions));
    expect(list.json.taskDefinitionArns).to.deep.equal([json.taskDefinition.taskDefinitionArn]);
  });

  it('the guide\'s JSON-string form of register-task-definition, typed literally, is refused by the CLI itself (its quotes end at the shell)', async () => {
    const e = await thrown(() => aws('ecs', 'register-task-definition', '--family', 'sleep360', '--container-definitions', '[{name:sleep,image:busybox,cpu:10,command:[sleep,360],memory:10,essential:true}]'));
    expect(e.message).to.match(/Invalid JSON/);
  });

  it('steps 7-8: aws ecs run-task --cluster default --task-definition sleep360:1 --count 1, then list-tasks', async () => {
    const { json } = await aws('ecs', 'run-task', '--cluster', 'default', '--task-definition', 'sleep360:1', '--count', '1');
    // not PENDING yet in ECS's answer: the task's health and the containers' network bindings (the agent reports them)
    expect(shapeOf(json)).to.deep.equal(expected(GUIDE.runTask, { today: [...TASK_TODAY, 'failures:array'], berthLacks: TASK_LACKS }));
    const t = json.tasks[0];
    expect(t).to.include({ lastStatus: 'PENDING', desiredStatus: 'RUNNING', cpu: '10', memory: '10', group: 'family:sleep360', launchType: 'EC2', version: 1 });
    expect(t.taskArn).to.match(ARN.task);
    expect(t.containerInstanceArn).to.match(ARN.instance);
    expect(t.clusterArn).to.match(ARN.cluster('default'));
    expect(t.taskDefinitionArn).to.match(ARN.taskDefinition('sleep360:1'));
    expect(t.containers[0].containerArn).to.match(ARN.container);
    expect(t.containers[0].containerArn.split('/')[2]).to.equal(t.taskArn.split('/').pop());
    expect(t.attributes).to.deep.equal([{ name: 'ecs.cpu-architecture', value: 'x86_64' }]);
    expect(t.attachments).to.deep.equal([]);
    taskId = t.taskArn.split('/').pop();
    const list = await aws('ecs', 'list-tasks', '--cluster', 'default');
    expect(shapeOf(list.json)).to.deep.equal(expected(GUIDE.listTasks));
    expect(list.json.taskArns).to.deep.equal([t.taskArn]);
  });

  it('step 9: aws ecs describe-tasks --cluster default --task UUID (RUNNING)', async () => {
    const { json } = await eventually(async () => {
      const r = await aws('ecs', 'describe-tasks', '--cluster', 'default', '--task', taskId);
      return r.json.tasks[0]?.lastStatus === 'RUNNING' && r;
    }, 30_000, 'the task RUNNING');
    expect(shapeOf(json)).to.deep.equal(expected(GUIDE.describeTasks, { today: [...TASK_TODAY, ...RUNNING_TODAY], berthLacks: [...TASK_LACKS, ...RUNNING_LACKS] }));
    const t = json.tasks[0];
    expect(t.healthStatus).to.equal('UNKNOWN');
    expect(t.version).to.be.above(1);
    expect(t.containers[0]).to.include({ lastStatus: 'RUNNING', healthStatus: 'UNKNOWN' });
    // a bridge-mode task has no network interface of its own, so no ENI attachment
    expect(t.attachments).to.deep.equal([]);
    expect(shapeOf(await wire('DescribeTasks', { cluster: 'default', tasks: [taskId] }))).to.deep.equal(shapeOf(json));
  });
});

describe('shapeOf (pure)', () => {
  const table: Array<[string, unknown, string[]]> = [
    ['members at every level', { a: 1, b: { c: 'x' } }, ['a:number', 'b.c:string', 'b:object']],
    ['list elements merged, an empty list kept', { l: [{ x: 1 }, { y: true }], e: [] }, ['e:array', 'l:array', 'l[].x:number', 'l[].y:boolean', 'l[]:object']],
    ['a list of strings', { s: ['a'] }, ['s:array', 's[]:string']],
  ];
  for (const [what, v, want] of table) it(what, () => expect(shapeOf(v)).to.deep.equal(want));
});
