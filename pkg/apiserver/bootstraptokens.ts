import { createHash, randomInt } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { Kinds } from '../api/kinds.ts';
import { API_VERSION, GROUP, NAME_RE, VERSION, storeKey } from '../api/meta.ts';
import { parseOrInvalid } from '../api/validate.ts';
import { BerthError, badRequest, forbidden, notFound } from '../errors/errors.ts';
import type { Compare, Op } from '../store/store.ts';
import type { Obj, Registry } from './registry.ts';
import type { ApiRequest } from './server.ts';
import { successStatus } from './status.ts';

/**
 * Bootstrap tokens, as Kubernetes has them (`kubeadm token`): `ID.SECRET` with a 6-character
 * public id and a 16-character secret ([a-z0-9]), each scoped to ONE cluster (an instance
 * registers only there) and optionally expiring. Admins create, list and delete them
 * (`berth token create|list|delete`); the secret is shown once, at creation, and only its
 * SHA-256 is stored, at `/berth/bootstraptokens/_/ID`, where every apiserver's watch cache
 * sees it. The static bootstrap group of the token file keeps working beside them (S7).
 */

export const BOOTSTRAP_TOKEN_RE = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;
export const bootstrapTokenKey = (id: string) => storeKey('bootstraptokens', undefined, id);

/** What is stored (never the secret). */
export interface BootstrapTokenRecord {
  metadata: { name: string; creationTimestamp: string };
  cluster: string;
  secretHash: string;
  description?: string;
  /** RFC 3339; absent: never expires */
  expiration?: string;
  createdBy?: string;
  /** at most this many registrations (R1-9); absent: no limit */
  maxInstances?: number;
  /** registrations made with it so far (counted only when it has a limit) */
  registrations?: number;
}

