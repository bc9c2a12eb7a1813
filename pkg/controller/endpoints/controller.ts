import type { Logger } from 'pino';
import { API_VERSION } from '../../api/meta.ts';
import type { Endpoints, Task } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { sameJson } from '../../api/validate.ts';
import { splitKey, type SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { controllerOf } from '../runtime/writes.ts';
import { planEndpoints } from './plan.ts';

/** The service a task's endpoint belongs to: its controller's, when that is a Service. */
const serviceOf = (t: Task): string | undefined => {
  const ref = controllerOf(t);
  return ref?.kind === 'Service' ? `${t.metadata.namespace}/${ref.name}` : undefined;
};

/**
 * The endpoints controller: per service, an `Endpoints` object of the same name in the
 * service's cluster listing where its serving tasks are reached (`planEndpoints`), written
 * only when that changes, at the version read (a conflict re-queues). A service that is gone
 * or INACTIVE has none. Agents read them to answer service discovery DNS.
 */
export function endpointsController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics): Controller {
  const c: Controller = new Controller({
    name: 'endpoints',
    informers: [inf.services, inf.tasks, inf.instances, inf.taskDefinitions, inf.endpoints],
    client,
    workers: 2,
    log,
    metrics,
    reconcile: async (key, { client }) => {
      const [ns, name] = splitKey(key);
      const svc = inf.services.get(key);
      const have = inf.endpoints.get(key);
      if (!svc || svc.status?.status === 'INACTIVE') {
        if (have) {
          await client.delete('Endpoints', ns, name, { resourceVersion: have.metadata.resourceVersion }).catch((e) => {
            if (!isBerthError(e, 'NotFound')) throw e;
          });
        }
        return;
      }
      const tasks = inf.tasks.byIndex('owner', svc.metadata.uid!);
      const subsets = planEndpoints(tasks, (t) => inf.taskDefinitionSpec(t as Task), (i) => inf.instances.get(`${ns}/${i}`));
      if (have && sameJson(have.spec.subsets ?? [], subsets)) return;
      const owner = { apiVersion: API_VERSION, kind: 'Service', name, uid: svc.metadata.uid!, controller: true };
      const obj = {
        apiVersion: API_VERSION,
        kind: 'Endpoints',
        metadata: { ...(have?.metadata ?? { name, namespace: ns }), ownerReferences: [owner] },
        spec: { subsets },
      } as Endpoints;
      try {
        if (have) await client.update<Endpoints>(obj);
        else await client.create<Endpoints>(obj);
      } catch (e) {
        // someone else's write got there first: the cache will show it and the next pass compares again
        if (isBerthError(e, 'Conflict') || isBerthError(e, 'AlreadyExists')) return { requeueAfterMs: 200 };
        if (isBerthError(e, 'NotFound')) return { requeueAfterMs: 200 };
        throw e;
      }
    },
  });
  const key = (o: { metadata: { namespace?: string; name: string } }) => `${o.metadata.namespace}/${o.metadata.name}`;
  inf.services.on({ add: (s) => c.enqueue(key(s)), update: (p, s) => (p.status?.status !== s.status?.status ? c.enqueue(key(s)) : undefined), delete: (s) => c.enqueue(key(s)) });
  const onTask = (t: Task) => {
    const k = serviceOf(t);
    if (k) c.enqueue(k);
  };
  inf.tasks.on({ add: onTask, update: (_p, t) => onTask(t), delete: onTask });
  // an instance's registered address is its tasks' address in bridge and host mode
  inf.instances.on({
    update: (p, i) => {
      if (p.status?.registeredAddress !== i.status?.registeredAddress) for (const t of inf.tasksOn(i.metadata.namespace!, i.metadata.name)) onTask(t);
    },
  });
  // a task whose definition arrives after it: its ports are known now
  inf.taskDefinitions.on({ add: (td) => inf.tasks.forIndex('taskDefinition', `t:${td.metadata.name}`, onTask) });
  // an Endpoints object changed or removed by someone else is put back; one without a service is removed
  inf.endpoints.on({ add: (e) => c.enqueue(key(e)), update: (_p, e) => c.enqueue(key(e)), delete: (e) => c.enqueue(key(e)) });
  return c;
}
