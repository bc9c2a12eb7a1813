import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newToken, type TokenEntry } from '../../pkg/apiserver/auth.ts';
import { ecsFrontDoor, type AccessKey } from '../../pkg/ecsapi/ecsapi.ts';
import { newKey, sdkSigner } from '../ecsapi/support.ts';
import { startApiServer, type TestApiServer } from './apiserver.ts';

/**
 * A real apiserver with both faces (the resource API and the ECS API), a policy file, and
 * the identities the authorization suites ask with: an admin, a viewer, `alice` (a user in
 * no built-in group whose only policy allows ecs:RunTask on cluster A), the nodes of two
 * container instances of cluster A, anyone (no credential) and a stranger (a token or key
 * the server does not know). Clusters A and B exist; instances ci-a and ci-b (registered
 * by the bootstrap token, so they hold node credentials) serve cluster A and ci-z cluster
 * B; task ta is bound to ci-a and tb to ci-b; task definition web:1 and service svc exist.
 */

export const ARN = 'arn:aws:ecs:us-east-1:000000000000';
export const V = '/apis/berth.dev/v1';
export const ns = (c: string) => `${V}/namespaces/${c}`;
export const TARGET = 'AmazonEC2ContainerServiceV20141113.';

export type Who = 'admin' | 'viewer' | 'alice' | 'nodeA' | 'nodeB' | 'anonymous' | 'stranger';
export const EVERYONE: Who[] = ['admin', 'viewer', 'alice', 'nodeA', 'nodeB', 'anonymous', 'stranger'];

/** alice's policy: the ECS Developer Guide's "run tasks on one cluster", for any task definition */
export const RUN_IN_A = {
  Version: '2012-10-17',
  Statement: [
    {
      Sid: 'RunInA',
      Effect: 'Allow',
      Action: ['ecs:RunTask'],
      Condition: { ArnEquals: { 'ecs:cluster': `${ARN}:cluster/A` } },
      Resource: [`${ARN}:task-definition/*`],
    },
  ],
};

export interface PolicyDoc {
  policies: Record<string, unknown>;
  users?: Record<string, string[]>;
  groups?: Record<string, string[]>;
}

export const defaultPolicies = (): PolicyDoc => ({ policies: { RunInA: RUN_IN_A }, users: { alice: ['RunInA'] } });

export const resources = (cpu = 4096, memory = 8192) => [
  { name: 'CPU', type: 'INTEGER', integerValue: cpu },
  { name: 'MEMORY', type: 'INTEGER', integerValue: memory },
];

export interface Reply {
  status: number;
  body: any;
  headers: Headers;
}

export interface AuthzServer {
  api: TestApiServer;
  policyFile: string;
  auditLog: string;
  dir: string;
  tokens: Record<Who, string | undefined>;
  keys: Record<'admin' | 'viewer' | 'alice', AccessKey>;
  /** a resource-API request as `who` (bearer token; none for anonymous) */
  k8s(who: Who, method: string, path: string, body?: unknown, o?: { contentType?: string; token?: string; headers?: Record<string, string> }): Promise<Reply>;
  /** an ECS request as `who` (SigV4 with its key; nodes send their bearer token, which the ECS face does not take) */
  ecs(who: Who, op: string, input: unknown, o?: { key?: AccessKey }): Promise<Reply>;
  /** rewrites the policy file (the server re-reads it) */
  writePolicies(doc: PolicyDoc | string): Promise<void>;
  stop(): Promise<void>;
}

