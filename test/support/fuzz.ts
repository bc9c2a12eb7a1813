import fc from 'fast-check';
import { KINDS } from '../../pkg/api/kinds.ts';
import { OPERATIONS } from '../../pkg/ecsapi/ecsapi.ts';
import { ARN } from './authz.ts';

/**
 * The fuzzer's generators: requests to every endpoint of both faces, built from valid
 * shapes and then mutated (paths, selectors, bodies, patches, ECS inputs), and raw garbage.
 * Names come from pools: the fixture's objects (clusters A/B, tasks ta/tb, instances
 * ci-a/ci-b, task definition web) for everyone but the admin, whose changes go to
 * throw-away names (an admin may delete anything; a fixture it deleted would starve the
 * other identities' cases), plus hostile spellings.
 */

export const FUZZ_IDENTITIES = ['admin', 'viewer', 'alice', 'nodeA', 'nodeB', 'bootstrap', 'anonymous', 'stranger'] as const;
export type FuzzWho = (typeof FUZZ_IDENTITIES)[number];

export interface K8sCase {
  face: 'k8s';
  who: FuzzWho;
  method: string;
  path: string;
  contentType?: string;
  body?: string;
}

export interface EcsCase {
  face: 'ecs';
  who: FuzzWho;
  /** the X-Amz-Target suffix */
  op: string;
  body: string;
  /** send no Content-Type / a wrong one */
  contentType?: string;
}

export type FuzzCase = K8sCase | EcsCase;

/**
 * FUZZ_SKIP=S1 leaves out the keys and JSON-pointer tokens `__proto__`, `constructor` and
 * `prototype`: review finding S1 (a JSON patch walking into `__proto__` pollutes the
 * process's Object.prototype) is fixed on the security branch (wt-sec), not on this one;
 * until both are merged the fuzzer finds it within seconds and every later case fails with it.
 */
export const SKIPPED = new Set(
  (process.env.FUZZ_SKIP ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);
const PROTO_WORDS = ['__proto__', 'constructor', 'prototype'];
const noProto = <T>(xs: T[]): T[] => (SKIPPED.has('S1') ? xs.filter((x) => !PROTO_WORDS.some((w) => String(x).includes(w))) : xs);

const HOSTILE = noProto([
  '__proto__',
  'constructor',
  'prototype',
  '..',
  '.',
  '%2e%2e',
  '%00',
  '%',
  '%zz',
  'a'.repeat(300),
  'ü',
  ' ',
  '',
  'A/../B',
  'x;y',
  '${aws:username}',
  '*',
  '?',
]);
const FIXTURE = ['A', 'B', 'default', 'ta', 'tb', 'ci-a', 'ci-b', 'ci-z', 'web', 'web:1', 'svc'];
const THROWAWAY = ['fz-1', 'fz-2', 'fz-3', 'fz-a', 'fz-b:1'];

const nameFor = (who: FuzzWho) =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...(who === 'admin' ? THROWAWAY : [...FIXTURE, ...THROWAWAY])), weight: 6 },
    { arbitrary: fc.constantFrom(...HOSTILE), weight: 2 },
    { arbitrary: fc.string({ maxLength: 20 }), weight: 1 },
  );

const clusterFor = (who: FuzzWho) => (who === 'admin' ? fc.constantFrom('fz-c', 'default', 'fz-d') : fc.constantFrom('A', 'B', 'default', 'fz-c', 'nope'));

const PLURALS = [...KINDS.map((k) => k.plural), 'bindings'];

// ------------------------------------------------------------------------- JSON mutation

/** A JSON value, now and then a hostile one (a huge string, deep nesting, a prototype key). */
const value: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 8 },
  { arbitrary: fc.constantFrom(null, true, 0, -1, 1e308, 2 ** 53 + 1, '', 'x'.repeat(5000), [], {}), weight: 3 },
  { arbitrary: fc.constantFrom(...HOSTILE), weight: 1 },
);

