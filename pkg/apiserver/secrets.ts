import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Kinds } from '../api/kinds.ts';
import { GROUP, VERSION } from '../api/meta.ts';
import type { SecretSpec, SecretStatus } from '../api/resources.ts';
import { BerthError, badRequest, invalid, isBerthError, notFound } from '../errors/errors.ts';
import { parseEnvelope, type Keyring } from '../secrets/keyring.ts';
import { NODES } from './auth.ts';
import type { Admission, Obj, Registry, WriteContext } from './registry.ts';
import type { ApiRequest } from './server.ts';

/**
 * The Secret kind's storage rules. Values are encrypted here, in the registry's admission,
 * so the store (etcd or SQLite) and the watch cache hold only envelopes; on the way out
 * (`decorate`: every get, list, watch and write response, to everyone) `spec.data` is
 * dropped. The clear values leave the apiserver only through the `value` subresource, which
 * admins and the node of a task referencing the secret may read (auth.ts).
 */
type SecretObj = Obj & { spec: SecretSpec; status?: SecretStatus };

const aad = (name: string, key: string) => `secrets/${name}/${key}`;
const now = () => new Date().toISOString();

/** what client-side `kubectl apply` stores: the manifest as applied, values and all */
export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The last-applied annotation of a Secret keeps the names of its values, never the values
 * (the annotation is metadata: stored in clear and shown to viewers). kubectl's three-way
 * merge still sees which keys a manifest dropped; a value it sends again is compared with
 * the stored one (an unchanged value is no change). An annotation that is not JSON is dropped.
 */
function redactLastApplied(o: SecretObj): void {
  const text = o.metadata.annotations?.[LAST_APPLIED];
  if (text === undefined) return;
  const annotations = { ...o.metadata.annotations };
  let applied: { spec?: { data?: unknown } } | undefined;
  try {
    applied = JSON.parse(text);
  } catch {
    applied = undefined;
  }
  if (!applied || typeof applied !== 'object') delete annotations[LAST_APPLIED];
  else {
    const data = applied.spec?.data;
    if (data !== undefined) {
      applied.spec!.data = data && typeof data === 'object' ? Object.fromEntries(Object.keys(data).map((k) => [k, ''])) : {};
    }
    annotations[LAST_APPLIED] = JSON.stringify(applied);
  }
  o.metadata = { ...o.metadata, annotations };
}

/** a secret scheduled for deletion (Secrets Manager's DeleteSecret with a recovery window): when it goes */
export const DELETE_AT_ANNOTATION = 'berth.dev/delete-at';

export const NO_KEY_MESSAGE = 'secrets are refused: the apiserver has no encryption key (start it with --encryption-key-file FILE; berth up makes one under its data dir)';

export class SecretAdmission implements Admission {
  constructor(private readonly keyring: Keyring | undefined) {}

  private ring(): Keyring {
    if (!this.keyring) throw badRequest(NO_KEY_MESSAGE);
    return this.keyring;
  }

  async create(obj: Obj): Promise<void> {
    const o = obj as SecretObj;
    const ring = this.ring();
    redactLastApplied(o);
    if (!o.spec.data) throw invalid('Secret', o.metadata.name, [{ field: 'spec.data', message: 'is required: the values of the secret' }]);
    const data: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.spec.data)) data[k] = ring.encrypt(v, aad(o.metadata.name, k));
    o.spec = { ...o.spec, data };
    o.status = { keys: Object.keys(data).sort(), versionId: randomUUID(), version: 1, lastChangedDate: now() };
  }

  async update(next: Obj, prev: Obj, w: WriteContext, sub: 'status' | undefined): Promise<void> {
    const n = next as SecretObj;
    const p = prev as SecretObj;
    // the status is the server's (keys, version): a client's is not taken
    n.status = p.status;
    if (sub === 'status') return;
    redactLastApplied(n);
    const before = p.spec.data ?? {};
    if (n.spec.data === undefined) {
      n.spec = { ...n.spec, data: before };
      return;
    }
    const ring = this.ring();
    const name = n.metadata.name;
    const data: Record<string, string> = {};
    let changed = Object.keys(n.spec.data).length !== Object.keys(before).length;
    for (const [k, v] of Object.entries(n.spec.data)) {
      const old = before[k];
      if (old !== undefined && v === old) {
        data[k] = old; // the stored envelope, carried by a patch
        continue;
      }
      // a dry run is answered as a change of every value sent in clear: its reply (version,
      // generation) must not tell whether a guessed value is the stored one
      const oldClear = old !== undefined && !w.ctx.dryRun ? ring.decrypt(old, aad(name, k)) : undefined;
      if (oldClear !== v) changed = true;
      // unchanged under the key that encrypts now: kept as it is (a write that changes nothing is no write)
      data[k] = oldClear === v && parseEnvelope(old!)?.keyId === ring.primary ? old! : ring.encrypt(v, aad(name, k));
    }
    n.spec = { ...n.spec, data };
    if (changed) {
      n.status = { ...(p.status ?? {}), keys: Object.keys(data).sort(), versionId: randomUUID(), version: (p.status?.version ?? 1) + 1, lastChangedDate: now() };
    }
  }

  decorate(obj: Obj): Obj {
    const o = obj as SecretObj;
    if (!o.spec?.data) return o;
    const { data: _hidden, ...spec } = o.spec;
    return { ...o, spec } as Obj;
  }

  /** the clear values of a stored secret */
  reveal(obj: Obj): Record<string, string> {
    const o = obj as SecretObj;
    const ring = this.ring();
    return Object.fromEntries(Object.entries(o.spec.data ?? {}).map(([k, v]) => [k, ring.decrypt(v, aad(o.metadata.name, k))]));
  }

  reloadKeys(): void {
    this.ring().reload();
  }

  keyIds(): string[] {
    return this.ring().ids;
  }

  /** is any value of this stored secret sealed with another key than the one that encrypts */
  stale(obj: Obj): boolean {
    const ring = this.ring();
    return Object.values((obj as SecretObj).spec.data ?? {}).some((v) => parseEnvelope(v)?.keyId !== ring.primary);
  }
}

