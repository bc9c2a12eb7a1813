import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { GROUP, VERSION, type KindInfo } from '../api/meta.ts';
import { kindByPlural } from '../api/kinds.ts';
import { parseOrInvalid } from '../api/validate.ts';
import { badRequest, isBerthError } from '../errors/errors.ts';
import { NODES } from './auth.ts';
import { FENCE_HEADER, parseFence } from './fence.ts';
import type { Registry, RequestContext } from './registry.ts';
import { sendJson, type ApiRequest } from './server.ts';
import { toStatus } from './status.ts';

/** at most this many task statuses per call (an agent with more sends several calls) */
export const MAX_TASK_STATUSES = 1000;

export const TaskStatusRequest = z.strictObject({
  statuses: z
    .array(
      z.strictObject({
        /** the task's name (id) */
        task: z.string().min(1),
        /** a JSON merge patch of the task's status, as the body `{status: ...}` of a status PATCH */
        status: z.record(z.string(), z.unknown()),
      }),
    )
    .min(1, { error: 'statuses must not be empty' })
    .max(MAX_TASK_STATUSES, { error: `at most ${MAX_TASK_STATUSES} task statuses per call` }),
});
export type TaskStatusRequest = z.infer<typeof TaskStatusRequest>;

/** One item's outcome: its HTTP code as a single status PATCH would have answered, and the Status fields of a failure. */
export interface TaskStatusResult {
  task: string;
  code: number;
  /** committed (or unchanged): the task's resourceVersion */
  resourceVersion?: string;
  reason?: string;
  message?: string;
}

/**
 * The HTTP face: POST /apis/berth.dev/v1/namespaces/CLUSTER/taskstatuses, an agent's status
 * reports of one report interval in one request, committed in as few store txns as the
 * limits allow (one, for what fits in etcd's --max-txn-ops and request size). Each item is
 * authorized as `patch tasks/status` of its task and admitted as that PATCH (node
 * restriction, validation, the lastStatus order, the allocation released with STOPPED), and
 * answers for itself: a node's item naming a task not bound to it is refused with 403 and
 * writes nothing, while the others commit. The audit line names every item and its code.
 */
export function taskStatusRoute(registry: Registry) {
  const re = new RegExp(`^/apis/${GROUP.replace('.', '\\.')}/${VERSION}/namespaces/([^/]+)/taskstatuses$`);
  const tasks = kindByPlural('tasks') as KindInfo;
  return async (r: ApiRequest, res: ServerResponse): Promise<boolean> => {
    const m = re.exec(r.path);
    if (!m) return false;
    if (r.method !== 'POST') throw badRequest('taskstatuses accept only POST');
    const cluster = decodeURIComponent(m[1]);
    const attrs = { verb: 'patch', resource: 'tasks', namespace: cluster, subresource: 'status' } as const;
    const fence = parseFence(r.raw.headers[FENCE_HEADER], registry.cache, (namespace, name) => r.authorize({ verb: 'update', resource: 'leases', namespace, name }));
    const body = parseOrInvalid(TaskStatusRequest, await r.body(), '', 'TaskStatus', cluster);
    const results: TaskStatusResult[] = body.statuses.map((s) => ({ task: s.task, code: 0 }));
    const fail = (i: number, e: unknown) => {
      if (!isBerthError(e)) registry.log.error({ task: body.statuses[i].task, err: (e as Error)?.stack ?? String(e) }, 'internal error');
      const s = toStatus(e);
      Object.assign(results[i], { code: s.code, reason: s.reason, message: s.message });
    };
    // each item is authorized as its own status PATCH; a node's rights follow what is bound
    // to it, read from the cache, so its denials are confirmed once against fresh state
    const authorizeAll = (idx: number[]) => {
      const denied: number[] = [];
      for (const i of idx) {
        try {
          r.authorize({ ...attrs, name: body.statuses[i].task });
        } catch (e) {
          if (!isBerthError(e, 'Forbidden')) throw e;
          denied.push(i);
        }
      }
      return denied;
    };
    let denied = authorizeAll(body.statuses.map((_, i) => i));
    if (denied.length && r.identity.groups.includes(NODES) && registry.reader.ready) {
      await registry.fresh();
      denied = authorizeAll(denied);
    }
    const refused = new Set(denied);
    for (const i of denied) {
      try {
        r.authorize({ ...attrs, name: body.statuses[i].task });
      } catch (e) {
        fail(i, e);
      }
    }
    const ctx: RequestContext = {
      user: r.identity.user,
      ...(r.identity.node ? { node: r.identity.node } : {}),
      sourceAddress: r.sourceAddress,
      fence,
      authorize: (a) => r.authorize(a.verb === 'update' ? { ...a, verb: 'patch' } : a),
    };
    const idx = body.statuses.map((_, i) => i).filter((i) => !refused.has(i));
    if (idx.length) {
      const outs = await registry.patchStatuses(
        tasks,
        cluster,
        idx.map((i) => ({ name: body.statuses[i].task, patch: { status: body.statuses[i].status } })),
        ctx,
      );
      outs.forEach((o, k) => {
        const i = idx[k];
        if ('obj' in o) Object.assign(results[i], { code: 200, resourceVersion: o.obj.metadata.resourceVersion });
        else fail(i, o.error);
      });
    }
    // the audit line: the request as `patch tasks/status` in the cluster, and each item's outcome
    r.audit.attrs = attrs;
    r.audit.items = results.map((x) => ({ name: x.task, code: x.code }));
    if (results.some((x) => x.code === 403)) r.audit.denied = true;
    sendJson(res, 200, { apiVersion: `${GROUP}/${VERSION}`, kind: 'TaskStatusResult', results });
    return true;
  };
}
