import { Kinds, type ContainerInstance, type Daemon, type DaemonTaskDefinition, type Task } from '../api/kinds.ts';
import { isArn, parseArn, resolveIdentifier } from '../api/arn.ts';
import { stableJson } from '../api/validate.ts';
import { daemonRevision, taskRevision } from '../api/resources.ts';
import { isBerthError } from '../errors/errors.ts';
import { authorizeSecretReads, clusterOf, getOrUndefined, newObj, type OpContext, type Operation } from './context.ts';
import { bool, list, obj, oneOf, paginate, str, unsupported, type Input } from './params.ts';
import {
  UPDATED_AT_ANNOTATION,
  compact,
  daemonDetail,
  daemonResponse,
  daemonStatus,
  daemonSummary,
  daemonTaskDefinitionStatus,
  daemonTaskDefinitionSummary,
  daemonTaskDefinitionToEcs,
} from './shapes.ts';
import { tagsIn } from './tags.ts';
import { EcsError, clientException, invalidParameter } from './wire.ts';

/**
 * ECS managed daemons, as ECS's managed daemons documentation describes them. A daemon task
 * definition is the register JSON as a DaemonTaskDefinition (metadata.name = family; admission
 * numbers the revisions, as for task definitions); a daemon is a Daemon (metadata.name =
 * daemonName, namespace = the cluster, spec.daemonTaskDefinition = a revision), which the
 * daemon controller runs as one task (group `daemon:NAME`) on every eligible instance. berth
 * has no capacity providers: a daemon runs on every ACTIVE instance of its cluster.
 */

const DTD = Kinds.DaemonTaskDefinition;
const DAEMON = Kinds.Daemon;

// ---------------------------------------------------------------- daemon task definitions

export const RegisterDaemonTaskDefinition: Operation = async (c, i) => {
  const family = str(i, 'family', { required: true })!;
  list(i, 'containerDefinitions', { required: true });
  unsupported(i, ['pidMode', 'ipcMode']);
  tagsIn(i, 'tags');
  const spec: Input = {};
  for (const [k, v] of Object.entries(i)) {
    if (k === 'family' || v === null || v === undefined) continue;
    if (k === 'tags' && Array.isArray(v) && v.length === 0) continue;
    // daemon_bridge is the only network mode of a daemon: implied, never stored
    if (k === 'networkMode' && v === 'daemon_bridge') continue;
    spec[k] = v;
  }
  c.authorize({ verb: 'create', resource: 'daemontaskdefinitions' });
  authorizeSecretReads(c, spec);
  const { obj: created } = await c.registry.create(DTD, undefined, newObj('DaemonTaskDefinition', family, spec), c.req);
  const td = created as unknown as DaemonTaskDefinition;
  return { daemonTaskDefinitionArn: td.status?.taskDefinitionArn ?? c.parts.arns.daemonTaskDefinition(td.metadata.name) };
};

/** `family`, `family:revision` or a daemon task definition ARN, as the registry names it. */
export function dtdRef(given: string): string {
  if (!isArn(given)) return given;
  const p = parseArn(given);
  if (p.resource !== 'daemon-task-definition') throw clientException(`"${given}" is not a daemon task definition ARN.`);
  return p.name;
}

async function getDtd(c: OpContext, ref: string): Promise<DaemonTaskDefinition> {
  const td = await getOrUndefined(c, DTD, undefined, ref);
  if (!td) throw clientException('Unable to describe daemon task definition.');
  return td as unknown as DaemonTaskDefinition;
}

/** The daemon task definition revisions a daemon (not yet gone) or a live task still uses. */
async function revisionsInUse(c: OpContext): Promise<Set<string>> {
  await c.registry.fresh();
  const used = new Set<string>();
  for (const [, o] of c.registry.cache.list('daemons', undefined)) {
    const d = o as unknown as Daemon;
    if (daemonStatus(d) !== 'INACTIVE') used.add(daemonRevision(d));
  }
  for (const [, o] of c.registry.cache.list('tasks', undefined)) {
    const t = o as unknown as Task;
    if (t.spec.daemonTaskDefinition && t.status?.lastStatus !== 'STOPPED') used.add(taskRevision(t));
  }
  return used;
}