const key = fc.oneof(
  {
    arbitrary: fc.constantFrom(
      'metadata',
      'spec',
      'status',
      'name',
      'namespace',
      'labels',
      'annotations',
      'resourceVersion',
      'taskDefinition',
      'containerDefinitions',
      'desiredCount',
      'desiredStatus',
      'containerInstance',
      'lastStatus',
      'memory',
      'image',
      'registeredResources',
      'logs',
      'endpoint',
      'deletionTimestamp',
      'finalizers',
      'kind',
      'apiVersion',
      'generateName',
    ),
    weight: 6,
  },
  { arbitrary: fc.constantFrom(...noProto(['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'])), weight: 2 },
  { arbitrary: fc.string({ maxLength: 12 }), weight: 2 },
);

interface Mutation {
  path: string[];
  value: unknown;
  remove: boolean;
}
const mutation: fc.Arbitrary<Mutation> = fc.record({ path: fc.array(key, { minLength: 1, maxLength: 4 }), value, remove: fc.boolean() });

/** Sets a key as an own, enumerable property, `__proto__` included (so it reaches the wire). */
function setOwn(o: Record<string, unknown>, k: string, v: unknown) {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function mutate(base: unknown, ms: Mutation[]): unknown {
  const root = structuredClone(base) as Record<string, unknown>;
  for (const m of ms) {
    let cur: Record<string, unknown> = root;
    for (const k of m.path.slice(0, -1)) {
      const next = Object.hasOwn(cur, k) ? cur[k] : undefined;
      if (typeof next !== 'object' || next === null) {
        const fresh: Record<string, unknown> = {};
        setOwn(cur, k, fresh);
        cur = fresh;
      } else cur = next as Record<string, unknown>;
    }
    const last = m.path[m.path.length - 1];
    if (m.remove) delete cur[last];
    else setOwn(cur, last, m.value);
  }
  return root;
}

const mutated = (base: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { arbitrary: base, weight: 3 },
    { arbitrary: fc.tuple(base, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([b, ms]) => mutate(b, ms)), weight: 6 },
  );

/** A body as text: JSON of a (mutated) shape, or something that is not JSON at all. */
const text = (shape: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { arbitrary: shape.map((v) => JSON.stringify(v) ?? 'null'), weight: 8 },
    { arbitrary: mutated(shape).map((v) => JSON.stringify(v) ?? 'null'), weight: 8 },
    { arbitrary: fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'), weight: 2 },
    { arbitrary: fc.string({ maxLength: 200 }), weight: 1 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 200 }), weight: 1 },
    { arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)), weight: 1 },
    { arbitrary: fc.integer({ min: 100, max: 5_000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)), weight: 1 },
    {
      arbitrary: fc.constantFrom(
        ...noProto(['', ' ', '{', '{"__proto__": {"polluted": 1}}', '{"constructor": {"prototype": {"polluted": 1}}}', 'a: &a [*a, *a]\nb: *a', '- 1\n- 2']),
      ),
      weight: 1,
    },
  );

// ------------------------------------------------------------------- the resource API

function manifest(plural: string, name: string, cluster?: string): unknown {
  const kind = KINDS.find((k) => k.plural === plural)?.kind ?? 'Thing';
  const metadata = { name, ...(cluster ? { namespace: cluster } : {}) };
  const specs: Record<string, unknown> = {
    clusters: {},
    containerinstances: {
      registeredResources: [
        { name: 'CPU', type: 'INTEGER', integerValue: 1024 },
        { name: 'MEMORY', type: 'INTEGER', integerValue: 1024 },
      ],
    },
    taskdefinitions: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32 }] },
    daemontaskdefinitions: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32 }] },
    tasks: { taskDefinition: 'web' },
    services: { taskDefinition: 'web', desiredCount: 0 },
    daemons: { daemonTaskDefinition: 'fz-dtd' },
    leases: { holderIdentity: 'fz', leaseDurationSeconds: 15 },
  };
  if (plural === 'bindings') return { bindings: [{ task: name, containerInstance: 'ci-a' }] };
  return { apiVersion: 'berth.dev/v1', kind, metadata, spec: specs[plural] ?? {} };
}

