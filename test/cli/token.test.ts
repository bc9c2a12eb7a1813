import { expect } from 'chai';
import { tokenCreateBody } from '../../pkg/cli/token.ts';
import { Client } from '../../pkg/client/client.ts';
import { cliRunner } from '../support/cli.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

describe('berth token create|list|delete (S7, against a real apiserver)', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let client: Client;
  const run = cliRunner(() => client);
  before(async () => {
    api = await startApiServer();
    client = new Client({ server: api.url, token: api.adminToken });
  });
  after(async () => {
    client?.close();
    await api?.stop();
  });

  it('validates its flags with messages a person understands', () => {
    expect(tokenCreateBody({ cluster: 'default', ttl: '24h', description: 'd' })).to.deep.equal({ cluster: 'default', ttlSeconds: 86_400, description: 'd' });
    expect(tokenCreateBody({ cluster: 'default', ttl: '0' })).to.deep.equal({ cluster: 'default' });
    expect(() => tokenCreateBody({ cluster: 'default', ttl: 'tomorrow' })).to.throw(/--ttl tomorrow: expected a duration such as 30m, 24h/);
    expect(() => tokenCreateBody({ cluster: 'default', ttl: '10ms' })).to.throw(/at least 1s/);
    // R1-9: how many instances may register with it
    expect(tokenCreateBody({ cluster: 'default', maxInstances: '3' })).to.deep.equal({ cluster: 'default', maxInstances: 3 });
    for (const bad of ['0', '-1', '2.5', 'many', '']) {
      expect(() => tokenCreateBody({ cluster: 'default', maxInstances: bad }), bad).to.throw(/--max-instances .*a whole number of at least 1/);
    }
  });

  it('R1-9: --max-instances: a token that registers so many instances, shown in the list as used/allowed', async () => {
    const r = await run('token', 'create', '--cluster', 'default', '--max-instances', '1');
    expect(r.code, r.err).to.equal(0);
    expect(r.err).to.contain('never expires, for 1 instance(s)');
    const token = r.out.trim();
    const instance = (n: string) => ({ apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: n }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }] } });
    const reg = (n: string) => api.call('POST', '/apis/berth.dev/v1/namespaces/default/containerinstances', instance(n), { token });
    try {
      expect((await reg('r19-cli-1')).status).to.equal(201);
      expect((await reg('r19-cli-2')).status).to.equal(403);
      const list = await run('token', 'list');
      const row = list.out.split('\n').find((l) => l.startsWith(token.split('.')[0]));
      expect(row).to.match(/\s1\/1\s/);
    } finally {
      await run('token', 'delete', token);
    }
  });

  it('creates a token (printed once), lists it without its secret, registers with it, and deletes it', async () => {
    let r = await run('token', 'create', '--cluster', 'default', '--ttl', '2h', '--description', 'rack 7');
    expect(r.code, r.err).to.equal(0);
    const token = r.out.trim();
    expect(token).to.match(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    const [id, secret] = token.split('.');
    expect(r.err).to.contain(`bootstrap token ${id} for cluster "default", valid until`);
    r = await run('token', 'list');
    expect(r.code, r.err).to.equal(0);
    expect(r.out.split('\n')[0]).to.match(/^ID\s+CLUSTER\s+EXPIRES\s+REGISTERED\s+DESCRIPTION\s+CREATED$/);
    expect(r.out).to.contain('no limit');
    expect(r.out).to.contain(id).and.contain('rack 7');
    expect(r.out).not.to.contain(secret);
    const reg = () => api.call('POST', '/apis/berth.dev/v1/namespaces/default/containerinstances', { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: `i${Date.now()}` }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }] } }, { token });
    expect((await reg()).status).to.equal(201);
    r = await run('token', 'delete', token);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.equal(`bootstrap token ${id} deleted\n`);
    await eventually(async () => (await reg()).status === 401, 10_000, 'the deleted token to be refused');
    r = await run('token', 'list');
    expect(r.err).to.equal('No bootstrap tokens.\n');
    r = await run('token', 'delete', id);
    expect(r.code).to.equal(1);
    expect(r.err).to.contain(`${id}: bootstrap token "${id}" not found`);
  });

  it('refuses what it cannot do with a clear message', async () => {
    let r = await run('token', 'create');
    expect(r.code).to.equal(1);
    expect(r.err).to.contain("required option '--cluster <cluster>' not specified");
    r = await run('token', 'create', '--cluster', 'nope');
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('cluster "nope" not found');
    r = await run('token', 'create', '--cluster', 'default', '--ttl', 'soon');
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('--ttl soon: expected a duration');
  });
});
