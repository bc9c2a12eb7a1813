import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { StartTaskCommand, StopTaskCommand, type ECSClient } from '@aws-sdk/client-ecs';
import { expect } from 'chai';
import type { ContainerInstance, Task } from '../../pkg/api/kinds.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { CHECKPOINT_FILE } from '../../pkg/agent/checkpoint.ts';
import { containerNoise, watchEvents, type DockerEvent } from '../support/dockerevents.ts';
import { describeTruth, dockerVsStore, live, runScenario, since, sleep, taskContainers, tasksOf, truthOk } from '../support/faultsuite.ts';
import { eventually } from '../support/fleet.ts';
import { ecsClient, registerTaskDefinition } from '../support/hostsapi.ts';
import { startTopology, type TopoHost, type Topology } from '../support/topology.ts';

/**
 * Fault scenarios of one host's agent and dockerd, on the namespace topology, each
 * with the invariant checker sampling every 100 ms and one JSON line (test/support/faultsuite.ts):
 *
 * - R3: the berth-agent process of a host SIGKILLed at each step of starting a task (bound;
 *   its container name checkpointed; first container created; started; second created;
 *   started; reported RUNNING), then started again on its data dir: the task ends RUNNING
 *   with one container per definition, none restarted or replaced, the instance registered
 *   once. (test/agent/crash.test.ts does the same on one host by delays; this is the real
 *   process on a namespace host, killed at Docker's events.)
 * - R4: a corrupt or foreign checkpoint on a host. What is right, per the Amazon ECS agent
 *   (agent/app/agent.go): a state file it cannot load stops the agent ("Error loading
 *   previously saved state", critical); a saved cluster other than ECS_CLUSTER stops it
 *   ("Data mismatch; saved cluster ... Perhaps you want to delete the configured checkpoint
 *   file?"); a saved EC2 instance ID other than the host's is discarded with a warning and the
 *   host registers as a new instance. berth refuses a data dir from another host instead (its
 *   identity is a host fingerprint, not a cloud instance ID; deploy/README.md says so). The
 *   invariant both share, and which this checks: the host never acts as the other host's
 *   instance, and nothing runs twice. So: a corrupt file and another cluster's file are
 *   refused with a message naming the file (or the cluster), the process exits, nothing is
 *   registered and no container is touched; another host's file is refused or leads to a new
 *   instance, never to the other one; a torn temporary file of a crashed write is ignored.
 *   After the operator puts the right file back, the agent resumes its instance: same
 *   containers, none restarted.
 * - R7: dockerd restarted on a host while its agent is frozen (SIGSTOP), with more than 256
 *   container events on the old and on the new daemon meanwhile (Docker replays only its last
 *   256 to a reconnecting subscriber): the agent relists and reports truthfully (every task
 *   whose containers died with the daemon STOPPED, nothing RUNNING in the store that Docker
 *   does not run), and the host runs its share again.
 *
 * Timing: heartbeats every 15 s; an instance silent 60 s is marked disconnected, its tasks
 * replaced 60 s later (no scenario here keeps an agent away that long on purpose).
 */
const HEARTBEAT_TIMEOUT_S = 60;
const LOST_GRACE_S = 60;

