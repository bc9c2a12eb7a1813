import { RunTaskCommand, StopTaskCommand, type ECSClient } from '@aws-sdk/client-ecs';
import { expect } from 'chai';
import type { ContainerInstance, Service, Task } from '../../pkg/api/kinds.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { ClientLoad } from '../support/clientload.ts';
import { describeTruth, dockerVsStore, live, runScenario, since, sleep, storeIntegrity, tasksOf, truthOk } from '../support/faultsuite.ts';
import { eventually } from '../support/fleet.ts';
import { ecsClient, registerTaskDefinition } from '../support/hostsapi.ts';
import { startTopology, type Topology } from '../support/topology.ts';

/**
 * R8 and R10 on the namespace topology with THREE apiservers behind HAProxy:
 *
 * - R8: under a client workload through the load balancer (creates, compare-and-swap
 *   updates, RunTask with client tokens: test/support/clientload.ts) and a service scaling,
 *   one apiserver SIGKILLed and, 3 s later, another SIGSTOPped (its connections hang: only
 *   HAProxy's health checks take it out); 25 s later the frozen one resumes and the killed
 *   one starts again. Guaranteed: clients fail over (no worker without a successful request
 *   for more than the bound), no acknowledged request lost, none applied twice, agents stay
 *   connected, the service reaches its count.
 * - R10: four RunTask callers (the AWS SDK through HAProxy, each call with its clientToken)
 *   and the placement controller (a service scaling up) racing for the same hosts: a static
 *   host port every task of both wants (one per host), and a memory size of which two fit
 *   an instance. Guaranteed: no instance over-committed, no host port held twice, every task
 *   a RunTask returned exists, is bound where the answer said and runs there (Docker on that
 *   host), a retry with the same token answers the same tasks, and once the RunTask tasks
 *   stop, the service gets its hosts.
 */
