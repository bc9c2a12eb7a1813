import type { Logger } from 'pino';
import type { LoadBalancerObj, Service, TargetGroup, Task } from '../../api/kinds.ts';
import { targetSetKey, targetSetOf, type Target, type TargetSetRef } from '../../api/loadbalancing.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import type { SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { controllerOf } from '../runtime/writes.ts';
import { recordServiceEvent } from '../service/events.ts';
import { endpointOf, planTargets, targetEvents, type WantedTarget } from './plan.ts';

/**
 * On a task of a load-balanced service: the service asked it to drain before its stop
 * (JSON `{reason, at}`). Its targets drain; once the deregistration delay has passed the
 * service controller gives it its stop with that reason.
 */
export const DEREGISTRATION_ANNOTATION = 'berth.dev/deregistration';

export interface Deregistration {
  reason: string;
  at: string;
}

export function deregistrationOf(t: Task): Deregistration | undefined {
  const v = t.metadata.annotations?.[DEREGISTRATION_ANNOTATION];
  if (!v) return undefined;
  try {
    const d = JSON.parse(v) as Deregistration;
    return typeof d.reason === 'string' && typeof d.at === 'string' ? d : undefined;
  } catch {
    return undefined;
  }
}

const parseKey = (key: string): TargetSetRef => {
  const i = key.indexOf('/');
  return { kind: key.slice(0, i) as TargetSetRef['kind'], name: key.slice(i + 1) };
};

/** Every target set's key (LoadBalancer/NAME, TargetGroup/NAME). */
export function targetSetKeys(inf: SharedInformers): string[] {
  return [...inf.loadBalancers.list().map((l) => `LoadBalancer/${l.metadata.name}`), ...inf.targetGroups.list().map((t) => `TargetGroup/${t.metadata.name}`)];
}

/** The target set object of a key, from the caches. */
export function targetSetObject(inf: SharedInformers, ref: TargetSetRef): LoadBalancerObj | TargetGroup | undefined {
  return ref.kind === 'LoadBalancer' ? inf.loadBalancers.get(ref.name) : inf.targetGroups.get(ref.name);
}

/** What a service event names a target set by: `target-group ARN` or `elb NAME` (ECS's wording). */
export function targetSetLabel(ref: TargetSetRef, obj?: LoadBalancerObj | TargetGroup): string {
  if (ref.kind === 'TargetGroup') return `target-group ${(obj as TargetGroup | undefined)?.status?.targetGroupArn ?? ref.name}`;
  return `elb ${ref.name}`;
}

/** The targets a set holds (from the cache). */
export const targetsOf = (obj?: LoadBalancerObj | TargetGroup): Target[] => obj?.status?.targets ?? [];

/**
 * The target registration controller: for each load balancer and target group, the
 * endpoints of the RUNNING tasks of the services that register in it, and the draining of
 * those being deregistered; written into its status (health left as berth-lb found it),
 * with ECS's service events for what changed.
 */
export function targetsController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics): Controller {
  const wantedFor = (ref: TargetSetRef): WantedTarget[] => {
    const out: WantedTarget[] = [];
    for (const svc of inf.services.byIndex('targetSet', targetSetKey(ref))) {
      const ns = svc.metadata.namespace!;
      const service = `${ns}/${svc.metadata.name}`;
      const entries = (svc.spec.loadBalancers ?? []).filter((e) => {
        const r = targetSetOf(e);
        return r && r.kind === ref.kind && r.name === ref.name;
      });
      for (const t of inf.tasks.byIndex('owner', svc.metadata.uid!)) {
        if (t.status?.lastStatus !== 'RUNNING') continue;
        const ci = t.spec.containerInstance ? inf.instances.get(`${ns}/${t.spec.containerInstance}`) : undefined;
        const td = inf.taskDefinitionSpec(t);
        const draining = t.spec.desiredStatus === 'STOPPED' || !!deregistrationOf(t);
        for (const e of entries) {
          const ep = endpointOf(t, ci, td, e.containerName, e.containerPort);
          if (ep) out.push({ ...ep, task: `${ns}/${t.metadata.name}`, service, draining });
        }
      }
    }
    return out;
  };

  const c: Controller = new Controller({
    name: 'targets',
    informers: [inf.services, inf.tasks, inf.instances, inf.taskDefinitions, inf.loadBalancers, inf.targetGroups],
    client,
    workers: 2,
    log,
    metrics,
    reconcile: async (key, { client }) => {
      const ref = parseKey(key);
      const obj = targetSetObject(inf, ref);
      if (!obj) return;
      const wanted = wantedFor(ref);
      let written: ReturnType<typeof planTargets> | undefined;
      try {
        await client.guaranteedUpdate<LoadBalancerObj | TargetGroup>(
          ref.kind,
          undefined,
          ref.name,
          (cur) => {
            const plan = planTargets(cur.status?.targets ?? [], wanted, Date.now());
            written = plan;
            if (JSON.stringify(plan.targets) === JSON.stringify(cur.status?.targets ?? [])) return undefined;
            cur.status = { ...(cur.status ?? {}), targets: plan.targets } as typeof cur.status;
            return cur;
          },
          { status: true, current: obj },
        );
      } catch (e) {
        if (isBerthError(e, 'NotFound')) return;
        throw e;
      }
      if (written) {
        const label = targetSetLabel(ref, obj);
        for (const ev of targetEvents(written, (s) => s.slice(s.indexOf('/') + 1), label, ref.kind === 'LoadBalancer')) {
          const [ns, name] = [ev.service.slice(0, ev.service.indexOf('/')), ev.service.slice(ev.service.indexOf('/') + 1)];
          await recordServiceEvent(client, ns, name, ev.message).catch((e) => {
            if (!isBerthError(e, 'NotFound')) throw e;
          });
        }
      }
      return undefined;
    },
  });

  const enqueueService = (s: Service) => {
    for (const e of s.spec.loadBalancers ?? []) {
      const r = targetSetOf(e);
      if (r) c.enqueue(targetSetKey(r));
    }
  };
  inf.services.on({
    add: enqueueService,
    update: (p, s) => {
      if (p.metadata.generation !== s.metadata.generation) enqueueService(p);
      enqueueService(s);
    },
    delete: enqueueService,
  });
  const onTask = (t: Task) => {
    const ref = controllerOf(t);
    if (ref?.kind !== 'Service') return;
    const s = inf.services.get(`${t.metadata.namespace}/${ref.name}`);
    if (s) enqueueService(s);
  };
  inf.tasks.on({
    add: onTask,
    update: (p, t) => {
      if (
        p.status?.lastStatus !== t.status?.lastStatus ||
        p.spec.desiredStatus !== t.spec.desiredStatus ||
        deregistrationOf(p)?.at !== deregistrationOf(t)?.at ||
        JSON.stringify(p.status?.containers?.map((x) => x.networkBindings)) !== JSON.stringify(t.status?.containers?.map((x) => x.networkBindings))
      )
        onTask(t);
    },
    delete: onTask,
  });
  const onSet = (kind: TargetSetRef['kind']) => ({
    add: (o: LoadBalancerObj | TargetGroup) => c.enqueue(`${kind}/${o.metadata.name}`),
    update: (p: LoadBalancerObj | TargetGroup, o: LoadBalancerObj | TargetGroup) => (p.metadata.generation !== o.metadata.generation ? c.enqueue(`${kind}/${o.metadata.name}`) : undefined),
  });
  inf.loadBalancers.on(onSet('LoadBalancer'));
  inf.targetGroups.on(onSet('TargetGroup'));
  return c;
}
