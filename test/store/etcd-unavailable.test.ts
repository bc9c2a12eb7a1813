import { expect } from 'chai';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { EtcdStore } from '../../pkg/store/etcd.ts';
import { startEtcdCluster, type EtcdCluster } from '../support/etcdcluster.ts';

/**
 * FS1 (found by the fault suite's R1: the etcd leader SIGKILLed under a client workload):
 * a write etcd could not take -- a member that is down, a cluster without a leader, a call
 * that timed out while the leader changed -- came out of the store as the raw gRPC error,
 * which both faces answer as a 500 "internal error" (with a stack trace in the log). Now:
 * a write that was never sent (the member refused the connection, or said it has no leader)
 * goes to another member, and one etcd could not confirm is a 503 (nothing written) or a 504
 * (it may have been applied: the caller reads before it retries), with Retry-After.
 */
describe('FS1: etcd store writes while members are down or the cluster has no leader (real 3-member cluster)', function () {
  this.timeout(120_000);
  let cluster: EtcdCluster;
  let store: EtcdStore;

  before(async () => {
    cluster = await startEtcdCluster({ members: 3 });
    store = new EtcdStore({ hosts: cluster.endpoints, callTimeoutMs: 3000 });
  });
  after(async () => {
    await store?.close();
    await cluster?.stop();
  });

  it('FS1: with one member down (a follower: quorum and leader kept), every write succeeds: a call the dead member never took goes to another', async () => {
    await store.create('/berth/fs1/warm', '{}');
    const leader = await cluster.leader();
    const down = cluster.members.find((m) => m !== leader)!;
    await down.kill('SIGKILL');
    const failures: string[] = [];
    for (let i = 0; i < 30; i++) {
      try {
        await store.create(`/berth/fs1/one-down-${i}`, '{}');
      } catch (e) {
        failures.push(`${i}: ${(e as Error).message}`);
      }
    }
    expect(failures, failures.join('\n')).to.deep.equal([]);
    await down.restart();
    await cluster.healthy();
  });

  it('FS1: with quorum lost (no leader), a write is a 503 or 504 with Retry-After, not a raw gRPC error; once quorum is back writes work', async () => {
    const [a, b] = cluster.members;
    await a.kill('SIGKILL');
    await b.kill('SIGKILL');
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      try {
        await store.create(`/berth/fs1/no-quorum-${i}`, '{}');
        seen.push('succeeded');
      } catch (e) {
        seen.push(isBerthError(e) ? `${e.status} ${e.details.retryAfterSeconds ? 'retry-after' : 'no retry-after'}` : `raw ${(e as Error).constructor.name}: ${(e as Error).message}`);
      }
    }
    for (const s of seen) expect(s, seen.join('\n')).to.match(/^50[34] retry-after$/);
    await a.restart();
    await b.restart();
    await cluster.healthy(60_000);
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      try {
        await store.create(`/berth/fs1/after-${i}`, '{}');
        ok = true;
      } catch {
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    expect(ok, 'a write after quorum is back').to.equal(true);
  });
});
