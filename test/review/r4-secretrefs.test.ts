import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newKeyLine, Keyring } from '../../pkg/secrets/keyring.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startAuthzServer, V, type AuthzServer } from '../support/authz.ts';

/** Regression test of the fourth review: who may make a node read a secret (the finding's id in the title). */

const NS = `${V}/namespaces/default`;
const ARN = 'arn:aws:ecs:us-east-1:000000000000';
const CLEAR = 'r4-11-prod-db-password-e19c';

describe('review R4: secret references', function () {
  this.timeout(30_000);
  let dir: string;
  let s: TestApiServer;
  const dev = randomBytes(16).toString('hex');
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-r4-refs-'));
    await writeFile(join(dir, 'keys'), newKeyLine('k1'));
    // dev registers task definitions and runs tasks; reading secret values is denied explicitly
    const policyFile = join(dir, 'policies.json');
    await writeFile(
      policyFile,
      JSON.stringify({
        policies: {
          Dev: {
            Version: '2012-10-17',
            Statement: [
              { Sid: 'Register', Effect: 'Allow', Action: ['ecs:RegisterTaskDefinition', 'ecs:DescribeTaskDefinition'], Resource: '*' },
              { Sid: 'Run', Effect: 'Allow', Action: ['ecs:RunTask'], Resource: `${ARN}:task-definition/*` },
              { Sid: 'NoSecrets', Effect: 'Deny', Action: ['secretsmanager:GetSecretValue', 'ssm:GetParameter*'], Resource: '*' },
            ],
          },
        },
        users: { dev: ['Dev'] },
      }),
    );
    s = await startApiServer({ tokens: [{ token: dev, user: 'dev', uid: '42', groups: [] }], policyFile, build: { keyring: Keyring.fromFile(join(dir, 'keys')) } });
  });
  after(async () => {
    await s?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('R4-11: an identity denied secretsmanager:GetSecretValue cannot have a task read the secret for it (register + run a task referencing it)', async () => {
    expect((await s.call('POST', `${V}/secrets`, { apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name: 'prod-db' }, spec: { data: { value: CLEAR } } })).status).to.equal(201);
    // the premise: dev may not read it
    expect((await s.call('GET', `${V}/secrets/prod-db/value`, undefined, { token: dev })).status).to.equal(403);
    const td = await s.call(
      'POST',
      `${V}/taskdefinitions`,
      { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'exfil' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 16, command: ['sh', '-c', 'echo $PW'], secrets: [{ name: 'PW', valueFrom: 'prod-db' }] }] } },
      { token: dev },
    );
    const task = td.status === 201 ? await s.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'exfil' }, spec: { taskDefinition: 'exfil' } }, { token: dev }) : td;
    // what the scheduler then does: bind it to a node, whose agent reads the value into the container (and its logs)
    let nodeRead = 0;
    if (task.status === 201) {
      const inst = { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'n1' }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 2048 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 2048 }] } };
      const node = (await s.call('POST', `${NS}/containerinstances`, inst, { token: s.bootstrapToken })).body.metadata.annotations['berth.dev/node-token'];
      await s.call('POST', `${NS}/bindings`, { bindings: [{ task: 'exfil', containerInstance: 'n1' }] });
      const v = await s.call('GET', `${V}/secrets/prod-db/value`, undefined, { token: node });
      nodeRead = v.status;
      expect(v.body?.spec?.data?.value).to.equal(CLEAR);
    }
    expect([td.status, task.status], `dev's task definition and task were accepted; the node then read the value (${nodeRead})`).to.not.deep.equal([201, 201]);
  });
});

describe('review R4: registering a task definition that references secrets (both faces)', function () {
  this.timeout(30_000);
  let a: AuthzServer;
  const containers = (valueFrom: string) => [{ name: 'c', image: 'busybox', memory: 16, secrets: [{ name: 'PW', valueFrom }] }];
  before(async () => {
    // alice registers task definitions; bob as well, and may read secrets; alice's reads are denied
    a = await startAuthzServer({
      policies: {
        policies: {
          Register: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['ecs:RegisterTaskDefinition', 'ecs:RegisterDaemonTaskDefinition'], Resource: '*' }] },
          NoSecrets: { Version: '2012-10-17', Statement: [{ Effect: 'Deny', Action: ['secretsmanager:GetSecretValue'], Resource: '*' }] },
        },
        users: { alice: ['Register', 'NoSecrets'] },
      },
    });
  });
  after(async () => {
    await a?.stop();
  });

  it('R4-11: the ECS face refuses RegisterTaskDefinition and RegisterDaemonTaskDefinition of a secret the caller may not read, and registers nothing', async () => {
    const r = await a.ecs('alice', 'RegisterTaskDefinition', { family: 'exfil-ecs', containerDefinitions: containers(`arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db`) });
    expect(r.status, JSON.stringify(r.body)).to.equal(403);
    expect(r.body.__type).to.equal('AccessDeniedException');
    expect(r.body.message).to.contain('secretsmanager:GetSecretValue');
    const d = await a.ecs('alice', 'RegisterDaemonTaskDefinition', { family: 'exfil-daemon', containerDefinitions: containers('prod-db') });
    expect(d.body.__type, JSON.stringify(d.body)).to.equal('AccessDeniedException');
    expect((await a.k8s('admin', 'GET', `${V}/taskdefinitions/exfil-ecs:1`)).status).to.equal(404);
    // without secrets alice registers; an admin registers the same one with them
    expect((await a.ecs('alice', 'RegisterTaskDefinition', { family: 'plain', containerDefinitions: [{ name: 'c', image: 'busybox', memory: 16 }] })).status).to.equal(200);
    expect((await a.ecs('admin', 'RegisterTaskDefinition', { family: 'exfil-ecs', containerDefinitions: containers('prod-db') })).status).to.equal(200);
  });

  it('R4-11: the resource API refuses a task definition (and a family PATCH adding a secret) the caller may not read, and an admin registers it', async () => {
    const td = (name: string, valueFrom: string) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec: { containerDefinitions: containers(valueFrom) } });
    const r = await a.k8s('alice', 'POST', `${V}/taskdefinitions`, td('exfil-k8s', 'prod-db'));
    expect(r.status, JSON.stringify(r.body)).to.equal(403);
    expect(JSON.stringify(r.body)).to.contain('secretsmanager:GetSecretValue');
    expect((await a.k8s('admin', 'GET', `${V}/taskdefinitions/exfil-k8s:1`)).status).to.equal(404);
    const p = await a.k8s('alice', 'PATCH', `${V}/taskdefinitions/plain`, { spec: { containerDefinitions: containers('prod-db') } }, { contentType: 'application/merge-patch+json' });
    expect(p.status, JSON.stringify(p.body)).to.equal(403);
    expect((await a.k8s('admin', 'POST', `${V}/taskdefinitions`, td('exfil-k8s', 'prod-db'))).status).to.equal(201);
  });
});