describe('fault scenarios of a host\'s agent and dockerd (R3 agent SIGKILLed at each step of starting a task; R4 corrupt and foreign checkpoints; R7 dockerd restarted with >256 events missed)', function () {
  this.timeout(900_000);
  let t: Topology;
  let ecs: ECSClient;

  before(async function () {
    this.timeout(400_000);
    t = await startTopology({
      hosts: 3,
      controllerManagerArgs: ['--instance-heartbeat-timeout', String(HEARTBEAT_TIMEOUT_S), '--instance-lost-grace', String(LOST_GRACE_S)],
    });
    ecs = ecsClient(t);
    // R3: two containers, the second after the first started (two create/start steps)
    await registerTaskDefinition(t, 'r3', {
      containerDefinitions: [
        { name: 'a', image: 'busybox', memory: 8, command: ['sleep', '36000'] },
        { name: 'b', image: 'busybox', memory: 8, command: ['sleep', '36000'], dependsOn: [{ containerName: 'a', condition: 'START' }] },
      ],
    });
    await registerTaskDefinition(t, 'r7web', {
      containerDefinitions: [{ name: 'web', image: 'busybox', memory: 32, cpu: 64, portMappings: [{ containerPort: 8080, hostPort: 0 }], command: ['sh', '-c', 'echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp'] }],
    });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'agentd' }, spec: { containerDefinitions: [{ name: 'agentd', image: 'busybox', memoryReservation: 8, command: ['sleep', '36000'] }] } });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'agentd', namespace: 'default' }, spec: { daemonTaskDefinition: 'agentd' } });
    // the daemon's copies first: an instance takes service tasks once its daemons run (ECS's
    // managed daemons documentation), so a service created before that would find one instance
    // free and put all its tasks there
    await eventually(async () => {
      const d = (await tasksOf(t)).filter((x) => live(x) && x.spec.group === 'daemon:agentd' && x.status?.lastStatus === 'RUNNING');
      return t.hosts.every((h) => d.some((x) => x.spec.containerInstance === h.instanceId));
    }, 240_000, 'a daemon copy RUNNING on every host');
    await t.client.create({
      apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'r7', namespace: 'default' },
      spec: { taskDefinition: 'r7web', desiredCount: 3, placementStrategy: [{ type: 'spread', field: 'instanceId' }], deploymentConfiguration: { maximumPercent: 200, minimumHealthyPercent: 100 } },
    });
    await steady(240_000);
  });
  after(async function () {
    this.timeout(120_000);
    ecs?.destroy();
    await t?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && t) console.error(t.logs(2500));
  });

  const instances = async () => (await t.client.list<ContainerInstance>('ContainerInstance', 'default')).items;
  const instance = (h: TopoHost) => t.client.get<ContainerInstance>('ContainerInstance', 'default', h.instanceId);

  /** r7 at 3 RUNNING, a daemon copy RUNNING on every host, and Docker agreeing with the store */
  async function steady(timeoutMs: number) {
    await eventually(async () => {
      const all = (await tasksOf(t)).filter(live);
      const svc = all.filter((x) => x.spec.group === 'service:r7' && x.status?.lastStatus === 'RUNNING');
      const dmn = all.filter((x) => x.spec.daemonTaskDefinition && x.status?.lastStatus === 'RUNNING');
      if (svc.length !== 3 || !t.hosts.every((h) => dmn.filter((d) => d.spec.containerInstance === h.instanceId).length === 1)) return false;
      const truth = await dockerVsStore(t);
      if (!truthOk(truth)) throw new Error(describeTruth(truth));
      return true;
    }, timeoutMs, 'r7 at 3 RUNNING tasks, a daemon copy on every host, Docker agreeing with the store');
  }

  /** the running task containers of a host: docker id -> StartedAt */
  async function startedAt(h: TopoHost): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const cs = await h.docker.listContainers({ filters: { label: [`${LABELS.cluster}=default`, LABELS.containerName] } });
    for (const c of cs) out.set(c.Id, (await h.docker.getContainer(c.Id).inspect()).State.StartedAt);
    return out;
  }

  /** what changed among a host's running task containers since `before` (gone, restarted, new) */
  async function containerChanges(h: TopoHost, before: Map<string, string>): Promise<string[]> {
    const now = await startedAt(h);
    const out: string[] = [];
    for (const [id, at] of before) {
      if (!now.has(id)) out.push(`${id.slice(0, 12)} no longer running`);
      else if (now.get(id) !== at) out.push(`${id.slice(0, 12)} restarted (${at} -> ${now.get(id)})`);
    }
    for (const id of now.keys()) if (!before.has(id)) out.push(`${id.slice(0, 12)} is new`);
    return out;
  }

  const readText = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
  const logSize = (h: TopoHost) => (existsSync(h.agent.logFile) ? statSync(h.agent.logFile).size : 0);
  const logSince = (h: TopoHost, offset: number) => readText(h.agent.logFile).slice(offset);

  it('R3: the agent SIGKILLed at each step of starting a task (bound, checkpointed, created, started, second created, started, reported) ends with the task RUNNING, one container per definition, none restarted, the instance registered once', async () => {
    await runScenario('R3', t, async (s) => {
      const h = t.hosts[0];
      const ckFile = path.join(h.dataDir, CHECKPOINT_FILE);
      const registered = (await instances()).length;
      const BOUND_S = 120;
      const attr = (e: DockerEvent, k: string) => e.Actor?.Attributes?.[k];
      const steps = ['bound', 'checkpointed', 'created:a', 'started:a', 'created:b', 'started:b', 'reported'] as const;
      const problems: string[] = [];
      const perStep: Array<Record<string, unknown>> = [];
      s.injected.sigkill = { host: h.name, steps: [...steps] };
      s.bounds.runningAfterRestartS = BOUND_S;
      for (const step of steps) {
        const ev = await watchEvents(h.docker, { type: ['container'], label: [`${LABELS.family}=r3`] });
        try {
          const out = await ecs.send(new StartTaskCommand({ cluster: 'default', taskDefinition: 'r3', containerInstances: [h.instanceId] }));
          if (out.failures?.length || !out.tasks?.[0]?.taskArn) throw new Error(`StartTask on ${h.name}: ${JSON.stringify(out.failures)}`);
          const arn = out.tasks[0].taskArn;
          const id = arn.split('/').pop()!;
          const mine = (action: string, container: string) => (e: DockerEvent) => e.Action === action && attr(e, LABELS.taskArn) === arn && attr(e, LABELS.containerName) === container;
          if (step === 'checkpointed') await eventually(() => readText(ckFile).includes(arn), 120_000, `${id} in the checkpoint`);
          else if (step.startsWith('created:') || step.startsWith('started:')) {
            const [what, c] = step.split(':');
            await ev.next(mine(what === 'created' ? 'create' : 'start', c), 120_000, `the ${what} event of ${c}`);
          } else if (step === 'reported') await eventually(async () => (await t.client.get<Task>('Task', 'default', id)).status?.lastStatus === 'RUNNING', 120_000, `${id} RUNNING`);
          await h.agent.kill();
          // what the kill met (the agent may have gone a little further than the trigger)
          const atKill = await h.docker.listContainers({ all: true, filters: { label: [`${LABELS.taskArn}=${arn}`] } });
          const met = atKill.map((c) => `${c.Labels[LABELS.containerName]}:${c.State}`).sort();
          const startedBefore = new Map<string, string>();
          for (const c of atKill) if (c.State === 'running') startedBefore.set(c.Id, (await h.docker.getContainer(c.Id).inspect()).State.StartedAt);
          const checkpointed = readText(ckFile).includes(arn);
          const tRestart = Date.now();
          h.startAgent();
          let secs: number | undefined;
          try {
            await eventually(async () => (await t.client.get<Task>('Task', 'default', id)).status?.lastStatus === 'RUNNING', BOUND_S * 1000, `${id} RUNNING after the kill at ${step}`);
            secs = since(tRestart);
          } catch (e) {
            problems.push(`${step}: ${(e as Error).message}`);
          }
          // Docker: exactly one container per definition, each running, none restarted or replaced
          await sleep(1000);
          const all = await h.docker.listContainers({ all: true, filters: { label: [`${LABELS.taskArn}=${arn}`] } });
          const names = all.map((c) => c.Labels[LABELS.containerName]).sort();
          if (JSON.stringify(names) !== '["a","b"]') problems.push(`${step}: containers ${JSON.stringify(names)}, want one a and one b`);
          for (const c of all) {
            const info = await h.docker.getContainer(c.Id).inspect();
            if (!info.State.Running) problems.push(`${step}: ${c.Labels[LABELS.containerName]} is ${info.State.Status}`);
            if (info.RestartCount) problems.push(`${step}: ${c.Labels[LABELS.containerName]} restarted ${info.RestartCount} times`);
            const was = startedBefore.get(c.Id);
            if (was && was !== info.State.StartedAt) problems.push(`${step}: ${c.Labels[LABELS.containerName]} was started again (${was} -> ${info.State.StartedAt})`);
          }
          for (const idBefore of startedBefore.keys()) if (!all.some((c) => c.Id === idBefore)) problems.push(`${step}: container ${idBefore.slice(0, 12)} running at the kill was replaced`);
          if (secs !== undefined) s.checker.note(`converge.R3.${step}`, secs, BOUND_S, `${id} RUNNING ${secs} s after the restart`);
          perStep.push({ step, task: id, metAtKill: met, checkpointedAtKill: checkpointed, runningAfterS: secs ?? null });
          await ecs.send(new StopTaskCommand({ cluster: 'default', task: arn }));
        } finally {
          ev.close();
        }
      }
      s.facts.steps = perStep;
      const after = await instances();
      if (after.length !== registered) problems.push(`${after.length} container instances, ${registered} before: the agent registered again`);
      const me = await instance(h);
      if (me.status?.agentConnected !== true) problems.push(`${h.name}'s instance is not connected`);
      expect(problems, problems.join('\n')).to.deep.equal([]);
    });
  });

  it('R4: a corrupt checkpoint and another cluster\'s are refused with a message naming them (nothing registered, no container touched); another host\'s never makes this host that instance; a torn temporary file is ignored; with its own file back the agent resumes its instance', async () => {
    await runScenario('R4', t, async (s) => {
      const [h1, h2] = t.hosts;
      const ckFile = path.join(h2.dataDir, CHECKPOINT_FILE);
      const good = path.join(h2.dir, 'checkpoint.good');
      const problems: string[] = [];
      const cases: Array<Record<string, unknown>> = [];
      const registered = new Set((await instances()).map((c) => c.metadata.name));
      await steady(120_000);
      const before = await startedAt(h2);
      const h1Before = await startedAt(h1);
      // the agent is down for each case: no judgment of heartbeats on h2 meanwhile
      s.checker.faultBegins([h2.instanceId]);

      /**
       * stop h2's agent (SIGKILL: as a crash), change its data dir, start it: 'refused' when it
       * exits, 'running' once it says it runs (or is still up after 90 s)
       */
      async function attempt(what: string, write: () => void): Promise<{ outcome: 'refused' | 'running'; log: string; code: number | null }> {
        await h2.agent.kill();
        write();
        const offset = logSize(h2);
        const p = h2.startAgent();
        const up = eventually(() => /"msg":"agent running"/.test(logSince(h2, offset)), 90_000, 'agent running').then(
          () => 'running' as const,
          () => 'running' as const,
        );
        const outcome = await Promise.race([p.exited.then(() => 'refused' as const), up]);
        const log = logSince(h2, offset);
        const code = p.child.exitCode;
        cases.push({ case: what, outcome, exitCode: code, said: log.trim().split('\n').filter((l) => /berth-agent:|refus|checkpoint|ECS_DATADIR/i.test(l)).slice(-2).join(' | ').slice(0, 400) });
        return { outcome, log, code };
      }
      /** the right file back: the agent resumes its instance, and its containers are the same ones */
      async function restore(what: string) {
        await h2.agent.kill();
        copyFileSync(good, ckFile);
        const tStart = Date.now();
        h2.startAgent();
        await eventually(async () => {
          if (!h2.agent.running) throw new Error(`${what}: the agent exited with its own checkpoint back:\n${h2.agent.tail(1500)}`);
          const hb = (await instance(h2)).status?.lastHeartbeat;
          return hb !== undefined && Date.parse(hb) > tStart;
        }, 120_000, `${what}: h2's agent heartbeating its instance again`);
        const changed = await containerChanges(h2, before);
        if (changed.length) problems.push(`${what}: h2's containers changed: ${changed.join('; ')}`);
      }
      const nothingRegistered = async (what: string) => {
        const now = (await instances()).map((c) => c.metadata.name).filter((n) => !registered.has(n));
        if (now.length) problems.push(`${what}: a new container instance was registered (${now.join(',')})`);
        return now;
      };

      await h2.agent.kill();
      copyFileSync(ckFile, good);
      const goodText = readFileSync(good, 'utf8');

      // a torn temporary file of a crashed write, next to the real checkpoint: ignored
      const torn = await attempt('a torn temporary file', () => writeFileSync(`${ckFile}.tmp-424242`, goodText.slice(0, Math.floor(goodText.length / 2))));
      if (torn.outcome !== 'running') problems.push(`a torn temporary file: the agent exited (code ${torn.code}): ${torn.log.slice(-600)}`);
      await nothingRegistered('a torn temporary file');
      const tornChanged = await containerChanges(h2, before);
      if (tornChanged.length) problems.push(`a torn temporary file: h2's containers changed: ${tornChanged.join('; ')}`);

      // a corrupt checkpoint (cut in the middle): refused, naming the file
      const corrupt = await attempt('a corrupt checkpoint', () => writeFileSync(ckFile, goodText.slice(0, Math.floor(goodText.length / 2))));
      if (corrupt.outcome !== 'refused') problems.push('a corrupt checkpoint: the agent kept running');
      else if (!corrupt.log.includes(ckFile)) problems.push(`a corrupt checkpoint: the refusal does not name ${ckFile}: ${corrupt.log.slice(-600)}`);
      await nothingRegistered('a corrupt checkpoint');
      const corruptChanged = await containerChanges(h2, before);
      if (corruptChanged.length) problems.push(`a corrupt checkpoint: h2's containers changed: ${corruptChanged.join('; ')}`);
      await restore('after the corrupt checkpoint');

      // another cluster's checkpoint: refused, naming the cluster (ECS: "Data mismatch; saved cluster ...")
      const other = JSON.parse(goodText) as { cluster?: string };
      other.cluster = 'another-cluster';
      const foreignCluster = await attempt('another cluster\'s checkpoint', () => writeFileSync(ckFile, JSON.stringify(other)));
      if (foreignCluster.outcome !== 'refused') problems.push('another cluster\'s checkpoint: the agent kept running');
      else if (!foreignCluster.log.includes('another-cluster')) problems.push(`another cluster's checkpoint: the refusal does not name the cluster: ${foreignCluster.log.slice(-600)}`);
      await nothingRegistered('another cluster\'s checkpoint');
      await restore('after another cluster\'s checkpoint');

      // another host's checkpoint (h1's data dir copied onto h2): never h1's instance on h2
      const h1Text = readFileSync(path.join(h1.dataDir, CHECKPOINT_FILE), 'utf8');
      const foreignHost = await attempt('another host\'s checkpoint', () => writeFileSync(ckFile, h1Text));
      if (foreignHost.outcome === 'running') await sleep(20_000); // what it does as whichever instance it became
      const h2Log = logSince(h2, 0);
      const actedAsH1 = new RegExp(`"instance":"${h1.instanceId}"[^\\n]*resumed the registered container instance`).test(h2Log);
      if (actedAsH1) problems.push(`another host's checkpoint: ${h2.name}'s agent resumed ${h1.name}'s instance ${h1.instanceId}`);
      const newOnes = await instances();
      const fresh = newOnes.map((c) => c.metadata.name).filter((n) => !registered.has(n));
      if (foreignHost.outcome === 'refused' && !/another host|ECS_DATADIR/.test(foreignHost.log)) problems.push(`another host's checkpoint: the refusal does not say why: ${foreignHost.log.slice(-600)}`);
      // h1's tasks are not run on h2, and h1's own containers are untouched
      const h2Now = await taskContainers(h2);
      const h1Tasks = new Set((await tasksOf(t)).filter((x) => x.spec.containerInstance === h1.instanceId).map((x) => x.status?.taskArn ?? x.metadata.name));
      const stolen = [...h2Now.keys()].filter((arn) => h1Tasks.has(arn));
      if (stolen.length) problems.push(`another host's checkpoint: ${h2.name} runs ${h1.name}'s tasks ${stolen.join(',')}`);
      const h1Changed = await containerChanges(h1, h1Before);
      if (h1Changed.length) problems.push(`another host's checkpoint: h1's containers changed: ${h1Changed.join('; ')}`);
      if (fresh.length) {
        // ECS's way (a new instance): then nothing may run twice; berth's way is a refusal
        await h2.agent.kill();
        for (const n of fresh) await t.client.delete('ContainerInstance', 'default', n).catch(() => undefined);
      }
      await restore('after another host\'s checkpoint');
      s.injected.checkpoints = { host: h2.name, cases: cases.map((c) => c.case) };
      s.facts.cases = cases;
      s.facts.decision = 'refuse a corrupt file and another cluster\'s (as ECS); another host\'s: refused (berth) or a new instance (ECS), never the other host\'s';
      s.checker.faultEnds();
      await steady(180_000);
      expect(problems, problems.join('\n')).to.deep.equal([]);
    });
  });

  it('R7: dockerd restarted on a host while its agent is frozen, with >256 container events missed on the old and the new daemon: the agent relists, reports every dead task STOPPED and nothing RUNNING that Docker does not run; the host runs its share again', async () => {
    await runScenario('R7', t, async (s) => {
      await steady(180_000);
      const h3 = t.hosts[2];
      // a standalone task on h3 as well (placement decides where the service's tasks are)
      const started = await ecs.send(new StartTaskCommand({ cluster: 'default', taskDefinition: 'r3', containerInstances: [h3.instanceId] }));
      const standalone = started.tasks?.[0]?.taskArn?.split('/').pop();
      if (!standalone) throw new Error(`StartTask on ${h3.name}: ${JSON.stringify(started.failures)}`);
      await eventually(async () => (await t.client.get<Task>('Task', 'default', standalone)).status?.lastStatus === 'RUNNING', 120_000, `${standalone} RUNNING on ${h3.name}`);
      const onH3 = (await tasksOf(t)).filter((x) => live(x) && x.spec.containerInstance === h3.instanceId && x.status?.lastStatus === 'RUNNING');
      expect(onH3.length, `tasks RUNNING on ${h3.name}`).to.be.greaterThan(0);
      const victims = onH3.map((x) => x.metadata.name);
      s.checker.faultBegins([h3.instanceId]);
      const tFreeze = Date.now();
      h3.agent.pause();
      // on the old daemon: container events the frozen agent does not read, then the daemon restarts
      const oldEvents = await containerNoise(h3.docker, 300);
      const tRestart = Date.now();
      await h3.restartDockerd();
      const restartS = since(tRestart);
      // on the new daemon: more than the 256 events Docker replays to a subscriber that reconnects
      const newEvents = await containerNoise(h3.docker, 300);
      const frozenS = since(tFreeze);
      const tResume = Date.now();
      h3.agent.resume();
      s.injected.dockerdRestart = { host: h3.name, agentFrozenS: frozenS, restartS, containerEventsOnOldDaemon: oldEvents, containerEventsOnNewDaemon: newEvents, tasksOnHost: onH3.map((x) => x.spec.group ?? 'standalone') };
      // truthful: every task that ran on h3 is reported STOPPED (its containers died with the daemon)
      const REPORT_S = 90;
      await eventually(async () => {
        const now = await tasksOf(t);
        return victims.every((n) => now.find((x) => x.metadata.name === n)?.status?.lastStatus === 'STOPPED');
      }, REPORT_S * 1000, `every task that ran on ${h3.name} reported STOPPED`);
      s.converged('deadTasksReported', tResume, REPORT_S);
      const truth = await dockerVsStore(t);
      expect(truth.missing, describeTruth(truth)).to.deep.equal([]);
      // and the host runs its share again: a daemon copy, the service back at 3
      await steady(240_000);
      s.converged('hostRunsAgain', tResume, 240);
      const reasons = (await tasksOf(t)).filter((x) => victims.includes(x.metadata.name)).map((x) => x.status?.stoppedReason ?? '');
      s.facts.stoppedReasons = [...new Set(reasons)];
      const h3Instance = await instance(h3);
      expect(h3Instance.status?.agentConnected, `${h3.name} connected`).to.equal(true);
    });
  });
});
