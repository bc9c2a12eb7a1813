import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Agent } from '../../pkg/agent/agent.ts';
import { loadAgentConfig } from '../../pkg/agent/config.ts';
import { HollowRuntime } from '../../pkg/agent/runtime/hollow.ts';
import { newToken } from '../../pkg/apiserver/auth.ts';
import { Client } from '../../pkg/client/client.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;
const merge = { contentType: 'application/merge-patch+json' };
const jsonPatchType = { contentType: 'application/json-patch+json' };
const obj = (kind: string, name: string, spec: unknown, meta: Record<string, unknown> = {}) => ({ apiVersion: 'berth.dev/v1', kind, metadata: { name, ...meta }, spec });
const instance = (name: string, cpu = 2048) => obj('ContainerInstance', name, { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: cpu }, { name: 'MEMORY', type: 'INTEGER', integerValue: 2048 }] });

/** a little HTTP server standing for something internal the apiserver must never fetch for a node */
async function internalServer(handler: (url: string, res: import('node:http').ServerResponse) => void): Promise<{ port: number; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const srv: Server = createServer((q, s) => {
    hits.push(q.url ?? '');
    handler(q.url ?? '', s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as { port: number }).port,
    hits,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

const metricsToken = newToken();

for (const store of ['embedded', 'etcd'] as const) {
  describe(`security findings through the real apiserver (${store} store)`, function () {
    this.timeout(90_000);
    let s: TestApiServer;
    let na: string;
    let nb: string;
    const register = async (name: string, token = s.bootstrapToken, cluster = 'default') => {
      const r = await s.call('POST', `${V}/namespaces/${cluster}/containerinstances`, instance(name), { token });
      return r;
    };
    before(async () => {
      s = await startApiServer({ store, tokens: [{ token: metricsToken, user: 'prometheus', uid: '9', groups: ['berth:metrics'] }], build: { logsProxy: { connectTimeoutMs: 1000, idleTimeoutMs: 2000 } } });
      expect((await s.call('POST', `${V}/clusters`, obj('Cluster', 'other', undefined))).status).to.equal(201);
      expect((await s.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'sec', { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] }))).status).to.equal(201);
      for (const t of ['ta', 'tb', 'tb2']) expect((await s.call('POST', `${NS}/tasks`, obj('Task', t, { taskDefinition: 'sec' }))).status).to.equal(201);
      const env = { containerOverrides: [{ name: 'c', environment: [{ name: 'DB_PASSWORD', value: 's3cret' }] }] };
      expect((await s.call('POST', `${V}/namespaces/other/tasks`, obj('Task', 'tother', { taskDefinition: 'sec', overrides: env }))).status).to.equal(201);
      na = (await register('na')).body.metadata.annotations['berth.dev/node-token'];
      nb = (await register('nb')).body.metadata.annotations['berth.dev/node-token'];
      const bind = await s.call('POST', `${NS}/bindings`, { bindings: [{ task: 'ta', containerInstance: 'na' }, { task: 'tb', containerInstance: 'nb' }, { task: 'tb2', containerInstance: 'nb' }] });
      expect(bind.body.results.every((r: { bound: boolean }) => r.bound)).to.equal(true);
    });
    after(async () => {
      for (const k of ['x', 'deletionTimestamp']) delete (Object.prototype as Record<string, unknown>)[k];
      await s?.stop();
    });

    it('S1: a node\'s JSON patch of /__proto__/x on its own status is refused, pollutes nothing, and writes keep working', async () => {
      for (const path of ['/__proto__/x', '/__proto__/deletionTimestamp', '/status/constructor/prototype/x']) {
        const r = await s.call('PATCH', `${NS}/containerinstances/na/status`, [{ op: 'add', path, value: 'y' }], { token: na, ...jsonPatchType });
        expect(r.status, path).to.be.within(400, 499);
        expect(({} as Record<string, unknown>).x, path).to.equal(undefined);
        expect(({} as Record<string, unknown>).deletionTimestamp, path).to.equal(undefined);
        expect(r.status, path).to.equal(400);
        expect(r.body.message).to.contain('patch[0].path').and.contain(path);
      }
      // merge patches and bodies with such keys: refused before anything is applied
      const raw = await s.call('PATCH', `${NS}/containerinstances/na/status`, undefined, { token: na, ...merge, raw: '{"status":{"__proto__":{"x":"y"}}}' });
      expect(raw.status).to.equal(400);
      expect(raw.body.message).to.contain('"__proto__" at status.__proto__');
      const body = await s.call('POST', `${V}/clusters`, undefined, { raw: '{"apiVersion":"berth.dev/v1","kind":"Cluster","metadata":{"name":"p1","__proto__":{"deletionTimestamp":"x"}}}' });
      expect(body.status).to.equal(400);
      expect(({} as Record<string, unknown>).x).to.equal(undefined);
      // the probe's outage: after it, every create failed with 422 "unknown field x"
      const after = await s.call('POST', `${V}/clusters`, obj('Cluster', 'afterpollution', undefined));
      expect(after.status, JSON.stringify(after.body)).to.equal(201);
      const hb = await s.call('PATCH', `${NS}/containerinstances/na/status`, { status: { lastHeartbeat: new Date().toISOString() } }, { token: na, ...merge });
      expect(hb.status).to.equal(200);
      expect((await s.call('GET', '/readyz', undefined, { token: '' })).status).to.equal(200);
    });

    it('S2: the field-selector bypass is refused on the namespaced and the cluster-wide path, for lists and watches', async () => {
      const sel = encodeURIComponent('metadata.name!=(,spec.containerInstance=na,)');
      for (const path of [`${NS}/tasks?fieldSelector=${sel}`, `${V}/tasks?fieldSelector=${sel}`, `${NS}/tasks?watch=1&fieldSelector=${sel}`, `${V}/tasks?watch=1&fieldSelector=${sel}`]) {
        const r = await s.call('GET', path, undefined, { token: na });
        expect(r.status, `${path}: ${JSON.stringify(r.body).slice(0, 200)}`).to.equal(403);
        expect(r.body.reason).to.equal('Forbidden');
        expect(JSON.stringify(r.body)).not.to.contain('s3cret');
        expect(JSON.stringify(r.body)).not.to.contain('"tb"');
      }
      // what parses but does not pin the list to the node: 403
      const own = encodeURIComponent('spec.containerInstance=na');
      for (const q of ['spec.containerInstance=na,spec.containerInstance!=nb', 'spec.containerInstance!=nb', 'metadata.name=ta']) {
        const r = await s.call('GET', `${NS}/tasks?fieldSelector=${encodeURIComponent(q)}`, undefined, { token: na });
        expect(r.status, q).to.equal(403);
      }
      const wide = await s.call('GET', `${V}/tasks?fieldSelector=${own}`, undefined, { token: na });
      expect(wide.status).to.equal(403);
      expect(wide.body.message).to.contain('only in its cluster');
      const mine = await s.call('GET', `${NS}/tasks?fieldSelector=${own}`, undefined, { token: na });
      expect(mine.status).to.equal(200);
      expect(mine.body.items.map((t: { metadata: { name: string } }) => t.metadata.name)).to.deep.equal(['ta']);
      // an admin sending the same selector learns why it does not parse
      const admin = await s.call('GET', `${NS}/tasks?fieldSelector=${sel}`);
      expect(admin.status).to.equal(400);
      expect(admin.body.message).to.contain('cannot parse');
      const narrowed = await s.call('GET', `${NS}/tasks?fieldSelector=${encodeURIComponent('spec.containerInstance==na,status.lastStatus!=STOPPED')}`, undefined, { token: na });
      expect(narrowed.status).to.equal(200);
    });

    it('S3: the logs endpoint must be http://IP:PORT on the registered address; nodes read no logs; upstream answers are never reflected', async () => {
      const stored = await s.call('GET', `${NS}/containerinstances/na`);
      expect(stored.body.status.registeredAddress).to.equal('127.0.0.1');
      const secret = await internalServer((url, res) => {
        if (url.startsWith('/redirect')) res.writeHead(302, { Location: 'http://127.0.0.1:1/' }).end();
        else res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`INTERNAL path=${url}`);
      });
      try {
        const setLogs = (endpoint: string, token = na) => s.call('PATCH', `${NS}/containerinstances/na/status`, { status: { logs: { endpoint, token: 't' } } }, { token, ...merge });
        for (const bad of [`http://127.0.0.1:${secret.port}/internal/admin?x=1#`, 'http://10.11.12.13:4000', 'http://169.254.169.254:80', 'http://localhost:80', 'http://u:p@127.0.0.1:80', 'https://127.0.0.1:80']) {
          const r = await setLogs(bad);
          expect(r.status, bad).to.equal(422);
          expect(r.body.details.causes[0].field, bad).to.equal('status.logs.endpoint');
        }
        expect((await setLogs(`http://169.254.169.254:80`, s.adminToken)).status, 'admins too').to.equal(422);
        // the node may not move its registered address either
        const moved = await s.call('PATCH', `${NS}/containerinstances/na/status`, { status: { registeredAddress: '10.11.12.13' } }, { token: na, ...merge });
        expect(moved.status).to.equal(403);
        expect(moved.body.message).to.contain('status.registeredAddress');
        expect((await setLogs(`http://127.0.0.1:${secret.port}`)).status).to.equal(200);
        // nodes do not read logs through the apiserver
        const byNode = await s.call('GET', `${NS}/tasks/ta/log`, undefined, { token: na });
        expect(byNode.status).to.equal(403);
        // an admin's request: the agent's error answer becomes a 502 of our own
        const r = await s.call('GET', `${NS}/tasks/ta/log`);
        expect(r.status).to.equal(502);
        expect(r.body.message).to.contain('container instance "na"');
        expect(JSON.stringify(r.body)).not.to.contain('INTERNAL');
        // an endpoint stored before this check (written to the store directly): refused at request time, never fetched
        const key = '/berth/containerinstances/default/na';
        const cur = await s.store.get(key);
        const o = JSON.parse(cur!.value);
        o.status.logs = { endpoint: `http://127.0.0.1:${secret.port}/redirect?x=1#`, token: 't' };
        await s.store.txn([], [{ type: 'put', key, value: JSON.stringify(o) }]);
        await eventually(async () => (await s.call('GET', `${NS}/containerinstances/na`)).body.status.logs?.endpoint?.includes('/redirect'), 10_000, 'the cache to see the stored endpoint');
        const hitsBefore = secret.hits.length;
        const legacy = await s.call('GET', `${NS}/tasks/ta/log`);
        expect(legacy.status).to.equal(502);
        expect(legacy.body.message).to.contain('is refused');
        expect(secret.hits.length).to.equal(hitsBefore);
      } finally {
        await secret.close();
      }
    });

    it('S3: a black-holed agent times out with a 502, and a redirect is not followed', async () => {
      const held: Socket[] = [];
      const hole: NetServer = createNetServer((c) => void held.push(c));
      await new Promise<void>((r) => hole.listen(0, '127.0.0.1', () => r()));
      const followed: string[] = [];
      const target = await internalServer((url, res) => void (followed.push(url), res.end('followed')));
      const redirect = await internalServer((_u, res) => res.writeHead(302, { Location: `http://127.0.0.1:${target.port}/admin` }).end());
      try {
        const set = (port: number) => s.call('PATCH', `${NS}/containerinstances/na/status`, { status: { logs: { endpoint: `http://127.0.0.1:${port}`, token: 't' } } }, { token: na, ...merge });
        expect((await set((hole.address() as { port: number }).port)).status).to.equal(200);
        const r = await s.call('GET', `${NS}/tasks/ta/log`);
        expect(r.status).to.equal(502);
        expect(r.body.message).to.contain('did not answer');
        expect((await set(redirect.port)).status).to.equal(200);
        const r2 = await s.call('GET', `${NS}/tasks/ta/log`);
        expect(r2.status).to.equal(502);
        expect(followed).to.deep.equal([]);
      } finally {
        for (const c of held) c.destroy();
        hole.close();
        await target.close();
        await redirect.close();
      }
    });

    it('S4: deregistering an instance revokes its node credential (in the same txn, on the store)', async () => {
      const r = await register('gone');
      const tok = r.body.metadata.annotations['berth.dev/node-token'];
      expect((await s.call('GET', `${NS}/containerinstances/gone`, undefined, { token: tok })).status).to.equal(200);
      const creds = async () => (await s.store.list('/berth/nodecredentials')).items.filter((kv) => kv.value.includes('"gone"'));
      expect((await creds()).length).to.be.greaterThan(0); // the credential (and its instance index)
      expect((await s.call('DELETE', `${NS}/containerinstances/gone`)).status).to.equal(200);
      expect(await creds()).to.deep.equal([]);
      await eventually(async () => (await s.call('GET', `${V}/clusters/default`, undefined, { token: tok })).status === 401, 10_000, 'the revoked credential to be refused');
      expect((await s.call('PATCH', `${NS}/containerinstances/gone/status`, { status: { agentConnected: true } }, { token: tok, ...merge })).status).to.equal(401);
    });

    it('S7: registered resources are capped, naming the field', async () => {
      const r = await s.call('POST', `${NS}/containerinstances`, instance('huge', 1_000_000_000), { token: s.bootstrapToken });
      expect(r.status).to.equal(422);
      expect(r.body.details.causes[0].field).to.equal('spec.registeredResources[0].integerValue');
      const ports = obj('ContainerInstance', 'ports', { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }, { name: 'PORTS', type: 'STRINGSET', stringSetValue: ['22', 'x'] }, { name: 'CPU', type: 'INTEGER', integerValue: 1 }] });
      const p = await s.call('POST', `${NS}/containerinstances`, ports);
      expect(p.status).to.equal(422);
      expect(p.body.details.causes.map((c: { field: string }) => c.field)).to.deep.equal(['spec.registeredResources[1].stringSetValue[1]', 'spec.registeredResources[2].name']);
    });

    it('S8: /metrics answers admins and the berth:metrics group only', async () => {
      expect((await s.call('GET', '/metrics')).status).to.equal(200);
      const m = await s.call('GET', '/metrics', undefined, { token: metricsToken });
      expect(m.status).to.equal(200);
      expect(String(m.body)).to.contain('berth_');
      for (const [who, token] of [['viewer', s.viewerToken], ['node', na], ['bootstrap', s.bootstrapToken]]) {
        const r = await s.call('GET', '/metrics', undefined, { token });
        expect(r.status, who).to.equal(403);
      }
      // discovery stays open to every authenticated identity, as in Kubernetes
      expect((await s.call('GET', '/apis', undefined, { token: nb })).status).to.equal(200);
      expect((await s.call('GET', `${V}/clusters`, undefined, { token: metricsToken })).status).to.equal(403);
    });

    it('S9: generateName is validated like a name, and for length', async () => {
      for (const [gen, ok] of [['a/b', false], ['x'.repeat(300), false], ['with space', false], ['web-', true]] as const) {
        const r = await s.call('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { generateName: gen } });
        if (ok) {
          expect(r.status).to.equal(201);
          expect(r.body.metadata.name).to.match(/^web-[0-9a-f]{5}$/);
        } else {
          expect(r.status, gen).to.equal(422);
          expect(r.body.details.causes[0].field).to.equal('metadata.generateName');
          expect(r.body.message.length).to.be.lessThan(400);
        }
      }
    });

    it('node restriction: field rules on its own instance and tasks; a task no longer bound to it is refused', async () => {
      const forbidden = async (path: string, body: unknown, field: string) => {
        const r = await s.call('PATCH', path, body, { token: na, ...merge });
        expect(r.status, `${path} ${JSON.stringify(body)}`).to.equal(403);
        expect(r.body.message).to.contain(field);
      };
      await forbidden(`${NS}/containerinstances/na/status`, { status: { registeredAt: '2000-01-01T00:00:00Z' } }, 'status.registeredAt');
      await forbidden(`${NS}/containerinstances/na/status`, { status: { containerInstanceArn: 'arn:x' } }, 'status.containerInstanceArn');
      await forbidden(`${NS}/containerinstances/na/status`, { status: { status: 'INACTIVE' } }, 'status.status');
      await forbidden(`${NS}/tasks/ta/status`, { status: { taskArn: 'arn:x' } }, 'status.taskArn');
      // what the agent writes: allowed
      const report = await s.call('PATCH', `${NS}/tasks/ta/status`, { status: { lastStatus: 'RUNNING', startedAt: new Date().toISOString(), containers: [{ name: 'c', lastStatus: 'RUNNING', dockerId: 'abc' }], version: 2 } }, { token: na, ...merge });
      expect(report.status).to.equal(200);
      // a PUT of the whole status works the same way
      const cur = (await s.call('GET', `${NS}/tasks/ta`)).body;
      const put = await s.call('PUT', `${NS}/tasks/ta/status`, { ...cur, status: { ...cur.status, healthStatus: 'HEALTHY' } }, { token: na });
      expect(put.status).to.equal(200);
      // the task goes, and one of the same name is bound to another instance: na may no longer write it
      expect((await s.call('DELETE', `${NS}/tasks/ta`)).status).to.equal(200);
      expect((await s.call('POST', `${NS}/tasks`, obj('Task', 'ta', { taskDefinition: 'sec' }))).status).to.equal(201);
      expect((await s.call('POST', `${NS}/bindings`, { bindings: [{ task: 'ta', containerInstance: 'nb' }] })).body.results[0].bound).to.equal(true);
      const late = await s.call('PATCH', `${NS}/tasks/ta/status`, { status: { lastStatus: 'STOPPED' } }, { token: na, ...merge });
      expect(late.status).to.equal(403);
      expect((await s.call('GET', `${NS}/tasks/ta`)).body.status.lastStatus).to.equal('PENDING');
      expect((await s.call('PATCH', `${NS}/tasks/ta/status`, { status: { lastStatus: 'RUNNING' } }, { token: nb, ...merge })).status).to.equal(200);
    });
  });
}

