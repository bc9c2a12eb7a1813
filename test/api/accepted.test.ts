import { existsSync, readFileSync } from 'node:fs';
import { expect } from 'chai';
import { ClusterSpec, DaemonSpec, ServiceSpec, TaskSpec } from '../../pkg/api/resources.ts';
import { validateObject } from '../../pkg/api/validate.ts';
import { runtimeTask } from '../../pkg/agent/agent.ts';
import type { Task } from '../../pkg/api/kinds.ts';
import type { TaskDefinitionSpec } from '../../pkg/api/taskdefinition.ts';
import { healthFailure, type PlanTask } from '../../pkg/controller/service/plan.ts';
import { BerthError } from '../../pkg/errors/errors.ts';
import { leaves, type Schema } from '../support/schemawalk.ts';

/**
 * "Accepted means honoured": every field of the Service, Daemon, Task (with its overrides)
 * and Cluster schemas -- walked from the zod schemas, so a new field without an entry here
 * fails -- is either honoured (the test that proves it is named, and must exist; or a small
 * assertion on a pure piece here), refused with a 422 naming the field, owned by other work
 * that makes it real, or has no effect berth could have (with why). Task definitions and
 * daemon task definitions are walked the same way, container by container, in
 * test/agent/parameters.test.ts; the ECS face's request members in test/ecsapi/accepted.test.ts.
 */

type Handling =
  /** honoured: `file :: a substring of the title` of the test that proves it */
  | { proof: string }
  /** honoured: a pure assertion here */
  | { check: () => void }
  /** refused: this spec patch is a 422 naming the field */
  | { refused: Record<string, unknown> }
  /** made real by other work (named), which owns its test */
  | { owned: string }
  /** no behaviour berth could have, and why */
  | { none: string };

const prove = (file: string, title: string): Handling => ({ proof: `${file} :: ${title}` });
const TAGS = prove('test/ecsapi/daemons.test.ts', 'TagResource, ListTagsForResource and UntagResource round-trip on every kind of resource');

function task(spec: Partial<Task['spec']>): Task {
  return { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 't', namespace: 'c' }, spec: { taskDefinition: 'f:1', desiredStatus: 'RUNNING', ...spec } } as Task;
}
const TD = { spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, cpu: 0, essential: true, command: ['sleep', '1'], environment: [{ name: 'A', value: '1' }] }], networkMode: 'bridge', cpu: '256', memory: '512' } as unknown as TaskDefinitionSpec, status: { family: 'f', revision: 1 } };
/** what the agent runs for a task with these overrides (pkg/agent/agent.ts runtimeTask, pure) */
const runs = (overrides: NonNullable<Task['spec']['overrides']>) => runtimeTask(task({ overrides }), TD, 'c');
const overrideChanges = (overrides: NonNullable<Task['spec']['overrides']>, pick: (r: ReturnType<typeof runs>) => unknown) => () => {
  expect(JSON.stringify(pick(runs(overrides)))).to.not.equal(JSON.stringify(pick(runs({}))));
};

