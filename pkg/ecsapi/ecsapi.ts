import { statSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { parseClientJson, UnsafeKeyError } from '../api/safepath.ts';
import { cacheLookups } from '../apiserver/actions.ts';
import type { ApiParts, FrontDoor } from '../apiserver/apiserver.ts';
import { ADMINS, type Identity } from '../apiserver/auth.ts';
import type { FrontDoorRequest } from '../apiserver/server.ts';
import { ecsAction, pinTaskDefinition } from './actions.ts';
import { CreateCluster, DeleteCluster, DescribeClusters, ListClusters, PutClusterCapacityProviders } from './clusters.ts';
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
import { checkHeaders, loadAccessKeyFile, parseAuthorization, verify, type AccessKey } from './sigv4.ts';
import { ListTagsForResource, TagResource, UntagResource } from './tags.ts';
import { SECRETS_MANAGER, SSM, secretAction } from './secretsmanager.ts';
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
  PutClusterCapacityProviders,
};

/** How long CreateService/UpdateService wait for the service controller where one runs (berth up, berth-apiserver). */
export const DEPLOYMENT_WAIT_MS = 5000;

/** the AWS JSON 1.1 services on this front door: ECS, and Secrets Manager and SSM on the Secret kind */
const FACES: Array<{ prefix: string; service: 'ecs' | 'secretsmanager' | 'ssm'; operations: Record<string, Operation> }> = [
  { prefix: TARGET_PREFIX, service: 'ecs', operations: OPERATIONS },
  { prefix: 'secretsmanager.', service: 'secretsmanager', operations: SECRETS_MANAGER },
  { prefix: 'AmazonSSM.', service: 'ssm', operations: SSM },
];

