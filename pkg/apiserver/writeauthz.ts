import type { Arns } from '../api/arn.ts';
import { writeActions, type ActionLookups } from './actions.ts';
import type { WriteValidator } from './registry.ts';

/**
 * Authorization of what a write does, in the write path (R1-1, R1-2, R1-3, R1-8).
 *
 * A resource-API request is authorized before it runs, on its verb and resource (as
 * Kubernetes authorizes before admission); but what a PATCH of a task definition family, a
 * task or a service means in IAM's terms depends on what it changes, which only the write
 * path knows: it registers a revision, stops or tags a task, moves a service to another
 * revision. This check runs after the kind's admission, on the stored object and the one to
 * be written (a family resolved to its revision, as it will be stored), and asks the
 * request's authorizer (`RequestContext.authorize`) for each action the change means
 * (actions.ts `writeActions`). A denial is the same 403 the request's own authorization
 * gives, and nothing is written.
 *
 * Status writes keep their one action (the agent's, the controllers'); deletes are what their
 * verb says. The ECS face names its action per operation and passes no `authorize`: each of
 * its operations writes only what its action means.
 */
export function writeAuthorization(arns: Arns, lookups: ActionLookups): WriteValidator {
  return (op) => {
    const authorize = op.ctx.authorize;
    if (!authorize || op.sub === 'status' || op.verb === 'delete' || !op.next) return;
    const change = {
      verb: op.verb,
      resource: op.kind.plural,
      namespace: op.kind.namespaced ? op.next.metadata.namespace : undefined,
      prev: op.prev,
      next: op.next,
      namesTaskDefinition: op.ctx.namesTaskDefinition,
    };
    for (const { attrs, request } of writeActions(change, arns, lookups)) authorize({ ...attrs, action: request });
  };
}