const selectorTerm = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(
        'spec.containerInstance',
        'metadata.name',
        'metadata.namespace',
        'status.lastStatus',
        'spec.group',
        'spec.taskDefinition',
        'status.status',
        'app',
        'a/b',
      ),
      fc.constantFrom('=', '==', '!=', ' in ', ' notin '),
      fc.constantFrom('ci-a', 'ci-b', '(ci-a,ci-b)', '(,spec.containerInstance=ci-a,)', '', 'x'),
    )
    .map(([k, o, v]) => `${k}${o}${v}`),
  fc.constantFrom('!app', 'app', 'metadata.name!=(,spec.containerInstance=ci-a,)', 'spec.containerInstance=ci-a', '((((', '))', ',,,'),
  fc.string({ maxLength: 30 }),
);
const selector = fc.array(selectorTerm, { minLength: 1, maxLength: 4 }).map((ts) => ts.join(','));

const PARAMS = {
  labelSelector: selector,
  fieldSelector: selector,
  limit: fc.oneof(fc.nat(10).map(String), fc.constantFrom('-1', 'x', '1e9', '')),
  continue: fc.oneof(fc.base64String({ maxLength: 40 }), fc.string({ maxLength: 20 })),
  watch: fc.constantFrom('1', 'true', 'false', '0'),
  resourceVersion: fc.oneof(fc.nat(1000).map(String), fc.constantFrom('0', '-1', 'x', '99999999999999999999')),
  allowWatchBookmarks: fc.constantFrom('true', 'false'),
  dryRun: fc.constantFrom('All', 'x', ''),
  fieldValidation: fc.constantFrom('Strict', 'Warn', 'Ignore', 'x'),
  includeObject: fc.constantFrom('None', 'Metadata', 'Object', 'x'),
  container: fc.string({ maxLength: 10 }),
  follow: fc.constantFrom('true', 'false'),
  tailLines: fc.constantFrom('1', '-1', 'x'),
};

/** a few query parameters (each a real one, with good or bad values) */
const query = fc
  .array(fc.oneof(...Object.entries(PARAMS).map(([k, v]) => (v as fc.Arbitrary<string>).map((x) => [k, x] as [string, string]))), {
    minLength: 1,
    maxLength: 3,
  })
  .map((pairs) => Object.fromEntries(pairs));

const SPECIAL_PATHS = [
  '/',
  '/api',
  '/api/v1',
  '/apis',
  '/apis/berth.dev',
  '/apis/berth.dev/v1',
  '/openapi/v2',
  '/openapi/v3',
  '/openapi/v3/apis/berth.dev/v1',
  '/metrics',
  '/version',
  '/healthz',
  '/livez',
  '/readyz',
  '/api/v1/namespaces/A/events',
  '/api/v1/events',
  '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
  '/apis/authentication.k8s.io/v1/selfsubjectreviews',
  '/apis/authorization.k8s.io',
  '/apis/authentication.k8s.io/v1',
];

const enc = (s: string) => (s.includes('/') || s.includes('?') || s.includes('#') ? encodeURIComponent(s) : s);

const NAMESPACED = new Set([...KINDS.filter((k) => k.namespaced).map((k) => k.plural), 'bindings']);

