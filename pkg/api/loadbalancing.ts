import { z } from 'zod';
import { Tag } from './taskdefinition.ts';

/**
 * Load balancing: the shapes of Elastic Load Balancing that ECS services register with. A
 * `LoadBalancer` is a classic ELB (listeners from a load balancer port to an instance port,
 * one health check, connection draining) and the instances ECS registers in it; a listener
 * may instead forward to a `TargetGroup` (ELBv2: protocol, port, its own health check and
 * deregistration delay). Both kinds are account-wide, as ELB's are: cluster-scoped, so
 * services of every cluster can register in them.
 *
 * Each holds, in its status, the targets registered in it (`targets`): the service
 * controller's books decide which exist and which drain; the data plane (berth-lb) writes
 * what its health checks found.
 */

/** ELB names: 1-32 letters, digits and hyphens, not starting or ending with a hyphen. */
export const ELB_NAME_RE = /^(?!-)[A-Za-z0-9-]{1,32}(?<!-)$/;
export const ELB_NAME_MESSAGE = 'must be 1-32 letters, digits and hyphens, and must not begin or end with a hyphen';

/**
 * What a health check path may hold: RFC 3986 path and query characters without quotes,
 * `#`, `\\`, spaces or control characters. The path is written into haproxy.cfg, where those
 * would end the word, start a comment or a new line of configuration.
 */
const PATH_CHARS = String.raw`[A-Za-z0-9\-._~!$&()*+,;=:@%/?]`;
export const HTTP_PATH_RE = new RegExp(`^/${PATH_CHARS}*$`);
export const HTTP_PATH_MESSAGE = 'must start with / and hold only letters, digits and - . _ ~ ! $ & ( ) * + , ; = : @ % / ? (no spaces, quotes or #)';

const Protocol = z.enum(['HTTP', 'TCP'], { error: 'protocol must be HTTP or TCP' });
const Port = z.number({ error: 'port must be a number' }).int().min(1, { error: 'port must be 1-65535' }).max(65535, { error: 'port must be 1-65535' });

export const Listener = z.strictObject({
  protocol: Protocol,
  loadBalancerPort: Port,
  instanceProtocol: Protocol.optional(),
  /** classic ELB: the instances' port; berth registers each task's own (dynamic) host port, as ECS does with target groups */
  instancePort: Port.optional(),
  /** ELBv2: forward to this target group (its name or ARN) instead of the load balancer's own instances */
  targetGroupArn: z
    .string()
    .min(1)
    .refine((a) => ELB_NAME_RE.test(targetGroupName(a)), { error: `targetGroupArn must be a target group ARN or name; the name ${ELB_NAME_MESSAGE}` })
    .optional(),
});
export type Listener = z.infer<typeof Listener>;

/** `HTTP:80/index.html`, `TCP:8080`: what, where and (HTTP) which path the classic health check asks */
export const HEALTH_TARGET_RE = new RegExp(String.raw`^(HTTP|TCP):(\d{1,5})(/${PATH_CHARS}*)?$`);

export const ClassicHealthCheck = z
  .strictObject({
    target: z.string().regex(HEALTH_TARGET_RE, { error: `target must be PROTOCOL:PORT[/PATH] with PROTOCOL HTTP or TCP (e.g. HTTP:80/index.html); a path only with HTTP; the path ${HTTP_PATH_MESSAGE}` }),
    interval: z.number().int().min(1).max(300).default(30),
    timeout: z.number().int().min(1).max(60).default(5),
    healthyThreshold: z.number().int().min(2).max(10).default(10),
    unhealthyThreshold: z.number().int().min(2).max(10).default(2),
  })
  .refine((h) => h.timeout < h.interval, { error: 'timeout must be less than interval', path: ['timeout'] })
  .refine((h) => !(h.target.startsWith('TCP:') && h.target.includes('/')), { error: 'a TCP target takes no path', path: ['target'] });

