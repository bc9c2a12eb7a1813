import { expect } from 'chai';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApiServer, listen } from '../../pkg/apiserver/apiserver.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { AccessDeniedException, CreateClusterCommand, ECSServiceException, ListClustersCommand } from '@aws-sdk/client-ecs';
import { newKey, sdkSigner, startEcsServer, thrown, type EcsTestServer } from './support.ts';
import { ecsFrontDoor, parseAccessKeyFile } from '../../pkg/ecsapi/ecsapi.ts';
import { canonicalPath, canonicalQuery } from '../../pkg/ecsapi/sigv4.ts';

const TARGET = 'AmazonEC2ContainerServiceV20141113.';

describe('ECS API: wire protocol and SigV4 authentication', function () {
  this.timeout(60_000);
  let s: EcsTestServer;
  before(async () => {
    s = await startEcsServer();
  });
  after(async () => s?.stop());

  it('answers a signed SDK call with the JSON 1.1 content type and a request id', async () => {
    const out = await s.client().send(new ListClustersCommand({}));
    expect(out.clusterArns).to.deep.equal(['arn:aws:ecs:us-east-1:000000000000:cluster/default']);
    expect(out.$metadata.httpStatusCode).to.equal(200);
    expect(out.$metadata.requestId).to.match(/^[0-9a-f-]{36}$/);
    const raw = await s.raw(`${TARGET}ListClusters`, '{}');
    expect(raw.status).to.equal(200);
    expect(raw.headers.get('content-type')).to.equal('application/x-amz-json-1.1');
    expect(raw.headers.get('x-amzn-requestid')).to.match(/^[0-9a-f-]{36}$/);
  });

  it('is served under a path prefix as well as at /', async () => {
    const out = await s.client({ endpoint: `${s.api.url}/some/prefix` }).send(new ListClustersCommand({}));
    expect(out.clusterArns).to.have.length(1);
  });

  it('leaves other requests to the resource API', async () => {
    const r = await s.api.call('GET', '/apis/berth.dev/v1/clusters');
    expect(r.status).to.equal(200);
    expect(r.body.items.map((c: { metadata: { name: string } }) => c.metadata.name)).to.deep.equal(['default']);
  });

  it('refuses a wrong secret with InvalidSignatureException (403)', async () => {
    const e = await thrown(() => s.client({ key: { accessKeyId: s.admin.accessKeyId, secretAccessKey: 'not-the-secret' } }).send(new ListClustersCommand({})));
    expect(e).to.be.instanceOf(ECSServiceException);
    expect(e.name).to.equal('InvalidSignatureException');
    expect(e.message).to.match(/signature we calculated does not match/);
    expect(e.$metadata.httpStatusCode).to.equal(403);
  });

  it('refuses an unknown access key with UnrecognizedClientException (400)', async () => {
    const stranger = newKey('x', []);
    const e = await thrown(() => s.client({ key: stranger }).send(new ListClustersCommand({})));
    expect(e.name).to.equal('UnrecognizedClientException');
    expect(e.message).to.equal('The security token included in the request is invalid.');
    expect(e.$metadata.httpStatusCode).to.equal(400);
  });

  it('refuses a request without a signature with MissingAuthenticationTokenException', async () => {
    const r = await s.raw(`${TARGET}ListClusters`, '{}', { sign: false });
    expect(r.status).to.equal(400);
    expect(r.body).to.deep.equal({ __type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' });
  });

  it('refuses a signature more than 5 minutes off, and the SDK corrects its clock from the Date header', async () => {
    for (const offset of [-10 * 60_000, 10 * 60_000]) {
      const e = await thrown(() => s.client({ systemClockOffset: offset }).send(new ListClustersCommand({})));
      expect(e.name).to.equal('InvalidSignatureException');
      expect(e.message).to.match(offset < 0 ? /^Signature expired: \d{8}T\d{6}Z is now earlier than/ : /^Signature not yet current/);
    }
    // within the window it is accepted
    await s.client({ systemClockOffset: -4 * 60_000 }).send(new ListClustersCommand({}));
    // with retries, the SDK learns the server's clock (its Date header) and succeeds
    const out = await s.client({ systemClockOffset: -10 * 60_000, maxAttempts: 3 }).send(new ListClustersCommand({}));
    expect(out.clusterArns).to.have.length(1);
  });

  it('accepts any signing region, and refuses a body that does not match its signature', async () => {
    const url = new URL(s.api.url);
    const signer = sdkSigner(s.admin, 'eu-west-1');
    const headers = { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `${TARGET}ListClusters` };
    const signed = await signer.sign({ method: 'POST', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: '/', query: {}, headers, body: '{}' });
    const { host: _h, ...send } = signed.headers as Record<string, string>;
    void _h;
    const ok = await fetch(s.api.url + '/', { method: 'POST', headers: send, body: '{}' });
    expect(ok.status, 'any region is accepted').to.equal(200);
    // sign one body, send another
    const bad = await fetch(s.api.url + '/', { method: 'POST', headers: send, body: '{"maxResults":1}' });
    expect(bad.status).to.equal(403);
    expect(((await bad.json()) as { __type: string }).__type).to.equal('InvalidSignatureException');
    // a declared payload hash must be the body's
    const lying = await fetch(s.api.url + '/', { method: 'POST', headers: { ...send, 'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' }, body: '{}' });
    expect(lying.status).to.equal(403);
  });

  it('answers an unknown operation with a 400 JSON error', async () => {
    const r = await s.raw(`${TARGET}LaunchRockets`, '{}');
    expect(r.status).to.equal(400);
    expect(r.headers.get('content-type')).to.equal('application/x-amz-json-1.1');
    expect(r.body.__type).to.equal('UnknownOperationException');
    expect(r.body.message).to.match(/LaunchRockets/);
  });

  it('answers a malformed or non-object JSON body with a 400 SerializationException', async () => {
    for (const body of ['{"clusterName": ', '[1,2]', 'null', '"x"']) {
      const r = await s.raw(`${TARGET}CreateCluster`, body);
      expect(r.status, body).to.equal(400);
      expect(r.body.__type, body).to.equal('SerializationException');
      expect(r.body.message, body).to.be.a('string').and.not.empty;
    }
    // wrong member types are parameter errors, not crashes
    const r = await s.raw(`${TARGET}CreateCluster`, '{"clusterName": 42}');
    expect(r.status).to.equal(400);
    expect(r.body.__type).to.equal('InvalidParameterException');
    // an empty body is an empty input
    const empty = await s.raw(`${TARGET}ListClusters`, '');
    expect(empty.status).to.equal(200);
  });

  it('authorizes through the apiserver: a viewer key may read but not write', async () => {
    const viewer = s.client({ key: s.viewer });
    const out = await viewer.send(new ListClustersCommand({}));
    expect(out.clusterArns).to.have.length(1);
    const e = await thrown(() => viewer.send(new CreateClusterCommand({ clusterName: 'nope' })));
    expect(e).to.be.instanceOf(AccessDeniedException);
    expect(e.$metadata.httpStatusCode).to.equal(403);
    // AWS's wording of an implicit deny
    expect(e.message).to.equal('User: arn:aws:iam::000000000000:user/ecs-viewer is not authorized to perform: ecs:CreateCluster on resource: * because no identity-based policy allows the ecs:CreateCluster action');
  });

  it('picks up keys added to the access-key file without a restart', async () => {
    const added = newKey('ops', ['berth:admins']);
    const e = await thrown(() => s.client({ key: added }).send(new ListClustersCommand({})));
    expect(e.name).to.equal('UnrecognizedClientException');
    await new Promise((r) => setTimeout(r, 20)); // a new mtime
    await appendFile(s.keyFile, `${added.accessKeyId},${added.secretAccessKey},ops,"berth:admins"\n`);
    const out = await s.client({ key: added }).send(new ListClustersCommand({}));
    expect(out.clusterArns).to.have.length(1);
  });

  it('in dev mode without keys every caller is the admin; with keys, signatures are still checked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-ecs-dev-'));
    const store = EmbeddedStore.open(join(dir, 'data'));
    const key = newKey('k', ['berth:admins']);
    const servers: Array<{ close(): void; closeAllConnections(): void }> = [];
    try {
      for (const keys of [[], [key]]) {
        const api = await buildApiServer({ store, log: silentLogger(), frontDoors: (parts) => [ecsFrontDoor(parts, { keys, region: 'us-east-1' })] });
        const { server, url } = await listen(api.handler, { listen: '127.0.0.1:0' });
        servers.push(server);
        const anyone = s.client({ endpoint: url, key: newKey('anyone', []) });
        if (keys.length === 0) {
          const out = await anyone.send(new CreateClusterCommand({ clusterName: 'devc' }));
          expect(out.cluster?.clusterName).to.equal('devc');
        } else {
          const e = await thrown(() => anyone.send(new ListClustersCommand({})));
          expect(e.name).to.equal('UnrecognizedClientException');
          const out = await s.client({ endpoint: url, key }).send(new ListClustersCommand({}));
          expect(out.clusterArns).to.deep.equal(['arn:aws:ecs:us-east-1:000000000000:cluster/devc']);
        }
        api.stop();
      }
    } finally {
      for (const sv of servers) {
        sv.closeAllConnections();
        sv.close();
      }
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('parses the access-key file format berth up writes', () => {
    const keys = parseAccessKeyFile('# comment\nAKIA1,secret1,admin,"berth:admins"\nAKIA2,secret2,ops,"g1,g2"\n');
    expect(keys).to.deep.equal([
      { accessKeyId: 'AKIA1', secretAccessKey: 'secret1', user: 'admin', groups: ['berth:admins'] },
      { accessKeyId: 'AKIA2', secretAccessKey: 'secret2', user: 'ops', groups: ['g1', 'g2'] },
    ]);
    expect(() => parseAccessKeyFile('justonecolumn')).to.throw(/line 1/);
  });

  it('canonicalizes paths and queries as the SDK does', () => {
    expect(canonicalPath('/')).to.equal('/');
    expect(canonicalPath('/a/./b/../c/')).to.equal('/a/c/');
    expect(canonicalPath('/a%20b')).to.equal('/a%20b');
    expect(canonicalQuery('b=2&a=1&a=0')).to.equal('a=0&a=1&b=2');
    expect(canonicalQuery('x=a%2Fb&y')).to.equal('x=a%2Fb&y=');
  });
});
