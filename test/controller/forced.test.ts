import { expect } from 'chai';
import type { Service } from '../../pkg/api/kinds.ts';
import type { Client } from '../../pkg/client/client.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startControlPlane, type Running } from '../support/fleet.ts';
import { kubectl } from '../support/kubectl.ts';
import { expectRestart } from '../support/restart.ts';

describe('forced deployments through the resource API and kubectl (real store, controllers, hollow agents)', function () {
  this.timeout(120_000);
  let api: TestApiServer;
  let client: Client;
  let cp: Running;

  before(async () => {
    api = await startApiServer();
    cp = await startControlPlane(api, 2, { fleet: { memoryMiB: 1024, cpus: 2 } });
    client = cp.client;
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, command: ['sleep', '3600'] }] } });
    await client.create({
      apiVersion: 'berth.dev/v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'default' },
      spec: { taskDefinition: 'web', desiredCount: 3, deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200 } },
    });
  });
  after(async () => {
    await cp?.stop();
    await api?.stop();
  });

  it('a new spec.restartedAt replaces every task with one of the same revision, within the bounds; each new task pulls its image', async () => {
    const pulls = () => cp.fleet.agents.reduce((n, a) => n + (a.runtime as unknown as { calls: { pull: number } }).calls.pull, 0);
    let before = 0;
    const r = await expectRestart(client, 'default', 'web', async () => {
      before = pulls();
      await client.patch('Service', 'default', 'web', { spec: { restartedAt: '2026-01-01T00:00:00Z' } });
    }, { desired: 3 });
    expect(r.service.status!.restart).to.deep.equal({ restartedAt: '2026-01-01T00:00:00Z' });
    // the agents pull again for the new tasks (the runtime then applies ECS_IMAGE_PULL_BEHAVIOR)
    expect(pulls() - before).to.be.at.least(3);
    // the same value again is no new request: nothing is replaced
    await client.patch('Service', 'default', 'web', { spec: { desiredCount: 3, restartedAt: '2026-01-01T00:00:00Z' } });
    await new Promise((res) => setTimeout(res, 1500));
    const s = await client.get<Service>('Service', 'default', 'web');
    expect(s.status!.deployments!.map((d) => d.id)).to.deep.equal([r.service.status!.deployments![0].id]);
  });

  it('kubectl patch of spec.restartedAt, and kubectl annotate with kubectl.kubernetes.io/restartedAt, each force one', async () => {
    await expectRestart(client, 'default', 'web', async () => {
      const k = await kubectl(api.kubeconfigPath, ['patch', 'services.berth.dev/web', '-n', 'default', '--type', 'merge', '-p', '{"spec":{"restartedAt":"2026-01-02T00:00:00Z"}}']);
      expect(k.code, k.stderr).to.equal(0);
    }, { desired: 3 });
    await expectRestart(client, 'default', 'web', async () => {
      const k = await kubectl(api.kubeconfigPath, ['annotate', 'services.berth.dev/web', '-n', 'default', '--overwrite', 'kubectl.kubernetes.io/restartedAt=2026-01-03T00:00:00Z']);
      expect(k.code, k.stderr).to.equal(0);
    }, { desired: 3 });
  });

  it('refuses a restartedAt that is not a short string, naming the field', async () => {
    const k = await kubectl(api.kubeconfigPath, ['patch', 'services.berth.dev/web', '-n', 'default', '--type', 'merge', '-p', '{"spec":{"restartedAt":5}}']);
    expect(k.code).to.not.equal(0);
    expect(k.stderr).to.match(/restartedAt/);
  });
});