describe('node restriction with a real agent: it registers, heartbeats, serves logs and reports its tasks', function () {
  this.timeout(90_000);
  let s: TestApiServer;
  let dir: string;
  let agent: Agent | undefined;
  before(async () => {
    s = await startApiServer();
    dir = await mkdtemp(join(tmpdir(), 'berth-nr-'));
  });
  after(async () => {
    await agent?.stop();
    await s?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps working under the field rules (the agent writes only what it owns)', async () => {
    agent = new Agent({
      config: loadAgentConfig({ env: { ECS_CLUSTER: 'default', ECS_DATADIR: dir, ECS_CHECKPOINT: 'true', BERTH_BOOTSTRAP_TOKEN: s.bootstrapToken, ECS_BACKEND_HOST: s.url, ECS_INTROSPECTION_PORT: '0', BERTH_LOGS_LISTEN: '127.0.0.1:0' } }),
      client: new Client({ server: s.url, token: s.bootstrapToken }),
      runtime: new HollowRuntime({ rules: [{ image: 'busybox', logs: ['hello from the agent'] }] }),
      log: silentLogger(),
      fingerprint: 'nr-host',
      heartbeatMs: 200,
    });
    await agent.start();
    const id = agent.instanceId;
    await eventually(async () => (await s.call('GET', `${NS}/containerinstances/${id}`)).body.status?.logs?.endpoint?.startsWith('http://127.0.0.1:'), 20_000, 'the heartbeat with the logs endpoint');
    expect((await s.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'nr', { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] }))).status).to.equal(201);
    expect((await s.call('POST', `${NS}/tasks`, obj('Task', 'nr1', { taskDefinition: 'nr' }))).status).to.equal(201);
    expect((await s.call('POST', `${NS}/bindings`, { bindings: [{ task: 'nr1', containerInstance: id }] })).body.results[0].bound).to.equal(true);
    await eventually(async () => (await s.call('GET', `${NS}/tasks/nr1`)).body.status?.lastStatus === 'RUNNING', 20_000, 'the agent to report RUNNING');
    const logs = await fetch(`${s.url}${NS}/tasks/nr1/log`, { headers: { Authorization: `Bearer ${s.adminToken}` } });
    expect(logs.status).to.equal(200);
    expect(await logs.text()).to.contain('hello from the agent');
    expect((await s.call('PATCH', `${NS}/tasks/nr1`, { spec: { desiredStatus: 'STOPPED' } }, merge)).status).to.equal(200);
    await eventually(async () => (await s.call('GET', `${NS}/tasks/nr1`)).body.status?.lastStatus === 'STOPPED', 20_000, 'the agent to report STOPPED');
  });
});
