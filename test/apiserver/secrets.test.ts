import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newKeyLine, Keyring } from '../../pkg/secrets/keyring.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;
const merge = { contentType: 'application/merge-patch+json' };
const CLEAR = 'hunter2-clear-value-7f3a';
const JSON_CLEAR = 'json-key-value-91bd';
const secret = (name: string, data: Record<string, string>) => ({ apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name }, spec: { data } });
const instance = (name: string) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'ContainerInstance',
  metadata: { name },
  spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 2048 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 2048 }] },
});

/** every value the raw store holds under /berth/, as text */
async function rawStore(s: TestApiServer): Promise<string> {
  const page = await s.store.list('/berth/', { limit: 10_000 });
  return page.items.map((kv) => `${kv.key}=${kv.value}`).join('\n');
}

describe('secrets: encrypted at rest, redacted on every read, values only to admins and the nodes that need them', function () {
  this.timeout(30_000);
  let dir: string;
  let keyFile: string;
  let s: TestApiServer;
  let nodeA: string;
  let nodeB: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-secrets-'));
    keyFile = join(dir, 'keys');
    await writeFile(keyFile, newKeyLine('k1'));
    s = await startApiServer({ auditLog: join(dir, 'audit.log'), build: { keyring: Keyring.fromFile(keyFile) } });
  });
  after(async () => {
    await s?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a secret and never answers its values on create, get, list or table', async () => {
    const c = await s.call('POST', `${V}/secrets`, secret('db', { value: CLEAR }));
    expect(c.status, JSON.stringify(c.body)).to.equal(201);
    expect(c.body.spec.data).to.equal(undefined);
    expect(c.body.status).to.include({ version: 1 });
    expect(c.body.status.keys).to.deep.equal(['value']);
    const j = await s.call('POST', `${V}/secrets`, secret('app', { user: 'u', password: JSON_CLEAR }));
    expect(j.status).to.equal(201);
    for (const token of [s.adminToken, s.viewerToken]) {
      const one = await s.call('GET', `${V}/secrets/db`, undefined, { token });
      expect(one.status).to.equal(200);
      const list = await s.call('GET', `${V}/secrets`, undefined, { token });
      expect(list.body.items.map((o: any) => o.metadata.name).sort()).to.deep.equal(['app', 'db']);
      expect(JSON.stringify([one.body, list.body])).not.to.contain(CLEAR).and.not.to.contain(JSON_CLEAR).and.not.to.contain('berth:v1:');
    }
  });

  it('holds only AES-GCM envelopes in the raw store', async () => {
    const raw = await rawStore(s);
    expect(raw).to.contain('/berth/secrets/_/db=');
    expect(raw).not.to.contain(CLEAR).and.not.to.contain(JSON_CLEAR);
    expect(raw).to.match(/berth:v1:k1:/);
  });

  it('reveals values to admins through the value subresource, never to viewers', async () => {
    const v = await s.call('GET', `${V}/secrets/db/value`);
    expect(v.status).to.equal(200);
    expect(v.body.spec.data).to.deep.equal({ value: CLEAR });
    const denied = await s.call('GET', `${V}/secrets/db/value`, undefined, { token: s.viewerToken });
    expect(denied.status).to.equal(403);
    expect(JSON.stringify(denied.body)).not.to.contain(CLEAR);
  });

  it('streams a watch without values', async () => {
    const ac = new AbortController();
    const res = await fetch(`${s.url}${V}/secrets?watch=1`, { headers: { Authorization: `Bearer ${s.viewerToken}` }, signal: ac.signal });
    const reader = res.body!.getReader();
    let text = '';
    const done = (async () => {
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) return;
        text += Buffer.from(value).toString('utf8');
        if (text.includes('"MODIFIED"')) return;
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    const p = await s.call('PATCH', `${V}/secrets/db`, { spec: { data: { value: `${CLEAR}-2` } } }, merge);
    expect(p.status, JSON.stringify(p.body)).to.equal(200);
    expect(p.body.status.version).to.equal(2);
    await done;
    ac.abort();
    expect(text).to.contain('"ADDED"').and.contain('"MODIFIED"');
    expect(text).not.to.contain(CLEAR).and.not.to.contain('berth:v1:');
  });

  it('keeps values and version through a write that does not touch them', async () => {
    const p = await s.call('PATCH', `${V}/secrets/db`, { metadata: { labels: { team: 'a' } } }, merge);
    expect(p.status).to.equal(200);
    expect(p.body.status.version).to.equal(2);
    const got = await s.call('GET', `${V}/secrets/db`);
    const put = await s.call('PUT', `${V}/secrets/db`, got.body); // what a client read back: no data
    expect(put.status, JSON.stringify(put.body)).to.equal(200);
    expect((await s.call('GET', `${V}/secrets/db/value`)).body.spec.data).to.deep.equal({ value: `${CLEAR}-2` });
  });

  it('lets a node read only the secrets its bound tasks reference, one by one', async () => {
    const td = {
      apiVersion: 'berth.dev/v1',
      kind: 'TaskDefinition',
      metadata: { name: 'uses' },
      spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64, secrets: [{ name: 'PW', valueFrom: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:app:password::' }] }] },
    };
    expect((await s.call('POST', `${V}/taskdefinitions`, td)).status).to.equal(201);
    expect((await s.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'ta' }, spec: { taskDefinition: 'uses' } })).status).to.equal(201);
    nodeA = (await s.call('POST', `${NS}/containerinstances`, instance('na'), { token: s.bootstrapToken })).body.metadata.annotations['berth.dev/node-token'];
    nodeB = (await s.call('POST', `${NS}/containerinstances`, instance('nb'), { token: s.bootstrapToken })).body.metadata.annotations['berth.dev/node-token'];
    const bind = await s.call('POST', `${NS}/bindings`, { bindings: [{ task: 'ta', containerInstance: 'na' }] });
    expect(bind.body.results.every((r: any) => r.bound)).to.equal(true);
    const mine = await s.call('GET', `${V}/secrets/app/value`, undefined, { token: nodeA });
    expect(mine.status).to.equal(200);
    expect(mine.body.spec.data.password).to.equal(JSON_CLEAR);
    expect((await s.call('GET', `${V}/secrets/db/value`, undefined, { token: nodeA })).status, 'a secret no task of it references').to.equal(403);
    expect((await s.call('GET', `${V}/secrets/app/value`, undefined, { token: nodeB })).status, 'another node').to.equal(403);
    expect((await s.call('GET', `${V}/secrets`, undefined, { token: nodeA })).status, 'a list').to.equal(403);
    expect((await s.call('GET', `${V}/secrets?watch=1`, undefined, { token: nodeA })).status, 'a watch').to.equal(403);
    expect((await s.call('PATCH', `${V}/secrets/app`, { spec: { data: { password: 'x' } } }, { token: nodeA, ...merge })).status, 'a write').to.equal(403);
  });

  it('refuses bad input with the field named, and writes nothing', async () => {
    const bad = await s.call('POST', `${V}/secrets`, secret('bad', { 'no spaces': 'x' }));
    expect(bad.status).to.equal(422);
    expect(JSON.stringify(bad.body)).to.contain('spec.data');
    const none = await s.call('POST', `${V}/secrets`, { apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name: 'empty' }, spec: {} });
    expect(none.status).to.equal(422);
    expect(none.body.message).to.contain('spec.data');
    const badRef = await s.call('POST', `${V}/taskdefinitions`, {
      apiVersion: 'berth.dev/v1',
      kind: 'TaskDefinition',
      metadata: { name: 'badref' },
      spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64, secrets: [{ name: 'X', valueFrom: 'arn:aws:kms:us-east-1:0:key/x' }] }] },
    });
    expect(badRef.status).to.equal(422);
    expect(badRef.body.message).to.contain('containerDefinitions[0].secrets[0].valueFrom');
    expect((await s.call('GET', `${V}/secrets/bad`)).status).to.equal(404);
  });

  it('re-encrypts under a new first key; an old key can then be dropped', async () => {
    const before = (await s.call('GET', `${V}/secrets/db`)).body.status;
    await writeFile(keyFile, newKeyLine('k2') + (await readFile(keyFile, 'utf8')));
    const r = await s.call('POST', `${V}/secretsreencrypt`);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect(r.body.rewritten.sort()).to.deep.equal(['app', 'db']);
    expect(r.body.keys).to.deep.equal(['k2', 'k1']);
    const raw = await rawStore(s);
    expect(raw).not.to.match(/berth:v1:k1:/);
    expect(raw).to.match(/berth:v1:k2:/);
    expect((await s.call('GET', `${V}/secrets/db`)).body.status).to.deep.equal(before); // same version: the values did not change
    await writeFile(keyFile, (await readFile(keyFile, 'utf8')).split('\n')[0] + '\n');
    expect((await s.call('POST', `${V}/secretsreencrypt`)).body.rewritten).to.deep.equal([]);
    expect((await s.call('GET', `${V}/secrets/db/value`)).body.spec.data.value).to.equal(`${CLEAR}-2`);
    expect((await s.call('POST', `${V}/secretsreencrypt`, undefined, { token: s.viewerToken })).status).to.equal(403);
  });

  it('writes who read or changed a secret to the audit log, never a value', async () => {
    await s.api.stop(); // flushes the audit log (the server is stopped again in after)
    const audit = await readFile(join(dir, 'audit.log'), 'utf8');
    expect(audit).to.contain('"secrets"');
    expect(audit).not.to.contain(CLEAR).and.not.to.contain(JSON_CLEAR).and.not.to.contain('berth:v1:');
  });
});

describe('secrets without an encryption key', function () {
  this.timeout(20_000);
  it('refuses to create one, saying how to give a key', async () => {
    const s = await startApiServer({ build: { keyring: undefined } });
    try {
      const r = await s.call('POST', `${V}/secrets`, secret('x', { value: 'v' }));
      expect(r.status).to.equal(400);
      expect(r.body.message).to.contain('--encryption-key-file');
    } finally {
      await s.stop();
    }
  });
});