export const LoadBalancerSpec = z.strictObject({
  listeners: z.array(Listener).min(1, { error: 'at least one listener is required' }).max(100),
  healthCheck: ClassicHealthCheck.optional(),
  /** connection draining (ECS waits for it before it stops a task): default enabled, 300 s */
  connectionDraining: z.strictObject({ enabled: z.boolean(), timeout: z.number().int().min(0).max(3600).default(300) }).optional(),
  scheme: z.enum(['internet-facing', 'internal']).optional(),
  tags: z.array(Tag).max(50).optional(),
});
export type LoadBalancerSpec = z.infer<typeof LoadBalancerSpec>;

export const TargetState = z.enum(['initial', 'healthy', 'unhealthy', 'unused', 'draining', 'unavailable']);
export type TargetState = z.infer<typeof TargetState>;

export const Target = z.strictObject({
  /** the address traffic goes to: the instance's registered address (bridge, host) or the task's (awsvpc) */
  id: z.string(),
  port: z.number().int(),
  /** berth's books: the task behind it (`cluster/task`) and its service (`cluster/service`) */
  task: z.string(),
  service: z.string(),
  state: TargetState,
  /** ELB's reason codes: Elb.RegistrationInProgress, Target.FailedHealthChecks, Target.DeregistrationInProgress, ... */
  reason: z.string().optional(),
  description: z.string().optional(),
  registeredAt: z.string().optional(),
  drainingSince: z.string().optional(),
});
export type Target = z.infer<typeof Target>;

export const LoadBalancerStatus = z.strictObject({
  loadBalancerArn: z.string().optional(),
  dnsName: z.string().optional(),
  targets: z.array(Target).optional(),
});
export type LoadBalancerStatus = z.infer<typeof LoadBalancerStatus>;

/** ELBv2 matchers: `200`, `200,202`, `200-299` (codes 200-499) */
export const MATCHER_RE = /^\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*$/;

export const TargetGroupSpec = z
  .strictObject({
    protocol: Protocol,
    port: Port,
    targetType: z.enum(['instance', 'ip']).default('instance'),
    healthCheckProtocol: Protocol.optional(),
    /** `traffic-port` (default) or a port number */
    healthCheckPort: z.union([z.literal('traffic-port'), z.string().regex(/^\d{1,5}$/, { error: 'healthCheckPort must be traffic-port or a port number' })]).optional(),
    healthCheckPath: z.string().max(1024).regex(HTTP_PATH_RE, { error: `healthCheckPath ${HTTP_PATH_MESSAGE}` }).optional(),
    healthCheckIntervalSeconds: z.number().int().min(1).max(300).default(30),
    healthCheckTimeoutSeconds: z.number().int().min(1).max(120).default(5),
    healthyThresholdCount: z.number().int().min(2).max(10).default(5),
    unhealthyThresholdCount: z.number().int().min(2).max(10).default(2),
    matcher: z.strictObject({ httpCode: z.string().regex(MATCHER_RE, { error: 'httpCode must be codes (200) or ranges (200-299) separated by commas' }) }).optional(),
    /** deregistration_delay.timeout_seconds: how long a deregistered target drains (default 300) */
    deregistrationDelaySeconds: z.number().int().min(0).max(3600).default(300),
    tags: z.array(Tag).max(50).optional(),
  })
  .refine((t) => t.healthCheckTimeoutSeconds < t.healthCheckIntervalSeconds, { error: 'healthCheckTimeoutSeconds must be less than healthCheckIntervalSeconds', path: ['healthCheckTimeoutSeconds'] });
export type TargetGroupSpec = z.infer<typeof TargetGroupSpec>;

export const TargetGroupStatus = z.strictObject({
  targetGroupArn: z.string().optional(),
  /** the load balancers whose listeners forward to it */
  loadBalancerArns: z.array(z.string()).optional(),
  targets: z.array(Target).optional(),
});
export type TargetGroupStatus = z.infer<typeof TargetGroupStatus>;

// ---------------------------------------------------------------- helpers every side shares

/** Where a service's `loadBalancers` entry registers: a classic load balancer or a target group, by name. */
export interface TargetSetRef {
  kind: 'LoadBalancer' | 'TargetGroup';
  name: string;
}

