import { expect } from 'chai';
import { actionMatches, evaluate, glob, parsePolicy, type AccessRequest, type Policy } from '../../pkg/apiserver/policy.ts';
import { parsePolicyFile } from '../../pkg/apiserver/policyfile.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';

const ARN = 'arn:aws:ecs:us-east-1:000000000000';
const A = `${ARN}:cluster/A`;
const B = `${ARN}:cluster/B`;

function policy(statements: unknown[], version = '2012-10-17', name = 'P'): Policy {
  const r = parsePolicy(name, { Version: version, Statement: statements });
  if (!r.policy) throw new Error(JSON.stringify(r.causes));
  return r.policy;
}

const req = (action: string, resources: string[], context: Record<string, string[]> = {}): AccessRequest => ({ action, resources, context });

describe('IAM policy engine (pure)', () => {
  describe('wildcards', () => {
    const cases: Array<[string, string, boolean, boolean?]> = [
      ['*', '', true],
      ['*', 'anything:at/all', true],
      ['a?c', 'abc', true],
      ['a?c', 'ac', false],
      ['a*c', 'ac', true],
      ['a*c', 'abbbc', true],
      ['a*c', 'abbbd', false],
      ['*a*a*a*a*b', 'a'.repeat(2000), false],
      ['arn:aws:ecs:*:*:cluster/A', A, true],
      ['arn:aws:ecs:*:*:cluster/A', `${A}x`, false],
      ['ARN:aws:ecs:*', A, false],
      ['ARN:aws:ecs:*', A, true, true],
      ['ü?', 'üx', true],
    ];
    for (const [p, t, want, ic] of cases) {
      it(`${JSON.stringify(p)} ${want ? 'matches' : 'does not match'} ${JSON.stringify(t.slice(0, 40))}${ic ? ' ignoring case' : ''}`, () => {
        expect(glob(p, t, ic)).to.equal(want);
      });
    }
    it('matches actions case-insensitively, as IAM does', () => {
      expect(actionMatches('ecs:runtask', 'ecs:RunTask')).to.equal(true);
      expect(actionMatches('ECS:Describe*', 'ecs:describetasks')).to.equal(true);
      expect(actionMatches('ecs:Describe*', 'ecs:ListTasks')).to.equal(false);
      expect(actionMatches('ecs:?unTask', 'ecs:RunTask')).to.equal(true);
    });
  });

  describe('evaluation', () => {
    const runInA = policy([{ Effect: 'Allow', Action: 'ecs:RunTask', Resource: `${ARN}:task-definition/*`, Condition: { ArnEquals: { 'ecs:cluster': A } } }]);
    const table: Array<{ name: string; policies: Policy[]; req: AccessRequest; effect: 'Allow' | 'Deny' | 'ImplicitDeny' }> = [
      { name: 'no policy: default deny', policies: [], req: req('ecs:RunTask', [`${ARN}:task-definition/web:1`]), effect: 'ImplicitDeny' },
      {
        name: 'an Allow whose action, resource and condition match',
        policies: [runInA],
        req: req('ecs:RunTask', [`${ARN}:task-definition/web:1`], { 'ecs:cluster': [A] }),
        effect: 'Allow',
      },
      {
        name: 'the condition on another cluster',
        policies: [runInA],
        req: req('ecs:RunTask', [`${ARN}:task-definition/web:1`], { 'ecs:cluster': [B] }),
        effect: 'ImplicitDeny',
      },
      { name: 'the condition key absent', policies: [runInA], req: req('ecs:RunTask', [`${ARN}:task-definition/web:1`]), effect: 'ImplicitDeny' },
      {
        name: 'another action',
        policies: [runInA],
        req: req('ecs:StartTask', [`${ARN}:task-definition/web:1`], { 'ecs:cluster': [A] }),
        effect: 'ImplicitDeny',
      },
      { name: 'a resource of another type', policies: [runInA], req: req('ecs:RunTask', [A], { 'ecs:cluster': [A] }), effect: 'ImplicitDeny' },
      {
        name: 'explicit Deny wins over Allow, in another policy',
        policies: [runInA, policy([{ Effect: 'Deny', Action: 'ecs:*', Resource: '*' }], '2012-10-17', 'DenyAll')],
        req: req('ecs:RunTask', [`${ARN}:task-definition/web:1`], { 'ecs:cluster': [A] }),
        effect: 'Deny',
      },
      {
        name: 'explicit Deny wins in the same policy whatever the order',
        policies: [
          policy([
            { Effect: 'Deny', Action: 'ecs:RunTask', Resource: `${ARN}:task-definition/secret:*` },
            { Effect: 'Allow', Action: 'ecs:*', Resource: '*' },
          ]),
        ],
        req: req('ecs:RunTask', [`${ARN}:task-definition/secret:3`]),
        effect: 'Deny',
      },
      {
        name: 'NotAction: everything but what it names',
        policies: [policy([{ Effect: 'Allow', NotAction: ['ecs:Delete*', 'ecs:Deregister*'], Resource: '*' }])],
        req: req('ecs:DescribeTasks', [`${ARN}:task/A/t`]),
        effect: 'Allow',
      },
      {
        name: 'NotAction does not cover what it names',
        policies: [policy([{ Effect: 'Allow', NotAction: ['ecs:Delete*', 'ecs:Deregister*'], Resource: '*' }])],
        req: req('ecs:DeleteService', [`${ARN}:service/A/web`]),
        effect: 'ImplicitDeny',
      },
      {
        name: 'NotResource: a Deny of everything outside cluster A',
        policies: [
          policy([
            { Effect: 'Allow', Action: 'ecs:*', Resource: '*' },
            { Effect: 'Deny', Action: 'ecs:*', NotResource: [`${ARN}:*/A/*`, A] },
          ]),
        ],
        req: req('ecs:StopTask', [`${ARN}:task/B/t`]),
        effect: 'Deny',
      },
      {
        name: 'NotResource spares what it names',
        policies: [
          policy([
            { Effect: 'Allow', Action: 'ecs:*', Resource: '*' },
            { Effect: 'Deny', Action: 'ecs:*', NotResource: [`${ARN}:*/A/*`, A] },
          ]),
        ],
        req: req('ecs:StopTask', [`${ARN}:task/A/t`]),
        effect: 'Allow',
      },
      {
        name: 'an action with no resource type is asked on "*": a specific ARN does not cover it',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:ListClusters', Resource: A }])],
        req: req('ecs:ListClusters', ['*']),
        effect: 'ImplicitDeny',
      },
      {
        name: 'every resource of a request must be allowed',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:DescribeServices', Resource: `${ARN}:service/A/web` }])],
        req: req('ecs:DescribeServices', [`${ARN}:service/A/web`, `${ARN}:service/A/db`]),
        effect: 'ImplicitDeny',
      },
      {
        name: 'ArnLike with a wildcard in one part',
        policies: [
          policy([
            { Effect: 'Allow', Action: 'ecs:ListTasks', Resource: '*', Condition: { ArnLike: { 'ecs:cluster': 'arn:aws:ecs:*:000000000000:cluster/A' } } },
          ]),
        ],
        req: req('ecs:ListTasks', ['*'], { 'ecs:cluster': [A] }),
        effect: 'Allow',
      },
      {
        name: 'ArnLike: a part never spans a colon',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:ListTasks', Resource: '*', Condition: { ArnLike: { 'ecs:cluster': 'arn:aws:ecs:*:cluster/A' } } }])],
        req: req('ecs:ListTasks', ['*'], { 'ecs:cluster': [A] }),
        effect: 'ImplicitDeny',
      },
      {
        name: 'StringEquals on aws:username',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: '*', Condition: { StringEquals: { 'aws:username': 'alice' } } }])],
        req: req('ecs:ListClusters', ['*'], { 'aws:username': ['alice'] }),
        effect: 'Allow',
      },
      {
        name: 'StringLike with wildcards; keys are case-insensitive',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: '*', Condition: { StringLike: { 'AWS:UserName': 'ops-*' } } }])],
        req: req('ecs:ListClusters', ['*'], { 'aws:username': ['ops-bob'] }),
        effect: 'Allow',
      },
      {
        name: 'StringNotEquals holds when the key is absent (a Deny then applies)',
        policies: [
          policy([
            { Effect: 'Allow', Action: 'ecs:*', Resource: '*' },
            { Effect: 'Deny', Action: 'ecs:RunTask', Resource: '*', Condition: { ArnNotEquals: { 'ecs:cluster': A } } },
          ]),
        ],
        req: req('ecs:RunTask', [`${ARN}:task-definition/x:1`]),
        effect: 'Deny',
      },
      {
        name: '...IfExists holds when the key is absent',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: '*', Condition: { ArnEqualsIfExists: { 'ecs:cluster': A } } }])],
        req: req('ecs:ListClusters', ['*']),
        effect: 'Allow',
      },
      {
        name: '...IfExists still compares when the key is there',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: '*', Condition: { ArnEqualsIfExists: { 'ecs:cluster': A } } }])],
        req: req('ecs:ListTasks', ['*'], { 'ecs:cluster': [B] }),
        effect: 'ImplicitDeny',
      },
      {
        name: 'several values of one key are OR-ed, several keys AND-ed',
        policies: [
          policy([
            { Effect: 'Allow', Action: 'ecs:*', Resource: '*', Condition: { ArnEquals: { 'ecs:cluster': [A, B] }, StringEquals: { 'aws:username': 'alice' } } },
          ]),
        ],
        req: req('ecs:ListTasks', ['*'], { 'ecs:cluster': [B], 'aws:username': ['bob'] }),
        effect: 'ImplicitDeny',
      },
      {
        name: "ForAllValues over a multi-valued key (StartTask's container instances)",
        policies: [
          policy([
            {
              Effect: 'Allow',
              Action: 'ecs:StartTask',
              Resource: '*',
              Condition: { 'ForAllValues:ArnLike': { 'ecs:container-instances': `${ARN}:container-instance/A/*` } },
            },
          ]),
        ],
        req: req('ecs:StartTask', ['*'], { 'ecs:container-instances': [`${ARN}:container-instance/A/1`, `${ARN}:container-instance/B/2`] }),
        effect: 'ImplicitDeny',
      },
      {
        name: 'ForAnyValue over a multi-valued key',
        policies: [
          policy([
            {
              Effect: 'Allow',
              Action: 'ecs:StartTask',
              Resource: '*',
              Condition: { 'ForAnyValue:ArnLike': { 'ecs:container-instances': `${ARN}:container-instance/A/*` } },
            },
          ]),
        ],
        req: req('ecs:StartTask', ['*'], { 'ecs:container-instances': [`${ARN}:container-instance/A/1`, `${ARN}:container-instance/B/2`] }),
        effect: 'Allow',
      },
      {
        name: 'Null: true when the key is absent',
        policies: [
          policy([
            { Effect: 'Deny', Action: 'ecs:*', Resource: '*', Condition: { Null: { 'ecs:cluster': 'true' } } },
            { Effect: 'Allow', Action: 'ecs:*', Resource: '*' },
          ]),
        ],
        req: req('ecs:ListClusters', ['*']),
        effect: 'Deny',
      },
      {
        name: 'a policy variable in Resource (2012-10-17)',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: `${ARN}:service/\${aws:username}/*` }])],
        req: req('ecs:UpdateService', [`${ARN}:service/alice/web`], { 'aws:username': ['alice'] }),
        effect: 'Allow',
      },
      {
        name: "a variable's value is literal, never a wildcard",
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: `${ARN}:service/\${aws:username}/web` }])],
        req: req('ecs:UpdateService', [`${ARN}:service/x/web`], { 'aws:username': ['*'] }),
        effect: 'ImplicitDeny',
      },
      {
        name: 'a variable the request lacks matches nothing',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: `${ARN}:service/\${aws:username}/*` }])],
        req: req('ecs:UpdateService', [`${ARN}:service/alice/web`]),
        effect: 'ImplicitDeny',
      },
      {
        name: 'no variables in a 2008-10-17 policy: ${...} is literal',
        policies: [policy([{ Effect: 'Allow', Action: 'ecs:*', Resource: `${ARN}:service/\${aws:username}/*` }], '2008-10-17')],
        req: req('ecs:UpdateService', [`${ARN}:service/\${aws:username}/web`], { 'aws:username': ['alice'] }),
        effect: 'Allow',
      },
      {
        name: 'the ECS Developer Guide: describe and delete one cluster',
        policies: [policy([{ Effect: 'Allow', Action: ['ecs:DescribeClusters', 'ecs:DeleteCluster'], Resource: [`${ARN}:cluster/A`] }])],
        req: req('ecs:DeleteCluster', [A]),
        effect: 'Allow',
      },
      {
        name: 'the ECS Developer Guide: list tasks of one cluster (Resource "*", Condition ecs:cluster)',
        policies: [policy([{ Effect: 'Allow', Action: ['ecs:ListTasks'], Condition: { ArnEquals: { 'ecs:cluster': A } }, Resource: ['*'] }])],
        req: req('ecs:ListTasks', ['*'], { 'ecs:cluster': [A] }),
        effect: 'Allow',
      },
    ];
    for (const t of table) {
      it(`${t.name}: ${t.effect}`, () => {
        expect(evaluate(t.policies, t.req).effect).to.equal(t.effect);
      });
    }

    it('names the statement that decided and the resource', () => {
      const p = policy(
        [
          { Sid: 'NoSecret', Effect: 'Deny', Action: 'ecs:RunTask', Resource: `${ARN}:task-definition/secret:*` },
          { Sid: 'All', Effect: 'Allow', Action: 'ecs:*', Resource: '*' },
        ],
        '2012-10-17',
        'Mixed',
      );
      expect(evaluate([p], req('ecs:RunTask', [`${ARN}:task-definition/secret:1`]))).to.deep.equal({
        effect: 'Deny',
        resource: `${ARN}:task-definition/secret:1`,
        statement: 'policy "Mixed" Statement[0] (Sid "NoSecret")',
      });
      expect(evaluate([p], req('ecs:RunTask', [`${ARN}:task-definition/web:1`]))).to.deep.equal({
        effect: 'Allow',
        resource: `${ARN}:task-definition/web:1`,
        statement: 'policy "Mixed" Statement[1] (Sid "All")',
      });
      expect(evaluate([], req('ecs:RunTask', []))).to.deep.equal({ effect: 'ImplicitDeny', resource: '*' });
    });
  });

  describe('load-time checks name the statement and the element', () => {
    const cases: Array<{ name: string; doc: unknown; field: string; says: RegExp }> = [
      { name: 'not an object', doc: 'Allow everything', field: 'policies.P', says: /policy document/ },
      { name: 'a wrong Version', doc: { Version: '2020-01-01', Statement: [] }, field: 'policies.P.Version', says: /2012-10-17/ },
      { name: 'no statement', doc: { Version: '2012-10-17' }, field: 'policies.P.Statement', says: /required/ },
      { name: 'an unknown policy element', doc: { Version: '2012-10-17', Statemnt: [] }, field: 'policies.P.Statemnt', says: /unknown policy element/ },
      {
        name: 'a lower-case Effect',
        doc: { Statement: [{ Sid: 'S', Effect: 'allow', Action: '*', Resource: '*' }] },
        field: 'policies.P.Statement[0].Effect',
        says: /"Allow" or "Deny", got "allow" \(Sid "S"\)/,
      },
      {
        name: 'Action and NotAction together',
        doc: { Statement: [{ Effect: 'Allow', Action: '*', NotAction: 'ecs:RunTask', Resource: '*' }] },
        field: 'policies.P.Statement[0].NotAction',
        says: /together/,
      },
      {
        name: 'neither Action nor NotAction',
        doc: { Statement: [{ Effect: 'Allow', Resource: '*' }] },
        field: 'policies.P.Statement[0].Action',
        says: /required/,
      },
      { name: 'no Resource', doc: { Statement: [{ Effect: 'Allow', Action: '*' }] }, field: 'policies.P.Statement[0].Resource', says: /required/ },
      {
        name: "a malformed action (the ECS Developer Guide's ecs>DeleteCluster)",
        doc: { Statement: [{ Effect: 'Allow', Action: ['ecs:DescribeClusters', 'ecs>DeleteCluster'], Resource: '*' }] },
        field: 'policies.P.Statement[0].Action',
        says: /"ecs>DeleteCluster" is not an action/,
      },
      {
        name: 'a resource that is not an ARN',
        doc: { Statement: [{ Effect: 'Allow', Action: '*', Resource: 'cluster/A' }] },
        field: 'policies.P.Statement[0].Resource',
        says: /not an ARN/,
      },
      {
        name: 'an empty Action list',
        doc: { Statement: [{ Effect: 'Allow', Action: [], Resource: '*' }] },
        field: 'policies.P.Statement[0].Action',
        says: /non-empty/,
      },
      {
        name: 'a Principal (identity-based policies have none)',
        doc: { Statement: [{ Effect: 'Allow', Principal: '*', Action: '*', Resource: '*' }] },
        field: 'policies.P.Statement[0].Principal',
        says: /identity-based/,
      },
      {
        name: 'an unknown condition operator',
        doc: { Statement: [{ Effect: 'Allow', Action: '*', Resource: '*', Condition: { ArnEqualz: { 'ecs:cluster': A } } }] },
        field: 'policies.P.Statement[0].Condition.ArnEqualz',
        says: /unknown condition operator/,
      },
      {
        name: 'a condition without values',
        doc: { Statement: [{ Effect: 'Allow', Action: '*', Resource: '*', Condition: { ArnEquals: { 'ecs:cluster': [] } } }] },
        field: 'policies.P.Statement[0].Condition.ArnEquals.ecs:cluster',
        says: /non-empty list/,
      },
      {
        name: 'a condition key without a service',
        doc: { Statement: [{ Effect: 'Allow', Action: '*', Resource: '*', Condition: { ArnEquals: { cluster: A } } }] },
        field: 'policies.P.Statement[0].Condition.ArnEquals.cluster',
        says: /not a condition key/,
      },
      {
        name: 'duplicate Sids',
        doc: {
          Statement: [
            { Sid: 'X', Effect: 'Allow', Action: '*', Resource: '*' },
            { Sid: 'X', Effect: 'Deny', Action: '*', Resource: '*' },
          ],
        },
        field: 'policies.P.Statement[1].Sid',
        says: /unique/,
      },
      {
        name: 'an unknown statement element',
        doc: { Statement: [{ Effect: 'Allow', Action: '*', Resource: '*', Resources: '*' }] },
        field: 'policies.P.Statement[0].Resources',
        says: /unknown statement element/,
      },
    ];
    for (const c of cases) {
      it(`refuses ${c.name}`, () => {
        const r = parsePolicy('P', c.doc);
        expect(r.policy).to.equal(undefined);
        const cause = r.causes.find((x) => x.field === c.field);
        expect(cause, JSON.stringify(r.causes)).to.not.equal(undefined);
        expect(cause!.message).to.match(c.says);
      });
    }
    it('accepts a single statement object and string Action/Resource, as IAM does', () => {
      const r = parsePolicy('P', { Version: '2012-10-17', Statement: { Effect: 'Allow', Action: 'ecs:List*', Resource: '*' } });
      expect(r.causes).to.deep.equal([]);
      expect(evaluate([r.policy!], req('ecs:ListClusters', ['*'])).effect).to.equal('Allow');
    });
  });

  describe('the policy file', () => {
    it('attaches policies to users and groups', () => {
      const set = parsePolicyFile(
        JSON.stringify({
          policies: {
            Run: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'ecs:RunTask', Resource: '*' }] },
            Read: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'ecs:Describe*', Resource: '*' }] },
          },
          users: { alice: ['Run'] },
          groups: { ops: ['Read', 'Run'] },
        }),
      );
      expect(set.forIdentity({ user: 'alice', groups: [] }).map((p) => p.name)).to.deep.equal(['Run']);
      expect(set.forIdentity({ user: 'bob', groups: ['ops'] }).map((p) => p.name)).to.deep.equal(['Run', 'Read']);
      expect(set.forIdentity({ user: 'carol', groups: ['dev'] })).to.deep.equal([]);
    });
    it('reads YAML, and reports every problem with its place', () => {
      const text = [
        'policies:',
        '  Good: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "ecs:*", Resource: "*"}]}',
        '  Bad: {Version: "2012-10-17", Statement: [{Effect: Alow, Action: "ecs:*", Resource: "*"}]}',
        'users:',
        '  alice: [Good, Missing]',
        'roles: {}',
      ].join('\n');
      try {
        parsePolicyFile(text, 'p.yaml');
        expect.fail('accepted a broken file');
      } catch (e) {
        expect(isBerthError(e, 'Invalid')).to.equal(true);
        const causes = (e as { details: { causes: Array<{ field: string }> } }).details.causes.map((c) => c.field);
        expect(causes).to.have.members(['roles', 'policies.Bad.Statement[0].Effect', 'users.alice[1]']);
        expect((e as Error).message).to.match(/^PolicyFile "p.yaml" is invalid: /);
      }
    });
  });
});

