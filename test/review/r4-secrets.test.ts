import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kinds } from '../../pkg/api/kinds.ts';
import { reencryptSecrets, SecretAdmission } from '../../pkg/apiserver/secrets.ts';
import type { Registry } from '../../pkg/apiserver/registry.ts';
import { newKeyLine, Keyring } from '../../pkg/secrets/keyring.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { kubectl } from '../support/kubectl.ts';

/** Regression tests of the fourth review's findings on the Secret kind (the finding's id in each title). */
const V = '/apis/berth.dev/v1';
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
const secret = (name: string, data: Record<string, string>, annotations?: Record<string, string>) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'Secret',
  metadata: { name, ...(annotations ? { annotations } : {}) },
  spec: { data },
});

async function rawStore(s: TestApiServer): Promise<string> {
  const page = await s.store.list('/berth/', { limit: 10_000 });
  return page.items.map((kv) => `${kv.key}=${kv.value}`).join('\n');
}

describe('review R4: secrets', function () {
  this.timeout(30_000);
  let dir: string;
  let keyFile: string;
  let s: TestApiServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-r4-'));
    keyFile = join(dir, 'keys');
    await writeFile(keyFile, newKeyLine('k1'));
    s = await startApiServer({ build: { keyring: Keyring.fromFile(keyFile) } });
  });
  after(async () => {
    await s?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('R4-1: a secret written by `kubectl apply` (last-applied annotation) does not show its value to a viewer or the raw store', async () => {
    // what client-side `kubectl apply -f secret.yaml` sends: the manifest, and the same manifest
    // (values in clear) in the last-applied-configuration annotation
    const CLEAR = 'r4-1-applied-clear-5d21';
    const manifest = secret('applied', { value: CLEAR });
    const c = await s.call('POST', `${V}/secrets`, secret('applied', { value: CLEAR }, { [LAST_APPLIED]: JSON.stringify(manifest) }));
    expect(c.status, JSON.stringify(c.body)).to.equal(201);
    const seen = await s.call('GET', `${V}/secrets/applied`, undefined, { token: s.viewerToken });
    expect(seen.status).to.equal(200);
    expect(JSON.stringify(seen.body), 'a viewer reads the clear value in the annotation').not.to.contain(CLEAR);
    expect(await rawStore(s), 'the clear value is stored unencrypted').not.to.contain(CLEAR);
  });

  it('R4-1: `kubectl apply` of a Secret twice works, keeps only the key names in its annotation, and a changed value is applied', async () => {
    const CLEAR = 'r4-1-kubectl-clear-77ab';
    const doc = (v: string) => JSON.stringify(secret('kapplied', { value: v, other: 'x-r4-1' }));
    const first = await kubectl(s.kubeconfigPath, ['apply', '-f', '-'], doc(CLEAR));
    expect(first.code, first.stderr).to.equal(0);
    expect(first.stdout).to.contain('created');
    const again = await kubectl(s.kubeconfigPath, ['apply', '-f', '-'], doc(CLEAR));
    expect(again.code, again.stderr).to.equal(0);
    const seen = await s.call('GET', `${V}/secrets/kapplied`, undefined, { token: s.viewerToken });
    expect(JSON.stringify(seen.body)).not.to.contain(CLEAR);
    expect(JSON.parse(seen.body.metadata.annotations[LAST_APPLIED]).spec.data).to.deep.equal({ value: '', other: '' });
    expect(seen.body.status.version, 'the same value applied again is no change').to.equal(1);
    const changed = await kubectl(s.kubeconfigPath, ['apply', '-f', '-'], doc('r4-1-kubectl-next'));
    expect(changed.code, changed.stderr).to.equal(0);
    const v = await s.call('GET', `${V}/secrets/kapplied/value`);
    expect(v.body.spec.data).to.deep.equal({ value: 'r4-1-kubectl-next', other: 'x-r4-1' });
    expect(v.body.status.version).to.equal(2);
    expect(await rawStore(s)).not.to.contain('r4-1-kubectl-next');
  });

  it('R4-2: a dry-run write does not tell a caller without the value right whether a guess is the stored value', async () => {
    const CLEAR = 'r4-2-pin-4711';
    const c = await s.call('POST', `${V}/secrets`, secret('pin', { value: CLEAR }));
    expect(c.status).to.equal(201);
    const cur = (await s.call('GET', `${V}/secrets/pin`)).body;
    const guess = async (v: string) => {
      const r = await s.call('PUT', `${V}/secrets/pin?dryRun=All`, { ...cur, spec: { ...cur.spec, data: { value: v } } });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      return { version: r.body.status.version as number, generation: r.body.metadata.generation as number, keys: r.body.status.keys };
    };
    const wrong = await guess('r4-2-pin-0000');
    const right = await guess(CLEAR);
    // the update right is not the value right (secretsmanager:PutSecretValue without GetSecretValue):
    // the answer must not differ between a right and a wrong guess
    expect(right, 'status.version stays 1 only for the right guess: a confirmation oracle').to.deep.equal(wrong);
    // nothing was written; a real write of the same value is still no change
    const after = await s.call('GET', `${V}/secrets/pin/value`);
    expect(after.body.spec.data.value).to.equal(CLEAR);
    expect(after.body.status.version).to.equal(1);
    const same = await s.call('PUT', `${V}/secrets/pin`, { ...cur, spec: { ...cur.spec, data: { value: CLEAR } } });
    expect(same.status, JSON.stringify(same.body)).to.equal(200);
    expect(same.body.status.version).to.equal(1);
  });

  it('R4-3: re-encryption does not undo a value written while it runs', async () => {
    const reg = s.api.registry;
    await s.call('POST', `${V}/secrets`, secret('first', { value: 'first-v1' }));
    await s.call('POST', `${V}/secrets`, secret('second', { value: 'second-v1' }));
    // rotate: a new first key, the old one kept for decryption
    await writeFile(keyFile, newKeyLine('k2') + (await readFile(keyFile, 'utf8')));
    // an admin writes a new value of "second" while the re-encryption is at "first"
    // (the registry is the real one; only the moment of the concurrent write is chosen)
    let raced = false;
    const racing = new Proxy(reg, {
      get(t, p, r) {
        if (p !== 'patch') return Reflect.get(t, p, r);
        return async (...args: Parameters<Registry['patch']>) => {
          if (!raced) {
            raced = true;
            const res = await s.call('PATCH', `${V}/secrets/second`, { spec: { data: { value: 'second-v2' } } }, { contentType: 'application/merge-patch+json' });
            expect(res.status, JSON.stringify(res.body)).to.equal(200);
          }
          return t.patch(...args);
        };
      },
    });
    // the route's own admission reads the same key file
    const out = await reencryptSecrets(racing as Registry, new SecretAdmission(Keyring.fromFile(keyFile)));
    expect(out.rewritten).to.include('second');
    const v = await s.call('GET', `${V}/secrets/second/value`);
    expect(v.body.spec.data.value, 'the re-encryption wrote back the value it had listed').to.equal('second-v2');
  });

  it('R4-4: a key file being rewritten during a rotation does not fail reads of secrets sealed with a known key, nor leak its path', async () => {
    await s.call('POST', `${V}/secrets`, secret('rot', { value: 'rot-v1' }));
    const before = await s.call('GET', `${V}/secrets/rot/value`);
    expect(before.status).to.equal(200);
    // an operator's editor has truncated the file to write it again: the doc says a file that
    // does not parse is kept out; a stored envelope naming an unknown key triggers the reload
    const o = await s.api.registry.peek(Kinds.Secret, undefined, 'rot');
    await s.store.create('/berth/secrets/_/rot2', JSON.stringify({ ...o, metadata: { ...o!.metadata, name: 'rot2', resourceVersion: undefined }, spec: { data: { value: 'berth:v1:kX:AAAA' } } }));
    await writeFile(keyFile, 'k3:short\n');
    const bad = await s.call('GET', `${V}/secrets/rot2/value`);
    expect(JSON.stringify(bad.body), 'the error names the key file path').not.to.contain(dir);
    const after = await s.call('GET', `${V}/secrets/rot/value`);
    expect(after.status, JSON.stringify(after.body)).to.equal(200);
  });

  it('R4-10: a secret past its Secrets Manager deletion date gives no value through the value subresource (what agents read)', async () => {
    const c = await s.call('POST', `${V}/secrets`, secret('gone', { value: 'r4-10-leaked-credential' }, { 'berth.dev/delete-at': new Date(Date.now() - 60_000).toISOString(), 'berth.dev/deleted-on': new Date(Date.now() - 86_400_000).toISOString() }));
    expect(c.status, JSON.stringify(c.body)).to.equal(201);
    const v = await s.call('GET', `${V}/secrets/gone/value`);
    expect(v.status, 'the value of a deleted secret is still served').to.equal(404);
    expect(JSON.stringify(v.body)).not.to.contain('r4-10-leaked-credential');
    // restored (what RestoreSecret does: the annotations removed), it is served again
    const r = await s.call('PATCH', `${V}/secrets/gone`, { metadata: { annotations: { 'berth.dev/delete-at': null, 'berth.dev/deleted-on': null } } }, { contentType: 'application/merge-patch+json' });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect((await s.call('GET', `${V}/secrets/gone/value`)).body.spec.data.value).to.equal('r4-10-leaked-credential');
  });
});
