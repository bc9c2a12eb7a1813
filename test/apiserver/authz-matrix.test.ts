import { expect } from 'chai';
import { ARN, EVERYONE, RUN_IN_A, V, ns, startAuthzServer, type AuthzServer, type Reply, type Who } from '../support/authz.ts';
import { eventually } from '../support/fleet.ts';

/**
 * The authorization matrix: every identity against operations of both faces, every cell
 * asserted (status code and error type). Identities: an admin, a viewer, `alice` (no
 * built-in group; one policy allowing ecs:RunTask on cluster A), the node of instance ci-a,
 * the node of instance ci-b (both of cluster A), anyone without a credential, and a stranger
 * with a token or key the server does not know. Task ta is bound to ci-a, tb to ci-b.
 *
 * Expected codes: a number is the resource API's HTTP code (its Status reason is checked
 * too); on the ECS face `ok` is 200, the rest are AWS's error types.
 */

type K8sCode = 200 | 201 | 401 | 403 | 503;
type EcsCode = 'ok' | 'AccessDenied' | 'Missing' | 'Incomplete' | 'Unrecognized';

const REASON: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 503: 'ServiceUnavailable' };
const ECS_TYPE: Record<Exclude<EcsCode, 'ok'>, [number, string]> = {
  AccessDenied: [403, 'AccessDeniedException'],
  Missing: [400, 'MissingAuthenticationTokenException'],
  Incomplete: [400, 'IncompleteSignatureException'],
  Unrecognized: [400, 'UnrecognizedClientException'],
};

interface K8sRow {
  name: string;
  /** the request (names unique per identity so that cells do not interfere) */
  req(who: Who, s: AuthzServer): Promise<{ method: string; path: string; body?: unknown; contentType?: string; watch?: boolean }>;
  expect: Record<Who, K8sCode>;
}

interface EcsRow {
  name: string;
  req(who: Who, s: AuthzServer): Promise<{ op: string; input: unknown }>;
  /** admin, viewer and alice (nodes, anyone and the stranger get what the ECS face says to an unsigned or unknown caller) */
  expect: Record<'admin' | 'viewer' | 'alice', EcsCode>;
}

const task = (name: string, td = 'web') => ({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name }, spec: { taskDefinition: td } });
const cluster = (name: string) => ({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name } });
const service = (name: string) => ({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name }, spec: { taskDefinition: 'web', desiredCount: 0 } });
const merge = 'application/merge-patch+json';
const lower = (w: Who) => w.toLowerCase();

/** what an admin makes before a cell that changes or removes it */
async function made(s: AuthzServer, path: string, body: unknown): Promise<void> {
  const r = await s.k8s('admin', 'POST', path, body);
  if (r.status !== 201) throw new Error(`preparing ${path}: ${r.status} ${JSON.stringify(r.body)}`);
}

