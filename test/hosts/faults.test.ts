import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import type { ContainerInstance, Lease, Task } from '../../pkg/api/kinds.ts';
import { runScenario, since } from '../support/faultsuite.ts';
import { eventually } from '../support/fleet.ts';
import { registerTaskDefinition } from '../support/hostsapi.ts';
import { startTopology, type TopoHost, type Topology } from '../support/topology.ts';

/**
 * Fault scenarios on the namespace topology, each with the invariant checker
 * sampling every 100 ms. Each prints one JSON line (what was injected, convergence seconds,
 * every invariant with its worst value; test/support/faultsuite.ts) and fails on any
 * violation. `npm test` runs these two; `npm run test:faults` runs them with the others
 * (test/hosts/faults-*.test.ts) and writes test/bench/results/faults.json.
 *
 * Timing: agents heartbeat every 15 s; the controller-managers here mark an instance
 * disconnected after 30 s of silence and replace its tasks 20 s later.
 */
const HEARTBEAT_TIMEOUT_S = 30;
const LOST_GRACE_S = 20;
/** R5: how long the host's link stays down */
const OUTAGE_MS = Number(process.env.BERTH_R5_OUTAGE_MS ?? 120_000);

describe('fault scenarios with invariant checkers (R5 a host partitioned for 2 minutes + heartbeat jitter; R6 the leading controller-manager SIGSTOPped)', function () {
  this.timeout(600_000);
  let t: Topology;

  before(async function () {
    this.timeout(400_000);
    t = await startTopology({
      hosts: 3,
      recordControllerManagers: true,
      controllerManagerArgs: ['--instance-heartbeat-timeout', String(HEARTBEAT_TIMEOUT_S), '--instance-lost-grace', String(LOST_GRACE_S)],
    });
    await registerTaskDefinition(t, 'faulty', {
      containerDefinitions: [{ name: 'app', image: 'busybox', memory: 32, cpu: 64, portMappings: [{ containerPort: 8080, hostPort: 0 }], command: ['sh', '-c', 'echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp'] }],
    });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'faultd' }, spec: { containerDefinitions: [{ name: 'faultd', image: 'busybox', memoryReservation: 8, command: ['sleep', '36000'] }] } });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'faultd', namespace: 'default' }, spec: { daemonTaskDefinition: 'faultd' } });
    await t.client.create({
      apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'r5', namespace: 'default' },
      spec: { taskDefinition: 'faulty', desiredCount: 3, placementStrategy: [{ type: 'spread', field: 'instanceId' }], deploymentConfiguration: { maximumPercent: 150, minimumHealthyPercent: 100 } },
    });
    await steady(3, t.hosts);
  });
  after(async function () {
    this.timeout(120_000);
    await t?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && t) console.error(t.logs(2000));
  });

  const tasks = async () => (await t.client.list<Task>('Task', 'default')).items;
  const live = (x: Task) => x.spec.desiredStatus !== 'STOPPED' && x.status?.lastStatus !== 'STOPPED';
  const serviceTasks = async (name: string) => (await tasks()).filter((x) => live(x) && x.spec.group === `service:${name}`);
  const instance = (h: TopoHost) => t.client.get<ContainerInstance>('ContainerInstance', 'default', h.instanceId);
  /** running containers of a task definition family on a host, by task ARN label */
  const containersOn = async (h: TopoHost, family: string) =>
    (await h.docker.listContainers({ filters: { label: [`com.amazonaws.ecs.task-definition-family=${family}`] } })).map((c) => c.Labels['com.amazonaws.ecs.task-arn']);

  /** the service at `n` RUNNING tasks, all on `on`, and one daemon copy RUNNING per host of `on` */
  async function steady(n: number, on: TopoHost[], timeoutMs = 240_000) {
    const ids = new Set(on.map((h) => h.instanceId));
    await eventually(async () => {
      const all = (await tasks()).filter(live);
      const svc = all.filter((x) => x.spec.group === 'service:r5' && x.status?.lastStatus === 'RUNNING');
      const dmn = all.filter((x) => x.spec.daemonTaskDefinition && x.status?.lastStatus === 'RUNNING');
      return svc.length === n && svc.every((x) => ids.has(x.spec.containerInstance!)) && on.every((h) => dmn.filter((d) => d.spec.containerInstance === h.instanceId).length === 1);
    }, timeoutMs, `service r5 at ${n} RUNNING tasks on ${on.map((h) => h.name).join(',')} with a daemon copy on each`);
  }

  it('R5: heartbeat jitter gives no false positive; a host\'s link down for 2 minutes: its tasks are replaced elsewhere, and when it comes back its stale copies stop and nothing runs twice', async () => {
    await runScenario('R5', t, async (s) => {
      const checker = s.checker;
      // the host to partition: one that runs a service task (placement decides where they are)
      const svcBefore = await serviceTasks('r5');
      const count = (h: TopoHost) => svcBefore.filter((x) => x.spec.containerInstance === h.instanceId).length;
      const h3 = [...t.hosts].filter((h) => count(h) > 0).sort((a, b) => count(a) - count(b))[0];
      const [h1, h2] = t.hosts.filter((h) => h !== h3);
      // --- heartbeat jitter: agents of h1 and h2 frozen for 3-9 s at a time (heartbeats late, never past the timeout)
      const tJitter = Date.now();
      const pauses: number[] = [];
      for (let round = 0; round < 3; round++) {
        for (const h of [h1, h2]) {
          const ms = 3000 + Math.floor(Math.random() * 6000);
          pauses.push(ms);
          h.agent.pause();
          await new Promise((r) => setTimeout(r, ms));
          h.agent.resume();
        }
      }
      s.injected.jitter = { hosts: [h1.name, h2.name], pausesMs: pauses, seconds: since(tJitter) };
      for (const h of [h1, h2]) expect((await instance(h)).status?.agentConnected, `${h.name} after jitter`).to.equal(true);

      // --- the partition
      const before = (await serviceTasks('r5')).filter((x) => x.spec.containerInstance === h3.instanceId).length;
      expect(before, `a service task on ${h3.name} before the outage`).to.be.greaterThan(0);
      checker.faultBegins([h3.instanceId]);
      const tDown = Date.now();
      h3.linkDown();
      s.injected.partition = { host: h3.name, serviceTasksOnIt: before };
      s.bounds.heartbeatTimeoutS = HEARTBEAT_TIMEOUT_S;
      s.bounds.lostGraceS = LOST_GRACE_S;
      await eventually(async () => (await instance(h3)).status?.agentConnected === false, (HEARTBEAT_TIMEOUT_S + 60) * 1000, `${h3.name} marked disconnected`);
      s.converged('disconnected', tDown, HEARTBEAT_TIMEOUT_S + 60);
      await steady(3, [h1, h2], (HEARTBEAT_TIMEOUT_S + LOST_GRACE_S + 120) * 1000);
      s.converged('replaced', tDown, HEARTBEAT_TIMEOUT_S + LOST_GRACE_S + 120);
      // the stale copy still runs on the partitioned host (nothing can tell it), but the API no longer wants it
      s.facts.staleCopiesRunningWhilePartitioned = (await containersOn(h3, 'faulty')).length;
      const wait = OUTAGE_MS - (Date.now() - tDown);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      s.injected.partition = { host: h3.name, serviceTasksOnIt: before, linkDownSeconds: since(tDown) };
      h3.linkUp();
      const tUp = Date.now();
      await eventually(async () => (await instance(h3)).status?.agentConnected === true, 120_000, `${h3.name} connected again`);
      s.converged('reconnected', tUp, 120);
      // its stale copies stop; across all hosts exactly the live service tasks run, each once
      await eventually(async () => {
        const want = new Set((await serviceTasks('r5')).filter((x) => x.status?.lastStatus === 'RUNNING').map((x) => x.status?.taskArn ?? x.metadata.name));
        const running = (await Promise.all(t.hosts.map((h) => containersOn(h, 'faulty')))).flat();
        return want.size === 3 && running.length === 3 && running.every((a) => want.has(a)) && new Set(running).size === 3;
      }, 120_000, 'exactly the 3 live service tasks running in Docker, each once, stale copies stopped');
      s.converged('staleStopped', tUp, 120);
      // the daemon: one copy on every host again, and Docker agrees
      await steady(3, t.hosts, 180_000);
      for (const h of t.hosts) expect((await containersOn(h, 'faultd')).length, `daemon containers on ${h.name}`).to.equal(1);
      s.converged('converged', tUp, 300);
    });
  });

  it('R6: the leading controller-manager SIGSTOPped and resumed after its lease expired makes no write after the takeover', async () => {
    await runScenario('R6', t, async (s) => {
      const leases = async () => (await t.client.list<Lease>('Lease', 'berth-system')).items.filter((l) => l.metadata.name.startsWith('berth-controller-'));
      const identityOf = (i: number) => {
        const m = /"identity":"([^"]+)"/.exec(readFileSync(t.controllerManagers[i].logFile, 'utf8'));
        if (!m) throw new Error(`no identity in the log of controller-manager-${i + 1}`);
        return m[1];
      };
      const ids = t.controllerManagers.map((_p, i) => identityOf(i));
      const holders = await eventually(async () => {
        const ls = await leases();
        return ls.length === 5 && ls.every((l) => ids.includes(l.spec.holderIdentity ?? '')) ? ls : undefined;
      }, 60_000, 'every controller lease held');
      const leaderIdx = ids.indexOf(holders.find((l) => l.metadata.name === 'berth-controller-service')!.spec.holderIdentity!);
      const standbyIdx = 1 - leaderIdx;
      const leader = t.controllerManagers[leaderIdx];
      const leaseS = Math.max(...holders.map((l) => l.spec.leaseDurationSeconds ?? 12));

      s.checker.faultBegins();
      const tStop = Date.now();
      leader.pause();
      s.injected.sigstop = `controller-manager-${leaderIdx + 1}`;
      s.injected.leaseDurationSeconds = leaseS;
      // work for whoever leads: the service scales up while the old leader is frozen
      await t.client.patch('Service', 'default', 'r5', { spec: { desiredCount: 4 } });
      await eventually(async () => {
        const ls = await leases();
        return ls.every((l) => l.spec.holderIdentity === ids[standbyIdx]);
      }, (leaseS * 3 + 30) * 1000, 'the standby holds every lease');
      s.converged('takeover', tStop, leaseS * 3 + 30);
      await eventually(async () => (await serviceTasks('r5')).filter((x) => x.status?.lastStatus === 'RUNNING').length === 4, 120_000, 'r5 at 4 RUNNING under the new leader');
      s.converged('scaledByNewLeader', tStop, 150);
      // past its lease for sure, then it wakes up with stale caches, timers and queued events
      await new Promise((r) => setTimeout(r, leaseS * 1000));
      const tResume = Date.now();
      leader.resume();
      s.injected.frozenSeconds = Math.round((tResume - tStop) / 1000);
      await new Promise((r) => setTimeout(r, 20_000));
      const stale = t.cmRecorders[leaderIdx].writesSince(tResume);
      const standbyWrites = t.cmRecorders[standbyIdx].writesSince(tStop).length;
      s.facts.writes = { staleLeaderAfterResume: stale.length, newLeaderSinceStop: standbyWrites };
      // the stale leader's writes after the takeover are an invariant of their own
      s.checker.note('controller.staleLeaderWrites', stale.length, 0, stale.slice(0, 5).map((r) => `${r.method} ${r.path} -> ${r.status}`).join('; '));
      // it rejoins as a standby: still 4 tasks, and the leases stay with the new leader
      const after = await serviceTasks('r5');
      const ls = await leases();
      expect(standbyWrites, 'the new leader wrote (it did the work)').to.be.greaterThan(0);
      expect(after.length, 'r5 live tasks after the old leader resumed').to.equal(4);
      expect(ls.every((l) => l.spec.holderIdentity === ids[standbyIdx]), 'leases stay with the new leader').to.equal(true);
    });
  });
});