function resourcePath(who: FuzzWho) {
  return fc
    .record({
      group: fc.oneof(
        { arbitrary: fc.constant('berth.dev'), weight: 19 },
        { arbitrary: fc.constantFrom('apps', 'authorization.k8s.io', '', 'berth.dev.evil'), weight: 1 },
      ),
      version: fc.oneof({ arbitrary: fc.constant('v1'), weight: 19 }, { arbitrary: fc.constantFrom('v2', 'v1beta1', ''), weight: 1 }),
      plural: fc.oneof(
        { arbitrary: fc.constantFrom(...PLURALS), weight: 19 },
        { arbitrary: fc.constantFrom(...noProto(['pods', 'Tasks', 'task', '__proto__'])), weight: 1 },
      ),
      scoped: fc.oneof({ arbitrary: fc.constant(true), weight: 9 }, { arbitrary: fc.constant(false), weight: 1 }),
      clusterName: clusterFor(who),
      name: fc.option(nameFor(who), { nil: undefined }),
      sub: fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 6 },
        { arbitrary: fc.constantFrom(...noProto(['status', 'log', 'scale', '__proto__'])), weight: 3 },
      ),
    })
    .map((p) => {
      // namespaced kinds mostly under a cluster, the others mostly not (each way round now and then)
      const cluster = NAMESPACED.has(p.plural) === p.scoped ? p.clusterName : undefined;
      return {
        ...p,
        cluster,
        path: `/apis/${p.group}/${p.version}${cluster ? `/namespaces/${enc(cluster)}` : ''}/${p.plural}${p.name !== undefined ? `/${enc(p.name)}` : ''}${p.name !== undefined && p.sub ? `/${p.sub}` : ''}`,
      };
    });
}

const JSON_PATCH_PATHS = noProto([
  '/spec/desiredStatus',
  '/status/lastStatus',
  '/metadata/labels/x',
  '/metadata/annotations',
  '/__proto__/polluted',
  '/constructor/prototype/polluted',
  '/spec/__proto__/x',
  '/status/logs/endpoint',
  '/metadata/name',
  '/spec/containerInstance',
  '',
  '/',
  '/spec/-',
  '~1',
  '/a~2b',
]);
const PROTO_PATHS = [
  '/__proto__/polluted',
  '/constructor/prototype/polluted',
  '/status/__proto__/polluted',
  '/spec/constructor/prototype/x',
  '/metadata/__proto__',
  '/__proto__',
];
const op = fc.oneof(
  { arbitrary: fc.constant('add'), weight: 4 },
  { arbitrary: fc.constant('replace'), weight: 3 },
  { arbitrary: fc.constant('remove'), weight: 2 },
  { arbitrary: fc.constantFrom('move', 'copy', 'test', 'nope'), weight: 2 },
);
const pointer = fc.oneof(
  { arbitrary: fc.constantFrom(...JSON_PATCH_PATHS), weight: 5 },
  ...(SKIPPED.has('S1') ? [] : [{ arbitrary: fc.constantFrom(...PROTO_PATHS), weight: 3 }]),
  { arbitrary: fc.string({ maxLength: 20 }), weight: 1 },
);
const jsonPatch = fc.array(fc.record({ op, path: pointer, from: pointer, value }, { requiredKeys: ['op', 'path'] }), { minLength: 1, maxLength: 3 });

const CONTENT_TYPES = [
  'application/json',
  'application/merge-patch+json',
  'application/json-patch+json',
  'application/yaml',
  'application/strategic-merge-patch+json',
  'application/apply-patch+yaml',
  'application/vnd.kubernetes.protobuf',
  'text/plain',
  'x/y; charset=utf-16',
];

