import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { ARN, RUN_IN_A, startAuthzServer, type AuthzServer, type Who } from '../support/authz.ts';
import { kubectl } from '../support/kubectl.ts';

/** `kubectl auth whoami` and `kubectl auth can-i` with the real kubectl, answered by the one authorizer. */
describe('kubectl auth whoami and can-i (SelfSubjectReview, SelfSubjectAccessReview)', function () {
  this.timeout(120_000);
  let s: AuthzServer;
  const auditor = { token: 'auditor-token-0123456789abcdef', user: 'auditor', uid: '20', groups: ['berth:viewers', 'auditors'] };
  const configs: Record<string, string> = {};
  before(async () => {
    s = await startAuthzServer({
      policies: {
        policies: {
          RunInA: RUN_IN_A,
          NoB: {
            Version: '2012-10-17',
            Statement: [{ Sid: 'NotB', Effect: 'Deny', Action: 'ecs:List*', Resource: '*', Condition: { ArnEquals: { 'ecs:cluster': `${ARN}:cluster/B` } } }],
          },
        },
        users: { alice: ['RunInA'] },
        groups: { auditors: ['NoB'] },
      },
      extraTokens: [auditor],
    });
    const tokens: Record<string, string> = { ...(s.tokens as Record<Who, string>), auditor: auditor.token };
    for (const [who, token] of Object.entries(tokens)) {
      if (!token) continue;
      const path = join(s.dir, `kubeconfig-${who}`);
      await writeFile(
        path,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'berth', cluster: { server: s.api.tlsUrl, 'certificate-authority-data': Buffer.from(s.api.certPem).toString('base64') } }],
          users: [{ name: who, user: { token } }],
          contexts: [{ name: 'berth', context: { cluster: 'berth', user: who, namespace: 'A' } }],
          'current-context': 'berth',
        }),
        { mode: 0o600 },
      );
      configs[who] = path;
    }
  });
  after(async () => s?.stop());

  const check = async (who: string, want: boolean, ...args: string[]) => {
    const r = await canI(who, ...args);
    expect(r.yes, `${who}: can-i ${args.join(' ')}: ${r.code} ${r.out} ${r.err}`).to.equal(want);
    expect(r.code, `${who}: can-i ${args.join(' ')}: exit code`).to.equal(want ? 0 : 1);
  };
  const canI = async (who: string, ...args: string[]) => {
    const r = await kubectl(configs[who], ['auth', 'can-i', ...args]);
    return { yes: r.code === 0 && r.stdout.trim() === 'yes', code: r.code, out: r.stdout.trim(), err: r.stderr.trim() };
  };

  it('whoami names the caller: a user, its uid and groups; a node its instance', async () => {
    const a = await kubectl(configs.alice, ['auth', 'whoami', '-o', 'json']);
    expect(a.code, a.stderr).to.equal(0);
    // (kubectl leaves an empty group list out when it prints)
    expect(JSON.parse(a.stdout).status.userInfo).to.deep.equal({ username: 'alice', uid: '10' });
    const n = await kubectl(configs.nodeA, ['auth', 'whoami']);
    expect(n.code, n.stderr).to.equal(0);
    expect(n.stdout).to.match(/Username\s+system:node:A:ci-a/);
    expect(n.stdout).to.match(/Groups\s+\[berth:nodes\]/);
  });

  it('can-i answers from the policies: alice may create tasks in A (RunTask) and nothing else', async () => {
    await check('alice', true, 'create', 'tasks', '-n', 'A');
    const b = await canI('alice', 'create', 'tasks', '-n', 'B');
    expect(b.code).to.equal(1);
    expect(b.out).to.match(/^no - .*no identity-based policy allows ecs:RunTask on arn:aws:ecs:us-east-1:000000000000:task-definition\/\*$/);
    await check('alice', false, 'get', 'tasks', '-n', 'A');
    await check('alice', false, 'create', 'services', '-n', 'A');
  });

  it('can-i answers from the built-in groups: viewers read, nodes touch only what is bound to them, admins all', async () => {
    await check('viewer', true, 'list', 'tasks', '-n', 'A');
    await check('viewer', false, 'delete', 'tasks/ta', '-n', 'A');
    await check('nodeA', true, 'get', 'tasks/ta', '-n', 'A');
    await check('nodeB', false, 'get', 'tasks/ta', '-n', 'A');
    await check('nodeA', true, 'patch', 'tasks/ta', '--subresource=status', '-n', 'A');
    await check('nodeA', false, 'patch', 'tasks/ta', '-n', 'A');
    await check('nodeA', false, 'get', 'tasks/ta', '--subresource=log', '-n', 'A'); // a node reads no logs through the apiserver
    await check('admin', true, '*', '*');
    await check('admin', true, 'delete', 'clusters/A');
    await check('viewer', true, 'get', '/version');
  });

  it("can-i reports an explicit Deny over a group's Allow", async () => {
    await check('auditor', true, 'list', 'tasks', '-n', 'A');
    const b = await canI('auditor', 'list', 'tasks', '-n', 'B');
    expect(b.code).to.equal(1);
    expect(b.out).to.contain('explicitly denied by policy "NoB" Statement[0] (Sid "NotB")');
  });

  it('answers a JSON review too, with allowed and denied, and refuses malformed bodies with 400', async () => {
    const review = (ra: unknown) => ({ apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: ra } });
    const ok = await s.k8s(
      'anonymous',
      'POST',
      '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
      review({ verb: 'list', resource: 'tasks', namespace: 'B', group: 'berth.dev' }),
      { token: auditor.token },
    );
    expect(ok.status).to.equal(201);
    expect(ok.body.status).to.include({ allowed: false, denied: true });
    const unknown = await s.k8s(
      'alice',
      'POST',
      '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
      review({ verb: 'get', resource: 'pods', group: '' }),
    );
    expect(unknown.body.status).to.deep.equal({ allowed: false, reason: 'berth serves no resource "pods" in API group "berth.dev"' });
    for (const [body, ct] of [
      ['k8s\u0000\u00ff\u00ff', 'application/vnd.kubernetes.protobuf'],
      ['not protobuf', 'application/vnd.kubernetes.protobuf'],
      ['{"spec": 3}', 'application/json'],
      ['[', 'application/json'],
      ['{"spec": {"resourceAttributes": {"verb": 7}}}', 'application/json'],
    ]) {
      const r = await s.k8s('alice', 'POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', body, { contentType: ct });
      expect(r.status, `${body}: ${JSON.stringify(r.body)}`).to.equal(400);
      expect(r.body.reason).to.equal('BadRequest');
    }
    expect((await s.k8s('anonymous', 'POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {})).status).to.equal(401);
  });
});
