import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import type { Lease, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const managers: ChildProcess[] = [];
function startManager(api: TestApiServer, identity: string): ChildProcess {
  const p = spawn(process.execPath, ['cmd/berth-controller-manager/bin.mjs', '--server', api.url, '--token', api.adminToken, '--controllers', 'service,placement', '--log-level', 'warn'], {
    env: { ...process.env, HOSTNAME: identity },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  managers.push(p);
  return p;
}

describe('berth-controller-manager: leader election on Lease objects (real processes)', function () {
  this.timeout(90_000);
  let api: TestApiServer;
  let client: Client;

  before(async () => {
    api = await startApiServer();
    client = new Client({ server: api.url, token: api.adminToken });
  });
  after(async () => {
    for (const p of managers) if (p.exitCode === null) p.kill('SIGKILL');
    client?.close();
    await api?.stop();
  });

  it('one manager leads each controller; when it dies, the standby takes over within 15 s and keeps reconciling', async () => {
    const a = startManager(api, 'a');
    const leaseA = await eventually(async () => (await client.tryGet<Lease>('Lease', 'berth-system', 'berth-controller-service'))?.spec.holderIdentity, 20_000, 'first leader');
    const b = startManager(api, 'b');
    // b stays a standby while a renews
    await new Promise((r) => setTimeout(r, 4000));
    const still = await client.get<Lease>('Lease', 'berth-system', 'berth-controller-service');
    expect(still.spec.holderIdentity).to.equal(leaseA);
    const placementHolder = (await client.get<Lease>('Lease', 'berth-system', 'berth-controller-placement')).spec.holderIdentity;
    expect(placementHolder).to.be.a('string').and.not.equal('');

    // the leader dies without a word (SIGKILL: no lease release)
    a.kill('SIGKILL');
    const killedAt = Date.now();
    const leaseB = await eventually(async () => {
      const l = await client.get<Lease>('Lease', 'berth-system', 'berth-controller-service');
      return l.spec.holderIdentity !== leaseA && l.spec.holderIdentity;
    }, 20_000, 'takeover');
    const took = Date.now() - killedAt;
    expect(took).to.be.below(15_000);
    expect(leaseB).to.not.equal(leaseA);
    const l = await client.get<Lease>('Lease', 'berth-system', 'berth-controller-service');
    expect(l.spec.leaseTransitions).to.be.at.least(1);

    // the new leader does the work: a service gets its tasks created
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'le' }, spec: { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 16 }] } });
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'le', namespace: 'default' }, spec: { taskDefinition: 'le', desiredCount: 2 } });
    await eventually(async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=service:le' })).items.length === 2, 20_000, 'tasks created by the new leader');
    expect(b.exitCode).to.equal(null);
  });
});