const statusOf = (td: DaemonTaskDefinition, used: Set<string>) => daemonTaskDefinitionStatus(td, used.has(`${td.status?.family}:${td.status?.revision}`));

export const DescribeDaemonTaskDefinition: Operation = async (c, i) => {
  const ref = dtdRef(str(i, 'daemonTaskDefinition', { required: true })!);
  c.authorize({ verb: 'get', resource: 'daemontaskdefinitions', name: ref });
  const td = await getDtd(c, ref);
  return { daemonTaskDefinition: daemonTaskDefinitionToEcs(td, c.parts.arns, statusOf(td, await revisionsInUse(c))) };
};

const pad = (n: number) => String(n).padStart(10, '0');

export const ListDaemonTaskDefinitions: Operation = async (c, i) => {
  const familyPrefix = str(i, 'familyPrefix');
  const family = str(i, 'family');
  const revision = oneOf(i, 'revision', ['LAST_REGISTERED'] as const);
  const status = oneOf(i, 'status', ['ACTIVE', 'DELETE_IN_PROGRESS', 'ALL'] as const) ?? 'ACTIVE';
  const sort = oneOf(i, 'sort', ['ASC', 'DESC'] as const) ?? 'ASC';
  c.authorize({ verb: 'list', resource: 'daemontaskdefinitions' });
  let items = ((await c.registry.list(DTD, undefined)).items as unknown as DaemonTaskDefinition[]).filter((t) => t.status);
  const used = await revisionsInUse(c);
  if (revision === 'LAST_REGISTERED') {
    const last = new Map<string, DaemonTaskDefinition>();
    for (const t of items) if ((last.get(t.status!.family)?.status!.revision ?? 0) < t.status!.revision) last.set(t.status!.family, t);
    items = [...last.values()];
  }
  items = items.filter(
    (t) =>
      (!familyPrefix || t.status!.family.startsWith(familyPrefix)) &&
      (!family || t.status!.family === family) &&
      (status === 'ALL' || statusOf(t, used) === status),
  );
  const key = (t: DaemonTaskDefinition) => `${t.status!.family}\u0000${pad(t.status!.revision)}`;
  const { page, nextToken } = paginate(items, key, i, { defaultMax: 100, max: 100, desc: sort === 'DESC' });
  return compact({ daemonTaskDefinitions: page.map((t) => daemonTaskDefinitionSummary(t, c.parts.arns, statusOf(t, used))), nextToken });
};

export const DeleteDaemonTaskDefinition: Operation = async (c, i) => {
  const ref = dtdRef(str(i, 'daemonTaskDefinition', { required: true })!);
  if (!/:[0-9]+$/.test(ref)) throw clientException(`The daemon task definition to delete must name a revision (family:revision or its full ARN); got "${ref}".`);
  c.authorize({ verb: 'delete', resource: 'daemontaskdefinitions', name: ref });
  const td = await getDtd(c, ref);
  if (td.status?.status !== 'ACTIVE') throw clientException(`The daemon task definition ${ref} is not ACTIVE; only an ACTIVE daemon task definition can be deleted.`);
  // the revision stays (INACTIVE): daemons that run it keep running, and ECS callers see it
  // DELETE_IN_PROGRESS until none does, then DELETED
  const out = (await c.registry.delete(DTD, undefined, ref, c.req)) as unknown as DaemonTaskDefinition;
  return { daemonTaskDefinitionArn: out.status?.taskDefinitionArn ?? c.parts.arns.daemonTaskDefinition(ref) };
};

// ---------------------------------------------------------------- daemons

const daemonNotFound = () => new EcsError('DaemonNotFoundException', 'Daemon not found.');
const daemonNotActive = () => new EcsError('DaemonNotActiveException', 'Daemon was not ACTIVE.');

