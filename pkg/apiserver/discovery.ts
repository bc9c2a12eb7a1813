import { createHash } from 'node:crypto';
import { GROUP, VERSION, type KindInfo } from '../api/meta.ts';
import { openApiSchemaFor } from '../api/openapi.ts';

const GV = `${GROUP}/${VERSION}`;

export const apiVersions = () => ({ kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '' }] });

/** core v1 serves only events (events.ts: what the controllers report), for `kubectl describe` and `kubectl events` */
export const coreResources = () => ({
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion: 'v1',
  resources: [{ name: 'events', singularName: 'event', namespaced: true, kind: 'Event', verbs: ['get', 'list', 'watch'], shortNames: ['ev'] }],
});

/** the review groups kubectl auth can-i / whoami post to (selfreview.ts) */
export const AUTHZ_GROUP = 'authorization.k8s.io';
export const AUTHN_GROUP = 'authentication.k8s.io';
const reviewGroups = () =>
  [AUTHZ_GROUP, AUTHN_GROUP].map((name) => {
    const gv = { groupVersion: `${name}/v1`, version: 'v1' };
    return { name, versions: [gv], preferredVersion: gv };
  });

export const apiGroupList = () => ({
  kind: 'APIGroupList',
  apiVersion: 'v1',
  groups: [{ name: GROUP, versions: [{ groupVersion: GV, version: VERSION }], preferredVersion: { groupVersion: GV, version: VERSION } }, ...reviewGroups()],
});

const reviewResources = (group: string, name: string, kind: string) => ({
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion: `${group}/v1`,
  resources: [{ name, singularName: '', namespaced: false, kind, verbs: ['create'] }],
});

/** Discovery of the review groups (`/apis/G`, `/apis/G/v1`); undefined for other paths. */
export function reviewDiscovery(path: string): unknown {
  for (const g of reviewGroups()) if (path === `/apis/${g.name}`) return { kind: 'APIGroup', apiVersion: 'v1', ...g };
  if (path === `/apis/${AUTHZ_GROUP}/v1`) return reviewResources(AUTHZ_GROUP, 'selfsubjectaccessreviews', 'SelfSubjectAccessReview');
  if (path === `/apis/${AUTHN_GROUP}/v1`) return reviewResources(AUTHN_GROUP, 'selfsubjectreviews', 'SelfSubjectReview');
  return undefined;
}

export const apiGroup = () => ({
  kind: 'APIGroup',
  apiVersion: 'v1',
  name: GROUP,
  versions: [{ groupVersion: GV, version: VERSION }],
  preferredVersion: { groupVersion: GV, version: VERSION },
});

const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

