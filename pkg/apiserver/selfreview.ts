import type { ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { GROUP } from '../api/meta.ts';
import { kindByPlural } from '../api/kinds.ts';
import { badRequest, BerthError, tooLarge } from '../errors/errors.ts';
import { ADMINS, type Identity, type RequestAttributes } from './auth.ts';
import { AUTHN_GROUP, AUTHZ_GROUP } from './discovery.ts';
import type { PolicyAuthorizer } from './authz.ts';
import { sendJson, type ApiRequest } from './server.ts';

/**
 * "Who am I, and may I?": `kubectl auth whoami` (SelfSubjectReview, authentication.k8s.io/v1)
 * and `kubectl auth can-i` (SelfSubjectAccessReview, authorization.k8s.io/v1), answered by
 * the one authorizer (built-in groups and policies), for the caller itself. kubectl sends
 * these as Kubernetes protobuf (it does for built-in types), so both protobuf and JSON
 * bodies are read; answers are JSON (kubectl accepts it).
 */

const SSAR_PATH = `/apis/${AUTHZ_GROUP}/v1/selfsubjectaccessreviews`;
const SSR_PATH = `/apis/${AUTHN_GROUP}/v1/selfsubjectreviews`;

// ------------------------------------------------------------------- Kubernetes protobuf

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"

type Fields = Map<number, Buffer[]>;

/** The length-delimited fields of one protobuf message (other wire types are skipped); throws on malformed input. */
function fields(buf: Buffer): Fields {
  const out: Fields = new Map();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (let n = 0; n < 10; n++) {
      if (i >= buf.length) throw badRequest('the protobuf body ends inside a number');
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
    throw badRequest('the protobuf body has a number longer than 10 bytes');
  };
  while (i < buf.length) {
    const key = varint();
    const no = Math.floor(key / 8);
    switch (key % 8) {
      case 0:
        varint();
        break;
      case 1:
        i += 8;
        break;
      case 5:
        i += 4;
        break;
      case 2: {
        const len = varint();
        if (len > buf.length - i) throw badRequest('the protobuf body ends inside a field');
        const list = out.get(no) ?? [];
        list.push(buf.subarray(i, i + len));
        out.set(no, list);
        i += len;
        break;
      }
      default:
        throw badRequest(`the protobuf body has an unsupported wire type ${key % 8}`);
    }
    if (i > buf.length) throw badRequest('the protobuf body ends inside a field');
  }
  return out;
}

const strField = (f: Fields, no: number) => f.get(no)?.at(-1)?.toString('utf8');
const msgField = (f: Fields, no: number) => {
  const b = f.get(no)?.at(-1);
  return b ? fields(b) : undefined;
};

interface Spec {
  resourceAttributes?: {
    namespace?: string;
    verb?: string;
    group?: string;
    version?: string;
    resource?: string;
    subresource?: string;
    name?: string;
    fieldSelector?: { rawSelector?: string };
  };
  nonResourceAttributes?: { path?: string; verb?: string };
}

/** A SelfSubjectAccessReview in Kubernetes' protobuf envelope: runtime.Unknown{typeMeta, raw}. */
function ssarFromProtobuf(body: Buffer): Spec {
  const unknown = fields(body.subarray(MAGIC.length));
  const raw = unknown.get(2)?.at(-1);
  if (!raw) throw badRequest('the protobuf body carries no object');
  const spec = msgField(fields(raw), 2);
  if (!spec) return {};
  const ra = msgField(spec, 1);
  const nra = msgField(spec, 2);
  const fs = ra ? msgField(ra, 8) : undefined;
  return {
    ...(ra
      ? {
          resourceAttributes: {
            namespace: strField(ra, 1),
            verb: strField(ra, 2),
            group: strField(ra, 3),
            version: strField(ra, 4),
            resource: strField(ra, 5),
            subresource: strField(ra, 6),
            name: strField(ra, 7),
            ...(fs ? { fieldSelector: { rawSelector: strField(fs, 1) } } : {}),
          },
        }
      : {}),
    ...(nra ? { nonResourceAttributes: { path: strField(nra, 1), verb: strField(nra, 2) } } : {}),
  };
}

/** a review is small: its body is read as bytes (protobuf is binary), up to this */
const MAX_REVIEW = 64 * 1024;

async function rawBody(r: ApiRequest): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of r.raw) {
    size += (c as Buffer).length;
    if (size > MAX_REVIEW) throw tooLarge(`a review body is at most ${MAX_REVIEW} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

// ------------------------------------------------------------------------------ answers

const VERBS = new Set<RequestAttributes['verb']>(['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']);

/** The attributes a review asks about, or why berth cannot answer yes to it. */
function attributesOf(spec: Spec): { attrs?: Omit<RequestAttributes, 'path'> & { path: string }; no?: string } {
  const nra = spec.nonResourceAttributes;
  const ra = spec.resourceAttributes;
  if (nra && !ra) {
    const verb = (nra.verb ?? '').toLowerCase();
    if (!VERBS.has(verb as RequestAttributes['verb'])) return { no: `berth serves no verb "${nra.verb ?? ''}" on paths` };
    return { attrs: { verb: verb as RequestAttributes['verb'], path: nra.path ?? '/' } };
  }
  if (!ra) throw badRequest('spec: give resourceAttributes or nonResourceAttributes');
  const group = ra.group ?? '';
  if (group !== GROUP && group !== '') return { no: `berth serves no API group "${group}"` };
  const plural = ra.resource ?? '';
  const kind = kindByPlural(plural);
  if (!kind && plural !== 'bindings') return { no: `berth serves no resource "${plural}" in API group "${GROUP}"` };
  let verb = (ra.verb ?? '').toLowerCase() as RequestAttributes['verb'];
  const sub = ra.subresource || undefined;
  if (sub === 'log' && plural === 'tasks' && verb === 'get') verb = 'logs';
  else if (sub !== undefined && sub !== 'status') return { no: `${plural} has no subresource "${sub}"` };
  if (verb !== 'logs' && !VERBS.has(verb)) return { no: `berth serves no verb "${ra.verb ?? ''}"` };
  const namespaced = kind ? kind.namespaced : true;
  return {
    attrs: {
      verb,
      resource: plural,
      ...(sub === 'status' ? { subresource: sub } : {}),
      ...(namespaced && ra.namespace ? { namespace: ra.namespace } : {}),
      ...(ra.name ? { name: ra.name } : {}),
      ...(ra.fieldSelector?.rawSelector ? { fieldSelector: ra.fieldSelector.rawSelector } : {}),
      path: '',
    },
  };
}

function accessReviewStatus(id: Identity, spec: Spec, authorizer: PolicyAuthorizer | undefined): { allowed: boolean; denied?: boolean; reason?: string } {
  if (!authorizer) return { allowed: true, reason: 'dev mode: every caller is an admin' };
  if (id.groups.includes(ADMINS)) return { allowed: true, reason: `${ADMINS} may do everything` };
  const { attrs, no } = attributesOf(spec);
  if (!attrs) return { allowed: false, reason: no };
  const v = authorizer.decide(id, attrs);
  return { allowed: v.allowed, ...(v.explicit ? { denied: true } : {}), reason: v.reason };
}

async function specOf(r: ApiRequest): Promise<{ spec: Spec; object: Record<string, unknown> }> {
  const ct = String(r.raw.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
  if (ct === 'application/vnd.kubernetes.protobuf') {
    const body = await rawBody(r);
    if (!body.subarray(0, MAGIC.length).equals(MAGIC)) throw badRequest('the protobuf body does not start with the Kubernetes magic "k8s\\0"');
    return { spec: ssarFromProtobuf(body), object: {} };
  }
  const text = (await rawBody(r)).toString('utf8');
  let v: unknown;
  try {
    v = /yaml/.test(ct) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest('the request body must be a SelfSubjectAccessReview object');
  const o = v as Record<string, unknown>;
  const spec = o.spec;
  if (spec !== undefined && (typeof spec !== 'object' || spec === null || Array.isArray(spec))) throw badRequest('spec: must be an object');
  const s = (spec ?? {}) as Record<string, unknown>;
  const pick = (x: unknown, keys: string[]): Record<string, string> | undefined => {
    if (x === undefined) return undefined;
    if (typeof x !== 'object' || x === null || Array.isArray(x)) throw badRequest('spec.resourceAttributes and spec.nonResourceAttributes must be objects');
    const out: Record<string, string> = {};
    for (const k of keys) {
      const val = (x as Record<string, unknown>)[k];
      if (val === undefined || val === null) continue;
      if (typeof val !== 'string') throw badRequest(`spec: ${k} must be a string`);
      out[k] = val;
    }
    return out;
  };
  const ra = pick(s.resourceAttributes, ['namespace', 'verb', 'group', 'version', 'resource', 'subresource', 'name']);
  const fsel = (s.resourceAttributes as { fieldSelector?: unknown } | undefined)?.fieldSelector;
  const raw = fsel !== undefined ? pick(fsel, ['rawSelector'])?.rawSelector : undefined;
  return {
    spec: {
      ...(ra ? { resourceAttributes: { ...ra, ...(raw ? { fieldSelector: { rawSelector: raw } } : {}) } } : {}),
      ...(s.nonResourceAttributes !== undefined ? { nonResourceAttributes: pick(s.nonResourceAttributes, ['path', 'verb']) } : {}),
    },
    object: o,
  };
}

/** The routes: POST of a SelfSubjectAccessReview and of a SelfSubjectReview. */
export function selfReviewRoutes(authorizer: () => PolicyAuthorizer | undefined) {
  return async (r: ApiRequest, res: ServerResponse): Promise<boolean> => {
    if (r.path !== SSAR_PATH && r.path !== SSR_PATH) return false;
    // asking is not changing: these are not audited as writes
    r.audit.mutating = false;
    if (r.method !== 'POST') throw new BerthError('MethodNotAllowed', `${r.path} takes POST (create) only`);
    if (r.path === SSR_PATH) {
      const id = r.identity;
      sendJson(res, 201, {
        kind: 'SelfSubjectReview',
        apiVersion: `${AUTHN_GROUP}/v1`,
        metadata: { creationTimestamp: null },
        status: { userInfo: { username: id.user, ...(id.uid ? { uid: id.uid } : {}), groups: [...id.groups] } },
      });
      return true;
    }
    const { spec } = await specOf(r);
    const status = accessReviewStatus(r.identity, spec, authorizer());
    sendJson(res, 201, {
      kind: 'SelfSubjectAccessReview',
      apiVersion: `${AUTHZ_GROUP}/v1`,
      metadata: { creationTimestamp: null },
      spec,
      status,
    });
    return true;
  };
}
