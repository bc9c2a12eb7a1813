import { randomBytes } from 'node:crypto';
import type { Arns } from '../api/arn.ts';
import { ELB_NAME_MESSAGE, ELB_NAME_RE, targetSetOf, type LoadBalancerSpec } from '../api/loadbalancing.ts';
import { storeKey } from '../api/meta.ts';
import { effectiveTaskDefinition, type TaskDefinitionSpec } from '../api/taskdefinition.ts';
import { invalid, type FieldCause } from '../errors/errors.ts';
import type { Admission, Obj, Registry } from './registry.ts';

const elbBase = (arns: Arns) => `arn:aws:elasticloadbalancing:${arns.cfg.region}:${arns.cfg.account}`;

/** LoadBalancer and TargetGroup: ELB's names; an ARN (and a DNS name) fixed at creation; targets belong to the status. */
export class TargetSetAdmission implements Admission {
  constructor(
    private readonly kind: 'LoadBalancer' | 'TargetGroup',
    private readonly arns: Arns,
  ) {}

  async create(o: Obj) {
    const name = o.metadata.name;
    if (!ELB_NAME_RE.test(name)) throw invalid(this.kind, name, [{ field: 'metadata.name', message: ELB_NAME_MESSAGE }]);
    const id = randomBytes(8).toString('hex');
    if (this.kind === 'TargetGroup') o.status = { targetGroupArn: `${elbBase(this.arns)}:targetgroup/${name}/${id}`, targets: [] };
    else o.status = { loadBalancerArn: `${elbBase(this.arns)}:loadbalancer/${name}`, dnsName: `${name}-${id.slice(0, 8)}.${this.arns.cfg.region}.elb.berth.internal`, targets: [] };
  }
}

/**
 * A service's `loadBalancers`, at creation and at every spec update (both faces write
 * through here): each entry names exactly one of a load balancer or a target group that
 * exists, and a container and container port of the service's task definition.
 */
export function serviceLoadBalancerCauses(registry: Registry, spec: { taskDefinition: string; loadBalancers?: Array<{ loadBalancerName?: string; targetGroupArn?: string; containerName: string; containerPort: number }> }): FieldCause[] {
  const causes: FieldCause[] = [];
  const lbs = spec.loadBalancers ?? [];
  if (lbs.length > 5) causes.push({ field: 'spec.loadBalancers', message: 'at most 5 load balancers per service' });
  const stored = registry.cache.get(storeKey('taskdefinitions', undefined, spec.taskDefinition))?.spec as TaskDefinitionSpec | undefined;
  const td = stored && effectiveTaskDefinition(stored);
  const seen = new Set<string>();
  lbs.forEach((e, i) => {
    const at = (f: string) => `spec.loadBalancers[${i}].${f}`;
    if (!!e.loadBalancerName === !!e.targetGroupArn) {
      causes.push({ field: at('targetGroupArn'), message: 'give exactly one of loadBalancerName or targetGroupArn' });
      return;
    }
    const ref = targetSetOf(e)!;
    const plural = ref.kind === 'TargetGroup' ? 'targetgroups' : 'loadbalancers';
    if (!registry.cache.get(storeKey(plural, undefined, ref.name))) {
      causes.push({ field: at(ref.kind === 'TargetGroup' ? 'targetGroupArn' : 'loadBalancerName'), message: `${ref.kind === 'TargetGroup' ? 'target group' : 'load balancer'} "${ref.name}" not found` });
    }
    const key = `${ref.kind}/${ref.name}/${e.containerName}/${e.containerPort}`;
    if (seen.has(key)) causes.push({ field: at('containerPort'), message: 'the same target and container port are given twice' });
    seen.add(key);
    if (!td) return;
    const cd = td.containerDefinitions.find((c) => c.name === e.containerName);
    if (!cd) {
      causes.push({ field: at('containerName'), message: `container "${e.containerName}" is not in task definition ${spec.taskDefinition}` });
      return;
    }
    if (!(cd.portMappings ?? []).some((m) => m.containerPort === e.containerPort && (m.protocol ?? 'tcp') === 'tcp')) {
      causes.push({ field: at('containerPort'), message: `container "${e.containerName}" has no TCP port mapping for container port ${e.containerPort}` });
    }
  });
  return causes;
}

/** The classic load balancer's listeners name target groups that exist. */
export function loadBalancerListenerCauses(registry: Registry, spec: LoadBalancerSpec): FieldCause[] {
  const causes: FieldCause[] = [];
  const ports = new Set<number>();
  spec.listeners.forEach((l, i) => {
    if (ports.has(l.loadBalancerPort)) causes.push({ field: `spec.listeners[${i}].loadBalancerPort`, message: `port ${l.loadBalancerPort} has two listeners` });
    ports.add(l.loadBalancerPort);
    if (l.targetGroupArn) {
      const m = /targetgroup\/([^/]+)/.exec(l.targetGroupArn);
      const name = m ? m[1] : l.targetGroupArn;
      if (!registry.cache.get(storeKey('targetgroups', undefined, name))) causes.push({ field: `spec.listeners[${i}].targetGroupArn`, message: `target group "${name}" not found` });
    }
  });
  return causes;
}

export class LoadBalancerAdmission extends TargetSetAdmission {
  constructor(
    private readonly registry: Registry,
    arns: Arns,
  ) {
    super('LoadBalancer', arns);
  }

  override async create(o: Obj) {
    const causes = loadBalancerListenerCauses(this.registry, o.spec as LoadBalancerSpec);
    if (causes.length) throw invalid('LoadBalancer', o.metadata.name, causes);
    await super.create(o);
  }

  async update(next: Obj, _prev: Obj, _w: unknown, sub: 'status' | undefined) {
    if (sub === 'status') return;
    const causes = loadBalancerListenerCauses(this.registry, next.spec as LoadBalancerSpec);
    if (causes.length) throw invalid('LoadBalancer', next.metadata.name, causes);
  }
}