export interface EcsFrontDoorOptions {
  /** CSV `accessKeyId,secretAccessKey,user,"group1,group2"`; re-read when it changes */
  accessKeyFile?: string;
  keys?: AccessKey[];
  /** the region berth answers for (ARNs use the apiserver's ARN configuration) */
  region: string;
  /**
   * CreateService/UpdateService answer once the service controller has acted on the change
   * (the new PRIMARY deployment is in the answer, as ECS's is), waiting at most this long;
   * 0 (the default, for an apiserver without controllers) answers at once.
   */
  deploymentWaitMs?: number;
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

/** How often, at most, the access-key file's mtime is looked at. */
export const KEY_FILE_RECHECK_MS = 1000;

/**
 * Keys from the options and the file, as one Map that is rebuilt only when the file
 * changed; the file's mtime is looked at no more than once per KEY_FILE_RECHECK_MS (S10: it
 * was stat()ed and a Map built on every ECS request), or at once when asked to (`recheck`:
 * a request names a key that is not known, which may have just been added). A file being
 * rewritten (unreadable or malformed for a moment) keeps the last good keys.
 */
export function keyring(
  opts: Pick<EcsFrontDoorOptions, 'accessKeyFile' | 'keys'>,
  deps: { now?: () => number; mtime?: (file: string) => number } = {},
): (recheck?: boolean) => Map<string, AccessKey> {
  const now = deps.now ?? Date.now;
  const mtime = deps.mtime ?? ((f: string) => statSync(f).mtimeMs);
  const build = (fileKeys: AccessKey[]) => new Map([...(opts.keys ?? []), ...fileKeys].map((k) => [k.accessKeyId, k]));
  let seen = -1;
  let checkedAt = -Infinity;
  let current = build([]);
  const load = () => {
    if (!opts.accessKeyFile) return;
    const m = mtime(opts.accessKeyFile);
    if (m === seen) return;
    current = build(loadAccessKeyFile(opts.accessKeyFile));
    seen = m;
  };
  load(); // a missing or malformed file fails at start-up, with the file's name
  checkedAt = now();
  return (recheck = false) => {
    if (opts.accessKeyFile && (recheck || now() - checkedAt >= KEY_FILE_RECHECK_MS)) {
      checkedAt = now();
      try {
        load();
      } catch {
        /* keep the last good keys while the file is being rewritten */
      }
    }
    return current;
  };
}

/**
 * The most an ECS request body may be (S5): it is read only after the headers'
 * signature checks pass, and it is much less than the resource API's limit, which takes
 * whole manifests. RegisterTaskDefinition is the largest input (a task definition of at
 * most the configured size, 64 KiB by default).
 */
export const ecsBodyLimit = (taskDefinitionBytes: number) => Math.max(512 * 1024, 4 * taskDefinitionBytes);

export function ecsFrontDoor(parts: ApiParts, opts: EcsFrontDoorOptions): FrontDoor {
  const keys = keyring(opts);
  const log = parts.log.child({ component: 'ecsapi' });
  const bodyLimit = ecsBodyLimit(parts.registry.limits.taskDefinitionBytes);
  const lookups = cacheLookups(parts.cache);
  return async (req: FrontDoorRequest, res: ServerResponse): Promise<boolean> => {
    const target = req.raw.headers['x-amz-target'];
    if (req.method !== 'POST' || typeof target !== 'string') return false;
    const face = FACES.find((f) => target.startsWith(f.prefix));
    if (!face) return false;
    const requestId = req.requestId;
    const op = target.slice(face.prefix.length);
    const audit = req.audit;
    audit.face = 'ecs';
    // every action but the Describe, List and Get ones changes state (or tries to); a read of a secret's value is audited too
    audit.mutating = !/^(Describe|List)/.test(op);
    audit.iam = { action: `${face.service}:${op.slice(0, 128)}`, resources: [] };
    let release: (() => void) | undefined;
    try {
      let known = keys();
      const keyId = parseAuthorization(String(req.raw.headers.authorization ?? ''))?.accessKeyId;
      if (keyId && !known.has(keyId)) known = keys(true);
      const dev = known.size === 0 && req.devMode; // dev mode without keys: every caller is the admin (loopback only)
      const signed = { url: req.raw.url ?? '/', headers: req.raw.headers };
      const checked = dev ? undefined : checkHeaders(signed, known, Date.now(), face.service);
      const body = await req.bodyText(bodyLimit);
      const identity = checked ? verify({ ...signed, method: req.method, body }, known, Date.now(), checked) : DEV_IDENTITY;
      audit.identity = identity;
      release = req.admit(identity);
      const handler = Object.hasOwn(face.operations, op) ? face.operations[op] : undefined;
      if (!handler) throw new EcsError('UnknownOperationException', `Unknown operation "${op}": berth does not implement it (X-Amz-Target ${target}).`);
      let input: unknown = {};
      if (body.trim()) {
        try {
          input = parseClientJson(body); // S1: no key that reaches a prototype, at any depth
        } catch (e) {
          if (e instanceof UnsafeKeyError) throw new EcsError('InvalidParameterException', `${e.message}.`);
          throw new EcsError('SerializationException', `The request body is not valid JSON: ${(e as Error).message}`);
        }
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new EcsError('SerializationException', `The request body must be a JSON object (got ${Array.isArray(input) ? 'a list' : input === null ? 'null' : typeof input}).`);
      }
      // a family it runs is pinned to its revision, resolved fresh, first (R1-8)
      if (face.service === 'ecs') input = await pinTaskDefinition(op, input as Input, () => parts.registry.fresh(), lookups);
      // what the operation asks for in IAM's terms: every check it makes is decided for this action
      const action = face.service === 'ecs' ? ecsAction(op, input as Input, parts.arns, lookups) : secretAction({ parts, region: opts.region }, face.service, op, input as Input);
      audit.iam = action;
      const ctx: OpContext = {
        parts,
        registry: parts.registry,
        identity,
        req: { user: identity.user, sourceAddress: req.sourceAddress },
        // a check the operation names its own action for (a task definition's secret reads) keeps it
        authorize: (attrs) => req.authorize(identity, { ...attrs, action: attrs.action ?? action }),
        region: opts.region,
        deploymentWaitMs: opts.deploymentWaitMs ?? 0,
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
    } finally {
      release?.();
    }
    return true;
  };
}