/**
 * Re-encrypts every secret sealed with an older key under the first key of the key file
 * (`berth secrets reencrypt`): each is rewritten through the registry with its clear values,
 * which admission seals again; its version does not change (its values did not).
 */
export async function reencryptSecrets(registry: Registry, adm: SecretAdmission): Promise<{ rewritten: string[]; total: number; keys: string[] }> {
  adm.reloadKeys();
  await registry.fresh();
  const all = registry.cache.list('secrets', undefined).map(([, o]) => o);
  const rewritten: string[] = [];
  for (const listed of all) {
    // the clear values written back are those of the version they were read from (a
    // precondition): a value written meanwhile makes it a conflict, and that newer version
    // is read and sealed again instead of being reverted
    let o: Obj | undefined = listed;
    for (let attempt = 0; o && adm.stale(o); attempt++) {
      const patch = { metadata: { resourceVersion: o.metadata.resourceVersion }, spec: { data: adm.reveal(o) } };
      try {
        await registry.patch(Kinds.Secret, undefined, o.metadata.name, 'merge', patch, undefined, { user: 'system:reencrypt' });
        rewritten.push(o.metadata.name);
        break;
      } catch (e) {
        if (isBerthError(e, 'NotFound')) break;
        if (!isBerthError(e, 'Conflict') || attempt >= 4) throw e;
        await registry.fresh();
        o = await registry.peek(Kinds.Secret, undefined, listed.metadata.name);
      }
    }
  }
  return { rewritten, total: all.length, keys: adm.keyIds() };
}

function send(res: ServerResponse, code: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

/**
 * `GET /apis/berth.dev/v1/secrets/NAME/value`: the secret with its clear values (admins; a
 * node for the secrets its tasks reference). `POST /apis/berth.dev/v1/secrets/NAME/value` is
 * not offered: values are written through the object itself.
 * `POST /apis/berth.dev/v1/secretsreencrypt`: re-encrypt under the first key (admins).
 */
export function secretsRoute(registry: Registry, adm: SecretAdmission) {
  const valueRe = new RegExp(`^/apis/${GROUP.replace('.', '\\.')}/${VERSION}/secrets/([^/]+)/value$`);
  const reencryptPath = `/apis/${GROUP}/${VERSION}/secretsreencrypt`;
  return async (r: ApiRequest, res: ServerResponse): Promise<boolean> => {
    if (r.path === reencryptPath) {
      if (r.method !== 'POST') throw new BerthError('MethodNotAllowed', `POST ${reencryptPath} re-encrypts every secret`);
      r.authorize({ verb: 'update', resource: 'secrets', subresource: 'reencrypt' });
      r.audit.mutating = true;
      const out = await reencryptSecrets(registry, adm);
      send(res, 200, { kind: 'SecretReencryption', apiVersion: `${GROUP}/${VERSION}`, ...out });
      return true;
    }
    const m = valueRe.exec(r.path);
    if (!m) return false;
    if (r.method !== 'GET') throw new BerthError('MethodNotAllowed', 'the value subresource is read-only: write values through the secret itself');
    const name = decodeURIComponent(m[1]);
    r.audit.mutating = true; // who read a value is in the audit log (the value never is)
    const attrs = { verb: 'get' as const, resource: 'secrets', name, subresource: 'value' };
    try {
      r.authorize(attrs);
    } catch (e) {
      // a task bound through another apiserver may not be in this cache yet: confirmed fresh once
      if (!isBerthError(e, 'Forbidden') || !r.identity.groups.includes(NODES)) throw e;
      await registry.fresh();
      r.authorize(attrs);
    }
    const o = await registry.peek(Kinds.Secret, undefined, name);
    if (!o) throw notFound('secrets', name, `secrets "${name}" not found`, 'ResourceNotFoundException');
    // a secret scheduled for deletion has no value (as GetSecretValue refuses it): its tasks fail to start
    const deleteAt = o.metadata.annotations?.[DELETE_AT_ANNOTATION];
    if (deleteAt) throw notFound('secrets', name, `secrets "${name}" is scheduled for deletion (at ${deleteAt}): it has no value until it is restored`, 'ResourceNotFoundException');
    send(res, 200, { ...adm.decorate(o), spec: { ...(o.spec as SecretSpec), data: adm.reveal(o) } });
    return true;
  };
}
