import { statSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { cacheLookups } from '../apiserver/actions.ts';
import type { ApiParts, FrontDoor } from '../apiserver/apiserver.ts';
import { ADMINS, type Identity } from '../apiserver/auth.ts';
import type { FrontDoorRequest } from '../apiserver/server.ts';
import { ecsAction } from './actions.ts';
import { CreateCluster, DeleteCluster, DescribeClusters, ListClusters } from './clusters.ts';
import type { OpContext, Operation } from './context.ts';
import {
  CreateDaemon,
  DeleteDaemon,
  DeleteDaemonTaskDefinition,
  DescribeDaemon,
  DescribeDaemonTaskDefinition,
  ListDaemons,
  ListDaemonTaskDefinitions,
  RegisterDaemonTaskDefinition,
  UpdateDaemon,
} from './daemons.ts';
import {
  DeleteAttributes,
  DeregisterContainerInstance,
  DescribeContainerInstances,
  ListAttributes,
  ListContainerInstances,
  PutAttributes,
  RegisterContainerInstance,
  UpdateContainerInstancesState,
} from './instances.ts';
import type { Input } from './params.ts';
import { CreateService, DeleteService, DescribeServices, ListServices, UpdateService } from './services.ts';
import { loadAccessKeyFile, verify, type AccessKey } from './sigv4.ts';
import { ListTagsForResource, TagResource, UntagResource } from './tags.ts';
import { DeregisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitionFamilies, ListTaskDefinitions, RegisterTaskDefinition } from './taskdefs.ts';
import { DescribeTasks, ListTasks, RunTask, StartTask, StopTask } from './tasks.ts';
import { EcsError, TARGET_PREFIX, sendEcs, toEcsError } from './wire.ts';

export type { AccessKey } from './sigv4.ts';
export { parseAccessKeyFile, loadAccessKeyFile } from './sigv4.ts';

/**
 * The Amazon ECS API (AWS JSON 1.1) as a front door of the apiserver: `POST` with
 * `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>` at `/` or under any path
 * prefix, SigV4-authenticated with static access keys, authorized by the apiserver's one
 * authorizer, and served by the same registry (admission, ARNs, defaults) and binder as
 * the resource API.
 */

export const OPERATIONS: Record<string, Operation> = {
  CreateCluster,
  DeleteCluster,
  DescribeClusters,
  ListClusters,
  RegisterContainerInstance,
  DeregisterContainerInstance,
  DescribeContainerInstances,
  ListContainerInstances,
  UpdateContainerInstancesState,
  PutAttributes,
  ListAttributes,
  DeleteAttributes,
  RegisterTaskDefinition,
  DescribeTaskDefinition,
  ListTaskDefinitions,
  ListTaskDefinitionFamilies,
  DeregisterTaskDefinition,
  RunTask,
  StartTask,
  StopTask,
  DescribeTasks,
  ListTasks,
  CreateService,
  UpdateService,
  DeleteService,
  DescribeServices,
  ListServices,
  RegisterDaemonTaskDefinition,
  DescribeDaemonTaskDefinition,
  ListDaemonTaskDefinitions,
  DeleteDaemonTaskDefinition,
  CreateDaemon,
  UpdateDaemon,
  DeleteDaemon,
  DescribeDaemon,
  ListDaemons,
  TagResource,
  UntagResource,
  ListTagsForResource,
};

export interface EcsFrontDoorOptions {
  /** CSV `accessKeyId,secretAccessKey,user,"group1,group2"`; re-read when it changes */
  accessKeyFile?: string;
  keys?: AccessKey[];
  /** the region berth answers for (ARNs use the apiserver's ARN configuration) */
  region: string;
}

/** the errors of a caller who could not be authenticated or was not authorized (audited as denials) */
const AUTH_ERRORS = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'MissingAuthenticationTokenException',
  'InvalidSignatureException',
  'IncompleteSignatureException',
]);

