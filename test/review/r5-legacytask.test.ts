import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storeKey } from '../../pkg/api/meta.ts';
import { newKeyLine, Keyring } from '../../pkg/secrets/keyring.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

/**
 * The fifth review's suspicion R5-2, disproved: a task stored before status.taskDefinition
 * existed (its spec holds the revision resolved at creation) has no server-kept revision, so
 * admission keeps none, and a status write of the node it is bound to looked able to set one:
 * any task definition, whose secrets the node could then read (a node reads the secrets of the
 * revisions its tasks run). Node restriction refuses it (a node writes only what it observes),
 * in the single and the batched status write alike; this test keeps it that way.
 */

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;
const CLEAR = 'r5-2-prod-db-password-7a1c';
const td = (name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'TaskDefinition',
  metadata: { name },
  spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 16, ...extra }] },
});

describe('review R5: a task stored before status.taskDefinition existed', function () {
  this.timeout(30_000);
  let dir: string;
  let s: TestApiServer;
  let node: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-r5-legacy-'));
    await writeFile(join(dir, 'keys'), newKeyLine('k1'));
    s = await startApiServer({ build: { keyring: Keyring.fromFile(join(dir, 'keys')) } });
    expect((await s.call('POST', `${V}/secrets`, { apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name: 'prod-db' }, spec: { data: { value: CLEAR } } })).status).to.equal(201);
    expect((await s.call('POST', `${V}/taskdefinitions`, td('plain'))).status).to.equal(201);
    expect((await s.call('POST', `${V}/taskdefinitions`, td('withsecret', { secrets: [{ name: 'PW', valueFrom: 'prod-db' }] }))).status).to.equal(201);
    const inst = { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'n1' }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 2048 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 2048 }] } };
    node = (await s.call('POST', `${NS}/containerinstances`, inst, { token: s.bootstrapToken })).body.metadata.annotations['berth.dev/node-token'];
    expect(node).to.be.a('string');
  });
  after(async () => {
    await s?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** a task of `plain` bound to n1, then rewritten in the store as the code before status.taskDefinition stored it */
  async function legacyTask(name: string) {
    expect((await s.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name }, spec: { taskDefinition: 'plain' } })).status).to.equal(201);
    const b = await s.call('POST', `${NS}/bindings`, { bindings: [{ task: name, containerInstance: 'n1' }] });
    expect(b.status, JSON.stringify(b.body)).to.be.oneOf([200, 201]);
    const key = storeKey('tasks', 'default', name);
    const kv = (await s.store.get(key))!;
    const o = JSON.parse(Buffer.from(kv.value).toString());
    o.spec.taskDefinition = 'plain:1';
    delete o.status.taskDefinition;
    const rev = (await s.store.update(key, JSON.stringify(o), kv.modRevision)).modRevision;
    // this apiserver's cache has it before the node writes
    const l = await s.call('GET', `${NS}/tasks?resourceVersion=${rev}&resourceVersionMatch=NotOlderThan`);
    expect(l.status).to.equal(200);
    const g = await s.call('GET', `${NS}/tasks/${name}`);
    expect(g.body.status.taskDefinition, 'the premise: no server-kept revision').to.equal(undefined);
  }

  async function afterwards(name: string) {
    const g = await s.call('GET', `${NS}/tasks/${name}`);
    const v = await s.call('GET', `${V}/secrets/prod-db/value`, undefined, { token: node });
    return { runs: g.body.status?.taskDefinition ?? g.body.spec.taskDefinition, secretRead: v.status, leaked: v.body?.spec?.data?.value === CLEAR };
  }

  it('R5-2: the node\'s status PATCH cannot make it run another task definition (and so read that one\'s secrets)', async () => {
    await legacyTask('legacy-patch');
    const w = await s.call('PATCH', `${NS}/tasks/legacy-patch/status`, undefined, {
      token: node,
      contentType: 'application/merge-patch+json',
      raw: JSON.stringify({ status: { lastStatus: 'RUNNING', taskDefinition: 'withsecret:1' } }),
    });
    expect(w.status, JSON.stringify(w.body)).to.equal(403);
    expect(await afterwards('legacy-patch')).to.deep.equal({ runs: 'plain:1', secretRead: 403, leaked: false });
  });

  it('R5-2: nor its batched status report (taskstatuses)', async () => {
    await legacyTask('legacy-batch');
    const w = await s.call('POST', `${NS}/taskstatuses`, { statuses: [{ task: 'legacy-batch', status: { lastStatus: 'RUNNING', taskDefinition: 'withsecret:1' } }] }, { token: node });
    expect(w.status, JSON.stringify(w.body)).to.be.lessThan(500);
    expect(JSON.stringify(w.body)).to.match(/may not change status\.taskDefinition/);
    expect(await afterwards('legacy-batch')).to.deep.equal({ runs: 'plain:1', secretRead: 403, leaked: false });
  });
});
