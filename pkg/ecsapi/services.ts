import { Kinds, type Service } from '../api/kinds.ts';
import { restartRequest, serviceTaskDefinition } from '../api/resources.ts';
import { stableJson } from '../api/validate.ts';
import { isBerthError } from '../errors/errors.ts';
import { clusterOf, describeMany, getOrInactive, idOf, newObj, type OpContext, type Operation } from './context.ts';
import { bool, obj, oneOf, paginate, str, strList, unsupported, type Input } from './params.ts';
import { compact, serviceStatus, serviceToEcs } from './shapes.ts';
import { EcsError, invalidParameter } from './wire.ts';

/**
 * Services: the create-service JSON as a Service (metadata.name = serviceName, spec = the
 * rest); the service controller keeps it at its desired count and writes deployments and
 * events into its status, which DescribeServices shows.
 */

const SVC = Kinds.Service;
const shape = (c: OpContext, s: unknown, include: string[] = []) => serviceToEcs(s as Service, c.parts.arns, include);

/** Create/update members berth does not implement (refused with a message when given). */
const UNSUPPORTED = ['capacityProviderStrategy', 'platformVersion', 'serviceRegistries', 'serviceConnectConfiguration', 'volumeConfigurations', 'vpcLatticeConfigurations'];

const notActive = () => new EcsError('ServiceNotActiveException', 'Service was not ACTIVE.');
const notFound = () => new EcsError('ServiceNotFoundException', 'Service not found.');

function deploymentController(i: Input) {
  const dc = obj(i, 'deploymentController');
  if (dc && dc.type !== undefined && dc.type !== 'ECS') throw invalidParameter(`deploymentController type ${String(dc.type)} is not supported by berth; only ECS (rolling update) is.`);
  // berth never moves running tasks between zones by itself: only DISABLED is what it does
  if (oneOf(i, 'availabilityZoneRebalancing', ['ENABLED', 'DISABLED'] as const) === 'ENABLED') {
    throw invalidParameter('availabilityZoneRebalancing ENABLED is not supported by berth: it never moves running tasks to rebalance zones (use DISABLED, or leave it out, and a spread placement strategy).');
  }
}

async function getService(c: OpContext, cluster: string, given: string): Promise<Service> {
  const { name, clusterMismatch } = idOf(given, 'service', cluster);
  const s = clusterMismatch ? undefined : ((await getOrInactive(c, SVC, cluster, name)) as Service | undefined);
  if (!s) throw notFound();
  return s;
}

export const CreateService: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const name = str(i, 'serviceName', { required: true })!;
  str(i, 'taskDefinition', { required: true });
  unsupported(i, UNSUPPORTED);
  deploymentController(i);
  const clientToken = str(i, 'clientToken', { max: 36 });
  const spec: Input = {};
  for (const [k, v] of Object.entries(i)) {
    if (['cluster', 'serviceName', 'deploymentController', ...UNSUPPORTED].includes(k) || v === null || v === undefined) continue;
    spec[k] = v;
  }
  c.authorize({ verb: 'create', resource: 'services', namespace: cluster });
  const existing = (await c.registry.peek(SVC, cluster, name)) as Service | undefined;
  if (existing) {
    if (!existing.metadata.deletionTimestamp && (await sameAsCreated(c, cluster, name, spec, existing))) return { service: shape(c, existing) };
    throw invalidParameter('Creation of service was not idempotent.');
  }
  try {
    const { obj: created } = await c.registry.create(SVC, cluster, newObj('Service', name, spec, cluster), c.req);
    return { service: shape(c, await deployed(c, created as unknown as Service)) };
  } catch (e) {
    if (isBerthError(e, 'AlreadyExists')) throw invalidParameter('Creation of service was not idempotent.');
    throw e;
  }
};

/**
 * ECS's idempotency: a CreateService that repeats the one that made the service (the same
 * parameters, clientToken included) returns it. The request is normalized by a dry-run
 * create (admission resolves the task definition and fills ECS's defaults) and compared
 * with the stored spec, so `sleep360` and `sleep360:1` are the same request while it is the
 * latest revision.
 */
async function sameAsCreated(c: OpContext, cluster: string, name: string, spec: Input, existing: Service): Promise<boolean> {
  const { obj: dry } = await c.registry.create(SVC, cluster, newObj('Service', name, structuredClone(spec), cluster), { ...c.req, dryRun: true });
  const resolved = (s: Service) => stableJson({ ...s.spec, taskDefinition: serviceTaskDefinition(s) });
  return resolved(dry as Service) === resolved(existing);
}

/** UpdateService members and where they go in the spec (merge patch: objects merge, lists replace). */
const UPDATABLE = [
  'desiredCount',
  'taskDefinition',
  'deploymentConfiguration',
  'placementConstraints',
  'placementStrategy',
  'healthCheckGracePeriodSeconds',
  'enableExecuteCommand',
  'enableECSManagedTags',
  'propagateTags',
  'loadBalancers',
  'networkConfiguration',
  'availabilityZoneRebalancing',
];