describe('fault scenarios R8 (an apiserver SIGKILLed and another SIGSTOPped under load) and R10 (RunTask callers racing the placement controller), with three apiservers', function () {
  this.timeout(900_000);
  let t: Topology;
  let ecs: ECSClient;

  before(async function () {
    this.timeout(400_000);
    t = await startTopology({ hosts: 3, apiservers: 3 });
    ecs = ecsClient(t);
    await registerTaskDefinition(t, 'r8-job', { containerDefinitions: [{ name: 'job', image: 'busybox', memory: 8, command: ['sleep', '3'] }] });
    await registerTaskDefinition(t, 'r8web', { containerDefinitions: [{ name: 'web', image: 'busybox', memory: 16, command: ['sleep', '36000'] }] });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'r8', namespace: 'default' }, spec: { taskDefinition: 'r8web', desiredCount: 2 } });
    await eventually(async () => (await tasksOf(t)).filter((x) => live(x) && x.spec.group === 'service:r8' && x.status?.lastStatus === 'RUNNING').length === 2, 240_000, 'r8 at 2 RUNNING');
  });
  after(async function () {
    this.timeout(120_000);
    ecs?.destroy();
    await t?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && t) console.error(t.logs(2500));
  });

  it('R8: one apiserver SIGKILLed and another SIGSTOPped under load: clients fail over through the load balancer, no acknowledged request lost, none applied twice', async () => {
    await runScenario('R8', t, async (s) => {
      const load = new ClientLoad(t, { prefix: 'r8', workers: 4, ecs, taskDefinition: 'r8-job', runTaskEvery: 6, pauseMs: 50 });
      await load.start();
      const GAP_S = 30;
      try {
        await sleep(10_000);
        const tFault = Date.now();
        await t.apiservers[0].kill();
        await sleep(3000);
        t.apiservers[1].pause();
        s.injected.apiservers = { sigkill: t.apiservers[0].name, sigstop: t.apiservers[1].name, serving: t.apiservers[2].name };
        // work for the controllers meanwhile (their watches and writes go through the load balancer too)
        await eventually(() => t.client.patch('Service', 'default', 'r8', { spec: { desiredCount: 4 } }).then(() => true), 60_000, 'the scale-up accepted');
        await eventually(async () => (await tasksOf(t)).filter((x) => live(x) && x.spec.group === 'service:r8' && x.status?.lastStatus === 'RUNNING').length === 4, 120_000, 'r8 at 4 RUNNING with one apiserver left');
        s.converged('scaledWithOneApiserver', tFault, 120);
        await sleep(Math.max(0, 25_000 - (Date.now() - tFault)));
        t.apiservers[1].resume();
        await t.restartApiserver(0);
        s.injected.apiservers = { ...(s.injected.apiservers as object), downS: since(tFault) };
        await sleep(10_000);
      } finally {
        t.apiservers[1].resume();
        await load.stop();
      }
      const r = await load.verify();
      load.close();
      s.facts.clients = { ops: r.ops, outcomes: r.outcomes, unreadableAnswers: r.unreadable, byStatus: r.status5xx, maxGapS: r.maxGapS };
      s.checker.note('writes.acknowledgedLost', r.lost.length, 0, r.lost.slice(0, 3).join('; '));
      s.checker.note('writes.appliedTwice', r.twice.length, 0, r.twice.slice(0, 3).join('; '));
      s.checker.note('writes.refusedButApplied', r.refusedButApplied.length, 0, r.refusedButApplied.slice(0, 3).join('; '));
      s.checker.note('runTask.tokenAnsweredAnotherTask', r.tokenMismatch.length, 0, r.tokenMismatch.slice(0, 3).join('; '));
      s.checker.note('clients.internalErrors', r.internalErrors.length, 0, r.internalErrors.slice(0, 3).join('; '));
      s.checker.note('clients.maxGapS', r.maxGapS, GAP_S, `a worker went ${r.maxGapS} s without a successful request`);
      const integrity = await storeIntegrity(t);
      s.checker.note('store.inconsistentRecords', integrity.length, 0, integrity.slice(0, 3).join('; '));
      expect(r.outcomes.acked, 'acknowledged operations').to.be.greaterThan(50);
      // R8's service goes: R10 has the hosts to itself
      await t.client.patch('Service', 'default', 'r8', { spec: { desiredCount: 0 } });
      await eventually(async () => (await tasksOf(t)).filter((x) => live(x) && x.spec.group === 'service:r8').length === 0, 120_000, 'r8 at 0');
    });
  });

  it('R10: RunTask callers (SDK through HAProxy, clientToken) and the placement controller racing on the same hosts: no over-commit, no port twice, every returned task exists, is bound and runs where RunTask said', async () => {
    await runScenario('R10', t, async (s) => {
      const cis = (await t.client.list<ContainerInstance>('ContainerInstance', 'default')).items;
      const memCap = Math.min(...cis.map((c) => c.spec.registeredResources?.find((x) => x.name === 'MEMORY')?.integerValue ?? 0));
      const big = Math.floor(memCap / 3) + 1; // two fit an instance, three do not
      const PORT = 18080;
      await registerTaskDefinition(t, 'r10-port', { containerDefinitions: [{ name: 'p', image: 'busybox', memory: 8, portMappings: [{ containerPort: 80, hostPort: PORT }], command: ['sleep', '36000'] }] });
      await registerTaskDefinition(t, 'r10-mem', { containerDefinitions: [{ name: 'm', image: 'busybox', memory: big, command: ['sleep', '36000'] }] });
      await registerTaskDefinition(t, 'r10-svc', { containerDefinitions: [{ name: 'w', image: 'busybox', memory: 8, portMappings: [{ containerPort: 80, hostPort: PORT }], command: ['sleep', '36000'] }] });
      await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'r10', namespace: 'default' }, spec: { taskDefinition: 'r10-svc', desiredCount: 0 } });
      s.injected.race = { callers: 4, hostPort: PORT, memoryPerBigTask: big, memoryPerInstance: memCap, serviceScaledTo: 3 };

      interface Call { token: string; td: string; count: number; tasks: Array<{ task: string; instance: string }>; failures: string[] }
      const calls: Call[] = [];
      const callers = Array.from({ length: 4 }, () => ecsClient(t));
      const problems: string[] = [];
      try {
        const tRace = Date.now();
        const race = callers.map(async (c, w) => {
          for (let k = 0; k < 6; k++) {
            const td = (w + k) % 2 === 0 ? 'r10-port' : 'r10-mem';
            const token = `r10-${w}-${k}`;
            const out = await c.send(new RunTaskCommand({ cluster: 'default', taskDefinition: td, count: 2, clientToken: token, startedBy: token }));
            const call: Call = { token, td, count: 2, tasks: (out.tasks ?? []).map((x) => ({ task: x.taskArn!.split('/').pop()!, instance: x.containerInstanceArn!.split('/').pop()! })), failures: (out.failures ?? []).map((f) => `${f.reason}`) };
            calls.push(call);
            // bound where the answer said, at once
            for (const x of call.tasks) {
              const got = await t.client.get<Task>('Task', 'default', x.task);
              if (got.spec.containerInstance !== x.instance) problems.push(`${token}: task ${x.task} is bound to ${got.spec.containerInstance}, RunTask said ${x.instance}`);
            }
          }
        });
        // the placement controller races them for the same port
        await sleep(200);
        await t.client.patch('Service', 'default', 'r10', { spec: { desiredCount: 3 } });
        await Promise.all(race);
        s.facts.raceS = since(tRace);
        // every returned task runs where RunTask said (Docker on that host)
        const returned = calls.flatMap((c) => c.tasks.map((x) => ({ ...x, td: c.td })));
        await eventually(async () => {
          const byName = new Map((await tasksOf(t)).map((x) => [x.metadata.name, x]));
          return returned.every((x) => byName.get(x.task)?.status?.lastStatus === 'RUNNING');
        }, 180_000, 'every task RunTask returned RUNNING');
        s.converged('returnedTasksRunning', tRace, 180);
        for (const x of returned) {
          const h = t.hosts.find((y) => y.instanceId === x.instance)!;
          const cs = await h.docker.listContainers({ filters: { label: [`${LABELS.taskArn}`] } });
          const mine = cs.filter((c) => c.Labels[LABELS.taskArn]?.endsWith(`/${x.task}`));
          if (mine.length !== 1) problems.push(`${x.task} (${x.td}): ${mine.length} running containers on ${h.name}, where RunTask bound it`);
          if (x.td === 'r10-port' && mine[0] && !mine[0].Ports.some((p) => p.PublicPort === PORT)) problems.push(`${x.task}: its container on ${h.name} does not publish ${PORT}`);
        }
        // a retry with the same token answers the same tasks
        for (const c of calls) {
          const again = await ecs.send(new RunTaskCommand({ cluster: 'default', taskDefinition: c.td, count: 2, clientToken: c.token, startedBy: c.token }));
          const a = (again.tasks ?? []).map((x) => x.taskArn!.split('/').pop()!).sort();
          const b = c.tasks.map((x) => x.task).sort();
          if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(`${c.token}: a retry answered ${JSON.stringify(a)}, the call ${JSON.stringify(b)}`);
        }
        const portTasks = (await tasksOf(t)).filter((x) => live(x) && (x.spec.hostPorts ?? []).some((p) => p.hostPort === PORT));
        s.facts.calls = { made: calls.length, tasksReturned: returned.length, failures: calls.flatMap((c) => c.failures).reduce<Record<string, number>>((m, f) => ({ ...m, [f]: (m[f] ?? 0) + 1 }), {}), liveOnPort: portTasks.length };
        // then the RunTask tasks stop, and the service gets its hosts
        for (const x of returned) await ecs.send(new StopTaskCommand({ cluster: 'default', task: x.task }));
        const tStop = Date.now();
        await eventually(async () => {
          const svc = (await tasksOf(t)).filter((x) => live(x) && x.spec.group === 'service:r10' && x.status?.lastStatus === 'RUNNING');
          return svc.length === 3 && new Set(svc.map((x) => x.spec.containerInstance)).size === 3;
        }, 240_000, 'r10 at 3 RUNNING, one per host (the port)');
        s.converged('serviceGotItsHosts', tStop, 240);
        await eventually(async () => {
          const truth = await dockerVsStore(t);
          if (!truthOk(truth)) throw new Error(describeTruth(truth));
          return true;
        }, 120_000, 'Docker agreeing with the store');
        const svc = await t.client.get<Service>('Service', 'default', 'r10');
        expect(svc.status?.runningCount).to.equal(3);
      } finally {
        for (const c of callers) c.destroy();
      }
      const integrity = await storeIntegrity(t);
      s.checker.note('store.inconsistentRecords', integrity.length, 0, integrity.slice(0, 3).join('; '));
      s.checker.note('runTask.wrongAnswers', problems.length, 0, problems.slice(0, 3).join('; '));
    });
  });
});