const SERVICE: Record<string, Handling> = {
  taskDefinition: prove('test/controller/controllers.test.ts', 'rolls a service to a new revision within maximumPercent, ending with only new tasks'),
  desiredCount: prove('test/controller/controllers.test.ts', 'holds a service at its desired count'),
  launchType: { none: 'EC2 and EXTERNAL run alike on any registered instance (every berth instance is a host you run, as ECS Anywhere\'s are); ListServices and ListTasks filter on it, FARGATE is refused' },
  schedulingStrategy: prove('test/controller/controllers.test.ts', 'runs a DAEMON-strategy service as one task of its task definition per instance'),
  'deploymentConfiguration.minimumHealthyPercent': prove('test/controller/service-plan.test.ts', 'rolls to a new task definition within minimumHealthyPercent'),
  'deploymentConfiguration.maximumPercent': prove('test/controller/service-plan.test.ts', 'rolls to a new task definition within minimumHealthyPercent'),
  'deploymentConfiguration.deploymentCircuitBreaker.enable': prove('test/controller/service-plan.test.ts', 'trips the circuit breaker and rolls back to the previous deployment'),
  'deploymentConfiguration.deploymentCircuitBreaker.rollback': prove('test/controller/service-plan.test.ts', 'without rollback a failed deployment stops trying'),
  'deploymentConfiguration.deploymentCircuitBreaker.resetOnHealthyTask': prove('test/controller/service-plan.test.ts', 'resets when a task becomes healthy (resetOnHealthyTask)'),
  'placementConstraints.type': prove('test/controller/controllers.test.ts', 'reserves the daemons\\\' room on a joining instance'),
  'placementConstraints.expression': prove('test/scheduler/scheduler.test.ts', 'memberOf hit'),
  'placementStrategy.type': prove('test/scheduler/scheduler.test.ts', 'binpack by memory fills the fullest instance first'),
  'placementStrategy.field': prove('test/scheduler/scheduler.test.ts', 'spread by attribute balances across zones first'),
  'loadBalancers.loadBalancerName': prove('test/e2e/loadbalancing.test.ts', 'serves through HAProxy from all 3 tasks, and rolls and scales without a failed request'),
  'loadBalancers.targetGroupArn': prove('test/controller/targets-plan.test.ts', 'registers RUNNING tasks as initial, keeps health, drains, deregisters'),
  'loadBalancers.containerName': prove('test/e2e/loadbalancing.test.ts', 'refuses a service whose load balancer names a container port the task definition does not have'),
  'loadBalancers.containerPort': prove('test/e2e/loadbalancing.test.ts', 'refuses a service whose load balancer names a container port the task definition does not have'),
  role: { none: 'the IAM role ECS assumes to call Elastic Load Balancing for the service; berth needs no permission to do what it does itself' },
  healthCheckGracePeriodSeconds: {
    check: () => {
      const t: PlanTask = { name: 't', taskDefinition: 'f:1', desiredStatus: 'RUNNING', lastStatus: 'RUNNING', healthStatus: 'UNHEALTHY', hasHealthCheck: true, startedAt: 0, createdAt: 0 };
      expect(healthFailure(t, 30_000, 0), 'no grace: replaced').to.be.a('string');
      expect(healthFailure(t, 30_000, 60), 'within the grace period: kept').to.equal(undefined);
    },
  },
  clientToken: prove('test/ecsapi/operations.test.ts', 'CreateService returns the service; a clashing name is not idempotent; a clientToken is'),
  'tags.key': TAGS,
  'tags.value': TAGS,
  'networkConfiguration.awsvpcConfiguration.subnets': { refused: { networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-1'] } } } },
  'networkConfiguration.awsvpcConfiguration.securityGroups': { refused: { networkConfiguration: { awsvpcConfiguration: { securityGroups: ['sg-1'] } } } },
  'networkConfiguration.awsvpcConfiguration.assignPublicIp': { refused: { networkConfiguration: { awsvpcConfiguration: { assignPublicIp: 'ENABLED' } } } },
  enableECSManagedTags: prove('test/ecsapi/forced.test.ts', 'carry the task definition\'s tags (propagateTags) and ECS\'s managed tags'),
  'availabilityZoneRebalancing': { refused: { availabilityZoneRebalancing: 'ENABLED' } },
  enableExecuteCommand: { refused: { enableExecuteCommand: true } },
  propagateTags: prove('test/ecsapi/forced.test.ts', 'carry the task definition\'s tags (propagateTags) and ECS\'s managed tags'),
  restartedAt: prove('test/controller/forced.test.ts', 'a new spec.restartedAt replaces every task with one of the same revision'),
};

const DAEMON: Record<string, Handling> = {
  daemonTaskDefinition: prove('test/controller/controllers.test.ts', 'runs one daemon task on every instance, including one that joins later'),
  // the daemon controller makes an instance eligible by the memberOf expressions (pkg/controller/daemon/controller.ts)
  'placementConstraints.type': prove('test/controller/daemon-plan.test.ts', 'starts one copy per eligible ACTIVE instance and none twice'),
  'placementConstraints.expression': prove('test/scheduler/query.test.ts', 'rejects '),
  'deploymentConfiguration.maxUnavailable': prove('test/controller/daemon-plan.test.ts', 'rolls a new revision instance by instance within maxUnavailable'),
  clientToken: prove('test/ecsapi/daemons.test.ts', 'CreateDaemon is idempotent on the same request'),
  'tags.key': TAGS,
  'tags.value': TAGS,
};

const TASK: Record<string, Handling> = {
  taskDefinition: prove('test/ecsapi/operations.test.ts', 'RunTask that fits creates bound tasks'),
  daemonTaskDefinition: prove('test/ecsapi/daemons.test.ts', 'runs one task of a daemon on every instance'),
  'overrides.containerOverrides.name': { check: overrideChanges({ containerOverrides: [{ name: 'app', command: ['true'] }] }, (r) => r.containers[0].command) },
  'overrides.containerOverrides.command': { check: overrideChanges({ containerOverrides: [{ name: 'app', command: ['true'] }] }, (r) => r.containers[0].command) },
  'overrides.containerOverrides.environment.name': { check: overrideChanges({ containerOverrides: [{ name: 'app', environment: [{ name: 'B', value: '2' }] }] }, (r) => r.containers[0].environment) },
  'overrides.containerOverrides.environment.value': { check: overrideChanges({ containerOverrides: [{ name: 'app', environment: [{ name: 'A', value: '2' }] }] }, (r) => r.containers[0].environment) },
  'overrides.containerOverrides.cpu': { check: overrideChanges({ containerOverrides: [{ name: 'app', cpu: 128 }] }, (r) => r.containers[0].cpu) },
  'overrides.containerOverrides.memory': { check: overrideChanges({ containerOverrides: [{ name: 'app', memory: 128 }] }, (r) => r.containers[0].memory) },
  'overrides.containerOverrides.memoryReservation': { check: overrideChanges({ containerOverrides: [{ name: 'app', memoryReservation: 32 }] }, (r) => r.containers[0].memoryReservation) },
  'overrides.cpu': {
    check: () => {
      overrideChanges({ cpu: '512' }, (r) => r.cpu)();
      expect(causes('Task', { taskDefinition: 'web:1', overrides: { cpu: '1 vCPU' } }, 'default')).to.deep.equal(['spec.overrides.cpu: overrides.cpu must be CPU units, a whole number ("512")']);
    },
  },
  'overrides.memory': { check: overrideChanges({ memory: '1024' }, (r) => r.memory) },
  'overrides.taskRoleArn': { refused: { overrides: { taskRoleArn: 'arn:aws:iam::0:role/app' } } },
  'overrides.executionRoleArn': { none: 'the role ECS\'s agent pulls from ECR and ships awslogs with: none of that happens off AWS (registry credentials and secrets are their own fields)' },
  group: prove('test/scheduler/scheduler.test.ts', 'spread counts tasks of the same group already running'),
  startedBy: prove('test/ecsapi/operations.test.ts', 'ListTasks with filters'),
  containerInstance: prove('test/ecsapi/operations.test.ts', 'StartTask binds to the named instances'),
  desiredStatus: prove('test/ecsapi/operations.test.ts', 'StopTask stops a task'),
  stopReason: prove('test/ecsapi/operations.test.ts', 'StopTask stops a task'),
  stopCode: prove('test/ecsapi/operations.test.ts', 'StopTask stops a task'),
  'hostPorts.containerName': prove('test/scheduler/scheduler.test.ts', 'chooses distinct dynamic host ports within a batch on one instance'),
  'hostPorts.containerPort': prove('test/scheduler/scheduler.test.ts', 'chooses distinct dynamic host ports within a batch on one instance'),
  'hostPorts.protocol': prove('test/scheduler/scheduler.test.ts', 'chooses distinct dynamic host ports within a batch on one instance'),
  'hostPorts.hostPort': prove('test/ecsapi/operations.test.ts', 'RunTask charges fixed host ports'),
  'placementConstraints.type': prove('test/scheduler/scheduler.test.ts', 'memberOf hit'),
  'placementConstraints.expression': prove('test/scheduler/scheduler.test.ts', 'memberOf hit'),
  'placementStrategy.type': prove('test/scheduler/scheduler.test.ts', 'binpack by cpu'),
  'placementStrategy.field': prove('test/scheduler/scheduler.test.ts', 'spread by attribute balances across zones first'),
  launchType: { none: 'EC2 and EXTERNAL run alike on any registered instance; ListTasks filters on it, FARGATE is refused' },
  clientToken: prove('test/ecsapi/operations.test.ts', 'RunTask is idempotent on clientToken'),
  'tags.key': TAGS,
  'tags.value': TAGS,
  deploymentId: prove('test/controller/controllers.test.ts', 'rolls a service to a new revision within maximumPercent, ending with only new tasks'),
};

const CLUSTER: Record<string, Handling> = {
  // containerInsights is the one setting; any other name is refused, and its value decides (next)
  'settings.name': { refused: { settings: [{ name: 'fargateEphemeralStorageKmsKey', value: 'disabled' }] } },
  'settings.value': { refused: { settings: [{ name: 'containerInsights', value: 'enhanced' }] } },
  configuration: { refused: { configuration: { executeCommandConfiguration: { logging: 'DEFAULT' } } } },
  'tags.key': TAGS,
  'tags.value': TAGS,
};

const KINDS: Array<{ kind: string; schema: unknown; table: Record<string, Handling>; base: Record<string, unknown>; namespace?: string }> = [
  { kind: 'Service', schema: ServiceSpec, table: SERVICE, base: { taskDefinition: 'web:1', desiredCount: 1 }, namespace: 'default' },
  { kind: 'Daemon', schema: DaemonSpec, table: DAEMON, base: { daemonTaskDefinition: 'd:1' }, namespace: 'default' },
  { kind: 'Task', schema: TaskSpec, table: TASK, base: { taskDefinition: 'web:1' }, namespace: 'default' },
  { kind: 'Cluster', schema: ClusterSpec, table: CLUSTER, base: {} },
];

/** The causes of validating a `kind` with this spec: `field: message`. */
function causes(kind: string, spec: Record<string, unknown>, namespace?: string): string[] {
  try {
    validateObject({ apiVersion: 'berth.dev/v1', kind, metadata: { name: 'x', ...(namespace ? { namespace } : {}) }, spec });
  } catch (e) {
    if (e instanceof BerthError) return (e.details.causes ?? []).map((c) => `${c.field}: ${c.message}`);
    throw e;
  }
  return [];
}

/** spec.a.b.c -> the path as zod reports it, with list indexes (spec.a[0].b) */
const fieldRe = (field: string) => new RegExp(`^spec\\.${field.split('.').map((p) => p.replace(/[$()*+.?[\\\]^{|}]/g, '\\$&')).join('(\\[\\d+\\])?\\.')}(\\[\\d+\\])?: `);

describe('accepted means honoured: every field of the service, daemon, task and cluster schemas', () => {
  it('the walk sees every field of the schemas (a new field needs an entry here)', () => {
    for (const k of KINDS) {
      const fields = leaves(k.schema as Schema);
      expect(fields.filter((f) => !(f in k.table)), `${k.kind} fields without an entry`).to.deep.equal([]);
      expect(Object.keys(k.table).filter((f) => !fields.includes(f)), `${k.kind} entries for fields that do not exist`).to.deep.equal([]);
    }
    // task definitions and daemon task definitions: walked field by field where the agent's translation lives
    expect(readFileSync('test/agent/parameters.test.ts', 'utf8')).to.include('the walk sees the schemas (a new field must be handled here)');
  });

  for (const k of KINDS) {
    it(`${k.kind}: the base spec of this walk is valid`, () => expect(causes(k.kind, k.base, k.namespace)).to.deep.equal([]));
    for (const [field, h] of Object.entries(k.table)) {
      it(`${k.kind} spec.${field}`, () => {
        if ('proof' in h) {
          const [file, title] = h.proof.split(' :: ');
          expect(existsSync(file), `${file} exists`).to.equal(true);
          expect(readFileSync(file, 'utf8'), `${file} has the test "${title}"`).to.include(title);
        } else if ('check' in h) {
          h.check();
        } else if ('refused' in h) {
          const got = causes(k.kind, { ...k.base, ...h.refused }, k.namespace);
          expect(got.some((c) => fieldRe(field.split('.').slice(0, 3).join('.')).test(c) || fieldRe(field).test(c)), `refused naming spec.${field}: ${got.join('; ')}`).to.equal(true);
        } else if ('owned' in h) {
          expect(h.owned).to.be.a('string').and.have.length.greaterThan(10);
        } else {
          expect(h.none).to.be.a('string').and.have.length.greaterThan(20);
        }
      });
    }
  }
});
