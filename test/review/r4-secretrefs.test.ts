import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newKeyLine, Keyring } from '../../pkg/secrets/keyring.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

/** Regression test of the fourth review: who may make a node read a secret (the finding's id in the title). */
const V = '/apis/berth.dev/v1';
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
