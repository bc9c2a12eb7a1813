import type { Arns } from '../api/arn.ts';
import { GROUP } from '../api/meta.ts';
import { forbidden, isBerthError, type BerthError, type Denial } from '../errors/errors.ts';
import { resourceApiActions, type ActionLookups } from './actions.ts';
import { ADMINS, type Authorizer, type Identity, type RequestAttributes } from './auth.ts';
import { evaluate, type AccessRequest, type Decision } from './policy.ts';
import type { PolicySource } from './policyfile.ts';

/**
 * berth's authorization: the built-in groups composed with IAM policies, one decision for
 * both faces.
 *
 *   1. `berth:admins` are the root account: allowed everything; no policy restricts them
 *      (IAM policies cannot restrict an account's root user either).
 *   2. The request as an IAM action on ECS resources (the ECS face names it; the resource
 *      API's is mapped from verb and resource, actions.ts) is evaluated against the
 *      policies attached to the caller's user name and groups, with IAM's rules:
 *      an explicit Deny denies, whatever any Allow or built-in group says;
 *   3. an Allow allows;
 *   4. otherwise berth's built-in rules decide, exactly as without policies (viewers read,
 *      bootstrappers register instances, nodes touch only what is bound to them);
 *      what they refuse is denied (the implicit deny).
 *
 * Denials are Forbidden errors worded as Kubernetes words them (the resource API's
 * message) and carrying a `denial` from which the ECS face words AWS's AccessDenied.
 */
export class PolicyAuthorizer implements Authorizer {
  constructor(
    private readonly builtin: Authorizer,
    private readonly policies: PolicySource,
    private readonly arns: Arns,
    private readonly lookups: ActionLookups,
  ) {}

  authorize(id: Identity, a: RequestAttributes): void {
    const v = this.decide(id, a);
    if (v.error) throw v.error;
  }

  /** The decision without throwing (SelfSubjectAccessReview asks for it). */
  decide(id: Identity, a: RequestAttributes): Verdict {
    if (id.groups.includes(ADMINS)) return { allowed: true, reason: `${ADMINS} may do everything (policies do not restrict admins)` };
    // the IAM request is made only when a policy is attached or a denial must name it (the
    // hot path, a node writing its tasks' status with no policy attached, skips it)
    const attached = this.policies.current().forIdentity(id);
    let reqs = attached.length ? this.requests(id, a) : undefined;
    let d: Decision | undefined;
    if (reqs?.length) {
      // a write before it runs may mean any of its kind's write actions: one allowed lets it
      // go on to the write path, which authorizes what it does (writeActions); otherwise the
      // first explicit Deny, or the request's own action, is what the denial names
      let deny: { req: AccessRequest; d: Decision } | undefined;
      for (const req of reqs) {
        const e = evaluate(attached, req);
        if (e.effect === 'Allow') return { allowed: true, reason: `allowed by ${e.statement} (${req.action} on ${e.resource})` };
        if (e.effect === 'Deny') deny ??= { req, d: e };
        d ??= e;
      }
      if (deny) {
        const why = `explicitly denied by ${deny.d.statement} (${deny.req.action} on ${deny.d.resource})`;
        return { allowed: false, explicit: true, reason: why, error: this.denied(id, a, deny.req, deny.d, why) };
      }
    }
    try {
      this.builtin.authorize(id, a);
      return { allowed: true, reason: "allowed by berth's built-in rules for its groups" };
    } catch (e) {
      if (!isBerthError(e, 'Forbidden')) throw e;
      const builtin = (e as BerthError).details.why ?? e.message;
      reqs ??= this.requests(id, a);
      const req = reqs[0];
      const resource = d?.resource ?? req?.resources[0] ?? '*';
      const why = req ? `${builtin}; no identity-based policy allows ${req.action} on ${resource}` : builtin;
      return { allowed: false, explicit: false, reason: why, error: this.denied(id, a, req, { effect: 'ImplicitDeny', resource }, why) };
    }
  }

  /** The IAM request: the one the ECS face (or the write path) named, or the resource API's mapped one; with aws:username. */
  request(id: Identity, a: RequestAttributes): AccessRequest | undefined {
    return this.requests(id, a)[0];
  }

  /** The IAM requests a request may make, its own first (resourceApiActions: a write's other meanings after it). */
  requests(id: Identity, a: RequestAttributes): AccessRequest[] {
    if (a.action) return [{ ...a.action, context: { ...a.action.context, 'aws:username': [id.user] } }];
    return resourceApiActions(a, id.user, this.arns, this.lookups);
  }

  principal(id: Identity): string {
    return `arn:aws:iam::${this.arns.cfg.account}:user/${id.user}`;
  }

  private denied(id: Identity, a: RequestAttributes, req: AccessRequest | undefined, d: Pick<Decision, 'effect' | 'resource'>, why: string): BerthError {
    const denial: Denial = { principal: this.principal(id), action: req?.action, resource: d.resource, explicit: d.effect === 'Deny' };
    return forbidden(kubernetesForbidden(id.user, a, why), { kind: a.resource, name: a.name, why, denial });
  }
}

export interface Verdict {
  allowed: boolean;
  /** denied by an explicit Deny (SelfSubjectAccessReview's `denied`) */
  explicit?: boolean;
  reason: string;
  /** the Forbidden error to throw when not allowed */
  error?: BerthError;
}

const K8S_VERB: Record<RequestAttributes['verb'], string> = {
  get: 'get',
  list: 'list',
  watch: 'watch',
  create: 'create',
  update: 'update',
  patch: 'patch',
  delete: 'delete',
  logs: 'get',
};

/**
 * Kubernetes' wording of a denial (k8s.io/apiserver's responsewriters.forbiddenMessage and
 * apierrors.NewForbidden): `tasks.berth.dev "t1" is forbidden: User "alice" cannot create
 * resource "tasks" in API group "berth.dev" in the namespace "A": <reason>`.
 */
export function kubernetesForbidden(
  user: string,
  a: Pick<RequestAttributes, 'verb' | 'resource' | 'subresource' | 'namespace' | 'name' | 'path'>,
  reason: string,
): string {
  const verb = K8S_VERB[a.verb] ?? a.verb;
  if (!a.resource) return `forbidden: User ${JSON.stringify(user)} cannot ${verb} path ${JSON.stringify(a.path)}: ${reason}`;
  const sub = a.verb === 'logs' ? 'log' : a.subresource;
  const res = sub ? `${a.resource}/${sub}` : a.resource;
  const scope = a.namespace ? `in the namespace ${JSON.stringify(a.namespace)}` : 'at the cluster scope';
  const what = `${a.resource}.${GROUP}${a.name ? ` ${JSON.stringify(a.name)}` : ''}`;
  const who = `User ${JSON.stringify(user)}`;
  return `${what} is forbidden: ${who} cannot ${verb} resource ${JSON.stringify(res)} in API group ${JSON.stringify(GROUP)} ${scope}: ${reason}`;
}