const K8S: K8sRow[] = [
  {
    name: 'list clusters',
    req: async () => ({ method: 'GET', path: `${V}/clusters` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'get cluster A',
    req: async () => ({ method: 'GET', path: `${V}/clusters/A` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 200, nodeB: 200, anonymous: 401, stranger: 401 },
  },
  {
    name: 'create a cluster',
    req: async (w) => ({ method: 'POST', path: `${V}/clusters`, body: cluster(`new-${lower(w)}`) }),
    expect: { admin: 201, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'delete a cluster',
    req: async (w, s) => {
      await made(s, `${V}/clusters`, cluster(`gone-${lower(w)}`));
      return { method: 'DELETE', path: `${V}/clusters/gone-${lower(w)}` };
    },
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'get task ta (bound to ci-a)',
    req: async () => ({ method: 'GET', path: `${ns('A')}/tasks/ta` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'list the tasks of cluster A',
    req: async () => ({ method: 'GET', path: `${ns('A')}/tasks` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'list the tasks of ci-a (field selector)',
    req: async () => ({ method: 'GET', path: `${ns('A')}/tasks?fieldSelector=spec.containerInstance%3Dci-a` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'watch the tasks of ci-a',
    req: async () => ({ method: 'GET', path: `${ns('A')}/tasks?watch=1&fieldSelector=spec.containerInstance%3Dci-a`, watch: true }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'create a task in A (RunTask)',
    req: async (w) => ({ method: 'POST', path: `${ns('A')}/tasks`, body: task(`run-a-${lower(w)}`) }),
    expect: { admin: 201, viewer: 403, alice: 201, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'create a task in B',
    req: async (w) => ({ method: 'POST', path: `${ns('B')}/tasks`, body: task(`run-b-${lower(w)}`) }),
    expect: { admin: 201, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'stop a task (patch its spec)',
    req: async (w, s) => {
      await made(s, `${ns('A')}/tasks`, task(`stop-${lower(w)}`));
      return { method: 'PATCH', path: `${ns('A')}/tasks/stop-${lower(w)}`, body: { spec: { desiredStatus: 'STOPPED' } }, contentType: merge };
    },
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'patch the status of ta',
    req: async () => ({ method: 'PATCH', path: `${ns('A')}/tasks/ta/status`, body: { status: { lastStatus: 'RUNNING' } }, contentType: merge }),
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'delete a task',
    req: async (w, s) => {
      await made(s, `${ns('A')}/tasks`, task(`del-${lower(w)}`));
      return { method: 'DELETE', path: `${ns('A')}/tasks/del-${lower(w)}` };
    },
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'read the logs of ta (no agent serves them: 503 once authorized; a node reads no logs through the apiserver)',
    req: async () => ({ method: 'GET', path: `${ns('A')}/tasks/ta/log` }),
    expect: { admin: 503, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'get instance ci-a',
    req: async () => ({ method: 'GET', path: `${ns('A')}/containerinstances/ci-a` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'heartbeat of ci-a (patch its status)',
    req: async () => ({ method: 'PATCH', path: `${ns('A')}/containerinstances/ci-a/status`, body: { status: { agentConnected: true } }, contentType: merge }),
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: "renew ci-a's instance lease (its heartbeat)",
    req: async (w, s) => {
      const lease = { apiVersion: 'berth.dev/v1', kind: 'InstanceLease', metadata: { name: 'ci-a' }, spec: { holderIdentity: 'ci-a', renewTime: new Date().toISOString(), leaseDurationSeconds: 40 } };
      const r = await s.k8s('admin', 'POST', `${ns('A')}/instanceleases`, lease);
      if (r.status !== 201 && r.status !== 409) throw new Error(`preparing the lease: ${r.status} ${JSON.stringify(r.body)}`);
      return { method: 'PATCH', path: `${ns('A')}/instanceleases/ci-a`, body: { spec: { renewTime: new Date(Date.now() + 1000).toISOString() } }, contentType: merge };
    },
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: "read ci-a's instance lease",
    req: async () => ({ method: 'GET', path: `${ns('A')}/instanceleases/ci-a` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 200, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'list the instance leases of A',
    req: async () => ({ method: 'GET', path: `${ns('A')}/instanceleases` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'set the state of ci-a (patch its spec)',
    req: async () => ({ method: 'PATCH', path: `${ns('A')}/containerinstances/ci-a`, body: { spec: { status: 'ACTIVE' } }, contentType: merge }),
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'register an instance in A',
    req: async (w) => ({
      method: 'POST',
      path: `${ns('A')}/containerinstances`,
      body: {
        apiVersion: 'berth.dev/v1',
        kind: 'ContainerInstance',
        metadata: { name: `reg-${lower(w)}` },
        spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1 }] },
      },
    }),
    expect: { admin: 201, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'register a task definition',
    req: async (w) => ({
      method: 'POST',
      path: `${V}/taskdefinitions`,
      body: {
        apiVersion: 'berth.dev/v1',
        kind: 'TaskDefinition',
        metadata: { name: `td-${lower(w)}` },
        spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] },
      },
    }),
    expect: { admin: 201, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'get task definition web:1 (what ta and tb run)',
    req: async () => ({ method: 'GET', path: `${V}/taskdefinitions/web:1` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 200, nodeB: 200, anonymous: 401, stranger: 401 },
  },
  {
    name: 'list task definitions',
    req: async () => ({ method: 'GET', path: `${V}/taskdefinitions` }),
    expect: { admin: 200, viewer: 200, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'create a service in A',
    req: async (w) => ({ method: 'POST', path: `${ns('A')}/services`, body: service(`svc-${lower(w)}`) }),
    expect: { admin: 201, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'update service svc (patch)',
    req: async () => ({ method: 'PATCH', path: `${ns('A')}/services/svc`, body: { spec: { desiredCount: 0 } }, contentType: merge }),
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'delete a service',
    req: async (w, s) => {
      await made(s, `${ns('A')}/services`, service(`del-${lower(w)}`));
      return { method: 'DELETE', path: `${ns('A')}/services/del-${lower(w)}` };
    },
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
  {
    name: 'bind a task to ci-a (the placement call)',
    req: async (w, s) => {
      await made(s, `${ns('A')}/tasks`, task(`bind-${lower(w)}`));
      return { method: 'POST', path: `${ns('A')}/bindings`, body: { bindings: [{ task: `bind-${lower(w)}`, containerInstance: 'ci-a' }] } };
    },
    expect: { admin: 200, viewer: 403, alice: 403, nodeA: 403, nodeB: 403, anonymous: 401, stranger: 401 },
  },
];

const ECS: EcsRow[] = [
  { name: 'ListClusters', req: async () => ({ op: 'ListClusters', input: {} }), expect: { admin: 'ok', viewer: 'ok', alice: 'AccessDenied' } },
  {
    name: 'DescribeClusters A',
    req: async () => ({ op: 'DescribeClusters', input: { clusters: ['A'] } }),
    expect: { admin: 'ok', viewer: 'ok', alice: 'AccessDenied' },
  },
  {
    name: 'CreateCluster',
    req: async (w) => ({ op: 'CreateCluster', input: { clusterName: `ecs-${lower(w)}` } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'RegisterTaskDefinition',
    req: async (w) => ({
      op: 'RegisterTaskDefinition',
      input: { family: `ecs-${lower(w)}`, containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] },
    }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'DescribeTaskDefinition web',
    req: async () => ({ op: 'DescribeTaskDefinition', input: { taskDefinition: 'web' } }),
    expect: { admin: 'ok', viewer: 'ok', alice: 'AccessDenied' },
  },
  {
    name: 'RunTask in A',
    req: async () => ({ op: 'RunTask', input: { cluster: 'A', taskDefinition: 'web' } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'ok' },
  },
  {
    name: 'RunTask in A by ARN',
    req: async () => ({ op: 'RunTask', input: { cluster: `${ARN}:cluster/A`, taskDefinition: `${ARN}:task-definition/web:1` } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'ok' },
  },
  {
    name: 'RunTask in B',
    req: async () => ({ op: 'RunTask', input: { cluster: 'B', taskDefinition: 'web' } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'StartTask in A on ci-a',
    req: async () => ({ op: 'StartTask', input: { cluster: 'A', taskDefinition: 'web', containerInstances: ['ci-a'] } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'DescribeTasks ta',
    req: async () => ({ op: 'DescribeTasks', input: { cluster: 'A', tasks: ['ta'] } }),
    expect: { admin: 'ok', viewer: 'ok', alice: 'AccessDenied' },
  },
  { name: 'ListTasks A', req: async () => ({ op: 'ListTasks', input: { cluster: 'A' } }), expect: { admin: 'ok', viewer: 'ok', alice: 'AccessDenied' } },
  {
    name: 'StopTask',
    req: async (w, s) => {
      await made(s, `${ns('A')}/tasks`, task(`ecs-stop-${lower(w)}`));
      return { op: 'StopTask', input: { cluster: 'A', task: `ecs-stop-${lower(w)}` } };
    },
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'CreateService in A',
    req: async (w) => ({ op: 'CreateService', input: { cluster: 'A', serviceName: `ecs-${lower(w)}`, taskDefinition: 'web', desiredCount: 0 } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'UpdateService svc',
    req: async () => ({ op: 'UpdateService', input: { cluster: 'A', service: 'svc', desiredCount: 0 } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'DescribeServices svc',
    req: async () => ({ op: 'DescribeServices', input: { cluster: 'A', services: ['svc'] } }),
    expect: { admin: 'ok', viewer: 'ok', alice: 'AccessDenied' },
  },
  {
    name: 'DeleteService',
    req: async (w, s) => {
      await made(s, `${ns('A')}/services`, service(`ecs-del-${lower(w)}`));
      return { op: 'DeleteService', input: { cluster: 'A', service: `ecs-del-${lower(w)}` } };
    },
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
  {
    name: 'DescribeContainerInstances ci-a',
    req: async () => ({ op: 'DescribeContainerInstances', input: { cluster: 'A', containerInstances: ['ci-a'] } }),
    expect: { admin: 'ok', viewer: 'ok', alice: 'AccessDenied' },
  },
  {
    name: 'TagResource cluster A',
    req: async () => ({ op: 'TagResource', input: { resourceArn: `${ARN}:cluster/A`, tags: [{ key: 'k', value: 'v' }] } }),
    expect: { admin: 'ok', viewer: 'AccessDenied', alice: 'AccessDenied' },
  },
];

/** What the ECS face answers callers it cannot authenticate (nodes have no access keys). */
const UNSIGNED: Record<'nodeA' | 'nodeB' | 'anonymous' | 'stranger', EcsCode> = {
  nodeA: 'Incomplete',
  nodeB: 'Incomplete',
  anonymous: 'Missing',
  stranger: 'Unrecognized',
};

async function k8sCell(s: AuthzServer, who: Who, r: Awaited<ReturnType<K8sRow['req']>>): Promise<Reply> {
  if (!r.watch) return s.k8s(who, r.method, r.path, r.body, { contentType: r.contentType });
  // a watch: its status line, then hang up
  const ac = new AbortController();
  const token = s.tokens[who];
  const res = await fetch(s.api.url + r.path, { headers: token ? { Authorization: `Bearer ${token}` } : {}, signal: ac.signal });
  const body = res.status === 200 ? undefined : await res.json();
  ac.abort();
  return { status: res.status, headers: res.headers, body };
}

for (const store of ['embedded', 'etcd'] as const) {
  describe(`authorization matrix: identities x operations on both faces (${store} store)`, function () {
    this.timeout(120_000);
    let s: AuthzServer;
    before(async () => {
      s = await startAuthzServer({ store });
    });
    after(async () => s?.stop());

    describe('resource API', () => {
      for (const row of K8S) {
        for (const who of EVERYONE) {
          const want = row.expect[who];
          it(`${row.name}: ${who} -> ${want}`, async () => {
            const r = await k8sCell(s, who, await row.req(who, s));
            expect(r.status, JSON.stringify(r.body)).to.equal(want);
            if (want >= 400) {
              expect(r.body.kind).to.equal('Status');
              expect(r.body.reason).to.equal(REASON[want]);
            }
          });
        }
      }
    });

    describe('ECS API', () => {
      for (const row of ECS) {
        for (const who of EVERYONE) {
          const want = who === 'admin' || who === 'viewer' || who === 'alice' ? row.expect[who] : UNSIGNED[who];
          it(`${row.name}: ${who} -> ${want}`, async () => {
            const { op, input } = await row.req(who, s);
            const r = await s.ecs(who, op, input);
            if (want === 'ok') {
              expect(r.status, JSON.stringify(r.body)).to.equal(200);
              expect(r.body.__type).to.equal(undefined);
            } else {
              expect([r.status, r.body.__type], JSON.stringify(r.body)).to.deep.equal(ECS_TYPE[want]);
            }
          });
        }
      }
    });

    describe('what the cells did', () => {
      it("alice's RunTask on A started a task bound to an instance of A; her other attempts changed nothing", async () => {
        const r = await s.ecs('alice', 'RunTask', { cluster: 'A', taskDefinition: 'web', startedBy: 'alice-check' });
        expect(r.status, JSON.stringify(r.body)).to.equal(200);
        expect(r.body.tasks).to.have.length(1);
        const arn: string = r.body.tasks[0].taskArn;
        const id = arn.split('/').pop();
        const stored = await s.k8s('admin', 'GET', `${ns('A')}/tasks/${id}`);
        expect(stored.status).to.equal(200);
        expect(['ci-a', 'ci-b']).to.include(stored.body.spec.containerInstance);
        expect(stored.body.spec.startedBy).to.equal('alice-check');
        // what she was refused does not exist
        for (const path of [`${ns('B')}/tasks/run-b-alice`, `${V}/clusters/new-alice`, `${ns('A')}/services/svc-alice`, `${V}/taskdefinitions/td-alice:1`]) {
          expect((await s.k8s('admin', 'GET', path)).status, path).to.equal(404);
        }
        expect((await s.k8s('admin', 'GET', `${ns('A')}/tasks/stop-alice`)).body.spec.desiredStatus).to.not.equal('STOPPED');
      });

      it('words denials as Kubernetes does on the resource API and as AWS does on the ECS face', async () => {
        const k = await s.k8s('alice', 'POST', `${ns('B')}/tasks`, task('worded'));
        expect(k.body.message).to.equal(
          'tasks.berth.dev is forbidden: User "alice" cannot create resource "tasks" in API group "berth.dev" in the namespace "B": no rule allows it; ' +
            `no identity-based policy allows ecs:RunTask on ${ARN}:task-definition/web:1`,
        );
        expect(k.body.details).to.deep.equal({ kind: 'tasks', group: 'berth.dev' });
        const g = await s.k8s('alice', 'GET', `${ns('A')}/tasks/ta`);
        expect(g.body.message).to.match(
          /^tasks\.berth\.dev "ta" is forbidden: User "alice" cannot get resource "tasks" in API group "berth\.dev" in the namespace "A": /,
        );
        const st = await s.k8s('nodeB', 'PATCH', `${ns('A')}/tasks/ta/status`, { status: {} }, { contentType: merge });
        expect(st.body.message).to.match(
          /^tasks\.berth\.dev "ta" is forbidden: User "system:node:A:ci-b" cannot patch resource "tasks\/status" in API group "berth\.dev" in the namespace "A": /,
        );
        const c = await s.k8s('alice', 'GET', `${V}/clusters`);
        expect(c.body.message).to.match(
          /^clusters\.berth\.dev is forbidden: User "alice" cannot list resource "clusters" in API group "berth\.dev" at the cluster scope: /,
        );
        const e = await s.ecs('alice', 'RunTask', { cluster: 'B', taskDefinition: 'web' });
        expect(e.body.message).to.equal(
          `User: arn:aws:iam::000000000000:user/alice is not authorized to perform: ecs:RunTask on resource: ${ARN}:task-definition/web:1 because no identity-based policy allows the ecs:RunTask action`,
        );
      });
    });

    describe('an expired bootstrap token', () => {
      // scoped to cluster A, one second to live: once it has expired, every row answers 401
      let expired: string;
      before(async function () {
        const r = await s.k8s('admin', 'POST', `${V}/bootstraptokens`, { cluster: 'A', ttlSeconds: 1 });
        expect(r.status, JSON.stringify(r.body)).to.equal(201);
        expired = r.body.status.token;
        // before it expires it may register in A: the 401s below are the expiry's doing
        const ok = await s.k8s('anonymous', 'GET', `${V}/clusters/A`, undefined, { headers: { Authorization: `Bearer ${expired}` } });
        expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
        await new Promise((r) => setTimeout(r, 1500));
      });
      for (const row of K8S) {
        it(`${row.name}: expired bootstrap token -> 401`, async () => {
          const req = await row.req('expired' as Who, s); // its own objects to act on, beside the other identities'
          const r = await s.k8s('anonymous', req.method, req.path, req.body, { contentType: req.contentType, headers: { Authorization: `Bearer ${expired}` } });
          expect(r.status, JSON.stringify(r.body)).to.equal(401);
          expect(r.body.reason).to.equal('Unauthorized');
        });
      }
    });
  });
}

describe('policies beside the built-in groups: explicit Deny, admins, reload', function () {
  this.timeout(60_000);
  let s: AuthzServer;
  const audited = { token: 'auditor-token-0123456789abcdef', user: 'auditor', uid: '20', groups: ['berth:viewers', 'auditors'] };
  const rooted = { token: 'root-token-0123456789abcdefgh', user: 'root', uid: '21', groups: ['berth:admins', 'auditors'] };
  const auditorKey = { accessKeyId: 'AKIAAUDITOR0000000', secretAccessKey: 'auditor-secret', user: 'auditor', groups: ['berth:viewers', 'auditors'] };
  const NO_B = {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'NotB', Effect: 'Deny', Action: ['ecs:Describe*', 'ecs:List*'], Resource: '*', Condition: { ArnEquals: { 'ecs:cluster': `${ARN}:cluster/B` } } },
    ],
  };
  before(async () => {
    s = await startAuthzServer({
      policies: { policies: { RunInA: RUN_IN_A, NoB: NO_B }, users: { alice: ['RunInA'] }, groups: { auditors: ['NoB'] } },
      extraTokens: [audited, rooted],
      extraKeys: [auditorKey],
    });
  });
  after(async () => s?.stop());

  it("an explicit Deny overrides a built-in group's Allow (a viewer denied cluster B), on both faces", async () => {
    const tok = { token: audited.token };
    expect((await s.k8s('anonymous', 'GET', `${ns('A')}/tasks/ta`, undefined, tok)).status).to.equal(200);
    const denied = await s.k8s('anonymous', 'GET', `${ns('B')}/tasks`, undefined, tok);
    expect(denied.status).to.equal(403);
    expect(denied.body.message).to.contain('explicitly denied by policy "NoB" Statement[0] (Sid "NotB")');
    // what the Deny does not name stays allowed by the group
    expect((await s.k8s('anonymous', 'GET', `${V}/clusters/B`, undefined, tok)).status).to.equal(200);
    const e = await s.ecs('viewer', 'ListTasks', { cluster: 'B' }, { key: auditorKey });
    expect([e.status, e.body.__type]).to.deep.equal([403, 'AccessDeniedException']);
    expect(e.body.message).to.equal(
      'User: arn:aws:iam::000000000000:user/auditor is not authorized to perform: ecs:ListTasks on resource: * with an explicit deny in an identity-based policy',
    );
    expect((await s.ecs('viewer', 'ListTasks', { cluster: 'A' }, { key: auditorKey })).status).to.equal(200);
    expect((await s.ecs('viewer', 'DescribeClusters', { clusters: ['B'] }, { key: auditorKey })).status).to.equal(200);
  });

  it('admins are the root account: a Deny attached to them does not restrict them', async () => {
    const r = await s.k8s('anonymous', 'GET', `${ns('B')}/tasks`, undefined, { token: rooted.token });
    expect(r.status).to.equal(200);
  });

  it('re-reads the policy file when it changes; a broken new version keeps the policies in force', async () => {
    const runB = { cluster: 'B', taskDefinition: 'web' };
    expect((await s.ecs('alice', 'RunTask', runB)).body.__type).to.equal('AccessDeniedException');
    const anywhere = { ...RUN_IN_A, Statement: [{ ...RUN_IN_A.Statement[0], Condition: { ArnLike: { 'ecs:cluster': `${ARN}:cluster/*` } } }] };
    await s.writePolicies({ policies: { RunInA: anywhere, NoB: NO_B }, users: { alice: ['RunInA'] }, groups: { auditors: ['NoB'] } });
    await eventually(async () => (await s.ecs('alice', 'RunTask', runB)).status === 200, 20_000, 'the new policy in force');
    // a broken file: refused, the last good policies stay (alice may still run in B)
    await s.writePolicies('{"policies": {"RunInA": {"Statement": [{"Effect": "allow"}]}}');
    await new Promise((r) => setTimeout(r, 600));
    expect((await s.ecs('alice', 'RunTask', runB)).status).to.equal(200);
    // and a good one after it is taken
    await s.writePolicies({ policies: { RunInA: RUN_IN_A, NoB: NO_B }, users: { alice: ['RunInA'] }, groups: { auditors: ['NoB'] } });
    await eventually(async () => (await s.ecs('alice', 'RunTask', runB)).body.__type === 'AccessDeniedException', 20_000, 'the narrower policy in force again');
  });
});

describe('a create that may not be made is refused before its body is judged', function () {
  this.timeout(60_000);
  let s: AuthzServer;
  before(async () => {
    s = await startAuthzServer();
  });
  after(async () => s?.stop());

  it('a viewer posting a broken body gets 403, an admin 400', async () => {
    for (const body of ['{"apiVersion":', '[1, 2]', '']) {
      const viewer = await s.k8s('viewer', 'POST', `${V}/clusters`, body);
      expect([viewer.status, viewer.body.reason], `viewer: ${body}`).to.deep.equal([403, 'Forbidden']);
      const admin = await s.k8s('admin', 'POST', `${V}/clusters`, body);
      expect([admin.status, admin.body.reason], `admin: ${body}`).to.deep.equal([400, 'BadRequest']);
    }
  });
});
