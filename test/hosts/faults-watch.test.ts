import { StartTaskCommand, StopTaskCommand, type ECSClient } from '@aws-sdk/client-ecs';
import { expect } from 'chai';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { apiTotals, cutter } from '../support/cut.ts';
import { describeTruth, dockerVsStore, live, runScenario, since, sleep, tasksOf, truthOk } from '../support/faultsuite.ts';
import { eventually } from '../support/fleet.ts';
import { ecsClient, registerTaskDefinition } from '../support/hostsapi.ts';
import { startTopology, type TopoHost, type Topology } from '../support/topology.ts';

/**
 * R2: a watch cut past compaction, and the stream cut again right after the
 * re-watch. The apiservers run with a short history here: the store compacted every 2 s to
 * the last 3 s (--compaction-interval, --compaction-retention) and a watch cache of 100
 * events (--watch-cache-size), so a watcher that was away for a while cannot resume: its
 * resourceVersion is compacted in etcd and gone from every apiserver's cache (410).
 *
 * Every controller-manager and agent loses its connections to the load balancer (ss -K) and
 * cannot reconnect (an iptables reset) while the world changes under it: a service scaled, a
 * service created, a task stopped, a task deleted, a task started on a host, 150 other
 * writes. Then the way back opens; as soon as every watcher is back (the apiservers' open
 * watches), all connections are cut again. Converged: the final state is what the store
 * says (the services' tasks running, the stopped and deleted tasks' containers gone, the new
 * task running on its host, one daemon copy per host, every agent's own list of tasks equal
 * to the store's), within a stated time.
 */
const LOST_GRACE_S = 60;
const HEARTBEAT_TIMEOUT_S = 60;