/** A daemon named by its ARN (which names the cluster) or by its name in the default cluster. */
async function daemonOf(c: OpContext, i: Input): Promise<{ cluster: string; name: string; daemon: Daemon }> {
  const given = str(i, 'daemonArn', { required: true })!;
  const r = isArn(given) ? resolveIdentifier(given, 'daemon') : { name: given, cluster: undefined };
  const cluster = await clusterOf(c, { cluster: r.cluster ?? 'default' });
  c.authorize({ verb: 'get', resource: 'daemons', namespace: cluster, name: r.name });
  const d = (await getOrUndefined(c, DAEMON, cluster, r.name)) as Daemon | undefined;
  if (!d || daemonStatus(d) === 'INACTIVE') throw daemonNotFound();
  return { cluster, name: r.name, daemon: d };
}

/** The daemon task definition a daemon is to run: it must exist and be ACTIVE (ECS). */
async function runnableDtd(c: OpContext, i: Input): Promise<string> {
  const ref = dtdRef(str(i, 'daemonTaskDefinitionArn', { required: true })!);
  c.authorize({ verb: 'get', resource: 'daemontaskdefinitions', name: ref });
  const td = await getOrUndefined(c, DTD, undefined, ref);
  if (!td) throw clientException(`Daemon task definition ${ref} not found.`);
  const st = (td as unknown as DaemonTaskDefinition).status;
  if (st?.status !== 'ACTIVE') throw clientException(`Daemon task definition ${ref} is not ACTIVE (it was deleted); register a new revision.`);
  // ECS pins the revision a family resolves to now (as UpdateService does); the resource API's spec may name the family and follow it
  return st.family && st.revision ? `${st.family}:${st.revision}` : ref;
}

/**
 * The members of Create/UpdateDaemon that berth does not implement: refused when they ask
 * for something berth would not do, so nothing is silently dropped.
 */
function checkOptions(i: Input) {
  // no capacity providers: a daemon runs on every eligible instance of its cluster
  unsupported(i, ['capacityProviderArns']);
  if (oneOf(i, 'propagateTags', ['DAEMON', 'NONE'] as const) === 'DAEMON') throw invalidParameter('propagateTags DAEMON is not supported by berth.');
  if (bool(i, 'enableECSManagedTags')) throw invalidParameter('enableECSManagedTags is not supported by berth.');
  if (bool(i, 'enableExecuteCommand')) throw invalidParameter('enableExecuteCommand: berth has no ECS Exec (ExecuteCommand) yet, so no command could be run in the daemon\'s tasks: leave it out or false.');
  if (bool(i, 'critical')) throw invalidParameter('critical daemons are not supported by berth: it never drains an instance because its daemon task failed (give critical false, or leave it out).');
}

/**
 * ECS's deploymentConfiguration as berth's: `drainPercent` of the cluster's ACTIVE
 * instances (counted now, at least 1) becomes maxUnavailable, the number of instances the
 * daemon controller may leave without the daemon at once while it rolls to a new revision.
 */
async function deploymentConfigurationOf(c: OpContext, cluster: string, i: Input): Promise<{ maxUnavailable: number } | undefined> {
  const dc = obj(i, 'deploymentConfiguration');
  if (!dc) return undefined;
  const alarms = obj(dc, 'alarms');
  if (alarms && bool(alarms, 'enable')) throw invalidParameter('deploymentConfiguration.alarms is not supported by berth (no CloudWatch alarms).');
  const bake = dc.bakeTimeInMinutes;
  if (bake !== undefined && bake !== null && bake !== 0) throw invalidParameter('deploymentConfiguration.bakeTimeInMinutes is not supported by berth.');
  const pct = dc.drainPercent;
  if (pct === undefined || pct === null) return undefined;
  if (typeof pct !== 'number' || !(pct >= 0 && pct <= 100)) throw invalidParameter(`deploymentConfiguration.drainPercent must be a number between 0.0 and 100.0 (got ${JSON.stringify(pct)}).`);
  await c.registry.fresh();
  const active = c.registry.cache.list('containerinstances', cluster).filter(([, o]) => (o as unknown as ContainerInstance).spec.status === 'ACTIVE').length;
  return { maxUnavailable: Math.max(1, Math.ceil((active * pct) / 100)) };
}

