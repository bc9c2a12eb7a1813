import { expect } from 'chai';
import type { Lease, Task } from '../../pkg/api/kinds.ts';
import { Kinds } from '../../pkg/api/kinds.ts';
import { FENCE_HEADER, fenceKey } from '../../pkg/apiserver/fence.ts';
import { Client } from '../../pkg/client/client.ts';
import { LeaderElector, type LeadershipTerm } from '../../pkg/controller/runtime/leader.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const td = { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'fence' }, spec: { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 8 }] } };
const task = (name: string) => ({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: 'default' }, spec: { taskDefinition: 'fence' } }) as Task;

for (const store of ['embedded', 'etcd'] as const) {
  describe(`lease fencing: two managers that both believe they lead cannot both write (${store} store)`, function () {
    this.timeout(90_000);
    let api: TestApiServer;
    let admin: Client;
    const electors: LeaderElector[] = [];

    before(async () => {
      api = await startApiServer({ store });
      admin = new Client({ server: api.url, token: api.adminToken });
      await admin.create(td);
    });
    after(async () => {
      for (const e of electors) await e.stop();
      admin?.close();
      await api?.stop();
    });

    it('a deposed leader that still believes it leads has every write refused (LeaseLost) and applied nowhere; renewals keep the fence', async () => {
      let term: LeadershipTerm | undefined;
      let stoppedWhy: string | undefined;
      // a leader whose clock says it leads for a long while (a stalled process, a frozen VM)
      const a = new LeaderElector({ client: admin, name: 'fence-a', identity: 'a', leaseDurationMs: 60_000, renewDeadlineMs: 50_000, retryPeriodMs: 200, log: silentLogger(), onStartedLeading: (t) => void (term = t), onStoppedLeading: (w) => void (stoppedWhy = w) });
      electors.push(a);
      a.start();
      await eventually(() => term, 10_000, 'a leads');
      // renewals do not move the fence: after several, a's writes still land
      await new Promise((r) => setTimeout(r, 1000));
      await term!.client.create(task('before'));
      expect(await admin.tryGet('Task', 'default', 'before')).to.not.equal(undefined);
      // another holder acquires the lease (what a standby does once the lease looks expired to it)
      const l = await admin.get<Lease>('Lease', 'berth-system', 'fence-a');
      await admin.update<Lease>({ ...l, spec: { ...l.spec, holderIdentity: 'b', acquireTime: new Date().toISOString(), leaseTransitions: (l.spec.leaseTransitions ?? 0) + 1 } });
      // a still believes it leads, by its own clock
      expect(term!.valid()).to.equal(true);
      for (const write of [
        () => term!.client.create(task('after')),
        () => term!.client.patch('Task', 'default', 'before', { metadata: { labels: { x: 'y' } } }),
        () => term!.client.delete('Task', 'default', 'before'),
        () => term!.client.bind('default', [{ task: 'before', containerInstance: 'nowhere' }]),
      ]) {
        const e = await write().catch((x) => x);
        expect(isBerthError(e, 'LeaseLost'), String(e)).to.equal(true);
        expect((e as Error).message).to.match(/was acquired by another holder/);
      }
      expect(await admin.tryGet('Task', 'default', 'after')).to.equal(undefined);
      const before = await admin.get<Task>('Task', 'default', 'before');
      expect(before.metadata.labels?.x).to.equal(undefined);
      // the elector learns of it at its next renewal attempt and steps down
      await eventually(() => stoppedWhy, 10_000, 'a steps down');
    });

    it('the guard is the compare in the write\'s own txn (not the cache): a stale fence handed straight to the registry commits nothing', async () => {
      const cur = await admin.get<Lease>('Lease', 'berth-system', 'fence-a');
      const fence = (revision: number) => ({ namespace: 'berth-system', lease: 'fence-a', revision, key: fenceKey('berth-system', 'fence-a') });
      const fenceRev = Number((await api.store.get(fenceKey('berth-system', 'fence-a')))!.modRevision);
      const stale = await api.api.registry.create(Kinds.Task, 'default', task('stale'), { fence: fence(fenceRev - 1) }).catch((e) => e);
      expect(isBerthError(stale, 'LeaseLost'), String(stale)).to.equal(true);
      expect(await admin.tryGet('Task', 'default', 'stale')).to.equal(undefined);
      const ok = await api.api.registry.create(Kinds.Task, 'default', task('current'), { fence: fence(fenceRev) });
      expect(ok.created).to.equal(true);
      expect(cur.spec.holderIdentity).to.be.a('string');
    });

    it('a fence naming an unknown lease is a 400; one from an identity that may not hold leases is a 403', async () => {
      const bad = await api.call('POST', '/apis/berth.dev/v1/namespaces/default/tasks', task('x'), {});
      expect(bad.status).to.equal(201);
      const res = await fetch(`${api.url}/apis/berth.dev/v1/namespaces/default/tasks`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${api.adminToken}`, 'Content-Type': 'application/json', [FENCE_HEADER]: 'berth-system/no-such-lease=5' },
        body: JSON.stringify(task('y')),
      });
      expect(res.status).to.equal(400);
      expect(((await res.json()) as { message: string }).message).to.match(/no-such-lease does not exist/);
      const malformed = await fetch(`${api.url}/apis/berth.dev/v1/namespaces/default/tasks`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${api.adminToken}`, 'Content-Type': 'application/json', [FENCE_HEADER]: 'garbage' },
        body: JSON.stringify(task('y')),
      });
      expect(malformed.status).to.equal(400);
      const viewer = await fetch(`${api.url}/apis/berth.dev/v1/namespaces/default/tasks`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${api.viewerToken}`, 'Content-Type': 'application/json', [FENCE_HEADER]: 'berth-system/fence-a=5' },
        body: JSON.stringify(task('y')),
      });
      expect(viewer.status).to.equal(403);
      expect(await admin.tryGet('Task', 'default', 'y')).to.equal(undefined);
    });
  });
}
