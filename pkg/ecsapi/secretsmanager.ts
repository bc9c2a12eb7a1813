import { Kinds } from '../api/kinds.ts';
import { API_VERSION } from '../api/meta.ts';
import type { SecretSpec, SecretStatus } from '../api/resources.ts';
import type { AccessRequest } from '../apiserver/policy.ts';
import type { Obj } from '../apiserver/registry.ts';
import { DELETE_AT_ANNOTATION } from '../apiserver/secrets.ts';
import { isBerthError } from '../errors/errors.ts';
import { awsSecretName, berthSecretName, candidateNames, parseSecretRef, secretString } from '../secrets/refs.ts';
import type { OpContext, Operation } from './context.ts';
import { bool, int, list, str, type Input } from './params.ts';
import { EcsError } from './wire.ts';

/**
 * The Secrets Manager and SSM Parameter Store faces (AWS JSON 1.1, `X-Amz-Target:
 * secretsmanager.<Op>` and `AmazonSSM.<Op>`), on the ECS API's front door, backed by the
 * Secret kind: a Secrets Manager secret or an SSM parameter is a Secret whose only key is
 * `value` (names as refs.ts maps them). Authorized as `secretsmanager:<Op>` / `ssm:<Op>` on
 * the secret's or parameter's ARN; reading a value is the `value` subresource's right.
 */
type SecretObj = Obj & { spec: SecretSpec; status?: SecretStatus };

const DELETED_ON_ANNOTATION = 'berth.dev/deleted-on';

const epoch = (iso: string | undefined) => (iso ? Date.parse(iso) / 1000 : undefined);
const notFound = (what = 'secret') =>
  new EcsError('ResourceNotFoundException', what === 'secret' ? "Secrets Manager can't find the specified secret." : what);
const invalidRequest = (m: string) => new EcsError('InvalidRequestException', m);

export function smArn(c: Pick<OpContext, 'parts' | 'region'>, awsName: string): string {
  return `arn:aws:secretsmanager:${c.region}:${c.parts.arns.cfg.account}:secret:${awsName}`;
}
export function ssmArn(c: Pick<OpContext, 'parts' | 'region'>, awsName: string): string {
  return `arn:aws:ssm:${c.region}:${c.parts.arns.cfg.account}:parameter/${awsName.replace(/^\//, '')}`;
}

/** a SecretId (a name or an ARN) -> the AWS name */
function nameOf(id: string): string {
  if (!id.startsWith('arn:')) return id;
  const r = parseSecretRef(id);
  if (typeof r === 'string') throw new EcsError('InvalidParameterException', `SecretId: ${r}`);
  return r.name;
}

/** the stored secret an AWS name is kept under (undefined when none); one past its deletion date is purged now */
async function find(c: OpContext, awsName: string): Promise<SecretObj | undefined> {
  for (const n of candidateNames(awsName)) {
    const o = (await c.registry.peek(Kinds.Secret, undefined, n)) as SecretObj | undefined;
    if (!o) continue;
    const at = o.metadata.annotations?.[DELETE_AT_ANNOTATION];
    if (at && Date.parse(at) <= Date.now()) {
      await c.registry.delete(Kinds.Secret, undefined, n, c.req).catch((e) => (isBerthError(e, 'NotFound') ? undefined : Promise.reject(e)));
      return undefined;
    }
    return o;
  }
  return undefined;
}

async function must(c: OpContext, awsName: string): Promise<SecretObj> {
  const o = await find(c, awsName);
  if (!o) throw notFound();
  return o;
}

const scheduled = (o: SecretObj) => o.metadata.annotations?.[DELETE_AT_ANNOTATION];
function live(o: SecretObj): SecretObj {
  if (scheduled(o)) throw invalidRequest("You can't perform this operation on the secret because it was marked for deletion.");
  return o;
}

const value = (c: OpContext, o: SecretObj): string => secretString(c.parts.secrets.reveal(o));

const tagsOf = (i: Input) => list<{ Key: string; Value: string }>(i, 'Tags')?.map((t) => ({ key: String(t.Key), value: String(t.Value ?? '') }));
const awsTags = (o: SecretObj) => (o.spec.tags ?? []).map((t) => ({ Key: t.key, Value: t.value }));

/** write a secret's whole spec (PUT: data replaced, not merged) */
async function replace(c: OpContext, o: SecretObj, spec: Partial<SecretSpec>, annotations?: Record<string, string | undefined>) {
  const ann = { ...(o.metadata.annotations ?? {}) };
  for (const [k, v] of Object.entries(annotations ?? {})) {
    if (v === undefined) delete ann[k];
    else ann[k] = v;
  }
  const body = { apiVersion: API_VERSION, kind: 'Secret', metadata: { ...o.metadata, annotations: ann }, spec: { ...o.spec, ...spec } };
  return (await c.registry.update(Kinds.Secret, undefined, o.metadata.name, body, undefined, c.req)) as SecretObj;
}