export function k8sCase(who: FuzzWho): fc.Arbitrary<K8sCase> {
  return fc
    .record({
      method: fc.oneof(
        { arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE'), weight: 10 },
        { arbitrary: fc.constantFrom('HEAD', 'OPTIONS', 'FOO'), weight: 1 },
      ),
      target: fc.oneof(
        { arbitrary: resourcePath(who), weight: 10 },
        { arbitrary: fc.constantFrom(...SPECIAL_PATHS).map((path) => ({ path, plural: undefined, name: undefined, cluster: undefined })), weight: 2 },
        { arbitrary: fc.webPath().map((path) => ({ path: path || '/', plural: undefined, name: undefined, cluster: undefined })), weight: 1 },
      ),
      query: fc.option(query, { nil: undefined }),
      patchKind: fc.constantFrom('merge', 'json'),
      contentType: fc.oneof({ arbitrary: fc.constant(undefined), weight: 6 }, { arbitrary: fc.constantFrom(...CONTENT_TYPES), weight: 4 }),
      bodyName: nameFor(who),
      garbage: fc.oneof({ arbitrary: fc.constant(undefined), weight: 8 }, { arbitrary: text(fc.constant({})), weight: 2 }),
      patch: fc.oneof(
        text(fc.constant({ spec: { desiredStatus: 'STOPPED' } })),
        jsonPatch.map((p) => JSON.stringify(p)),
      ),
      review: text(
        fc.constant({
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SelfSubjectAccessReview',
          spec: { resourceAttributes: { verb: 'get', resource: 'tasks', namespace: 'A', group: 'berth.dev' } },
        }),
      ),
    })
    .chain((r) => {
      const plural = r.target.plural ?? 'clusters';
      const shape = fc.constant(manifest(plural, r.target.name ?? r.bodyName, r.target.cluster));
      return text(shape).map((body) => ({ r, body }));
    })
    .map(({ r, body }) => {
      const qs = r.query ? new URLSearchParams(Object.entries(r.query).filter(([, v]) => v !== undefined) as Array<[string, string]>).toString() : '';
      const path = `${r.target.path}${qs ? `?${qs}` : ''}`;
      let b: string | undefined;
      let ct = r.contentType;
      if (r.method === 'PATCH') {
        b = r.patch;
        ct ??= r.patchKind === 'json' ? 'application/json-patch+json' : 'application/merge-patch+json';
      } else if (r.target.path.includes('selfsubject')) {
        b = r.review;
      } else if (r.method === 'POST' || r.method === 'PUT') b = body;
      else if (r.method === 'DELETE' && r.garbage !== undefined) b = r.garbage;
      if (b !== undefined && r.garbage !== undefined && r.method !== 'DELETE') b = r.garbage;
      return { face: 'k8s' as const, who, method: r.method, path, ...(b !== undefined ? { body: b, contentType: ct ?? 'application/json' } : {}) };
    });
}

// ------------------------------------------------------------------------- the ECS API

const arnOf = (type: string, ...parts: string[]) => `${ARN}:${type}/${parts.join('/')}`;

function ecsIds(who: FuzzWho) {
  const n = nameFor(who);
  const c = clusterFor(who);
  return fc.oneof(
    { arbitrary: n, weight: 6 },
    { arbitrary: fc.tuple(fc.constantFrom('task', 'service', 'container-instance', 'daemon'), c, n).map(([t, cl, x]) => arnOf(t, cl, x)), weight: 3 },
    { arbitrary: fc.tuple(c).map(([cl]) => arnOf('cluster', cl)), weight: 2 },
    { arbitrary: n.map((x) => arnOf('task-definition', x)), weight: 2 },
    {
      arbitrary: fc.constantFrom(
        'arn:aws:ecs:::',
        'arn:aws:ecs:eu-west-1:111111111111:task/A/ta',
        'arn:aws:s3:::bucket',
        'arn:',
        `${ARN}:cluster/`,
        `${ARN}:task/`,
        `${ARN}:task-definition/web:1:2`,
      ),
      weight: 2,
    },
  );
}

/** A plausible input for an ECS operation, from the identifiers an identity tries. */
function ecsInput(who: FuzzWho) {
  const id = ecsIds(who);
  const cluster = fc.oneof(clusterFor(who), ecsIds(who));
  return fc.record(
    {
      cluster,
      clusterArn: cluster,
      clusterName: fc.oneof(fc.constantFrom('fz-e1', 'fz-e2'), nameFor(who)),
      clusters: fc.array(cluster, { maxLength: 3 }),
      taskDefinition: fc.oneof(
        who === 'admin' ? fc.constantFrom('fz-td', 'fz-td:1') : fc.constantFrom('web', 'web:1', `${ARN}:task-definition/web:1`, 'fz-td'),
        id,
      ),
      family: fc.oneof(fc.constantFrom('fz-fam'), nameFor(who)),
      containerDefinitions: fc.oneof(fc.constant([{ name: 'c', image: 'busybox', memory: 32 }]), fc.jsonValue({ maxDepth: 2 })),
      task: id,
      tasks: fc.array(id, { maxLength: 3 }),
      service: id,
      services: fc.array(id, { maxLength: 3 }),
      serviceName: nameFor(who),
      desiredCount: fc.oneof(fc.nat(3), fc.constantFrom(-1, 1e9, 'x')),
      containerInstance: id,
      containerInstances: fc.array(id, { maxLength: 3 }),
      status: fc.constantFrom('ACTIVE', 'DRAINING', 'x'),
      count: fc.oneof(fc.integer({ min: 1, max: 2 }), fc.constantFrom(0, 11, 'x')),
      resourceArn: id,
      tags: fc.array(fc.record({ key: fc.string({ maxLength: 8 }), value: fc.string({ maxLength: 8 }) }), { maxLength: 3 }),
      tagKeys: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
      attributes: fc.array(fc.record({ name: fc.string({ maxLength: 8 }), value: fc.string({ maxLength: 8 }), targetId: id }, { requiredKeys: [] }), {
        maxLength: 3,
      }),
      targetType: fc.constantFrom('container-instance', 'x'),
      daemonName: nameFor(who),
      daemonArn: id,
      daemonTaskDefinition: id,
      daemonTaskDefinitionArn: id,
      maxResults: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.constantFrom(0, 1000, 'x')),
      nextToken: fc.oneof(fc.base64String({ maxLength: 30 }), fc.string({ maxLength: 10 })),
      filter: fc.constantFrom('attribute:ecs.os-type == linux', 'runningTasksCount > 0', '(((', 'x'),
      force: fc.boolean(),
      include: fc.array(fc.constantFrom('TAGS', 'SETTINGS', 'x'), { maxLength: 2 }),
      totalResources: fc.constant([{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }]),
      overrides: fc.jsonValue({ maxDepth: 2 }),
      placementConstraints: fc.array(fc.record({ type: fc.constantFrom('memberOf', 'distinctInstance', 'x'), expression: fc.string({ maxLength: 20 }) }), {
        maxLength: 2,
      }),
    },
    { requiredKeys: [] },
  );
}