describe('the policy file kept current (PolicyFile)', () => {
  it('re-reads a changed file; a broken version keeps the policies in force and logs why', async () => {
    const { mkdtemp, writeFile, rm, rename } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { Writable } = await import('node:stream');
    const { pino } = await import('pino');
    const { PolicyFile } = await import('../../pkg/apiserver/policyfile.ts');
    const dir = await mkdtemp(join(tmpdir(), 'berth-policyfile-'));
    const file = join(dir, 'p.json');
    const lines: Array<{ level: number; msg: string; err?: string }> = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }));
    const doc = (action: string) =>
      JSON.stringify({ policies: { P: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: action, Resource: '*' }] } }, users: { alice: ['P'] } });
    const allows = (pf: InstanceType<typeof PolicyFile>, action: string) =>
      evaluate(pf.current().forIdentity({ user: 'alice', groups: [] }), req(action, ['*'])).effect === 'Allow';
    await writeFile(file, doc('ecs:ListClusters'));
    const pf = new PolicyFile(file, log, { intervalMs: 50, debounceMs: 20 }).start();
    try {
      expect(allows(pf, 'ecs:ListClusters')).to.equal(true);
      // an editor's rename into place is seen by the poll
      await writeFile(`${file}.new`, doc('ecs:ListServices'));
      await rename(`${file}.new`, file);
      for (let i = 0; i < 200 && !allows(pf, 'ecs:ListServices'); i++) await new Promise((r) => setTimeout(r, 25));
      expect(allows(pf, 'ecs:ListServices')).to.equal(true);
      expect(allows(pf, 'ecs:ListClusters')).to.equal(false);
      // a broken version: refused, logged, the last good one stays
      await writeFile(file, '{"policies": {"P": {"Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]}}}');
      for (let i = 0; i < 200 && !lines.some((l) => l.level >= 50); i++) await new Promise((r) => setTimeout(r, 25));
      const error = lines.find((l) => l.level >= 50);
      expect(error?.msg).to.equal('policy file rejected; the policies in force stay');
      expect(error?.err).to.contain('policies.P.Statement[0].Effect');
      expect(allows(pf, 'ecs:ListServices')).to.equal(true);
      // reload() itself: the same broken text again is refused again
      expect(pf.reload()).to.equal(false);
    } finally {
      pf.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
