import { Kinds, type Cluster } from '../api/kinds.ts';
import { isArn, resolveIdentifier } from '../api/arn.ts';
import { isBerthError } from '../errors/errors.ts';
import { clusterNotFound, getOrUndefined, newObj, type Operation } from './context.ts';
import { list, obj, paginate, str, strList, unsupported } from './params.ts';
import { clusterToEcs, compact } from './shapes.ts';
import { invalidParameter } from './wire.ts';

/** CreateCluster, DeleteCluster, DescribeClusters, ListClusters, PutClusterCapacityProviders. */

/** what CreateCluster answers with: the cluster as given, and its (empty) statistics, as ECS does */
const CREATED = ['TAGS', 'SETTINGS', 'CONFIGURATIONS', 'STATISTICS'];

export const CreateCluster: Operation = async (c, i) => {
  const name = str(i, 'clusterName') ?? 'default';
  unsupported(i, ['capacityProviders', 'defaultCapacityProviderStrategy', 'serviceConnectDefaults']);
  const spec = compact({ tags: list(i, 'tags'), settings: list(i, 'settings'), configuration: obj(i, 'configuration') });
  c.authorize({ verb: 'create', resource: 'clusters' });
  try {
    const { obj: created } = await c.registry.create(Kinds.Cluster, undefined, newObj('Cluster', name, spec), c.req);
    return { cluster: clusterToEcs(created as unknown as Cluster, c.parts.arns, CREATED, true) };
  } catch (e) {
    // ECS: creating a cluster that exists returns it
    if (!isBerthError(e, 'AlreadyExists')) throw e;
    const existing = await c.registry.get(Kinds.Cluster, undefined, name);
    return { cluster: clusterToEcs(existing as unknown as Cluster, c.parts.arns, CREATED, true) };
  }
};

export const DeleteCluster: Operation = async (c, i) => {
  const given = str(i, 'cluster', { required: true })!;
  const name = isArn(given) ? resolveIdentifier(given, 'cluster').name : given;
  c.authorize({ verb: 'delete', resource: 'clusters', name });
  const before = await c.registry.get(Kinds.Cluster, undefined, name);
  await c.registry.delete(Kinds.Cluster, undefined, name, c.req);
  const shape = clusterToEcs(before as unknown as Cluster, c.parts.arns);
  return { cluster: { ...shape, status: 'INACTIVE' } };
};

export const DescribeClusters: Operation = async (c, i) => {
  const names = strList(i, 'clusters', { max: 100 }) ?? ['default'];
  const include = strList(i, 'include') ?? [];
  const clusters: unknown[] = [];
  const failures: unknown[] = [];
  for (const given of names) {
    const name = isArn(given) ? resolveIdentifier(given, 'cluster').name : given;
    c.authorize({ verb: 'get', resource: 'clusters', name });
    const cl = (await getOrUndefined(c, Kinds.Cluster, undefined, name)) as Cluster | undefined;
    if (!cl || cl.status?.status === 'INACTIVE') failures.push({ arn: isArn(given) ? given : c.parts.arns.cluster(name), reason: 'MISSING' });
    else clusters.push(clusterToEcs(cl, c.parts.arns, include));
  }
  return { clusters, failures };
};

export const ListClusters: Operation = async (c, i) => {
  c.authorize({ verb: 'list', resource: 'clusters' });
  const all = (await c.registry.list(Kinds.Cluster, undefined)).items.filter((o) => (o as unknown as Cluster).status?.status !== 'INACTIVE');
  const { page, nextToken } = paginate(all, (o) => o.metadata.name, i, { defaultMax: 100, max: 100 });
  return compact({ clusterArns: page.map((o) => c.parts.arns.cluster(o.metadata.name)), nextToken });
};


/**
 * PutClusterCapacityProviders: berth has no capacity providers (tasks go on the cluster's
 * registered instances), so the empty (default) association is what it accepts; a provider
 * or a strategy naming one is refused by name.
 */
export const PutClusterCapacityProviders: Operation = async (c, i) => {
  const given = str(i, 'cluster', { required: true })!;
  list(i, 'capacityProviders', { required: true });
  list(i, 'defaultCapacityProviderStrategy', { required: true });
  for (const member of ['capacityProviders', 'defaultCapacityProviderStrategy']) {
    if ((i[member] as unknown[]).length) throw invalidParameter(`${member}: berth has no capacity providers (tasks run on the cluster's registered container instances); give an empty list.`);
  }
  const name = isArn(given) ? resolveIdentifier(given, 'cluster').name : given;
  // a write in ECS (it sets the association), so it needs what changing a cluster needs
  c.authorize({ verb: 'patch', resource: 'clusters', name });
  const cl = (await getOrUndefined(c, Kinds.Cluster, undefined, name)) as Cluster | undefined;
  if (!cl || cl.status?.status === 'INACTIVE') throw clusterNotFound();
  return { cluster: clusterToEcs(cl, c.parts.arns) };
};