const OPS = Object.keys(OPERATIONS);

/** A valid-looking input for each operation, with the identifiers an identity uses. */
function ecsTemplate(who: FuzzWho): fc.Arbitrary<{ op: string; input: unknown }> {
  const admin = who === 'admin';
  return fc
    .record({
      op: fc.constantFrom(...OPS),
      cluster: clusterFor(who),
      name: nameFor(who),
      instance: fc.constantFrom(...(admin ? ['fz-ci'] : ['ci-a', 'ci-b', 'fz-ci'])),
      task: fc.constantFrom(...(admin ? ['fz-t'] : ['ta', 'tb', 'fz-t'])),
    })
    .map(({ op, cluster, name, instance, task }) => {
      const td = admin ? 'fz-td' : 'web';
      const cd = [{ name: 'c', image: 'busybox', memory: 32 }];
      const daemonArn = `${ARN}:daemon/${cluster}/${name}`;
      const inputs: Record<string, unknown> = {
        CreateCluster: { clusterName: admin ? 'fz-e1' : name },
        DeleteCluster: { cluster: admin ? 'fz-e1' : cluster },
        DescribeClusters: { clusters: [cluster] },
        ListClusters: {},
        RegisterContainerInstance: {
          cluster,
          totalResources: [
            { name: 'CPU', type: 'INTEGER', integerValue: 1024 },
            { name: 'MEMORY', type: 'INTEGER', integerValue: 1024 },
          ],
        },
        DeregisterContainerInstance: { cluster, containerInstance: instance, force: true },
        DescribeContainerInstances: { cluster, containerInstances: [instance] },
        ListContainerInstances: { cluster },
        UpdateContainerInstancesState: { cluster, containerInstances: [instance], status: 'ACTIVE' },
        PutAttributes: { cluster, attributes: [{ name: 'fz', value: '1', targetId: instance }] },
        ListAttributes: { cluster, targetType: 'container-instance' },
        DeleteAttributes: { cluster, attributes: [{ name: 'fz', targetId: instance }] },
        RegisterTaskDefinition: { family: admin ? 'fz-td' : name, containerDefinitions: cd },
        DescribeTaskDefinition: { taskDefinition: td },
        ListTaskDefinitions: {},
        ListTaskDefinitionFamilies: {},
        DeregisterTaskDefinition: { taskDefinition: `${td}:1` },
        RunTask: { cluster, taskDefinition: td },
        StartTask: { cluster, taskDefinition: td, containerInstances: [instance] },
        StopTask: { cluster, task },
        DescribeTasks: { cluster, tasks: [task] },
        ListTasks: { cluster },
        CreateService: { cluster, serviceName: name, taskDefinition: td, desiredCount: 0 },
        UpdateService: { cluster, service: admin ? name : 'svc', desiredCount: 0 },
        DeleteService: { cluster, service: admin ? name : 'svc', force: true },
        DescribeServices: { cluster, services: ['svc'] },
        ListServices: { cluster },
        RegisterDaemonTaskDefinition: { family: admin ? 'fz-dtd' : name, containerDefinitions: cd },
        DescribeDaemonTaskDefinition: { daemonTaskDefinition: 'fz-dtd' },
        ListDaemonTaskDefinitions: {},
        DeleteDaemonTaskDefinition: { daemonTaskDefinition: 'fz-dtd:1' },
        CreateDaemon: { clusterArn: cluster, daemonName: name, daemonTaskDefinitionArn: 'fz-dtd' },
        UpdateDaemon: { daemonArn, daemonTaskDefinitionArn: 'fz-dtd' },
        DeleteDaemon: { daemonArn },
        DescribeDaemon: { daemonArn },
        ListDaemons: { clusterArn: cluster },
        TagResource: { resourceArn: `${ARN}:cluster/${cluster}`, tags: [{ key: 'fz', value: '1' }] },
        UntagResource: { resourceArn: `${ARN}:cluster/${cluster}`, tagKeys: ['fz'] },
        ListTagsForResource: { resourceArn: `${ARN}:cluster/${cluster}` },
      };
      return { op, input: inputs[op] ?? {} };
    });
}