export async function startAuthzServer(
  o: { store?: 'embedded' | 'etcd'; policies?: PolicyDoc; extraTokens?: TokenEntry[]; extraKeys?: AccessKey[] } = {},
): Promise<AuthzServer> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-authz-'));
  const policyFile = join(dir, 'policies.json');
  const auditLog = join(dir, 'audit.log');
  await writeFile(policyFile, JSON.stringify(o.policies ?? defaultPolicies(), null, 2));
  const aliceToken = newToken();
  const keys = { admin: newKey('admin', ['berth:admins']), viewer: newKey('viewer', ['berth:viewers']), alice: newKey('alice', []) };
  const api = await startApiServer({
    store: o.store,
    tokens: [{ token: aliceToken, user: 'alice', uid: '10', groups: [] }, ...(o.extraTokens ?? [])],
    policyFile,
    policyFileIntervalMs: 100,
    auditLog,
    frontDoors: (parts) => [ecsFrontDoor(parts, { keys: [keys.admin, keys.viewer, keys.alice, ...(o.extraKeys ?? [])], region: 'us-east-1' })],
  });
  const tokens: Record<Who, string | undefined> = {
    admin: api.adminToken,
    viewer: api.viewerToken,
    alice: aliceToken,
    nodeA: undefined,
    nodeB: undefined,
    anonymous: undefined,
    stranger: newToken(),
  };
  const k8s: AuthzServer['k8s'] = async (who, method, path, body, ro = {}) => {
    const token = ro.token ?? tokens[who];
    const res = await fetch(api.url + path, {
      method,
      headers: {
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'Content-Type': ro.contentType ?? 'application/json' } : {}),
        ...ro.headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, body: await parsed(res) };
  };
  const url = new URL(api.url);
  const ecs: AuthzServer['ecs'] = async (who, op, input, eo = {}) => {
    const body = JSON.stringify(input);
    let headers: Record<string, string> = {
      host: url.host,
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': `${TARGET}${op}`,
      'user-agent': 'berth-authz-test',
    };
    const key =
      eo.key ?? (who === 'admin' || who === 'viewer' || who === 'alice' ? keys[who] : who === 'stranger' ? newKey('stranger', ['berth:admins']) : undefined);
    if (key) {
      const signed = await sdkSigner(key, 'us-east-1').sign({
        method: 'POST',
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: '/',
        query: {},
        headers,
        body,
      });
      headers = signed.headers as Record<string, string>;
    } else if (tokens[who]) headers.authorization = `Bearer ${tokens[who]}`;
    const { host: _h, ...sendable } = headers;
    void _h;
    const res = await fetch(api.url + '/', { method: 'POST', headers: sendable, body });
    return { status: res.status, headers: res.headers, body: await parsed(res) };
  };
  const admin = (method: string, path: string, body?: unknown, contentType?: string) => k8s('admin', method, path, body, { contentType });
  const must = async (p: Promise<Reply>, what: string, codes = [200, 201]) => {
    const r = await p;
    if (!codes.includes(r.status)) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
    return r;
  };
  try {
    for (const c of ['A', 'B'])
      await must(admin('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: c } }), `cluster ${c}`);
    await must(
      admin('POST', `${V}/taskdefinitions`, {
        apiVersion: 'berth.dev/v1',
        kind: 'TaskDefinition',
        metadata: { name: 'web' },
        spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] },
      }),
      'task definition web',
    );
    const register = async (cluster: string, name: string, token: string) =>
      (
        await must(
          k8s(
            'admin',
            'POST',
            `${ns(cluster)}/containerinstances`,
            { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name }, spec: { registeredResources: resources() } },
            { token },
          ),
          `instance ${name}`,
        )
      ).body;
    tokens.nodeA = (await register('A', 'ci-a', api.bootstrapToken)).metadata.annotations['berth.dev/node-token'];
    tokens.nodeB = (await register('A', 'ci-b', api.bootstrapToken)).metadata.annotations['berth.dev/node-token'];
    await register('B', 'ci-z', api.adminToken);
    for (const t of ['ta', 'tb'])
      await must(
        admin('POST', `${ns('A')}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: t }, spec: { taskDefinition: 'web' } }),
        `task ${t}`,
      );
    const bound = await must(
      admin('POST', `${ns('A')}/bindings`, {
        bindings: [
          { task: 'ta', containerInstance: 'ci-a' },
          { task: 'tb', containerInstance: 'ci-b' },
        ],
      }),
      'bindings',
    );
    if (!bound.body.results.every((r: { bound: boolean }) => r.bound)) throw new Error(`bindings: ${JSON.stringify(bound.body)}`);
    await must(
      admin('POST', `${ns('A')}/services`, {
        apiVersion: 'berth.dev/v1',
        kind: 'Service',
        metadata: { name: 'svc' },
        spec: { taskDefinition: 'web', desiredCount: 0 },
      }),
      'service svc',
    );
  } catch (e) {
    await api.stop();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    api,
    policyFile,
    auditLog,
    dir,
    tokens,
    keys,
    k8s,
    ecs,
    async writePolicies(doc) {
      // written beside and renamed into place, as an editor or a config tool does
      const tmp = `${policyFile}.tmp`;
      await writeFile(tmp, typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2));
      const { rename } = await import('node:fs/promises');
      await rename(tmp, policyFile);
    },
    async stop() {
      await api.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function parsed(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