async function create(c: OpContext, awsName: string, spec: SecretSpec): Promise<SecretObj> {
  try {
    const r = await c.registry.create(Kinds.Secret, undefined, { apiVersion: API_VERSION, kind: 'Secret', metadata: { name: berthSecretName(awsName) }, spec }, c.req);
    return r.obj as SecretObj;
  } catch (e) {
    if (isBerthError(e, 'AlreadyExists')) throw new EcsError('ResourceExistsException', `The operation failed because the secret ${awsName} already exists.`);
    throw e;
  }
}

function secretStringOf(i: Input, required: boolean): string | undefined {
  if (i.SecretBinary !== undefined) throw new EcsError('InvalidParameterException', 'SecretBinary is not supported by berth: store text in SecretString.');
  const s = str(i, 'SecretString', { max: 65_536 });
  if (required && s === undefined) throw new EcsError('InvalidParameterException', 'You must provide either SecretString or SecretBinary.');
  return s;
}

const smName = (i: Input, member = 'SecretId') => nameOf(str(i, member, { required: true, max: 2048 })!);
const authorize = (c: OpContext, verb: 'get' | 'list' | 'create' | 'update' | 'delete', awsName?: string, reveal = false) =>
  c.authorize({ verb, resource: 'secrets', ...(awsName !== undefined ? { name: berthSecretName(awsName) } : {}), ...(reveal ? { subresource: 'value' } : {}) });

function describe(c: OpContext, o: SecretObj) {
  const name = awsSecretName(o.metadata.name);
  const del = scheduled(o);
  return {
    ARN: smArn(c, name),
    Name: name,
    ...(o.spec.description ? { Description: o.spec.description } : {}),
    CreatedDate: epoch(o.metadata.creationTimestamp as string | undefined),
    LastChangedDate: epoch(o.status?.lastChangedDate),
    ...(del ? { DeletedDate: epoch(o.metadata.annotations?.[DELETED_ON_ANNOTATION]) } : {}),
    Tags: awsTags(o),
    VersionIdsToStages: o.status?.versionId ? { [o.status.versionId]: ['AWSCURRENT'] } : {},
  };
}