export function ecsCase(who: FuzzWho): fc.Arbitrary<EcsCase> {
  const templated = ecsTemplate(who).chain(({ op, input }) => text(fc.constant(input)).map((body) => ({ op, body })));
  const generic = fc.record({
    op: fc.oneof(
      { arbitrary: fc.constantFrom(...OPS), weight: 12 },
      { arbitrary: fc.constantFrom(...noProto(['runTask', 'Poll', 'SubmitTaskStateChange', '__proto__', 'constructor', 'toString', ''])), weight: 1 },
    ),
    body: text(ecsInput(who)),
  });
  return fc
    .record({
      call: fc.oneof({ arbitrary: templated, weight: 3 }, { arbitrary: generic, weight: 2 }),
      contentType: fc.oneof({ arbitrary: fc.constant(undefined), weight: 19 }, { arbitrary: fc.constantFrom('application/json', 'text/plain'), weight: 1 }),
    })
    .map((r) => ({ face: 'ecs' as const, who, op: r.call.op, body: r.call.body, ...(r.contentType ? { contentType: r.contentType } : {}) }));
}

// ------------------------------------------------------- what each identity is likely to try

const own = (who: FuzzWho) =>
  who === 'nodeB' ? { ci: 'ci-b', task: 'tb', other: 'ci-a', otherTask: 'ta' } : { ci: 'ci-a', task: 'ta', other: 'ci-b', otherTask: 'tb' };

/**
 * The writes an identity may make, with hostile bodies: a node patching its instance's and
 * its tasks' status (JSON patch into `__proto__`, a logs endpoint of its choosing, ...) and
 * reading with selector tricks; alice creating tasks; the bootstrap token registering
 * instances; a viewer trying all of it.
 */