const DEV_IDENTITY: Identity = { user: 'admin', groups: [ADMINS] };

/** Keys from the options and the file; the file is re-read when its mtime changes. */
function keyring(opts: EcsFrontDoorOptions) {
  let fileKeys: AccessKey[] = [];
  let seen = -1;
  const load = () => {
    if (!opts.accessKeyFile) return;
    const m = statSync(opts.accessKeyFile).mtimeMs;
    if (m === seen) return;
    fileKeys = loadAccessKeyFile(opts.accessKeyFile);
    seen = m;
  };
  load(); // a missing or malformed file fails at start-up, with the file's name
  return (): Map<string, AccessKey> => {
    try {
      load();
    } catch {
      /* keep the last good keys while the file is being rewritten */
    }
    return new Map([...(opts.keys ?? []), ...fileKeys].map((k) => [k.accessKeyId, k]));
  };
}

export function ecsFrontDoor(parts: ApiParts, opts: EcsFrontDoorOptions): FrontDoor {
  const keys = keyring(opts);
  const log = parts.log.child({ component: 'ecsapi' });
  const lookups = cacheLookups(parts.cache);
  return async (req: FrontDoorRequest, res: ServerResponse): Promise<boolean> => {
    const target = req.raw.headers['x-amz-target'];
    if (req.method !== 'POST' || typeof target !== 'string' || !target.startsWith(TARGET_PREFIX)) return false;
    const requestId = req.requestId;
    const op = target.slice(TARGET_PREFIX.length);
    const audit = req.audit;
    audit.face = 'ecs';
    // every action but the Describe and List ones changes state (or tries to)
    audit.mutating = !/^(Describe|List)/.test(op);
    audit.iam = { action: `ecs:${op.slice(0, 128)}`, resources: [] };
    try {
      const body = await req.bodyText();
      const known = keys();
      const identity =
        known.size === 0 && req.devMode
          ? DEV_IDENTITY // dev mode without keys: every caller is the admin (loopback only)
          : verify({ method: req.method, url: req.raw.url ?? '/', headers: req.raw.headers, body }, known);
      audit.identity = identity;
      const handler = Object.hasOwn(OPERATIONS, op) ? OPERATIONS[op] : undefined;
      if (!handler) throw new EcsError('UnknownOperationException', `Unknown operation "${op}": berth does not implement it (X-Amz-Target ${target}).`);
      let input: unknown = {};
      if (body.trim()) {
        try {
          input = JSON.parse(body);
        } catch (e) {
          throw new EcsError('SerializationException', `The request body is not valid JSON: ${(e as Error).message}`);
        }
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new EcsError('SerializationException', `The request body must be a JSON object (got ${Array.isArray(input) ? 'a list' : input === null ? 'null' : typeof input}).`);
      }
      // what the operation asks for in IAM's terms: every check it makes is decided for this action
      const action = ecsAction(op, input as Input, parts.arns, lookups);
      audit.iam = action;
      const ctx: OpContext = {
        parts,
        registry: parts.registry,
        identity,
        req: { user: identity.user },
        authorize: (attrs) => req.authorize(identity, { ...attrs, action }),
        region: opts.region,
      };
      const out = await handler(ctx, input as Input);
      log.debug({ op, user: identity.user, requestId }, 'ecs request');
      sendEcs(res, requestId, 200, out);
    } catch (e) {
      const w = toEcsError(e);
      audit.errorType = w.type;
      audit.message = w.message;
      audit.denied = w.status === 403 || AUTH_ERRORS.has(w.type);
      if (w.status >= 500) log.error({ op, requestId, err: (e as Error)?.stack ?? String(e) }, 'ecs request failed');
      else log.debug({ op, requestId, type: w.type, message: w.message }, 'ecs request refused');
      if (!res.headersSent) sendEcs(res, requestId, w.status, { __type: w.type, message: w.message });
      else res.end();
    }
    return true;
  };
}
