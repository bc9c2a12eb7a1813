/**
 * C3 (apiserver.md): binding transactions within etcd's DEFAULT limits. etcd refuses a txn
 * of more than `--max-txn-ops` compares or ops (default 128) and a request above
 * `--max-request-bytes` (default 1.5 MiB); a placement batch of 1,500 tasks is one binding
 * call. The binder splits it into txns within both, each instance's allocation record in
 * the txn of its tasks, so the whole batch gets bound and the controller does not stall.
 *
 * A real one-member etcd with its default flags, an apiserver on it, the real placement
 * controller started after 1,500 tasks (10 KB each, so the byte limit binds too) are
 * pending on four instances. `C3_TASKS=5000` runs the larger variant of the review.
 */
import { expect } from 'chai';
import { Client } from '../../pkg/client/client.ts';
import { ControllerManager } from '../../pkg/controller/manager.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startEtcdCluster, type EtcdCluster } from '../support/etcdcluster.ts';
import { eventually, startHaApiServers, type HaApiServers } from '../support/haapi.ts';

const V = '/apis/berth.dev/v1';
const N = Number(process.env.C3_TASKS ?? 1500);
const INSTANCES = 4;
const obj = (kind: string, name: string, spec: unknown) => ({ apiVersion: 'berth.dev/v1', kind, metadata: { name }, spec });

describe(`C3: a binding batch of ${N} tasks on etcd with its default --max-txn-ops and --max-request-bytes`, function () {
  this.timeout(Math.max(300_000, N * 150));
  let etcd: EtcdCluster;
  let ha: HaApiServers;
  let mgr: ControllerManager | undefined;
  let client: Client | undefined;

  before(async () => {
    etcd = await startEtcdCluster({ members: 1 });
    ha = await startHaApiServers({ n: 1, etcd });
  });
  after(async () => {
    await mgr?.stop();
    client?.close();
    await ha?.stop();
    await etcd?.stop();
  });

  it('binds every pending task, each instance never over-committed, with the placement controller started after they were created', async () => {
    const [s] = ha.servers;
    const ok = (r: { status: number; body: any }) => expect(r.status, JSON.stringify(r.body).slice(0, 300)).to.equal(201);
    ok(await s.call('POST', `${V}/clusters`, obj('Cluster', 'big', undefined)));
    ok(await s.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'tiny', { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 4 }] })));
    for (let i = 0; i < INSTANCES; i++) {
      const res = [
        { name: 'CPU', type: 'INTEGER', integerValue: 1_000_000 },
        { name: 'MEMORY', type: 'INTEGER', integerValue: 4 * N },
        { name: 'PORTS', type: 'STRINGSET', stringSetValue: [] },
        { name: 'PORTS_UDP', type: 'STRINGSET', stringSetValue: [] },
      ];
      ok(await s.call('POST', `${V}/namespaces/big/containerinstances`, obj('ContainerInstance', `i${i}`, { registeredResources: res })));
    }
    // 10 KB of overrides per task: ~100 tasks fill a 1 MiB txn before 128 ops do
    const env = [{ name: 'PAYLOAD', value: 'x'.repeat(10_000) }];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < N; i = next++) {
          ok(await s.call('POST', `${V}/namespaces/big/tasks`, obj('Task', `t${i}`, { taskDefinition: 'tiny:1', overrides: { containerOverrides: [{ name: 'app', environment: env }] } })));
        }
      }),
    );
    client = new Client({ server: s.url, token: 'dev' });
    mgr = new ControllerManager({ client, log: silentLogger(), controllers: ['placement'], leaderElect: false, resyncMs: 5000 });
    await mgr.start();
    const unbound = async () => {
      const r = await s.call('GET', `${V}/namespaces/big/tasks?fieldSelector=${encodeURIComponent('spec.containerInstance=')}&limit=1`);
      return r.body.items.length + (r.body.metadata.remainingItemCount ?? 0);
    };
    await eventually(async () => (await unbound()) === 0, `all ${N} tasks bound`, Math.max(240_000, N * 100));
    // the store's own state: every task bound once, every record holds exactly its tasks
    const perInstance = new Map<string, number>();
    let bound = 0;
    for (let page: string | undefined = '', first = true; first || page; first = false) {
      const l = await ha.store.list('/berth/tasks/big/', { limit: 200, ...(page ? { continue: page } : {}) });
      for (const kv of l.items) {
        const t = JSON.parse(kv.value);
        expect(t.spec.containerInstance, kv.key).to.be.a('string');
        perInstance.set(t.spec.containerInstance, (perInstance.get(t.spec.containerInstance) ?? 0) + 1);
        bound++;
      }
      page = l.continue;
    }
    expect(bound).to.equal(N);
    let recorded = 0;
    for (let i = 0; i < INSTANCES; i++) {
      const rec = JSON.parse((await ha.store.get(`/berth/allocations/big/i${i}`))!.value);
      expect(Object.keys(rec.tasks).length, `i${i}`).to.equal(perInstance.get(`i${i}`) ?? 0);
      expect(rec.memory).to.equal(4 * Object.keys(rec.tasks).length);
      expect(rec.memory).to.be.at.most(4 * N);
      recorded += Object.keys(rec.tasks).length;
    }
    expect(recorded).to.equal(N);
  });
});