function focused(who: FuzzWho): fc.Arbitrary<K8sCase> {
  const o = own(who);
  const statusPatch = fc
    .record({
      target: fc.constantFrom(
        `/namespaces/A/containerinstances/${o.ci}/status`,
        `/namespaces/A/tasks/${o.task}/status`,
        `/namespaces/A/tasks/${o.otherTask}/status`,
        `/namespaces/A/containerinstances/${o.ci}`,
        `/namespaces/A/tasks/${o.task}`,
      ),
      json: fc.boolean(),
      patch: jsonPatch,
      merge: mutated(
        fc.constantFrom(
          { status: { lastStatus: 'RUNNING' } },
          { status: { agentConnected: true, logs: { endpoint: 'http://127.0.0.1:1/x?#', token: 't' } } },
          { spec: { desiredStatus: 'STOPPED' } },
          { metadata: { labels: { a: 'b' } } },
        ),
      ),
    })
    .map(
      (r): K8sCase => ({
        face: 'k8s',
        who,
        method: 'PATCH',
        path: `${V_PATH}${r.target}`,
        contentType: r.json ? 'application/json-patch+json' : 'application/merge-patch+json',
        body: r.json ? JSON.stringify(r.patch) : JSON.stringify(r.merge),
      }),
    );
  const read = fc
    .record({
      plural: fc.constantFrom('tasks', 'containerinstances', 'taskdefinitions'),
      ns: fc.constantFrom('/namespaces/A', '/namespaces/B', ''),
      sel: selector,
      watch: fc.boolean(),
    })
    .map(
      (r): K8sCase => ({
        face: 'k8s',
        who,
        method: 'GET',
        path: `${V_PATH}${r.ns}/${r.plural}?fieldSelector=${encodeURIComponent(r.sel)}${r.watch ? '&watch=1' : ''}`,
      }),
    );
  const create = fc
    .record({ plural: fc.constantFrom('tasks', 'containerinstances', 'services'), ns: fc.constantFrom('A', 'B'), name: nameFor(who) })
    .chain((r) =>
      text(fc.constant(manifest(r.plural, r.name, r.ns))).map(
        (body): K8sCase => ({ face: 'k8s', who, method: 'POST', path: `${V_PATH}/namespaces/${r.ns}/${r.plural}`, contentType: 'application/json', body }),
      ),
    );
  return fc.oneof(statusPatch, read, create);
}

const V_PATH = '/apis/berth.dev/v1';

const WEIGHTS: Record<FuzzWho, number> = { admin: 2, viewer: 2, alice: 3, nodeA: 3, nodeB: 1, bootstrap: 1, anonymous: 1, stranger: 1 };

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc
  .oneof(...FUZZ_IDENTITIES.map((who) => ({ arbitrary: fc.constant(who), weight: WEIGHTS[who] })))
  .chain((who) =>
    fc.oneof(
      ...(who === 'admin' ? [] : [{ arbitrary: focused(who) as fc.Arbitrary<FuzzCase>, weight: 2 }]),
      { arbitrary: k8sCase(who) as fc.Arbitrary<FuzzCase>, weight: 3 },
      { arbitrary: ecsCase(who) as fc.Arbitrary<FuzzCase>, weight: who === 'admin' || who === 'viewer' || who === 'alice' ? 3 : 1 },
    ),
  );

/** A case, printed so that it can be read (bodies cut short). */
export function describeCase(c: FuzzCase): string {
  const body =
    'body' in c && c.body !== undefined ? ` body=${JSON.stringify(c.body.length > 300 ? `${c.body.slice(0, 300)}...(${c.body.length})` : c.body)}` : '';
  return c.face === 'k8s' ? `${c.who}: ${c.method} ${c.path}${c.contentType ? ` [${c.contentType}]` : ''}${body}` : `${c.who}: ECS ${c.op}${body}`;
}
