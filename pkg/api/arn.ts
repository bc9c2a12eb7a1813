import { randomBytes } from 'node:crypto';
import { badRequest } from '../errors/errors.ts';

/** Region and account id in ARNs: configuration (defaults us-east-1, 000000000000). */
export interface ArnConfig {
  region: string;
  account: string;
}
export const DEFAULT_ARN_CONFIG: ArnConfig = { region: 'us-east-1', account: '000000000000' };

export type ArnResource =
  | 'cluster'
  | 'container-instance'
  | 'task-definition'
  | 'daemon-task-definition'
  | 'task'
  | 'service'
  | 'daemon'
  | 'container';

export interface ParsedArn {
  region: string;
  account: string;
  resource: ArnResource;
  /** cluster-scoped resources (task, container-instance, service, daemon): the cluster */
  cluster?: string;
  /** the last path part: name, id or `family:revision` */
  name: string;
}

const SCOPED: ReadonlySet<ArnResource> = new Set(['task', 'container-instance', 'service', 'daemon', 'container']);

/** Long-format ECS ARNs: `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`. */
export class Arns {
  constructor(readonly cfg: ArnConfig = DEFAULT_ARN_CONFIG) {}
  private base() {
    return `arn:aws:ecs:${this.cfg.region}:${this.cfg.account}`;
  }
  cluster(name: string) {
    return `${this.base()}:cluster/${name}`;
  }
  containerInstance(cluster: string, id: string) {
    return `${this.base()}:container-instance/${cluster}/${id}`;
  }
  task(cluster: string, id: string) {
    return `${this.base()}:task/${cluster}/${id}`;
  }
  container(cluster: string, taskId: string, containerId: string) {
    return `${this.base()}:container/${cluster}/${taskId}/${containerId}`;
  }
  service(cluster: string, name: string) {
    return `${this.base()}:service/${cluster}/${name}`;
  }
  daemon(cluster: string, name: string) {
    return `${this.base()}:daemon/${cluster}/${name}`;
  }
  taskDefinition(familyRevision: string) {
    return `${this.base()}:task-definition/${familyRevision}`;
  }
  daemonTaskDefinition(familyRevision: string) {
    return `${this.base()}:daemon-task-definition/${familyRevision}`;
  }
}

export function isArn(s: string): boolean {
  return s.startsWith('arn:');
}

/** Parses an ECS ARN; throws BadRequest (InvalidParameterException) when it is not one. */
export function parseArn(arn: string): ParsedArn {
  const m = /^arn:aws[a-z-]*:ecs:([a-z0-9-]*):([0-9]*):([a-z-]+)\/(.+)$/.exec(arn);
  if (!m) throw badRequest(`"${arn}" is not a valid ECS ARN`, 'InvalidParameterException');
  const resource = m[3] as ArnResource;
  const parts = m[4].split('/');
  if (SCOPED.has(resource)) {
    if (parts.length < 2) {
      // the short (old) format without the cluster: task/ID
      return { region: m[1], account: m[2], resource, name: parts[0] };
    }
    return { region: m[1], account: m[2], resource, cluster: parts[0], name: parts.slice(1).join('/') };
  }
  return { region: m[1], account: m[2], resource, name: parts.join('/') };
}

/**
 * An identifier as ECS accepts it: a name, an id or a full ARN. Returns the name (or id)
 * and, when an ARN named it, the cluster.
 */
export function resolveIdentifier(id: string, expected: ArnResource): { name: string; cluster?: string } {
  if (!isArn(id)) return { name: id };
  const p = parseArn(id);
  if (p.resource !== expected) {
    throw badRequest(`"${id}" is a ${p.resource} ARN, expected a ${expected} ARN`, 'InvalidParameterException');
  }
  return { name: p.name, cluster: p.cluster };
}

/** A new task or container-instance id: 32 hex characters, as ECS's long ids are. */
export function newId(): string {
  return randomBytes(16).toString('hex');
}