describe('fault scenario R2: watches cut past compaction, and cut again right after the re-watch (apiservers with a 3 s history and a 100-event watch cache)', function () {
  this.timeout(900_000);
  let t: Topology;
  let ecs: ECSClient;

  before(async function () {
    this.timeout(400_000);
    t = await startTopology({
      hosts: 3,
      apiserverArgs: ['--compaction-interval', '2', '--compaction-retention', '3', '--watch-cache-size', '100'],
      controllerManagerArgs: ['--instance-heartbeat-timeout', String(HEARTBEAT_TIMEOUT_S), '--instance-lost-grace', String(LOST_GRACE_S)],
    });
    ecs = ecsClient(t);
    await registerTaskDefinition(t, 'r2web', {
      containerDefinitions: [{ name: 'web', image: 'busybox', memory: 16, cpu: 32, portMappings: [{ containerPort: 8080, hostPort: 0 }], command: ['sh', '-c', 'echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp'] }],
    });
    await registerTaskDefinition(t, 'r2lone', { containerDefinitions: [{ name: 'lone', image: 'busybox', memory: 8, command: ['sleep', '36000'] }] });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'r2d' }, spec: { containerDefinitions: [{ name: 'r2d', image: 'busybox', memoryReservation: 8, command: ['sleep', '36000'] }] } });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'r2d', namespace: 'default' }, spec: { daemonTaskDefinition: 'r2d' } });
    // the daemon's copies first: an instance takes service tasks once its daemons run (ECS's
    // managed daemons documentation), so a service created before that would find one instance
    // free and put all its tasks there
    await eventually(async () => {
      const d = (await tasksOf(t)).filter((x) => live(x) && x.spec.group === 'daemon:r2d' && x.status?.lastStatus === 'RUNNING');
      return t.hosts.every((h) => d.some((x) => x.spec.containerInstance === h.instanceId));
    }, 240_000, 'a daemon copy RUNNING on every host');
    await t.client.create({
      apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'r2', namespace: 'default' },
      spec: { taskDefinition: 'r2web', desiredCount: 3, placementStrategy: [{ type: 'spread', field: 'instanceId' }], deploymentConfiguration: { maximumPercent: 200, minimumHealthyPercent: 100 } },
    });
  });
  after(async function () {
    this.timeout(120_000);
    ecs?.destroy();
    await t?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && t) console.error(t.logs(2500));
  });

  const running = (tasks: Task[], group: string) => tasks.filter((x) => live(x) && x.spec.group === group && x.status?.lastStatus === 'RUNNING');
  const startOn = async (h: TopoHost) => {
    const out = await ecs.send(new StartTaskCommand({ cluster: 'default', taskDefinition: 'r2lone', containerInstances: [h.instanceId], startedBy: 'r2' }));
    if (out.failures?.length || !out.tasks?.[0]?.taskArn) throw new Error(`StartTask on ${h.name}: ${JSON.stringify(out.failures)}`);
    return out.tasks[0].taskArn.split('/').pop()!;
  };

  /** a watch from `rev` on one apiserver: does it answer 410 (the history is gone)? */
  async function watchGone(url: string, rev: string): Promise<boolean> {
    const c = new Client({ server: url, token: t.adminToken, ca: t.caPem });
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 5000);
    try {
      for await (const ev of c.watch('Task', 'default', { resourceVersion: rev, signal: ac.signal })) {
        return ev.type === 'ERROR' && (ev.object as unknown as { code?: number }).code === 410;
      }
      return false;
    } finally {
      clearTimeout(timer);
      ac.abort();
      c.close();
    }
  }

  it('R2: controller-managers and agents whose watches were cut past compaction, and cut again right after they re-watched, relist and converge to the store\'s state; nothing missed', async () => {
    await runScenario('R2', t, async (s) => {
      const [h1, h2, h3] = t.hosts;
      // steady: the service, a daemon copy per host, two standalone tasks (on h1 and h2)
      const loneStop = await startOn(h1);
      const loneDelete = await startOn(h2);
      await eventually(async () => {
        const all = await tasksOf(t);
        const d = running(all, 'daemon:r2d');
        return running(all, 'service:r2').length === 3 && t.hosts.every((h) => d.filter((x) => x.spec.containerInstance === h.instanceId).length === 1) &&
          [loneStop, loneDelete].every((n) => all.find((x) => x.metadata.name === n)?.status?.lastStatus === 'RUNNING');
      }, 240_000, 'r2 at 3, a daemon copy per host, the standalone tasks RUNNING');
      const watchersBefore = (await apiTotals(t)).watches;
      const cut = cutter(t, [t.controlNs, ...t.hosts.map((h) => h.ns)]);
      s.checker.faultBegins();
      const before = await apiTotals(t);

      // --- cut 1: every controller-manager and agent off the load balancer, and kept off
      const tCut = Date.now();
      const cutRev = (await t.client.list('Task', 'default', { limit: 1 })).resourceVersion;
      const firstCut = await cut.block();
      try {
        // the apiservers see the watches end (the load balancer passed the resets on)
        const { lowest } = await eventually(async () => {
          const w = (await apiTotals(t)).watches;
          return w <= watchersBefore / 2 ? { lowest: w } : undefined;
        }, 30_000, `the apiservers' open watches down from ${watchersBefore}`);
        // the world changes meanwhile
        await t.client.patch('Service', 'default', 'r2', { spec: { desiredCount: 5 } });
        await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'r2b', namespace: 'default' }, spec: { taskDefinition: 'r2web', desiredCount: 1 } });
        await ecs.send(new StopTaskCommand({ cluster: 'default', task: loneStop, reason: 'R2: stopped while the agent was cut off' }));
        await t.client.delete('Task', 'default', loneDelete);
        const loneNew = await startOn(h3);
        for (let i = 0; i < 75; i++) {
          await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: `r2-noise-${i}` } });
          await t.client.delete('Cluster', undefined, `r2-noise-${i}`);
        }
        // past compaction: the cut revision cannot be read any more, and no apiserver's cache can resume a watch from it
        await eventually(async () => {
          try {
            await t.client.list('Task', 'default', { resourceVersion: cutRev, resourceVersionMatch: 'Exact' });
            return false;
          } catch (e) {
            return isBerthError(e, 'Expired');
          }
        }, 60_000, `revision ${cutRev} compacted`);
        const gone = await Promise.all(t.apiserverUrls.map((u) => watchGone(u, cutRev)));
        expect(gone, 'a watch from the cut revision is 410 on every apiserver').to.deep.equal(t.apiserverUrls.map(() => true));
        await sleep(Math.max(0, 20_000 - (Date.now() - tCut)));
        s.injected.cut1 = { namespaces: ['control (controller-managers)', ...t.hosts.map((h) => `${h.name} (agent)`)], connectionsCut: firstCut, watchesOpenDuring: lowest, seconds: since(tCut), cutRevision: Number(cutRev), writesMeanwhile: 155 };
        s.facts.loneTasks = { stopped: loneStop, deleted: loneDelete, started: loneNew };

        // --- back: as soon as every watcher has watched again, cut them all again
        await cut.unblock();
        const tBack = Date.now();
        let rewatchS: number | undefined;
        try {
          await eventually(async () => (await apiTotals(t)).watches >= watchersBefore, 60_000, `every watcher back (${watchersBefore} watches open before)`);
          rewatchS = since(tBack);
        } catch {
          /* cut anyway: some watcher may not be back */
        }
        const second = await cut.cut();
        expect(second, 'connections cut right after the re-watch').to.be.greaterThan(0);
        s.injected.cut2 = { afterRewatchS: rewatchS ?? null, connectionsCut: second, watchesBeforeCut1: watchersBefore };

        // --- converged: what the store says runs, runs; what it says stopped, does not
        const BOUND_S = 180;
        await eventually(async () => {
          const all = await tasksOf(t);
          const byName = new Map(all.map((x) => [x.metadata.name, x]));
          const d = running(all, 'daemon:r2d');
          if (running(all, 'service:r2').length !== 5 || running(all, 'service:r2b').length !== 1) return false;
          if (!t.hosts.every((h) => d.filter((x) => x.spec.containerInstance === h.instanceId).length === 1)) return false;
          if (byName.get(loneStop)?.status?.lastStatus !== 'STOPPED' || byName.get(loneNew)?.status?.lastStatus !== 'RUNNING' || byName.has(loneDelete)) return false;
          const truth = await dockerVsStore(t);
          if (!truthOk(truth)) throw new Error(describeTruth(truth));
          return true;
        }, BOUND_S * 1000, 'r2 at 5 and r2b at 1 RUNNING, a daemon copy per host, the stopped and deleted tasks\' containers gone, the new task running, Docker agreeing with the store');
        s.converged('converged', tBack, BOUND_S);
        // the controllers' view: the services' status agrees (the service controller writes it after the tasks change)
        const tStatus = Date.now();
        for (const [name, n] of [['r2', 5], ['r2b', 1]] as const) {
          await eventually(async () => {
            const svc = await t.client.get<Service>('Service', 'default', name);
            if (svc.status?.runningCount === n && svc.status?.deployments?.length === 1) return true;
            throw new Error(`${name}: status ${JSON.stringify(svc.status)}, ${n} tasks RUNNING`);
          }, 60_000, `${name}'s status at ${n} running`);
        }
        s.converged('serviceStatus', tStatus, 60);
        // every agent's own list (introspection) has exactly the tasks the store wants on its host
        for (const h of t.hosts) {
          const want = (await tasksOf(t)).filter((x) => x.spec.containerInstance === h.instanceId && x.spec.desiredStatus === 'RUNNING').map((x) => x.status?.taskArn).sort();
          const got = ((await h.introspect('/v1/tasks')) as { Tasks: Array<{ Arn: string; DesiredStatus: string }> }).Tasks.filter((x) => x.DesiredStatus === 'RUNNING').map((x) => x.Arn).sort();
          expect(got, `${h.name}: the agent's tasks desired RUNNING`).to.deep.equal(want);
        }
      } finally {
        await cut.unblock();
      }
      const after = await apiTotals(t);
      s.facts.apiservers = { listsDuring: after.lists - before.lists, watchesOpenBefore: watchersBefore, watchesOpenAfter: after.watches };
    });
  });
});
