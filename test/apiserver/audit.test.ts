import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { ARN, V, startAuthzServer, type AuthzServer } from '../support/authz.ts';
import { eventually } from '../support/fleet.ts';

/**
 * The audit log: a scripted session on both faces produces exactly the expected lines
 * (times and request ids masked, request ids checked against the response headers), reads
 * are not logged, denials are, and nothing secret reaches the file.
 */

const UA = { 'User-Agent': 'audit-session' };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function lines(file: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(file, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

describe('audit log', function () {
  this.timeout(60_000);
  let s: AuthzServer;
  before(async () => {
    s = await startAuthzServer();
  });
  after(async () => s?.stop());

  it('writes exactly one line per state-changing or denied request of a scripted session, on both faces', async () => {
    // what the fixture's set-up wrote is before the session
    await eventually(async () => (await lines(s.auditLog)).length > 0, 10_000, 'set-up lines');
    await new Promise((r) => setTimeout(r, 200));
    const before = (await lines(s.auditLog)).length;
    const ids: string[] = [];
    const k = async (...a: Parameters<AuthzServer['k8s']>) => {
      const r = await s.k8s(a[0], a[1], a[2], a[3], { ...a[4], headers: UA });
      ids.push(r.headers.get('audit-id') ?? 'none');
      return r;
    };
    const cl = { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'audited' } };
    expect((await k('admin', 'POST', `${V}/clusters`, cl)).status).to.equal(201);
    expect(
      (await k('admin', 'PATCH', `${V}/clusters/audited`, { metadata: { labels: { team: 'a' } } }, { contentType: 'application/merge-patch+json' })).status,
    ).to.equal(200);
    // reads are not audited
    expect((await k('admin', 'GET', `${V}/clusters/audited`)).status).to.equal(200);
    ids.pop();
    expect((await k('viewer', 'GET', `${V}/clusters`)).status).to.equal(200);
    ids.pop();
    expect((await k('viewer', 'DELETE', `${V}/clusters/audited`)).status).to.equal(403);
    expect((await k('admin', 'DELETE', `${V}/clusters/audited`)).status).to.equal(200);
    expect((await k('anonymous', 'GET', `${V}/clusters`)).status).to.equal(401);
    expect((await k('admin', 'POST', `${V}/clusters?dryRun=All`, { ...cl, metadata: { name: 'dry' } })).status).to.equal(201);
    const ecs = async (...a: Parameters<AuthzServer['ecs']>) => {
      const r = await s.ecs(...a);
      ids.push(r.headers.get('x-amzn-requestid') ?? 'none');
      return r;
    };
    expect((await ecs('admin', 'ListClusters', {})).status).to.equal(200);
    ids.pop();
    expect((await ecs('admin', 'CreateCluster', { clusterName: 'ecs-audited' })).status).to.equal(200);
    expect((await ecs('alice', 'RunTask', { cluster: 'B', taskDefinition: 'web' })).status).to.equal(403);
    expect((await ecs('stranger', 'ListClusters', {})).status).to.equal(400);

    const want = [
      {
        face: 'k8s',
        user: 'admin',
        groups: ['berth:admins'],
        userAgent: 'audit-session',
        verb: 'create',
        resource: { plural: 'clusters', name: 'audited' },
        code: 201,
      },
      {
        face: 'k8s',
        user: 'admin',
        groups: ['berth:admins'],
        userAgent: 'audit-session',
        verb: 'patch',
        resource: { plural: 'clusters', name: 'audited' },
        code: 200,
      },
      {
        face: 'k8s',
        user: 'viewer',
        groups: ['berth:viewers'],
        userAgent: 'audit-session',
        verb: 'delete',
        resource: { plural: 'clusters', name: 'audited' },
        code: 403,
        message: `clusters.berth.dev "audited" is forbidden: User "viewer" cannot delete resource "clusters" in API group "berth.dev" at the cluster scope: no rule allows it; no identity-based policy allows ecs:DeleteCluster on ${ARN}:cluster/audited`,
      },
      {
        face: 'k8s',
        user: 'admin',
        groups: ['berth:admins'],
        userAgent: 'audit-session',
        verb: 'delete',
        resource: { plural: 'clusters', name: 'audited' },
        code: 200,
      },
      { face: 'k8s', userAgent: 'audit-session', verb: 'get', path: `${V}/clusters`, code: 401, message: 'Unauthorized: a valid bearer token is required' },
      {
        face: 'k8s',
        user: 'admin',
        groups: ['berth:admins'],
        userAgent: 'audit-session',
        verb: 'create',
        resource: { plural: 'clusters', name: 'dry' },
        code: 201,
        dryRun: true,
      },
      { face: 'ecs', user: 'admin', groups: ['berth:admins'], userAgent: 'berth-authz-test', action: 'ecs:CreateCluster', arns: ['*'], code: 200 },
      {
        face: 'ecs',
        user: 'alice',
        groups: [],
        userAgent: 'berth-authz-test',
        action: 'ecs:RunTask',
        arns: [`${ARN}:task-definition/web:1`],
        code: 403,
        error: 'AccessDeniedException',
        message: `User: arn:aws:iam::000000000000:user/alice is not authorized to perform: ecs:RunTask on resource: ${ARN}:task-definition/web:1 because no identity-based policy allows the ecs:RunTask action`,
      },
      {
        face: 'ecs',
        userAgent: 'berth-authz-test',
        action: 'ecs:ListClusters',
        arns: [],
        code: 400,
        error: 'UnrecognizedClientException',
        message: 'The security token included in the request is invalid.',
      },
    ];
    await eventually(async () => (await lines(s.auditLog)).length - before >= want.length, 10_000, "the session's lines");
    // and nothing more arrives
    await new Promise((r) => setTimeout(r, 300));
    const session = (await lines(s.auditLog)).slice(before);
    expect(session).to.have.length(want.length);
    session.forEach((l, i) => {
      const { time, requestId, sourceAddress, ...rest } = l as { time: string; requestId: string; sourceAddress: string };
      expect(new Date(time).toISOString(), `line ${i} time`).to.equal(time);
      expect(Date.now() - Date.parse(time), `line ${i} time`).to.be.within(0, 60_000);
      expect(requestId, `line ${i} requestId`).to.match(UUID);
      expect(requestId, `line ${i}: the id the response carried`).to.equal(ids[i]);
      expect(sourceAddress, `line ${i} sourceAddress`).to.match(/^(::ffff:)?127\.0\.0\.1$/);
      expect(rest, `line ${i}`).to.deep.equal(want[i]);
    });
    expect(new Set(session.map((l) => l.requestId)).size).to.equal(want.length);
  });

  it('holds no token, key or secret, and no request body', async () => {
    const text = await readFile(s.auditLog, 'utf8');
    for (const [who, t] of Object.entries(s.tokens)) if (t) expect(text, `${who}'s token`).to.not.contain(t);
    for (const [who, k] of Object.entries(s.keys)) {
      expect(text, `${who}'s secret key`).to.not.contain(k.secretAccessKey);
      expect(text, `${who}'s signature scope`).to.not.contain(`${k.accessKeyId}/`);
    }
    // bodies: the task definition's image and the patch's label never appear
    expect(text).to.not.contain('busybox');
    expect(text).to.not.contain('"team"');
  });

  it('gives every resource-API response an Audit-Id', async () => {
    const r = await s.k8s('admin', 'GET', '/version');
    expect(r.headers.get('audit-id')).to.match(UUID);
    const denied = await s.k8s('alice', 'GET', `${V}/clusters`);
    expect(denied.headers.get('audit-id')).to.match(UUID);
  });

  it('flushes what is pending when the server stops', async () => {
    const t = await startAuthzServer();
    const before = (await lines(t.auditLog)).length;
    const n = 40;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        t.k8s('viewer', 'POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: `f${i}` } }),
      ),
    );
    const file = t.auditLog;
    const { readFile: rf, rm } = await import('node:fs/promises');
    // stop the apiserver (flushing the log) but keep the directory to read it
    await t.api.api.stop();
    const after = (await rf(file, 'utf8')).split('\n').filter(Boolean);
    expect(after.length - before).to.equal(n);
    expect(after.slice(before).every((l) => JSON.parse(l).code === 403)).to.equal(true);
    await t.api.stop();
    await rm(t.dir, { recursive: true, force: true });
  });
});
