import { expect } from 'chai';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import type { Client } from '../../pkg/client/client.ts';
import { newRestart, REDEPLOY_ON_SECRET_CHANGE } from '../../pkg/controller/service/plan.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startControlPlane, type Running } from '../support/fleet.ts';
import { expectRestart } from '../support/restart.ts';

/**
 * Rotation that rolls out safely: a service that opts in (annotation or tag
 * berth.dev/redeploy-on-secret-change=true) gets a new deployment when a secret its task
 * definition references changes, under its circuit breaker; a service that did not opt in keeps
 * its tasks (new tasks read the new value whenever they start). Hollow agents resolve the
 * secrets as the real agent does (node identity, at creation); a hollow rule makes a container
 * whose DB secret is "bad" fail to start, as an application refusing a wrong password would.
 */
describe('secret rotation: opted-in services redeploy when a referenced secret changes (real store, controllers, hollow agents)', function () {
  this.timeout(120_000);
  let api: TestApiServer;
  let client: Client;
  let cp: Running;
  const tasks = async (svc: string) => (await client.list<Task>('Task', 'default', { fieldSelector: `spec.group=service:${svc}` })).items;
  const runningNames = async (svc: string) => (await tasks(svc)).filter((t) => t.status?.lastStatus === 'RUNNING' && t.spec.desiredStatus === 'RUNNING').map((t) => t.metadata.name).sort();
  const setSecret = (value: string) => client.patch('Secret', undefined, 'db', { spec: { data: { value } } });

  before(async () => {
    api = await startApiServer();
    cp = await startControlPlane(api, 2, { fleet: { memoryMiB: 1024, cpus: 2, hollow: { rules: [{ secretEnv: { DB: 'bad' }, fail: 'start' }] } } });
    client = cp.client;
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name: 'db' }, spec: { data: { value: 'good-1' } } });
    await client.create({
      apiVersion: 'berth.dev/v1',
      kind: 'TaskDefinition',
      metadata: { name: 'rot' },
      spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, command: ['sleep', '3600'], secrets: [{ name: 'DB', valueFrom: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:db' }] }] },
    });
    const dc = { minimumHealthyPercent: 100, maximumPercent: 200, deploymentCircuitBreaker: { enable: true, rollback: true } };
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'rot', namespace: 'default', annotations: { [REDEPLOY_ON_SECRET_CHANGE]: 'true' } }, spec: { taskDefinition: 'rot', desiredCount: 2, deploymentConfiguration: dc } });
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'stay', namespace: 'default' }, spec: { taskDefinition: 'rot', desiredCount: 2, deploymentConfiguration: dc } });
    await eventually(async () => (await runningNames('stay')).length === 2, 30_000, 'stay running');
  });
  after(async () => {
    await cp?.stop();
    await api?.stop();
  });

  it('a new value of the secret replaces every task of the opted-in service (same revision, within its bounds); the other keeps its tasks', async () => {
    const stay = await runningNames('stay');
    // opting in, and the secret first seen (whichever informer is first), started no deployment
    const first = await eventually(async () => {
      const svc = await client.get<Service>('Service', 'default', 'rot');
      return svc.status?.deployments?.[0]?.rolloutState === 'COMPLETED' && svc;
    }, 30_000, 'rot steady');
    expect(first.status!.events!.filter((e) => /forced new deployment/.test(e.message))).to.deep.equal([]);
    const r = await expectRestart(client, 'default', 'rot', () => setSecret('good-2').then(() => undefined), { desired: 2 });
    expect(r.service.status!.events!.some((e) => /is a forced new deployment of rot:1: a secret it references changed/.test(e.message))).to.equal(true);
    expect(r.service.status!.restart?.secrets).to.match(/^db@\d+$/);
    expect(await runningNames('stay')).to.deep.equal(stay);
    // nothing changed since: no further deployment
    await new Promise((res) => setTimeout(res, 1500));
    expect((await client.get<Service>('Service', 'default', 'rot')).status!.deployments).to.have.length(1);
  });

  it('a bad value: the new deployment fails, the circuit breaker rolls back, the old tasks serve throughout and it is not retried', async () => {
    await eventually(async () => (await runningNames('rot')).length === 2, 30_000, 'rot steady');
    const before = await runningNames('rot');
    const good = (await client.get<Service>('Service', 'default', 'rot')).status!.deployments![0].id;
    await setSecret('bad');
    // the failed deployment, its verdict and the rollback are the service's events
    const failedEvents = async () => (await client.get<Service>('Service', 'default', 'rot')).status!.events!.map((e) => e.message).join('\n');
    const s = await eventually(async () => {
      const svc = await client.get<Service>('Service', 'default', 'rot');
      const deps = svc.status?.deployments ?? [];
      // the old tasks were never stopped (minimumHealthyPercent 100: the new ones never became healthy)
      expect(await runningNames('rot')).to.include.members(before);
      return deps.length === 1 && deps[0].id === good && svc.status!.events!.some((e) => e.message.includes(`rolling back to deployment ${good}`)) && svc;
    }, 90_000, 'rolled back to the good deployment');
    expect(await runningNames('rot')).to.deep.equal(before);
    const ev = await failedEvents();
    expect(ev).to.match(/is a forced new deployment of rot:1: a secret it references changed/);
    expect(ev).to.match(/deployment failed: tasks failed to start/);
    expect(ev).to.match(new RegExp(`rolling back to deployment ${good.replace('/', '\\/')}`));
    expect(s.status!.restart?.secrets).to.match(/^db@\d+$/);
    // the bad version is recorded as acted on: the breaker's verdict stands, no new deployment follows
    await new Promise((res) => setTimeout(res, 2000));
    const later = await client.get<Service>('Service', 'default', 'rot');
    expect(later.status!.deployments!.map((d) => d.id)).to.deep.equal([good]);
  });
});

describe('secret rotation: which changes of the secrets a service reads start a deployment (pure)', () => {
  const table: Array<[string, string | undefined, string | undefined, boolean]> = [
    ['a newer version of a secret read', 'db@2', 'db@1', true],
    ['one of two secrets newer', 'a@1,db@3', 'a@1,db@2', true],
    ['the same versions', 'a@1,db@2', 'a@1,db@2', false],
    ['a secret first seen (created after the service, or its informer behind the service\'s)', 'db@1', 'db@-', false],
    ['a cache behind the version recorded', 'db@1', 'db@2', false],
    ['nothing recorded yet (just opted in)', 'db@4', undefined, false],
    ['opted out', undefined, 'db@1', false],
    ['a secret deleted', 'db@-', 'db@3', false],
  ];
  for (const [what, now, seen, forced] of table) it(what, () => expect(newRestart({ secrets: now }, { secrets: seen })).to.equal(forced));
});