export const CreateDaemon: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i, 'clusterArn');
  const name = str(i, 'daemonName', { required: true })!;
  checkOptions(i);
  const clientToken = str(i, 'clientToken', { max: 36 });
  const tags = tagsIn(i, 'tags');
  // berth's own member (not in ECS's request): memberOf constraints choose the instances
  const placementConstraints = list(i, 'placementConstraints', { max: 10 });
  const daemonTaskDefinition = await runnableDtd(c, i);
  const spec = compact({
    daemonTaskDefinition,
    placementConstraints: placementConstraints?.length ? placementConstraints : undefined,
    deploymentConfiguration: await deploymentConfigurationOf(c, cluster, i),
    clientToken,
    tags: tags?.length ? tags : undefined,
  });
  c.authorize({ verb: 'create', resource: 'daemons', namespace: cluster });
  const existing = (await c.registry.peek(DAEMON, cluster, name)) as Daemon | undefined;
  if (existing) {
    // idempotent: the same request again (clientToken included) returns the daemon it made
    const { obj: dry } = await c.registry.create(DAEMON, cluster, newObj('Daemon', name, structuredClone(spec), cluster), { ...c.req, dryRun: true });
    if (daemonStatus(existing) === 'ACTIVE' && stableJson(dry.spec) === stableJson(existing.spec)) return daemonResponse(existing, c.parts.arns, false);
    throw invalidParameter('Creation of daemon was not idempotent.');
  }
  try {
    const { obj: created } = await c.registry.create(DAEMON, cluster, newObj('Daemon', name, spec, cluster), c.req);
    return daemonResponse(created as unknown as Daemon, c.parts.arns, false);
  } catch (e) {
    if (isBerthError(e, 'AlreadyExists')) throw invalidParameter('Creation of daemon was not idempotent.');
    throw e;
  }
};

export const UpdateDaemon: Operation = async (c, i) => {
  const { cluster, name, daemon } = await daemonOf(c, i);
  checkOptions(i);
  if (daemonStatus(daemon) !== 'ACTIVE') throw daemonNotActive();
  const daemonTaskDefinition = await runnableDtd(c, i);
  const deploymentConfiguration = await deploymentConfigurationOf(c, cluster, i);
  c.authorize({ verb: 'patch', resource: 'daemons', namespace: cluster, name });
  const out = await c.registry.patch(
    DAEMON,
    cluster,
    name,
    'merge',
    { metadata: { annotations: { [UPDATED_AT_ANNOTATION]: new Date().toISOString() } }, spec: compact({ daemonTaskDefinition, deploymentConfiguration }) },
    undefined,
    c.req,
  );
  return daemonResponse(out as unknown as Daemon, c.parts.arns);
};

export const DeleteDaemon: Operation = async (c, i) => {
  const { cluster, name, daemon } = await daemonOf(c, i);
  if (daemonStatus(daemon) !== 'ACTIVE') throw daemonNotActive();
  c.authorize({ verb: 'delete', resource: 'daemons', namespace: cluster, name });
  // the daemon controller stops its tasks, then lets the daemon go (its finalizer)
  const out = (await c.registry.delete(DAEMON, cluster, name, c.req)) as unknown as Daemon;
  return { ...daemonResponse(out, c.parts.arns), status: 'DELETE_IN_PROGRESS' };
};

export const DescribeDaemon: Operation = async (c, i) => {
  const { cluster, name, daemon } = await daemonOf(c, i);
  await c.registry.fresh();
  const tasks = c.registry.cache.list('tasks', cluster, { field: 'spec.group', value: `daemon:${name}` }).map(([, t]) => t as unknown as Task);
  return { daemon: daemonDetail(daemon, c.parts.arns, tasks) };
};

export const ListDaemons: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i, 'clusterArn');
  unsupported(i, ['capacityProviderArns']);
  c.authorize({ verb: 'list', resource: 'daemons', namespace: cluster });
  const items = ((await c.registry.list(DAEMON, cluster)).items as unknown as Daemon[]).filter((d) => daemonStatus(d) !== 'INACTIVE');
  const { page, nextToken } = paginate(items, (d) => d.metadata.name, i, { defaultMax: 100, max: 100 });
  return compact({ daemonSummariesList: page.map((d) => daemonSummary(d, c.parts.arns)), nextToken });
};
