import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../../pkg/client/client.ts';
import { newKeyLine, Keyring } from '../../pkg/secrets/keyring.ts';
import { cliRunner } from '../support/cli.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

describe('berth create secret, get secrets, delete secret, secrets reencrypt (in-process, real apiserver)', function () {
  this.timeout(30_000);
  let api: TestApiServer;
  let client: Client;
  let dir: string;
  const run = cliRunner(() => client);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-cli-secrets-'));
    await writeFile(join(dir, 'keys'), newKeyLine('k1'));
    api = await startApiServer({ build: { keyring: Keyring.fromFile(join(dir, 'keys')) } });
    client = new Client({ server: api.url, token: api.adminToken });
  });
  after(async () => {
    client?.close();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates from literals, files and env files; get shows keys, never values; delete removes it', async () => {
    await writeFile(join(dir, 'tls.key'), 'KEY-CONTENT-b6a1');
    await writeFile(join(dir, 'app.env'), '# x\nMODE=prod-9c2d\n');
    let r = await run('create', 'secret', 'web', '--from-literal', 'password=LIT-VALUE-3e7f', '--from-file', join(dir, 'tls.key'), '--from-env-file', join(dir, 'app.env'));
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.equal('secret/web created\n');
    const v = await api.call('GET', '/apis/berth.dev/v1/secrets/web/value');
    expect(v.body.spec.data).to.deep.equal({ password: 'LIT-VALUE-3e7f', 'tls.key': 'KEY-CONTENT-b6a1', MODE: 'prod-9c2d' });
    for (const args of [['get', 'secrets'], ['get', 'secret', 'web', '-o', 'yaml'], ['get', 'sec', '-o', 'json'], ['describe', 'secret', 'web']]) {
      r = await run(...args);
      expect(r.code, `${args.join(' ')}: ${r.err}`).to.equal(0);
      expect(r.out).not.to.contain('LIT-VALUE').and.not.to.contain('KEY-CONTENT').and.not.to.contain('prod-9c2d').and.not.to.contain('berth:v1:');
    }
    r = await run('get', 'secrets');
    expect(r.out).to.match(/^web\s+Opaque\s+MODE,password,tls\.key\s/m);
    r = await run('create', 'secret', 'bad', '--from-literal', 'novalue');
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('--from-literal');
    r = await run('secrets', 'reencrypt');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain('0 of 1 secret(s) re-encrypted under key "k1"');
    r = await run('delete', 'secret', 'web');
    expect(r.code, r.err).to.equal(0);
    expect((await api.call('GET', '/apis/berth.dev/v1/secrets/web')).status).to.equal(404);
  });

  it('applies the example manifest (secrets and a task definition referencing them)', async () => {
    const r = await run('apply', '-f', 'deploy/examples/secrets.yaml');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain('secret/db-credentials created').and.contain('taskdefinition/secret-env:1 created');
    const again = await run('apply', '-f', 'deploy/examples/secrets.yaml');
    expect(again.out).to.contain('secret/db-credentials unchanged');
  });
});