export const UpdateService: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const given = str(i, 'service', { required: true })!;
  unsupported(i, UNSUPPORTED);
  deploymentController(i);
  const force = bool(i, 'forceNewDeployment') ?? false;
  const patch: Input = {};
  for (const k of UPDATABLE) if (i[k] !== undefined && i[k] !== null) patch[k] = i[k];
  for (const k of Object.keys(i)) {
    if (![...UPDATABLE, ...UNSUPPORTED, 'cluster', 'service', 'forceNewDeployment', 'deploymentController'].includes(k) && i[k] !== null && i[k] !== undefined) {
      throw invalidParameter(`${k} cannot be changed by UpdateService.`);
    }
  }
  const cur = await getService(c, cluster, given);
  const name = cur.metadata.name;
  if (serviceStatus(cur) !== 'ACTIVE') throw notActive();
  c.authorize({ verb: 'patch', resource: 'services', namespace: cluster, name });
  // forceNewDeployment: a new restart request, which the service controller turns into a new deployment of the same task definition
  if (force && cur.spec.schedulingStrategy === 'DAEMON') throw invalidParameter('forceNewDeployment is for REPLICA services: a DAEMON service rolls when its task definition changes.');
  if (force) patch.restartedAt = restartRequest(cur.spec.restartedAt);
  if (Object.keys(patch).length === 0) return { service: shape(c, cur) };
  // naming the task definition deploys it, even the one the spec names already (after a rollback, as in ECS)
  const out = (await c.registry.patch(SVC, cluster, name, 'merge', { spec: patch }, undefined, { ...c.req, deploysTaskDefinition: patch.taskDefinition !== undefined })) as unknown as Service;
  const deploys = force || patch.taskDefinition !== undefined;
  return { service: shape(c, deploys ? await deployed(c, out, cur) : out) };
};

/**
 * The service once the service controller has acted on this generation of its spec: ECS
 * answers CreateService with the PRIMARY deployment, and UpdateService with the deployment a
 * new task definition or a forced deployment starts (a waiter reading the answer must not see
 * the old one as steady). Bounded by deploymentWaitMs; past it, the service as written. An
 * update of a service the controller had not caught up with before (none running) does not wait.
 */
async function deployed(c: OpContext, written: Service, before?: Service): Promise<Service> {
  if (before && (before.status?.observedGeneration ?? 0) < (before.metadata.generation ?? 1)) return written;
  const deadline = Date.now() + c.deploymentWaitMs;
  const gen = written.metadata.generation ?? 0;
  while (Date.now() < deadline) {
    const cur = (await c.registry.peek(SVC, written.metadata.namespace!, written.metadata.name)) as Service | undefined;
    if (!cur || cur.metadata.uid !== written.metadata.uid) return written;
    if ((cur.metadata.generation ?? 0) >= gen && (cur.status?.observedGeneration ?? 0) >= gen) return cur;
    await new Promise((r) => setTimeout(r, 50));
  }
  return written;
}

export const DeleteService: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const given = str(i, 'service', { required: true })!;
  const force = bool(i, 'force') ?? false;
  const cur = await getService(c, cluster, given);
  const name = cur.metadata.name;
  c.authorize({ verb: 'delete', resource: 'services', namespace: cluster, name });
  if (serviceStatus(cur) !== 'ACTIVE') return { service: shape(c, cur) };
  const replica = cur.spec.schedulingStrategy !== 'DAEMON';
  if (replica && (cur.spec.desiredCount ?? 0) > 0) {
    if (!force) throw invalidParameter('The service cannot be stopped while it is scaled above 0.');
    // with force, the service goes to zero as it drains (as ECS shows it)
    c.authorize({ verb: 'patch', resource: 'services', namespace: cluster, name });
    await c.registry.patch(SVC, cluster, name, 'merge', { spec: { desiredCount: 0 } }, undefined, c.req);
  }
  const out = await c.registry.delete(SVC, cluster, name, c.req);
  return { service: shape(c, out) };
};

export const DescribeServices: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const ids = strList(i, 'services', { required: true, min: 1, max: 10 })!;
  const include = strList(i, 'include') ?? [];
  const r = await describeMany(c, cluster, ids, { resource: 'service', kind: SVC, arn: (cl, n) => c.parts.arns.service(cl, n) }, (o) => shape(c, o, include));
  return { services: r.found, failures: r.failures };
};

export const ListServices: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const launchType = oneOf(i, 'launchType', ['EC2', 'EXTERNAL', 'FARGATE', 'MANAGED_INSTANCES'] as const);
  const schedulingStrategy = oneOf(i, 'schedulingStrategy', ['REPLICA', 'DAEMON'] as const);
  c.authorize({ verb: 'list', resource: 'services', namespace: cluster });
  // like ECS: a DRAINING (deleted) service is no longer listed, only described
  const items = (await c.registry.list(SVC, cluster)).items
    .map((o) => o as unknown as Service)
    .filter((s) => serviceStatus(s) === 'ACTIVE' && (!launchType || (s.spec.launchType ?? 'EC2') === launchType) && (!schedulingStrategy || s.spec.schedulingStrategy === schedulingStrategy));
  const { page, nextToken } = paginate(items, (s) => s.metadata.name, i, { defaultMax: 10, max: 100 });
  return compact({ serviceArns: page.map((s) => s.status?.serviceArn ?? c.parts.arns.service(cluster, s.metadata.name)), nextToken });
};