export const SECRETS_MANAGER: Record<string, Operation> = {
  async CreateSecret(c, i) {
    const name = str(i, 'Name', { required: true, max: 512 })!;
    if (!/^[A-Za-z0-9/_+=.@-]+$/.test(name)) throw new EcsError('InvalidParameterException', 'Name: only letters, digits and /_+=.@- are allowed.');
    authorize(c, 'create', name);
    const s = secretStringOf(i, true)!;
    const o = await create(c, name, { type: 'Opaque', data: { value: s }, ...(str(i, 'Description') ? { description: str(i, 'Description') } : {}), ...(tagsOf(i) ? { tags: tagsOf(i) } : {}) });
    return { ARN: smArn(c, name), Name: name, VersionId: o.status?.versionId };
  },
  async GetSecretValue(c, i) {
    const name = smName(i);
    authorize(c, 'get', name, true);
    const o = live(await must(c, name));
    const stage = str(i, 'VersionStage');
    const vid = str(i, 'VersionId');
    if ((stage && stage !== 'AWSCURRENT') || (vid && vid !== o.status?.versionId)) throw notFound("Secrets Manager can't find the specified secret value for staging label or version: berth keeps only AWSCURRENT.");
    return { ARN: smArn(c, name), Name: awsSecretName(o.metadata.name), VersionId: o.status?.versionId, SecretString: value(c, o), VersionStages: ['AWSCURRENT'], CreatedDate: epoch(o.status?.lastChangedDate) };
  },
  async PutSecretValue(c, i) {
    const name = smName(i);
    authorize(c, 'update', name);
    const o = await replace(c, live(await must(c, name)), { data: { value: secretStringOf(i, true)! } });
    return { ARN: smArn(c, name), Name: awsSecretName(o.metadata.name), VersionId: o.status?.versionId, VersionStages: ['AWSCURRENT'] };
  },
  async UpdateSecret(c, i) {
    const name = smName(i);
    authorize(c, 'update', name);
    const s = secretStringOf(i, false);
    const d = str(i, 'Description', { max: 2048 });
    const o = await replace(c, live(await must(c, name)), { ...(s !== undefined ? { data: { value: s } } : {}), ...(d !== undefined ? { description: d } : {}) });
    return { ARN: smArn(c, name), Name: awsSecretName(o.metadata.name), ...(s !== undefined ? { VersionId: o.status?.versionId } : {}) };
  },
  async DescribeSecret(c, i) {
    const name = smName(i);
    authorize(c, 'get', name);
    return describe(c, await must(c, name));
  },
  async ListSecrets(c, i) {
    authorize(c, 'list');
    int(i, 'MaxResults', { min: 1, max: 100 });
    const includeDeleted = bool(i, 'IncludePlannedDeletion') ?? false;
    await c.registry.fresh();
    const all = c.registry.cache.list('secrets', undefined).map(([, o]) => o as SecretObj);
    const shown = all.filter((o) => o.spec.type !== 'Parameter' && (includeDeleted || !scheduled(o)) && !(scheduled(o) && Date.parse(scheduled(o)!) <= Date.now()));
    return { SecretList: shown.map((o) => describe(c, o)) };
  },
  async DeleteSecret(c, i) {
    const name = smName(i);
    authorize(c, 'delete', name);
    const o = await must(c, name);
    const force = bool(i, 'ForceDeleteWithoutRecovery') ?? false;
    const days = int(i, 'RecoveryWindowInDays', { min: 7, max: 30, message: 'RecoveryWindowInDays must be between 7 and 30 days.' });
    if (force && days !== undefined) throw new EcsError('InvalidParameterException', 'You can\'t use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.');
    const now = new Date();
    if (force) {
      await c.registry.delete(Kinds.Secret, undefined, o.metadata.name, c.req);
      return { ARN: smArn(c, name), Name: name, DeletionDate: now.getTime() / 1000 };
    }
    const at = new Date(now.getTime() + (days ?? 30) * 86_400_000);
    if (!scheduled(o)) await replace(c, o, {}, { [DELETE_AT_ANNOTATION]: at.toISOString(), [DELETED_ON_ANNOTATION]: now.toISOString() });
    return { ARN: smArn(c, name), Name: name, DeletionDate: Date.parse(scheduled(o) ?? at.toISOString()) / 1000 };
  },
  async RestoreSecret(c, i) {
    const name = smName(i);
    authorize(c, 'update', name);
    const o = await must(c, name);
    if (scheduled(o)) await replace(c, o, {}, { [DELETE_AT_ANNOTATION]: undefined, [DELETED_ON_ANNOTATION]: undefined });
    return { ARN: smArn(c, name), Name: name };
  },
  async TagResource(c, i) {
    const name = smName(i);
    authorize(c, 'update', name);
    const o = await must(c, name);
    const add = tagsOf(i) ?? [];
    const tags = [...(o.spec.tags ?? []).filter((t) => !add.some((a) => a.key === t.key)), ...add];
    await replace(c, o, { tags });
    return {};
  },
};

// ---------------------------------------------------------------- SSM
const paramNotFound = () => new EcsError('ParameterNotFound', '');
const PARAM_NAME_RE = /^[A-Za-z0-9/_.-]{1,2048}$/;

function paramName(i: Input, member = 'Name'): string {
  const raw = str(i, member, { required: true, max: 2048 })!;
  const n = raw.startsWith('arn:') ? (() => {
    const r = parseSecretRef(raw);
    if (typeof r === 'string') throw new EcsError('ValidationException', `${member}: ${r}`);
    return r.name;
  })() : raw;
  if (!PARAM_NAME_RE.test(n)) throw new EcsError('ValidationException', `Parameter name: can't be prefixed with "aws" or "ssm" (case-insensitive) and may hold only a-zA-Z0-9_.-/`);
  return n;
}

function parameter(c: OpContext, o: SecretObj, decrypt: boolean) {
  const name = awsSecretName(o.metadata.name);
  const type = o.spec.parameterType ?? 'SecureString';
  const v = type !== 'SecureString' || decrypt ? value(c, o) : '(a SecureString: ask WithDecryption)';
  return { Name: name, Type: type, Value: v, Version: o.status?.version ?? 1, LastModifiedDate: epoch(o.status?.lastChangedDate), ARN: ssmArn(c, name), DataType: 'text' };
}

async function params(c: OpContext): Promise<SecretObj[]> {
  await c.registry.fresh();
  return c.registry.cache.list('secrets', undefined).map(([, o]) => o as SecretObj).filter((o) => !scheduled(o));
}

