import { connect } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { DescribeClustersCommand } from '@aws-sdk/client-ecs';
import { ecsBodyLimit, keyring, KEY_FILE_RECHECK_MS } from '../../pkg/ecsapi/ecsapi.ts';
import { newKey, sdkSigner, startEcsServer, type EcsTestServer } from './support.ts';

const TARGET = 'AmazonEC2ContainerServiceV20141113.';

describe('ECS API security: S10 (signed X-Amz-Target, the key file read once) and S5 (the unauthenticated body)', function () {
  this.timeout(60_000);
  let s: EcsTestServer;
  before(async () => {
    s = await startEcsServer();
  });
  after(async () => s?.stop());

  /** a request signed by the SDK's own signer, with `unsigned` headers left out of the signature */
  const signed = async (target: string, body: string, unsigned: string[] = []) => {
    const url = new URL(s.api.url);
    const headers = { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `${TARGET}${target}` };
    const out = await sdkSigner(s.admin, 'us-east-1').sign(
      { method: 'POST', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: '/', query: {}, headers, body },
      { unsignableHeaders: new Set(unsigned) },
    );
    const { host: _h, ...send } = out.headers as Record<string, string>;
    void _h;
    return send;
  };

  it('S10: refuses a signature that does not cover X-Amz-Target, so it cannot be replayed for another operation', async () => {
    const headers = await signed('ListClusters', '{}', ['x-amz-target']);
    expect(headers.authorization).to.match(/SignedHeaders=[^,]*/);
    expect(/SignedHeaders=([^,]*)/.exec(headers.authorization)![1]).not.to.contain('x-amz-target');
    const replayed = await fetch(`${s.api.url}/`, { method: 'POST', headers: { ...headers, 'x-amz-target': `${TARGET}DeleteCluster` }, body: '{}' });
    expect(replayed.status).to.equal(403);
    const e = (await replayed.json()) as { __type: string; message: string };
    expect(e.__type).to.equal('InvalidSignatureException');
    expect(e.message).to.contain("'X-Amz-Target' must be a signed header");
    const still = await s.client().send(new DescribeClustersCommand({ clusters: ['default'] }));
    expect(still.clusters?.[0]?.status).to.equal('ACTIVE');
    // what the SDK signs (every header) still works
    const ok = await fetch(`${s.api.url}/`, { method: 'POST', headers: await signed('ListClusters', '{}'), body: '{}' });
    expect(ok.status).to.equal(200);
  });

  it('S1: refuses an input with a key that reaches a prototype, at any depth, and keeps working', async () => {
    for (const body of ['{"__proto__":{"x":1}}', '{"cluster":"default","tags":[{"key":"a","value":"b","constructor":{"prototype":{"x":1}}}]}']) {
      const r = await s.raw(`${TARGET}ListServices`, body);
      expect(r.status, body).to.equal(400);
      expect(r.body.__type, body).to.equal('InvalidParameterException');
      expect(r.body.message, body).to.match(/holds the key "(__proto__|constructor)"/);
      expect(({} as Record<string, unknown>).x).to.equal(undefined);
    }
    expect((await s.raw(`${TARGET}ListClusters`, '{}')).status).to.equal(200);
  });

  it('S5: answers a request with an unknown key without reading its body', async () => {
    const url = new URL(s.api.url);
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(url.port), url.hostname, () => {
        sock.write(
          'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n' +
            `X-Amz-Target: ${TARGET}ListClusters\r\nX-Amz-Date: 20260101T000000Z\r\n` +
            'Authorization: AWS4-HMAC-SHA256 Credential=AKIANOBODY/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00\r\n' +
            'Content-Length: 1000000\r\n\r\n{"a":',
        );
      });
      let got = '';
      sock.on('data', (d) => {
        got += d.toString();
        if (got.includes('UnrecognizedClientException')) {
          sock.destroy();
          resolve(got);
        }
      });
      sock.on('error', reject);
      setTimeout(() => {
        sock.destroy();
        reject(new Error(`no answer while the body is still owed (got ${JSON.stringify(got.slice(0, 80))})`));
      }, 10_000);
    });
    expect(answer).to.match(/^HTTP\/1\.1 400/);
  });

  it('S5: caps the ECS body far below the resource API\'s (a signed 600 KiB body is refused)', async () => {
    const limit = ecsBodyLimit(s.api.api.registry.limits.taskDefinitionBytes);
    expect(limit).to.equal(512 * 1024);
    const body = JSON.stringify({ clusters: ['default'], include: ['x'.repeat(600 * 1024)] });
    const r = await fetch(`${s.api.url}/`, { method: 'POST', headers: await signed('DescribeClusters', body), body });
    expect(r.status).to.equal(400);
    const e = (await r.json()) as { __type: string; message: string };
    expect(e.message).to.match(/limit is 524288 bytes|over the limit of 524288 bytes/);
  });
});

describe('S10: the access-key file is read once, and again only when it changed (unit, injected clock)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-keys-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('returns the same Map between changes, looks at the mtime at most once per recheck interval, and keeps the last good keys', async () => {
    const file = join(dir, 'keys.csv');
    const a = newKey('a', ['berth:admins']);
    const b = newKey('b', []);
    await writeFile(file, `${a.accessKeyId},${a.secretAccessKey},a,"berth:admins"\n`);
    let now = 1_000_000;
    let mtime = 1;
    let stats = 0;
    const keys = keyring({ accessKeyFile: file, keys: [b] }, { now: () => now, mtime: () => (stats++, mtime) });
    const first = keys();
    expect([...first.keys()].sort()).to.deep.equal([a.accessKeyId, b.accessKeyId].sort());
    stats = 0;
    for (let i = 0; i < 100; i++) expect(keys()).to.equal(first);
    expect(stats).to.equal(0);
    now += KEY_FILE_RECHECK_MS;
    expect(keys()).to.equal(first); // unchanged mtime: looked at, not rebuilt
    expect(stats).to.equal(1);
    const c = newKey('c', []);
    await writeFile(file, `${c.accessKeyId},${c.secretAccessKey},c,""\n`);
    mtime = 2;
    expect(keys().has(c.accessKeyId)).to.equal(false); // not yet looked at
    expect(keys(true).has(c.accessKeyId)).to.equal(true); // an unknown key asks at once
    const second = keys();
    expect(second).to.not.equal(first);
    expect(second.has(a.accessKeyId)).to.equal(false);
    await writeFile(file, 'garbage without a secret\n');
    mtime = 3;
    now += KEY_FILE_RECHECK_MS;
    expect(keys()).to.equal(second); // a file being rewritten keeps the last good keys
  });
});