/** What clients see (list, get, and the creation answer with `status.token` once). */
export interface BootstrapTokenView {
  apiVersion: typeof API_VERSION;
  kind: 'BootstrapToken';
  metadata: { name: string; creationTimestamp: string };
  spec: { cluster: string; description?: string; expiration?: string; maxInstances?: number };
  status: { expired: boolean; token?: string; registrations?: number };
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const randomString = (n: number) => Array.from({ length: n }, () => ALPHABET[randomInt(ALPHABET.length)]).join('');
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** the most a token may live: a year (tokens are for joining hosts, not for running them) */
const MAX_TTL_SECONDS = 366 * 24 * 3600;
/** the largest registration budget a token may have */
const MAX_INSTANCES = 100_000;

export const BootstrapTokenRequest = z.strictObject({
  cluster: z.string({ error: 'cluster is required' }).regex(NAME_RE, { error: 'cluster must be 1-255 letters, digits, hyphens (-) and underscores (_)' }),
  ttlSeconds: z.number().int().min(1, { error: 'ttlSeconds must be at least 1' }).max(MAX_TTL_SECONDS, { error: `ttlSeconds must be at most ${MAX_TTL_SECONDS} (a year)` }).optional(),
  description: z.string().max(256, { error: 'description must be at most 256 characters' }).optional(),
  maxInstances: z
    .number()
    .int({ error: 'maxInstances must be a whole number' })
    .min(1, { error: 'maxInstances must be at least 1' })
    .max(MAX_INSTANCES, { error: `maxInstances must be at most ${MAX_INSTANCES}` })
    .optional(),
});

export function viewOf(r: BootstrapTokenRecord, nowMs: number, token?: string): BootstrapTokenView {
  return {
    apiVersion: API_VERSION,
    kind: 'BootstrapToken',
    metadata: { name: r.metadata.name, creationTimestamp: r.metadata.creationTimestamp },
    spec: {
      cluster: r.cluster,
      ...(r.description ? { description: r.description } : {}),
      ...(r.expiration ? { expiration: r.expiration } : {}),
      ...(r.maxInstances !== undefined ? { maxInstances: r.maxInstances } : {}),
    },
    status: {
      expired: !!r.expiration && Date.parse(r.expiration) <= nowMs,
      ...(r.maxInstances !== undefined ? { registrations: r.registrations ?? 0 } : {}),
      ...(token ? { token } : {}),
    },
  };
}

/**
 * R1-9: a registration with a bootstrap token that has a budget (`maxInstances`) counts
 * against it, in the registration's txn (compared at the record's version, so concurrent
 * registrations each take their own place, and a spent budget is 403 Forbidden). Each
 * registration mints a node identity with its own per-identity limits (S5), so a leaked
 * token's reach is bounded by its budget, its expiry and its deletion. Tokens without a
 * budget register without limit, as Kubernetes' bootstrap tokens do (there a CSR approver
 * decides what a kubelet becomes; berth has none), and are not counted (no contention).
 */
export function chargeRegistration(registry: Registry, tokenId: string, w: { compares: Compare[]; ops: Op[] }): void {
  const key = bootstrapTokenKey(tokenId);
  const rec = registry.cache.get(key) as (BootstrapTokenRecord & Obj) | undefined;
  if (!rec) throw forbidden(`bootstrap token "${tokenId}" was deleted; registrations with it are refused`);
  if (rec.maxInstances === undefined) return;
  const used = rec.registrations ?? 0;
  if (used >= rec.maxInstances) {
    const why = `bootstrap token "${tokenId}" has registered the ${rec.maxInstances} instance(s) it may (maxInstances); create another token to register more`;
    throw forbidden(why);
  }
  const { metadata, ...rest } = rec;
  const next: BootstrapTokenRecord = { ...rest, metadata: { name: metadata.name, creationTimestamp: metadata.creationTimestamp }, registrations: used + 1 };
  w.compares.push({ key, modRevision: Number(rec.metadata.resourceVersion) });
  w.ops.push({ type: 'put', key, value: JSON.stringify(next) });
}

function send(res: ServerResponse, code: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * `/apis/berth.dev/v1/bootstraptokens[/ID]`: GET (list, one), POST (create), DELETE. The
 * `bootstraptokens` resource is authorized like any other (admins only in the built-in
 * rules: viewers do not see even the ids).
 */
export function bootstrapTokensRoute(registry: Registry, now: () => number = Date.now) {
  const re = new RegExp(`^/apis/${GROUP.replace('.', '\\.')}/${VERSION}/bootstraptokens(?:/([^/]+))?$`);
  return async (r: ApiRequest, res: ServerResponse): Promise<boolean> => {
    const m = re.exec(r.path);
    if (!m) return false;
    const id = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
    if (id !== undefined && !/^[a-z0-9]{6}$/.test(id)) throw notFound('bootstraptokens', id, `bootstrap token "${id.slice(0, 32)}" not found (ids are 6 characters a-z, 0-9)`);
    const stored = async (tokenId: string) => {
      await registry.fresh();
      const o = registry.cache.get(bootstrapTokenKey(tokenId)) as (BootstrapTokenRecord & Obj) | undefined;
      if (!o) throw notFound('bootstraptokens', tokenId, `bootstrap token "${tokenId}" not found`);
      return o;
    };
    switch (r.method) {
      case 'GET': {
        if (id !== undefined) {
          r.authorize({ verb: 'get', resource: 'bootstraptokens', name: id });
          send(res, 200, viewOf(await stored(id), now()));
          return true;
        }
        r.authorize({ verb: 'list', resource: 'bootstraptokens' });
        await registry.fresh();
        const items = registry.cache.list('bootstraptokens', undefined).map(([, o]) => viewOf(o as BootstrapTokenRecord, now()));
        send(res, 200, { apiVersion: API_VERSION, kind: 'BootstrapTokenList', metadata: { resourceVersion: String(registry.cache.revision) }, items });
        return true;
      }
      case 'POST': {
        if (id !== undefined) throw new BerthError('MethodNotAllowed', 'POST a new bootstrap token to /apis/berth.dev/v1/bootstraptokens');
        r.authorize({ verb: 'create', resource: 'bootstraptokens' });
        const body = parseOrInvalid(BootstrapTokenRequest, await r.body(), '', 'BootstrapToken', '');
        const cluster = await registry.peek(Kinds.Cluster, undefined, body.cluster);
        if (!cluster || (cluster.status as { status?: string } | undefined)?.status === 'INACTIVE') {
          throw notFound('clusters', body.cluster, `cluster "${body.cluster}" not found: a bootstrap token registers instances in one existing cluster`);
        }
        for (let attempt = 0; attempt < 5; attempt++) {
          const tokenId = randomString(6);
          const secret = randomString(16);
          const created = now();
          const rec: BootstrapTokenRecord = {
            metadata: { name: tokenId, creationTimestamp: new Date(created).toISOString() },
            cluster: body.cluster,
            secretHash: sha256(secret),
            ...(body.description ? { description: body.description } : {}),
            ...(body.ttlSeconds ? { expiration: new Date(created + body.ttlSeconds * 1000).toISOString() } : {}),
            ...(body.maxInstances !== undefined ? { maxInstances: body.maxInstances, registrations: 0 } : {}),
            createdBy: r.identity.user,
          };
          const key = bootstrapTokenKey(tokenId);
          const t = await registry.txn([{ key, modRevision: 0 }], [{ type: 'put', key, value: JSON.stringify(rec) }]);
          if (!t.succeeded) continue; // the id is taken: draw another
          send(res, 201, viewOf(rec, created, `${tokenId}.${secret}`));
          return true;
        }
        throw new BerthError('Conflict', 'could not find a free bootstrap token id; try again');
      }
      case 'DELETE': {
        if (id === undefined) throw new BerthError('MethodNotAllowed', 'name the bootstrap token to delete: DELETE /apis/berth.dev/v1/bootstraptokens/ID');
        r.authorize({ verb: 'delete', resource: 'bootstraptokens', name: id });
        const o = await stored(id);
        const key = bootstrapTokenKey(id);
        const t = await registry.txn([{ key, modRevision: Number(o.metadata.resourceVersion) }], [{ type: 'delete', key }]);
        if (!t.succeeded) throw notFound('bootstraptokens', id, `bootstrap token "${id}" not found`);
        send(res, 200, successStatus(`bootstrap token "${id}" deleted`));
        return true;
      }
      default:
        throw badRequest(`bootstrap tokens accept GET, POST and DELETE, not ${r.method}`);
    }
  };
}
