import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import type { Task } from '../../pkg/api/kinds.ts';
import { Agent } from '../../pkg/agent/agent.ts';
import { loadAgentConfig, type AgentConfig } from '../../pkg/agent/config.ts';
import { CONTAINER_VANISHED } from '../../pkg/agent/engine/engine.ts';
import { ImageCleanup } from '../../pkg/agent/imagecleanup.ts';
import { Checkpoint } from '../../pkg/agent/checkpoint.ts';
import { DockerRuntime, demux, type DockerRuntimeOptions } from '../../pkg/agent/runtime/docker.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { DAEMON_ADDRESS, NAMESPACE_IMAGE, daemonNames, ownerHash } from '../../pkg/agent/runtime/translate.ts';
import { Client } from '../../pkg/client/client.ts';
import { startDockerd, type OwnDockerd } from '../../pkg/dockerd/dockerd.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { ensureBusyboxImage } from '../support/docker.ts';
import { eventually } from '../support/fleet.ts';
import { startHttpProxy, type HttpProxy } from '../support/httpproxy.ts';

/**
 * The agent on a real dockerd of this file's own (it is SIGSTOPped here, so no other suite
 * shares it) against a real apiserver: the findings where Docker's behaviour is the point.
 */
describe('agent on real Docker: faults, isolation, parameters', function () {
  this.timeout(600_000);
  let dockerd: OwnDockerd;
  let dockerDir: string;
  let docker: Docker;
  let api: TestApiServer;
  let admin: Client;
  const dirs: string[] = [];
  const running: Array<{ agent: Agent; runtime: DockerRuntime; cluster: string }> = [];
  let n = 0;
  const IMAGE = 'busybox:latest';
  const stopped = new Set<number>();

  before(async () => {
    dockerDir = await mkdtemp(join(tmpdir(), 'berth-agent-docker-'));
    dockerd = await startDockerd({ dir: dockerDir, bridgeName: `brag${process.pid.toString(36)}`.slice(0, 15), octet: 216 + (process.pid % 14), removeDirOnStop: true });
    docker = new Docker({ socketPath: dockerd.socketPath });
    await ensureBusyboxImage(docker);
    api = await startApiServer();
    admin = new Client({ server: api.url, token: api.adminToken });
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'other' } });
  });

  after(async () => {
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    for (const r of running) {
      await r.agent.stop().catch(() => undefined);
      await r.runtime.close().catch(() => undefined);
    }
    for (const c of await docker.listContainers({ all: true }).catch(() => [])) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    // the task cgroups of tasks never cleaned up (their agents stopped first)
    const ours = running.map((r) => ownerHash({ cluster: r.cluster, instance: r.agent.instanceId }).slice(0, 8));
    for (const h of fs.readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c, 'berth'))) {
      for (const d of fs.existsSync(h) ? fs.readdirSync(h) : []) {
        if (!ours.some((o) => d.endsWith(`-${o}`))) continue;
        try {
          fs.rmdirSync(join(h, d));
        } catch {
          /* not empty or gone */
        }
      }
      try {
        if (fs.existsSync(h)) fs.rmdirSync(h); // the parent too, when no one else's task is in it
      } catch {
        /* in use */
      }
    }
    admin?.close();
    await api?.stop();
    await dockerd?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function newAgent(o: { cluster?: string; dir?: string; env?: Record<string, string>; runtime?: Partial<DockerRuntimeOptions>; dockerHost?: string; deps?: Partial<ConstructorParameters<typeof Agent>[0]> } = {}) {
    const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'berth-agent-data-')));
    if (!o.dir) dirs.push(dir);
    const cfg: AgentConfig = loadAgentConfig({
      env: {
        ECS_CLUSTER: o.cluster ?? 'default',
        ECS_DATADIR: dir,
        BERTH_BOOTSTRAP_TOKEN: api.bootstrapToken,
        ECS_BACKEND_HOST: api.url,
        ECS_INTROSPECTION_PORT: '0',
        ECS_CONTAINER_STOP_TIMEOUT: '1s',
        ECS_IMAGE_PULL_BEHAVIOR: 'prefer-cached',
        DOCKER_HOST: o.dockerHost ?? `unix://${dockerd.socketPath}`,
        ...o.env,
      },
    });
    const runtime = new DockerRuntime({ config: cfg, reconnectDelayMs: 100, ...o.runtime });
    const agent = new Agent({ config: cfg, client: new Client({ server: api.url, token: api.bootstrapToken }), runtime, log: silentLogger(), fingerprint: `docker-${dir}`, heartbeatMs: 2000, ...o.deps });
    const r = { agent, runtime, dir, cluster: cfg.cluster };
    running.push(r);
    await agent.start();
    return r;
  }

  async function registerTd(name: string, spec: Record<string, unknown>, kind: 'TaskDefinition' | 'DaemonTaskDefinition' = 'TaskDefinition') {
    await admin.create({ apiVersion: 'berth.dev/v1', kind, metadata: { name }, spec });
  }
  async function runTask(cluster: string, instance: string, td: string, o: { daemon?: boolean } = {}) {
    const name = `t${++n}`;
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: cluster }, spec: { taskDefinition: td, ...(o.daemon ? { daemonTaskDefinition: td } : {}) } });
    const r = await admin.bind(cluster, [{ task: name, containerInstance: instance }]);
    expect(r.results[0].bound, JSON.stringify(r.results[0])).to.equal(true);
    return name;
  }
  const getTask = (name: string, cluster = 'default') => admin.get<Task>('Task', cluster, name);
  const until = (name: string, status: string, ms = 60_000, cluster = 'default') =>
    eventually(async () => {
      const t = await getTask(name, cluster);
      return t.status?.lastStatus === status && t;
    }, ms, `${name} ${status}`);
  const containersOf = async (arn: string) => docker.listContainers({ all: true, filters: { label: [`${LABELS.taskArn}=${arn}`] } });
  const logsOf = async (id: string) => {
    const b = (await docker.getContainer(id).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    return demux(b).toString('utf8');
  };

  it('D3: a container docker rm -f\'d behind the agent\'s back stops its task with the ECS reason and is never re-created, also after an agent restart', async () => {
    const a = await newAgent();
    await registerTd('rmf', { containerDefinitions: [{ name: 'app', image: IMAGE, memory: 16, command: ['sleep', '600'] }] });
    // at run time: the die event is authoritative (exit 137) though the container is gone
    const t1 = await runTask('default', a.agent.instanceId, 'rmf');
    const r1 = await until(t1, 'RUNNING');
    await docker.getContainer(r1.status!.containers![0].dockerId!).remove({ force: true });
    const s1 = await until(t1, 'STOPPED');
    expect(s1.status?.stoppedReason).to.equal('Essential container in task exited');
    expect(s1.status?.stopCode).to.equal('EssentialContainerExited');
    // after a restart: removed while the agent was away -> ContainerVanishedError, nothing re-created
    const t2 = await runTask('default', a.agent.instanceId, 'rmf');
    const r2 = await until(t2, 'RUNNING');
    await a.agent.stop();
    await docker.getContainer(r2.status!.containers![0].dockerId!).remove({ force: true });
    const b = await newAgent({ dir: a.dir });
    expect(b.agent.instanceId).to.equal(a.agent.instanceId);
    const s2 = await until(t2, 'STOPPED');
    expect(s2.status?.containers?.[0].reason).to.equal(CONTAINER_VANISHED);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await containersOf(r1.status!.taskArn!), 'nothing re-created (run time)').to.have.length(0);
    expect(await containersOf(r2.status!.taskArn!), 'nothing re-created (after restart)').to.have.length(0);
    await b.agent.stop();
  });

  it('D1: a restart-policy task whose container exits three times never reports STOPPED and holds its allocation', async () => {
    // the injected clock says every run lasted longer than the attempt period (60 s minimum)
    const a = await newAgent({ deps: { runner: { now: () => Date.now() + 120_000 } } });
    const mem = async () => (await admin.get<import('../../pkg/api/kinds.ts').ContainerInstance>('ContainerInstance', 'default', a.agent.instanceId)).status?.remainingResources?.find((r) => r.name === 'MEMORY')?.integerValue;
    const before = await mem();
    await registerTd('flaky', { containerDefinitions: [{ name: 'app', image: IMAGE, memory: 64, entryPoint: ['sh', '-c'], command: ['sleep 1; exit 3'], restartPolicy: { enabled: true, restartAttemptPeriod: 60 } }] });
    const name = await runTask('default', a.agent.instanceId, 'flaky');
    const seen: string[] = [];
    let restarts = 0;
    for (const t0 = Date.now(); Date.now() - t0 < 120_000 && restarts < 3; ) {
      const t = await getTask(name);
      seen.push(t.status?.lastStatus ?? '');
      restarts = t.status?.containers?.[0].restartCount ?? 0;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(restarts).to.be.at.least(3);
    expect(seen.slice(seen.indexOf('RUNNING')).filter((s) => s !== 'RUNNING'), 'the task never went back').to.deep.equal([]);
    expect(await mem(), 'the allocation is held').to.equal(before! - 64);
    const t = await getTask(name);
    const cs = await containersOf(t.status!.taskArn!);
    expect(cs, 'restarted in place: one container').to.have.length(1);
    expect(a.agent.statusWriteFailures).to.equal(0);
    await admin.patch('Task', 'default', name, { spec: { desiredStatus: 'STOPPED' } });
    await until(name, 'STOPPED');
    await a.agent.stop();
  });

  it('D5: dockerd SIGSTOPped for longer than the call timeouts: the agent keeps going, recovers after SIGCONT, no duplicate', async () => {
    const timeouts = { ping: 1000, inspect: 2000, list: 3000, create: 3000, start: 3000, stopBuffer: 2000, remove: 3000, volume: 3000, network: 3000, image: 3000, wait: 5000, version: 2000 };
    const fast = { minMs: 200, maxMs: 1000, multiplier: 1.5, jitter: 0.2 };
    const a = await newAgent({ runtime: { timeouts, stopBackoff: fast }, deps: { runner: { stopBackoff: fast, createBackoff: fast, steadyStateMs: 3000, steadyStateJitterMs: 500 } } });
    await registerTd('frozen', { containerDefinitions: [{ name: 'app', image: IMAGE, memory: 16, command: ['sleep', '600'] }] });
    const ta = await runTask('default', a.agent.instanceId, 'frozen');
    const ra = await until(ta, 'RUNNING');
    process.kill(dockerd.pid, 'SIGSTOP');
    stopped.add(dockerd.pid);
    let alive = false;
    try {
      const tb = await runTask('default', a.agent.instanceId, 'frozen');
      await admin.patch('Task', 'default', ta, { spec: { desiredStatus: 'STOPPED', stopReason: 'while Docker is frozen' } });
      await new Promise((r) => setTimeout(r, 10_000));
      // the agent's event loop is alive: it still heartbeats through the apiserver
      const hb1 = (await admin.get<import('../../pkg/api/kinds.ts').ContainerInstance>('ContainerInstance', 'default', a.agent.instanceId)).status?.lastHeartbeat;
      await new Promise((r) => setTimeout(r, 2500));
      const hb2 = (await admin.get<import('../../pkg/api/kinds.ts').ContainerInstance>('ContainerInstance', 'default', a.agent.instanceId)).status?.lastHeartbeat;
      alive = hb1 !== hb2;
      process.kill(dockerd.pid, 'SIGCONT');
      stopped.delete(dockerd.pid);
      expect(alive, 'the agent heartbeats while Docker is frozen').to.equal(true);
      // after SIGCONT: the stop goes through, the new task ends in a clear state, no duplicates
      await until(ta, 'STOPPED', 90_000);
      expect((await docker.getContainer(ra.status!.containers![0].dockerId!).inspect()).State.Running).to.equal(false);
      const tbDone = await eventually(async () => {
        const t = await getTask(tb);
        return (t.status?.lastStatus === 'RUNNING' || t.status?.lastStatus === 'STOPPED') && t;
      }, 90_000, 'task B settles');
      const cs = await containersOf(tbDone.status!.taskArn!);
      expect(cs.length, 'at most one container for the one definition').to.be.at.most(1);
      if (tbDone.status?.lastStatus === 'STOPPED') expect(cs.filter((c) => c.State === 'running'), 'a STOPPED task runs nothing').to.deep.equal([]);
      // and new tasks run
      const tc = await runTask('default', a.agent.instanceId, 'frozen');
      await until(tc, 'RUNNING', 60_000);
    } finally {
      if (stopped.has(dockerd.pid)) {
        process.kill(dockerd.pid, 'SIGCONT');
        stopped.delete(dockerd.pid);
      }
    }
    await a.agent.stop();
  });

  describe('through a proxy on the Docker socket', () => {
    let proxy: HttpProxy;
    beforeEach(async () => {
      proxy = await startHttpProxy({ socketPath: dockerd.socketPath }, { listenSocket: true });
    });
    afterEach(async () => proxy.close());

    it('D2: a start that times out on the agent but happens in Docker is stopped; the task is STOPPED and nothing runs', async () => {
      const a = await newAgent({ dockerHost: proxy.url, runtime: { timeouts: { start: 1500 } } });
      await registerTd('slowstart', { containerDefinitions: [{ name: 'app', image: IMAGE, memory: 16, command: ['sleep', '600'] }] });
      proxy.setRule((req) => (req.method === 'POST' && /\/containers\/[^/]+\/start/.test(req.url ?? '') ? { delayResponseMs: 4000 } : undefined));
      const name = await runTask('default', a.agent.instanceId, 'slowstart');
      const t = await until(name, 'STOPPED');
      expect(t.status?.containers?.[0].reason).to.match(/DockerTimeoutError: start .*no answer from Docker within 1500 ms/);
      // the start happened anyway; the agent must not leave it running
      await eventually(async () => {
        const cs = await containersOf(t.status!.taskArn!);
        return cs.length === 1 && cs[0].State !== 'running';
      }, 30_000, 'the late-started container stopped');
      await new Promise((r) => setTimeout(r, 2000));
      expect((await containersOf(t.status!.taskArn!)).map((c) => c.State)).to.not.include('running');
      await a.agent.stop();
    });

    it('D5: a Docker call that never answers (a hung docker stop) does not wedge the task', async () => {
      const fast = { minMs: 200, maxMs: 500, multiplier: 1.3, jitter: 0.2 };
      const a = await newAgent({ dockerHost: proxy.url, runtime: { timeouts: { stopBuffer: 1000 }, stopBackoff: fast } });
      await registerTd('hungstop', { containerDefinitions: [{ name: 'app', image: IMAGE, memory: 16, command: ['sleep', '600'] }] });
      const name = await runTask('default', a.agent.instanceId, 'hungstop');
      const r = await until(name, 'RUNNING');
      proxy.setRule((req) => (req.method === 'POST' && /\/containers\/[^/]+\/stop/.test(req.url ?? '') ? { hang: true } : undefined));
      await admin.patch('Task', 'default', name, { spec: { desiredStatus: 'STOPPED', stopReason: 'scale in' } });
      // each stop times out (1 s grace + 1 s), five of them with backoff; Docker still answers a
      // ping, so the agent takes it as stopped (ECS "marking it as stopped anyway")
      const t = await until(name, 'STOPPED', 60_000);
      expect(t.status?.stoppedReason).to.equal('scale in');
      expect(proxy.seen.filter((s) => s.startsWith('POST') && /\/stop/.test(s)).length, 'the stop was retried').to.be.at.least(5);
      proxy.setRule(() => undefined);
      await docker.getContainer(r.status!.containers![0].dockerId!).remove({ force: true });
      await a.agent.stop();
    });

    it('D8: one event stream however many tasks subscribe, each event delivered once, none left open after close', async () => {
      const cfg = loadAgentConfig({ env: { DOCKER_HOST: proxy.url, ECS_CLUSTER: 'ev' } });
      const rt = new DockerRuntime({ config: cfg });
      let dies = 0;
      rt.onEvent(() => undefined);
      rt.onEvent((e) => {
        if (e.action === 'die' && e.labels[LABELS.cluster] === 'ev') dies++;
      });
      rt.onEvent(() => undefined);
      await eventually(() => proxy.seen.some((s) => s.startsWith('GET') && s.includes('/events')), 10_000, 'the stream');
      await new Promise((r) => setTimeout(r, 500));
      const c = await docker.createContainer({ Image: IMAGE, Cmd: ['true'], Labels: { [LABELS.cluster]: 'ev', [LABELS.taskArn]: 'x' } });
      await c.start();
      await eventually(() => dies > 0, 10_000, 'the die event');
      await new Promise((r) => setTimeout(r, 500));
      expect(proxy.seen.filter((s) => s.startsWith('GET') && s.includes('/events')), 'GET /events').to.have.length(1);
      expect(dies, 'delivered once').to.equal(1);
      await rt.close();
      await c.remove({ force: true });
      // nothing reopens after close
      await new Promise((r) => setTimeout(r, 1000));
      expect(proxy.seen.filter((s) => s.startsWith('GET') && s.includes('/events'))).to.have.length(1);
    });

    it('D10: one pull for concurrent pulls of an image; an inactive pull is aborted; default waits for the pull, not 5 s', async () => {
      const cfg = loadAgentConfig({ env: { DOCKER_HOST: proxy.url, ECS_CLUSTER: 'pull' } });
      // the image is cached; the registry is slow to answer
      proxy.setRule((req) => (req.method === 'POST' && (req.url ?? '').includes('/images/create') ? { delayResponseMs: 6500 } : undefined));
      const rt = new DockerRuntime({ config: cfg, pullAttempts: 1, timeouts: { pullInactivity: 60_000 } });
      const t0 = Date.now();
      const [r1, r2] = await Promise.all([rt.pull(IMAGE), rt.pull(IMAGE)]);
      expect(Date.now() - t0, 'waited for the pull (the old code fell back to the cache after 5 s)').to.be.at.least(6000);
      expect(r1).to.deep.equal(r2);
      expect(proxy.seen.filter((s) => s.includes('/images/create')), 'one pull').to.have.length(1);
      await rt.close();
      // the pull inactivity timeout aborts a silent pull
      const quiet = new DockerRuntime({ config: { ...cfg, imagePullBehavior: 'always' }, pullAttempts: 1, timeouts: { pullInactivity: 1000 } });
      const err = await quiet.pull(IMAGE).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).to.match(/CannotPullContainerError: .*no pull progress within 1000 ms \(ECS_IMAGE_PULL_INACTIVITY_TIMEOUT\)/);
      await quiet.close();
    });
  });

  it('D9: two agents of different clusters on one dockerd run daemons and awsvpc tasks side by side without touching each other', async () => {
    const a = await newAgent({ cluster: 'default' });
    const b = await newAgent({ cluster: 'other' });
    const serve = (who: string) => ['sh', '-c', `mkdir -p /www && echo ${who} > /www/index.html && httpd -f -p 2000 -h /www`];
    const fetch = `for i in $(seq 1 30); do wget -q -O- http://${DAEMON_ADDRESS}:2000/ && exit 0; sleep 0.5; done; exit 1`;
    for (const [cluster, agent] of [['default', a], ['other', b]] as const) {
      await registerTd(`daemon-${cluster}`, { containerDefinitions: [{ name: 'd', image: IMAGE, memoryReservation: 16, entryPoint: serve(`daemon-of-${cluster}`).slice(0, 2), command: serve(`daemon-of-${cluster}`).slice(2) }] }, 'DaemonTaskDefinition');
      const d = await runTask(cluster, agent.agent.instanceId, `daemon-${cluster}`, { daemon: true });
      await until(d, 'RUNNING', 60_000, cluster);
    }
    await registerTd('asker-bridge', { containerDefinitions: [{ name: 'q', image: IMAGE, memory: 16, entryPoint: ['sh', '-c'], command: [fetch] }] });
    await registerTd('asker-vpc', { networkMode: 'awsvpc', containerDefinitions: [{ name: 'q', image: IMAGE, memory: 16, entryPoint: ['sh', '-c'], command: [fetch] }] });
    const asked: Array<[string, string]> = [];
    for (const [cluster, agent] of [['default', a], ['other', b]] as const) {
      for (const td of ['asker-bridge', 'asker-vpc']) asked.push([cluster, await runTask(cluster, agent.agent.instanceId, td)]);
    }
    for (const [cluster, name] of asked) {
      const t = await until(name, 'STOPPED', 90_000, cluster);
      const c = t.status!.containers![0];
      expect(c.exitCode, `${cluster}/${name}`).to.equal(0);
      expect(await logsOf(c.dockerId!), `${cluster} reaches its own daemon`).to.contain(`daemon-of-${cluster}`);
    }
    // each daemon network holds only its own instance's containers; the two subnets differ
    const nets = await docker.listNetworks({ filters: { label: [`${LABELS.managed}=daemon-network`] } });
    expect(nets.map((x) => x.Name).sort()).to.deep.equal([daemonNames({ cluster: 'default', instance: a.agent.instanceId }).network, daemonNames({ cluster: 'other', instance: b.agent.instanceId }).network].sort());
    const subnets = new Set<string>();
    for (const net of nets) {
      const info = await docker.getNetwork(net.Id).inspect();
      subnets.add(info.IPAM?.Config?.[0]?.Subnet ?? '');
      expect(info.IPAM?.Config?.[0]?.Subnet, 'Docker picks the subnet: never 169.254.172.0/22').to.not.match(/^169\.254\./);
      for (const id of Object.keys(info.Containers ?? {})) {
        // "ep-..." is Docker's key for an endpoint whose container is already gone (a helper
        // container that just exited); a container removed meanwhile is no one's to judge
        if (id.startsWith('ep-')) continue;
        const ci = await docker.getContainer(id).inspect().catch((e: { statusCode?: number }) => {
          if (e.statusCode === 404) return undefined;
          throw e;
        });
        if (!ci) continue;
        expect(ci.Config.Labels[LABELS.cluster], `${ci.Name} on ${net.Name}`).to.equal(info.Labels?.[LABELS.cluster]);
        expect(ci.Config.Labels[LABELS.instance]).to.equal(info.Labels?.[LABELS.instance]);
      }
    }
    expect(subnets.size).to.equal(2);
    // agent a cleans up and stops; b's daemon and containers are untouched (once b's own
    // stopped tasks have torn their namespaces down)
    await eventually(async () => (await docker.listContainers({ filters: { label: [`${LABELS.instance}=${b.agent.instanceId}`, `${LABELS.managed}=task-namespace`] } })).length === 0, 30_000, 'b settled');
    const bBefore = (await docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${b.agent.instanceId}`] } })).map((c) => `${c.Id}/${c.State}`).sort();
    await a.agent.stop();
    await a.runtime.removeDaemonNamespace();
    const bAfter = (await docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${b.agent.instanceId}`] } })).map((c) => `${c.Id}/${c.State}`).sort();
    expect(bAfter).to.deep.equal(bBefore);
    expect(await docker.getNetwork(daemonNames({ cluster: 'other', instance: b.agent.instanceId }).network).inspect()).to.be.an('object');
    await b.agent.stop();
    await b.runtime.removeDaemonNamespace();
  });

  it('D11: a fresh host without the namespace image: the agent builds it; without a static busybox it says how to fix it', async () => {
    await docker.getImage(NAMESPACE_IMAGE).remove().catch(() => undefined);
    const a = await newAgent();
    await registerTd('vpc-fresh', { networkMode: 'awsvpc', containerDefinitions: [{ name: 'app', image: IMAGE, memory: 16, command: ['sleep', '600'] }] });
    const t = await runTask('default', a.agent.instanceId, 'vpc-fresh');
    await until(t, 'RUNNING', 90_000);
    expect(await docker.getImage(NAMESPACE_IMAGE).inspect()).to.be.an('object');
    await admin.patch('Task', 'default', t, { spec: { desiredStatus: 'STOPPED' } });
    await until(t, 'STOPPED');
    await a.agent.stop();
    for (const c of await containersOf((await getTask(t)).status!.taskArn!)) await docker.getContainer(c.Id).remove({ force: true });
    await docker.getImage(NAMESPACE_IMAGE).remove();
    const b = await newAgent({ runtime: { busyboxPaths: ['/nonexistent/busybox'] } });
    const t2 = await runTask('default', b.agent.instanceId, 'vpc-fresh');
    const s = await until(t2, 'STOPPED', 60_000);
    expect(s.status?.stoppedReason).to.match(/namespace image berth\/busybox:latest.*install busybox-static/);
    await b.agent.stop();
    await ensureBusyboxImage(docker);
  });

  it('D15: cleanup removes anonymous volumes with the container, and the awsvpc namespace stops with its task', async () => {
    // an image with a VOLUME: every container of it gets an anonymous volume
    const cfgVol = await docker.createContainer({ Image: IMAGE, Cmd: ['true'] });
    await cfgVol.commit({ repo: 'berth-test/vol', tag: '1', changes: 'VOLUME /data' });
    await cfgVol.remove();
    const a = await newAgent({ env: { ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '2s' } });
    await registerTd('anonvol', { containerDefinitions: [{ name: 'app', image: 'berth-test/vol:1', memory: 16, entryPoint: ['sh', '-c'], command: ['sleep 2'] }] });
    await registerTd('vpc-stop', { networkMode: 'awsvpc', containerDefinitions: [{ name: 'app', image: IMAGE, memory: 16, entryPoint: ['sh', '-c'], command: ['sleep 2'] }] });
    const t = await runTask('default', a.agent.instanceId, 'anonvol');
    const r = await until(t, 'RUNNING');
    const vol = (await docker.getContainer(r.status!.containers![0].dockerId!).inspect()).Mounts.find((m) => m.Destination === '/data')!.Name!;
    expect(vol).to.be.a('string');
    const v = await runTask('default', a.agent.instanceId, 'vpc-stop');
    const rv = await until(v, 'STOPPED');
    await eventually(async () => {
      const pause = (await containersOf(rv.status!.taskArn!)).find((c) => c.Labels[LABELS.managed] === 'task-namespace');
      return pause && pause.State !== 'running';
    }, 20_000, 'the namespace container stops with its task, before its cleanup');
    await until(t, 'STOPPED');
    await eventually(async () => (await containersOf(r.status!.taskArn!)).length === 0, 30_000, 'cleaned up');
    const vols = (await docker.listVolumes()).Volumes ?? [];
    expect(vols.map((x) => x.Name), 'the anonymous volume went with its container').to.not.include(vol);
    await a.agent.stop();
  });

  it('D12: pidMode/ipcMode "task" share the task namespace; sysctls reach the daemon namespace and awsvpc containers', async () => {
    const a = await newAgent();
    await registerTd('shared-ns', {
      pidMode: 'task',
      ipcMode: 'task',
      containerDefinitions: [
        { name: 'a', image: IMAGE, memory: 16, command: ['sleep', '600'] },
        { name: 'b', image: IMAGE, memory: 16, essential: false, entryPoint: ['sh', '-c'], command: ['for i in $(seq 1 40); do ps | grep -q "sleep 600" && exit 0; sleep 0.25; done; exit 1'] },
      ],
    });
    const t = await runTask('default', a.agent.instanceId, 'shared-ns');
    const b = await eventually(async () => {
      const x = await getTask(t);
      return x.status?.containers?.find((c) => c.name === 'b' && c.lastStatus === 'STOPPED');
    }, 60_000, 'b looked at the shared process namespace');
    expect(b.exitCode, 'b sees a\'s process').to.equal(0);
    const show = 'cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmni; sleep 600';
    await registerTd('sysctl-daemon', { containerDefinitions: [{ name: 'd', image: IMAGE, memoryReservation: 16, entryPoint: ['sh', '-c'], command: [show], systemControls: [{ namespace: 'net.core.somaxconn', value: '511' }, { namespace: 'kernel.shmmni', value: '3000' }] }] }, 'DaemonTaskDefinition');
    await registerTd('sysctl-vpc', { networkMode: 'awsvpc', containerDefinitions: [{ name: 'v', image: IMAGE, memory: 16, entryPoint: ['sh', '-c'], command: [show], systemControls: [{ namespace: 'net.core.somaxconn', value: '509' }, { namespace: 'kernel.shmmni', value: '3001' }] }] });
    const d = await runTask('default', a.agent.instanceId, 'sysctl-daemon', { daemon: true });
    const v = await runTask('default', a.agent.instanceId, 'sysctl-vpc');
    for (const [name, want] of [[d, ['511', '3000']], [v, ['509', '3001']]] as const) {
      const x = await until(name, 'RUNNING');
      const id = x.status!.containers![0].dockerId!;
      const out = await eventually(async () => {
        const l = await logsOf(id);
        return l.trim().split(/\s+/).length >= 2 && l;
      }, 20_000, `${name} printed its sysctls`);
      expect(out.trim().split(/\s+/).slice(0, 2), name).to.deep.equal([...want]);
    }
    for (const name of [t, d, v]) await admin.patch('Task', 'default', name, { spec: { desiredStatus: 'STOPPED' } });
    for (const name of [t, d, v]) await until(name, 'STOPPED');
    await a.agent.stop();
    await a.runtime.removeDaemonNamespace().catch(() => undefined);
  });

  it('ECS_ENABLE_TASK_CPU_MEM_LIMIT: task-level cpu and memory are a cgroup of the task, which the kernel enforces', async () => {
    const a = await newAgent({ env: { ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '1s' } });
    await registerTd('limited', {
      cpu: '256',
      memory: '48',
      containerDefinitions: [
        { name: 'app', image: IMAGE, command: ['sleep', '600'] },
        // grows past the task's 48 MiB: the task's cgroup kills it
        { name: 'hog', image: IMAGE, essential: false, entryPoint: ['sh', '-c'], command: ['x=aaaaaaaa; while true; do x=$x$x; done'] },
      ],
    });
    const name = await runTask('default', a.agent.instanceId, 'limited');
    const t = await eventually(async () => {
      const x = await getTask(name);
      return x.status?.containers?.find((c) => c.name === 'hog')?.lastStatus === 'STOPPED' && x;
    }, 60_000, 'the hog is killed');
    const app = await docker.getContainer(t.status!.containers!.find((c) => c.name === 'app')!.dockerId!).inspect();
    const parent = app.HostConfig.CgroupParent!;
    expect(parent).to.match(/^\/berth\/.+/);
    const hog = t.status!.containers!.find((c) => c.name === 'hog')!;
    expect(hog.exitCode, 'killed').to.equal(137);
    const v2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');
    const mem = fs.readFileSync(v2 ? `/sys/fs/cgroup${parent}/memory.max` : `/sys/fs/cgroup/memory${parent}/memory.limit_in_bytes`, 'utf8').trim();
    expect(Number(mem)).to.equal(48 * 1024 * 1024);
    const quota = v2 ? fs.readFileSync(`/sys/fs/cgroup${parent}/cpu.max`, 'utf8').trim() : fs.readFileSync(`/sys/fs/cgroup/cpu${parent}/cpu.cfs_quota_us`, 'utf8').trim();
    expect(quota).to.match(/^25000\b/);
    await admin.patch('Task', 'default', name, { spec: { desiredStatus: 'STOPPED' } });
    await until(name, 'STOPPED');
    // cleanup removes the task's cgroup with its containers
    await eventually(() => !fs.existsSync(v2 ? `/sys/fs/cgroup${parent}` : `/sys/fs/cgroup/memory${parent}`), 30_000, 'the task cgroup removed at cleanup');
    await a.agent.stop();
  });

  it('image cleanup: an unused image this agent used goes; one in use or excluded stays; the namespace image stays', async () => {
    // two images of their own (commits of busybox), used by this agent's containers earlier
    const own = async (tag: string, env: string) => {
      const c = await docker.createContainer({ Image: IMAGE, Cmd: ['true'] });
      const img = (await c.commit({ repo: 'berth-test/cleanup', tag, changes: `ENV ${env}=1` })) as { Id: string };
      await c.remove();
      return img.Id;
    };
    const used = await own('a', 'A');
    const kept = await own('keep', 'B');
    const ckDir = await mkdtemp(join(tmpdir(), 'berth-imgck-'));
    dirs.push(ckDir);
    const ck = new Checkpoint(ckDir);
    const now = Date.now();
    await ck.recordImageUse(used, 'berth-test/cleanup:a', now);
    await ck.recordImageUse(kept, 'berth-test/cleanup:keep', now - 1000);
    await ck.recordImageUse((await docker.getImage(NAMESPACE_IMAGE).inspect()).Id, IMAGE, now - 2000);
    const cfg = loadAgentConfig({ env: { DOCKER_HOST: `unix://${dockerd.socketPath}`, ECS_IMAGE_CLEANUP_EXCLUDE: 'berth-test/cleanup:keep', ECS_IMAGE_MINIMUM_CLEANUP_AGE: '1h' } });
    const rt = new DockerRuntime({ config: cfg });
    const later = () => Date.now() + 2 * 3600_000;
    const cleanup = new ImageCleanup({ api: rt.api, checkpoint: ck, config: cfg, logger: silentLogger(), owner: { cluster: 'default', instance: 'x' }, now: later });
    const user = await docker.createContainer({ Image: 'berth-test/cleanup:a', Cmd: ['true'] });
    expect(await cleanup.runOnce(), 'in use by a container (anyone\'s): kept').to.deep.equal([]);
    await user.remove({ force: true });
    const young = new ImageCleanup({ api: rt.api, checkpoint: ck, config: cfg, logger: silentLogger(), owner: { cluster: 'default', instance: 'x' } });
    expect(await young.runOnce(), 'first used less than ECS_IMAGE_MINIMUM_CLEANUP_AGE ago: kept').to.deep.equal([]);
    expect(await cleanup.runOnce()).to.deep.equal(['berth-test/cleanup:a']);
    expect(await docker.getImage('berth-test/cleanup:keep').inspect(), 'excluded').to.be.an('object');
    expect(await docker.getImage(NAMESPACE_IMAGE).inspect(), 'the namespace image').to.be.an('object');
    expect(ck.knowsImage('berth-test/cleanup:a'), 'forgotten').to.equal(false);
    await rt.close();
  });
});