export const SSM: Record<string, Operation> = {
  async PutParameter(c, i) {
    const name = paramName(i);
    const v = str(i, 'Value', { required: true, max: 8192 })!;
    const type = (str(i, 'Type') ?? undefined) as SecretSpec['parameterType'];
    if (type !== undefined && !['String', 'StringList', 'SecureString'].includes(type)) throw new EcsError('ValidationException', 'Type must be String, StringList or SecureString.');
    const existing = await find(c, name);
    if (existing) {
      if (!bool(i, 'Overwrite')) throw new EcsError('ParameterAlreadyExists', 'The parameter already exists. To overwrite this value, set the overwrite option in the request to true.');
      authorize(c, 'update', name);
      const d = str(i, 'Description');
      const o = await replace(c, existing, { data: { value: v }, ...(type ? { parameterType: type } : {}), ...(d !== undefined ? { description: d } : {}) });
      return { Version: o.status?.version ?? 1, Tier: 'Standard' };
    }
    authorize(c, 'create', name);
    const d = str(i, 'Description');
    const o = await create(c, name, { type: 'Parameter', parameterType: type ?? 'String', data: { value: v }, ...(d ? { description: d } : {}), ...(tagsOf(i) ? { tags: tagsOf(i) } : {}) });
    return { Version: o.status?.version ?? 1, Tier: 'Standard' };
  },
  async GetParameter(c, i) {
    const name = paramName(i);
    const decrypt = bool(i, 'WithDecryption') ?? false;
    authorize(c, 'get', name, true);
    const o = await find(c, name);
    if (!o || scheduled(o)) throw paramNotFound();
    return { Parameter: parameter(c, o, decrypt) };
  },
  async GetParameters(c, i) {
    const names = list<string>(i, 'Names', { required: true, min: 1, max: 10 })!;
    const decrypt = bool(i, 'WithDecryption') ?? false;
    const out = [];
    const invalid: string[] = [];
    for (const raw of names) {
      const name = paramName({ Name: raw });
      authorize(c, 'get', name, true);
      const o = await find(c, name);
      if (!o || scheduled(o)) invalid.push(raw);
      else out.push(parameter(c, o, decrypt));
    }
    return { Parameters: out, InvalidParameters: invalid };
  },
  async GetParametersByPath(c, i) {
    const path = str(i, 'Path', { required: true, max: 2048 })!;
    if (!path.startsWith('/')) throw new EcsError('ValidationException', 'The parameter path must begin with a forward slash (/).');
    const recursive = bool(i, 'Recursive') ?? false;
    const decrypt = bool(i, 'WithDecryption') ?? false;
    const prefix = path.endsWith('/') ? path : `${path}/`;
    const out = [];
    for (const o of await params(c)) {
      const name = awsSecretName(o.metadata.name);
      if (!name.startsWith(prefix) || (!recursive && name.slice(prefix.length).includes('/'))) continue;
      authorize(c, 'get', name, true);
      out.push(parameter(c, o, decrypt));
    }
    return { Parameters: out };
  },
  async DeleteParameter(c, i) {
    const name = paramName(i);
    authorize(c, 'delete', name);
    const o = await find(c, name);
    if (!o) throw paramNotFound();
    await c.registry.delete(Kinds.Secret, undefined, o.metadata.name, c.req);
    return {};
  },
  async DeleteParameters(c, i) {
    const names = list<string>(i, 'Names', { required: true, min: 1, max: 10 })!;
    const deleted: string[] = [];
    const invalid: string[] = [];
    for (const raw of names) {
      const name = paramName({ Name: raw });
      authorize(c, 'delete', name);
      const o = await find(c, name);
      if (!o) {
        invalid.push(raw);
        continue;
      }
      await c.registry.delete(Kinds.Secret, undefined, o.metadata.name, c.req);
      deleted.push(raw);
    }
    return { DeletedParameters: deleted, InvalidParameters: invalid };
  },
  async DescribeParameters(c) {
    authorize(c, 'list');
    const out = (await params(c))
      .filter((o) => o.spec.type === 'Parameter')
      .map((o) => {
        const name = awsSecretName(o.metadata.name);
        return { Name: name, ARN: ssmArn(c, name), Type: o.spec.parameterType ?? 'String', Version: o.status?.version ?? 1, LastModifiedDate: epoch(o.status?.lastChangedDate), ...(o.spec.description ? { Description: o.spec.description } : {}), Tier: 'Standard', DataType: 'text' };
      });
    return { Parameters: out };
  },
};

/** the IAM request of a Secrets Manager or SSM operation: its action on the secret's or parameter's ARN */
export function secretAction(c: Pick<OpContext, 'parts' | 'region'>, service: 'secretsmanager' | 'ssm', op: string, i: Input): AccessRequest {
  const id = typeof i.SecretId === 'string' ? i.SecretId : typeof i.Name === 'string' ? i.Name : undefined;
  let resources = ['*'];
  if (id !== undefined) {
    try {
      const name = service === 'secretsmanager' ? nameOf(id) : id.startsWith('arn:') ? nameOf(id) : id;
      resources = [service === 'secretsmanager' ? smArn(c, name) : ssmArn(c, name)];
    } catch {
      /* an id that does not parse is refused by the operation */
    }
  }
  return { action: `${service}:${op.slice(0, 128)}`, resources, context: {} };
}