export function apiResourceList(kinds: KindInfo[]) {
  const resources: unknown[] = [];
  for (const k of kinds) {
    resources.push({
      name: k.plural,
      singularName: k.singular,
      namespaced: k.namespaced,
      kind: k.kind,
      verbs: VERBS,
      ...(k.shortNames.length ? { shortNames: k.shortNames } : {}),
      categories: ['berth', 'all'],
    });
    resources.push({ name: `${k.plural}/status`, singularName: '', namespaced: k.namespaced, kind: k.kind, verbs: ['get', 'patch', 'update'] });
    if (k.scale) resources.push({ name: `${k.plural}/scale`, singularName: '', namespaced: k.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
  }
  resources.push({ name: 'bindings', singularName: 'binding', namespaced: true, kind: 'Binding', verbs: ['create'] });
  resources.push({ name: 'taskstatuses', singularName: 'taskstatus', namespaced: true, kind: 'TaskStatus', verbs: ['create'] });
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: GV, resources };
}

const param = (name: string, inn: 'query' | 'path', description: string, required = false) => ({
  name,
  in: inn,
  description,
  required,
  schema: { type: 'string', uniqueItems: true },
});

const writeParams = [
  param('dryRun', 'query', 'When present, modifications are not persisted: "All".'),
  param('fieldManager', 'query', 'The name of the actor making the change.'),
  param('fieldValidation', 'query', 'How the server treats unknown fields: Strict (default: berth always rejects them), Warn, Ignore.'),
];

const listParams = ['labelSelector', 'fieldSelector', 'limit', 'continue', 'resourceVersion', 'resourceVersionMatch', 'watch', 'allowWatchBookmarks', 'timeoutSeconds'].map((n) =>
  param(n, 'query', n),
);

/** The OpenAPI v3 document of berth.dev/v1; kubectl reads `fieldValidation` from it. */
export function openApiV3Group(kinds: KindInfo[]) {
  const schemas: Record<string, unknown> = {};
  const paths: Record<string, unknown> = {};
  for (const k of kinds) {
    const ref = `dev.berth.v1.${k.kind}`;
    schemas[ref] = { ...openApiSchemaFor(k), 'x-kubernetes-group-version-kind': [{ group: GROUP, kind: k.kind, version: VERSION }] };
    schemas[`${ref}List`] = {
      type: 'object',
      properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, items: { type: 'array', items: { $ref: `#/components/schemas/${ref}` } } },
      'x-kubernetes-group-version-kind': [{ group: GROUP, kind: `${k.kind}List`, version: VERSION }],
    };
    const body = { content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } };
    const ok = { '200': { description: 'OK', content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } } };
    const nsPart = k.namespaced ? '/namespaces/{namespace}' : '';
    const pathParams = [...(k.namespaced ? [param('namespace', 'path', 'the cluster', true)] : [])];
    const gvk = { group: GROUP, version: VERSION, kind: k.kind };
    paths[`/apis/${GV}${nsPart}/${k.plural}`] = {
      parameters: pathParams,
      get: { operationId: `list${k.kind}`, parameters: listParams, responses: ok, 'x-kubernetes-action': 'list', 'x-kubernetes-group-version-kind': gvk },
      post: { operationId: `create${k.kind}`, parameters: writeParams, requestBody: body, responses: ok, 'x-kubernetes-action': 'post', 'x-kubernetes-group-version-kind': gvk },
    };
    const named = { parameters: [...pathParams, param('name', 'path', 'name of the object', true)] };
    paths[`/apis/${GV}${nsPart}/${k.plural}/{name}`] = {
      ...named,
      get: { operationId: `read${k.kind}`, responses: ok, 'x-kubernetes-action': 'get', 'x-kubernetes-group-version-kind': gvk },
      put: { operationId: `replace${k.kind}`, parameters: writeParams, requestBody: body, responses: ok, 'x-kubernetes-action': 'put', 'x-kubernetes-group-version-kind': gvk },
      patch: {
        operationId: `patch${k.kind}`,
        parameters: [...writeParams, param('force', 'query', 'force')],
        requestBody: { content: { 'application/merge-patch+json': { schema: { type: 'object' } }, 'application/json-patch+json': { schema: { type: 'object' } } } },
        responses: ok,
        'x-kubernetes-action': 'patch',
        'x-kubernetes-group-version-kind': gvk,
      },
      delete: { operationId: `delete${k.kind}`, parameters: writeParams, responses: ok, 'x-kubernetes-action': 'delete', 'x-kubernetes-group-version-kind': gvk },
    };
    paths[`/apis/${GV}${nsPart}/${k.plural}/{name}/status`] = {
      ...named,
      get: { operationId: `read${k.kind}Status`, responses: ok },
      put: { operationId: `replace${k.kind}Status`, parameters: writeParams, requestBody: body, responses: ok },
      patch: { operationId: `patch${k.kind}Status`, parameters: writeParams, responses: ok },
    };
  }
  return { openapi: '3.0.0', info: { title: 'berth', version: VERSION }, paths, components: { schemas } };
}

let groupHash: string | undefined;
export function openApiV3Index(kinds: KindInfo[]) {
  groupHash ??= createHash('sha256').update(JSON.stringify(openApiV3Group(kinds))).digest('hex').slice(0, 16).toUpperCase();
  return { paths: { [`apis/${GV}`]: { serverRelativeURL: `/openapi/v3/apis/${GV}?hash=${groupHash}` } } };
}

/** Swagger 2.0 of the same, for clients that want v2 (kubectl itself asks for v3). */
export function openApiV2(kinds: KindInfo[]) {
  const definitions: Record<string, unknown> = {};
  for (const k of kinds) {
    definitions[`dev.berth.v1.${k.kind}`] = { ...openApiSchemaFor(k), 'x-kubernetes-group-version-kind': [{ group: GROUP, kind: k.kind, version: VERSION }] };
  }
  return { swagger: '2.0', info: { title: 'berth', version: VERSION }, paths: {}, definitions };
}

/** A discovery or OpenAPI document as served: its JSON and a strong ETag of it. */
export interface ServedDocument {
  body: string;
  etag: string;
}

/**
 * The documents of discovery and OpenAPI for a set of kinds, each built and serialized the
 * first time it is asked for and then served as is (S6: building the OpenAPI v3 document
 * took ~21 ms of the event loop on every request, for any authenticated caller). Kinds do
 * not change while the process runs.
 */
export function discoveryDocuments(kinds: KindInfo[]): (path: string) => ServedDocument | undefined {
  const builders: Record<string, () => unknown> = {
    '/api': apiVersions,
    '/api/v1': coreResources,
    '/apis': apiGroupList,
    [`/apis/${GROUP}`]: apiGroup,
    [`/apis/${GV}`]: () => apiResourceList(kinds),
    '/openapi/v2': () => openApiV2(kinds),
    '/openapi/v3': () => openApiV3Index(kinds),
    [`/openapi/v3/apis/${GV}`]: () => openApiV3Group(kinds),
  };
  const served = new Map<string, ServedDocument>();
  return (path) => {
    const have = served.get(path);
    if (have) return have;
    const doc0 = Object.hasOwn(builders, path) ? builders[path]() : reviewDiscovery(path);
    if (doc0 === undefined) return undefined;
    const body = JSON.stringify(doc0);
    const doc = { body, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"` };
    served.set(path, doc);
    return doc;
  };
}