/** `arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID` (or a bare name) -> NAME */
export function targetGroupName(arnOrName: string): string {
  const m = /^arn:aws[a-z-]*:elasticloadbalancing:[^:]*:[^:]*:targetgroup\/([^/]+)(\/.*)?$/.exec(arnOrName);
  return m ? m[1] : arnOrName;
}

/** `arn:...:loadbalancer/NAME` or `arn:...:loadbalancer/app/NAME/ID` (or a bare name) -> NAME */
export function loadBalancerName(arnOrName: string): string {
  const m = /^arn:aws[a-z-]*:elasticloadbalancing:[^:]*:[^:]*:loadbalancer\/(?:(?:app|net)\/)?([^/]+)(\/.*)?$/.exec(arnOrName);
  return m ? m[1] : arnOrName;
}

export function targetSetOf(e: { loadBalancerName?: string; targetGroupArn?: string }): TargetSetRef | undefined {
  if (e.targetGroupArn) return { kind: 'TargetGroup', name: targetGroupName(e.targetGroupArn) };
  if (e.loadBalancerName) return { kind: 'LoadBalancer', name: e.loadBalancerName };
  return undefined;
}

export const targetSetKey = (r: TargetSetRef) => `${r.kind}/${r.name}`;

/** How the data plane checks a target set's targets, from either kind's fields. */
export interface HealthCheck {
  protocol: 'HTTP' | 'TCP';
  /** undefined: the target's own (traffic) port */
  port?: number;
  path: string;
  intervalMs: number;
  timeoutMs: number;
  healthy: number;
  unhealthy: number;
  /** HTTP codes that pass */
  codes: string;
}

export function healthCheckOfTargetGroup(s: TargetGroupSpec): HealthCheck {
  return {
    protocol: s.healthCheckProtocol ?? s.protocol,
    port: s.healthCheckPort && s.healthCheckPort !== 'traffic-port' ? Number(s.healthCheckPort) : undefined,
    path: s.healthCheckPath ?? '/',
    intervalMs: s.healthCheckIntervalSeconds * 1000,
    timeoutMs: s.healthCheckTimeoutSeconds * 1000,
    healthy: s.healthyThresholdCount,
    unhealthy: s.unhealthyThresholdCount,
    codes: s.matcher?.httpCode ?? '200',
  };
}

/**
 * A classic load balancer's health check. The target's port is the instance port, which
 * with dynamic host ports is each task's own: a target naming the listeners' instance
 * port (or none) checks each target's traffic port, another port is checked as given.
 */
export function healthCheckOfLoadBalancer(s: LoadBalancerSpec): HealthCheck {
  const h = s.healthCheck ?? { target: 'TCP:80', interval: 30, timeout: 5, healthyThreshold: 10, unhealthyThreshold: 2 };
  const m = HEALTH_TARGET_RE.exec(h.target)!;
  const port = Number(m[2]);
  const instancePorts = new Set(s.listeners.map((l) => l.instancePort ?? l.loadBalancerPort));
  return {
    protocol: m[1] as 'HTTP' | 'TCP',
    port: instancePorts.has(port) || !s.healthCheck ? undefined : port,
    path: m[3] ?? '/',
    intervalMs: h.interval * 1000,
    timeoutMs: h.timeout * 1000,
    healthy: h.healthyThreshold,
    unhealthy: h.unhealthyThreshold,
    codes: '200',
  };
}

/** How long a deregistered target drains before its task is stopped (ms). */
export const drainMsOfTargetGroup = (s: TargetGroupSpec) => s.deregistrationDelaySeconds * 1000;
export const drainMsOfLoadBalancer = (s: LoadBalancerSpec) => (s.connectionDraining ? (s.connectionDraining.enabled ? s.connectionDraining.timeout * 1000 : 0) : 300_000);

/** `200,202-204` -> the codes it names */
export function matcherCodes(m: string): number[] {
  const out: number[] = [];
  for (const part of m.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) out.push(c);
  }
  return out;
}
