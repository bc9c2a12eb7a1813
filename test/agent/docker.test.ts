import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import { ContainerDefinition, type Volume } from '../../pkg/api/taskdefinition.ts';
import { loadAgentConfig, type AgentConfig } from '../../pkg/agent/config.ts';
import { DockerRuntime, DAEMON_ADDRESS, engineAuthFor, toCreateBody } from '../../pkg/agent/runtime/docker.ts';
import { daemonNames } from '../../pkg/agent/runtime/translate.ts';
import { LABELS, containerRuntimeName, hostPortKey, type RuntimeEvent, type RuntimeTask, type ContainerRuntime } from '../../pkg/agent/runtime/runtime.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { ensureBusyboxImage, ensureDocker, execIn } from '../support/docker.ts';
import { Checkpoint } from '../../pkg/agent/checkpoint.ts';
import { TaskRunner } from '../../pkg/agent/engine/taskrunner.ts';
import { ImageCleanup } from '../../pkg/agent/imagecleanup.ts';
import { ImagesInUse } from '../../pkg/agent/imageuse.ts';
import { silentLogger } from '../../pkg/log/log.ts';

const IMAGE = 'busybox:latest';

function task(family: string, networkMode: RuntimeTask['networkMode'], defs: unknown[], volumes: Volume[] = []): RuntimeTask {
  const id = randomBytes(8).toString('hex');
  return {
    taskArn: `arn:aws:ecs:local:000000000000:task/test/${id}`,
    cluster: 'test',
    family,
    revision: 1,
    networkMode,
    containers: defs.map((d) => ContainerDefinition.parse(d)),
    volumes,
  };
}

async function waitFor<T>(fn: () => Promise<T | undefined | false>, ms = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** create (and start) every container of the task in order, returning container name -> id */
async function runTask(rt: ContainerRuntime, t: RuntimeTask, start = true): Promise<Record<string, string>> {
  const res = await rt.prepareTask(t);
  const peers: Record<string, string> = {};
  const ids: Record<string, string> = {};
  for (const c of t.containers) {
    const name = containerRuntimeName(t, c.name, randomBytes(6).toString('hex'));
    const created = await rt.create(t, c.name, { name, resources: res, peers });
    peers[c.name] = name;
    ids[c.name] = created.id;
    if (start) await rt.start(created.id);
  }
  return ids;
}

async function output(rt: ContainerRuntime, id: string): Promise<string> {
  const s = await rt.logs(id);
  let text = '';
  for await (const chunk of s) text += chunk.toString();
  return text;
}

describe('docker runtime (real dockerd)', function () {
  this.timeout(120_000);
  let docker: Docker;
  let rt: DockerRuntime;
  let cfg: AgentConfig;
  let tmp: string;
  const tasks: RuntimeTask[] = [];

  before(async () => {
    const h = await ensureDocker();
    docker = h.docker;
    await ensureBusyboxImage(docker);
    cfg = loadAgentConfig({ env: { DOCKER_HOST: h.dockerHost, ECS_CLUSTER: 'test', ECS_AVAILABLE_LOGGING_DRIVERS: '["json-file","none"]' } });
    rt = new DockerRuntime({ config: cfg, pullAttempts: 2, pullBackoff: { minMs: 100, maxMs: 200, multiplier: 2, jitter: 0 }, reconnectDelayMs: 100 });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-agent-docker-'));
  });

  after(async () => {
    for (const t of tasks) {
      for (const c of await rt.list({ [LABELS.taskArn]: t.taskArn })) await rt.remove(c.id);
      await rt.cleanupTask(t);
    }
    await rt.removeDaemonNamespace();
    await rt?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('applies every container parameter to the Docker container', async () => {
    const hostDir = path.join(tmp, 'not-yet', 'there');
    const t = task(
      'params',
      'bridge',
      [
        { name: 'data', image: IMAGE, essential: false, command: ['true'], mountPoints: [{ sourceVolume: 'scratch', containerPath: '/scratch' }] },
        {
          name: 'app',
          image: IMAGE,
          cpu: 0,
          memory: 64,
          memoryReservation: 32,
          portMappings: [
            { containerPort: 8080, hostPort: 0 },
            { containerPort: 5353, protocol: 'udp' },
            { containerPort: 9000 },
          ],
          environment: [{ name: 'GREETING', value: 'hello world' }],
          entryPoint: ['sh', '-c'],
          command: ['echo $GREETING; sleep 300'],
          mountPoints: [{ sourceVolume: 'hostvol', containerPath: '/host', readOnly: true }],
          volumesFrom: [{ sourceContainer: 'data', readOnly: true }],
          ulimits: [{ name: 'nofile', softLimit: 1024, hardLimit: 2048 }],
          systemControls: [{ namespace: 'net.ipv4.ip_forward', value: '1' }],
          linuxParameters: { capabilities: { add: ['NET_ADMIN'], drop: ['MKNOD'] }, initProcessEnabled: true },
          readonlyRootFilesystem: true,
          user: 'nobody',
          workingDirectory: '/tmp',
          dockerLabels: { team: 'berth' },
          hostname: 'apphost',
          extraHosts: [{ hostname: 'db', ipAddress: '10.9.9.9' }],
          dnsServers: ['10.0.0.2'],
          healthCheck: { command: ['CMD-SHELL', 'true'], interval: 5, timeout: 2, retries: 2, startPeriod: 1 },
        },
      ],
      [{ name: 'hostvol', host: { sourcePath: hostDir } }, { name: 'scratch' }],
    );
    t.assignedHostPorts = { [hostPortKey('app', 9000)]: 0 };
    tasks.push(t);
    const ids = await runTask(rt, t);
    expect(fs.existsSync(hostDir), 'host sourcePath created').to.equal(true);
    const i = await rt.inspectRaw(ids.app);
    const hc = i.HostConfig;
    expect(i.Name).to.match(/^\/ecs-params-1-app-[0-9a-f]{12}$/);
    expect(i.Config.Labels).to.include({ [LABELS.cluster]: 'test', [LABELS.taskArn]: t.taskArn, [LABELS.containerName]: 'app', [LABELS.family]: 'params', [LABELS.version]: '1', team: 'berth' });
    expect(hc.CpuShares).to.equal(2);
    expect(hc.Memory).to.equal(64 * 1024 * 1024);
    expect(hc.MemoryReservation).to.equal(32 * 1024 * 1024);
    expect(i.Config.Env).to.include('GREETING=hello world');
    expect(i.Config.Entrypoint).to.deep.equal(['sh', '-c']);
    expect(i.Config.Cmd).to.deep.equal(['echo $GREETING; sleep 300']);
    expect(hc.Binds).to.deep.equal([`${hostDir}:/host:ro`]);
    expect(hc.VolumesFrom?.[0]).to.match(/^ecs-params-1-data-[0-9a-f]+:ro$/);
    expect(hc.Ulimits).to.deep.equal([{ Name: 'nofile', Soft: 1024, Hard: 2048 }]);
    expect((hc as { Sysctls?: Record<string, string> }).Sysctls).to.deep.equal({ 'net.ipv4.ip_forward': '1' });
    expect(hc.CapAdd).to.deep.equal(['NET_ADMIN']);
    expect(hc.CapDrop).to.deep.equal(['MKNOD']);
    expect((hc as { Init?: boolean }).Init).to.equal(true);
    expect(hc.ReadonlyRootfs).to.equal(true);
    expect(i.Config.User).to.equal('nobody');
    expect(i.Config.WorkingDir).to.equal('/tmp');
    expect(i.Config.Hostname).to.equal('apphost');
    expect(hc.ExtraHosts).to.deep.equal(['db:10.9.9.9']);
    expect(hc.Dns).to.deep.equal(['10.0.0.2']);
    expect(hc.LogConfig?.Type).to.equal('json-file');
    expect((i.Config as { Healthcheck?: unknown }).Healthcheck).to.deep.equal({ Test: ['CMD-SHELL', 'true'], Interval: 5e9, Timeout: 2e9, Retries: 2, StartPeriod: 1e9 });
    // the data container's task volume is a docker volume owned by the task
    const data = await rt.inspectRaw(ids.data);
    const vol = data.Mounts.find((m) => m.Destination === '/scratch');
    expect(vol?.Type).to.equal('volume');
    const v = await docker.getVolume(vol!.Name!).inspect();
    expect(v.Labels?.[LABELS.taskArn]).to.equal(t.taskArn);
    // running, with tcp/udp ports bound, dynamic ones chosen by docker
    const app = await waitFor(async () => {
      const c = await rt.inspect(ids.app);
      return c && c.status === 'RUNNING' && c.networkBindings.length >= 3 && c;
    }, 20_000, 'app running with bindings');
    const tcp = app.networkBindings.find((b) => b.containerPort === 8080 && b.protocol === 'tcp');
    const udp = app.networkBindings.find((b) => b.containerPort === 5353 && b.protocol === 'udp');
    expect(tcp?.hostPort).to.be.greaterThan(0);
    expect(udp?.hostPort).to.be.greaterThan(0);
    // it runs as nobody in /tmp and printed its environment
    const out = await execIn(docker, ids.app, ['sh', '-c', 'id -u; pwd; touch /rootfs-write 2>&1 || echo readonly']);
    expect(out).to.contain('65534').and.contain('/tmp').and.contain('readonly');
    expect(await output(rt, ids.app)).to.contain('hello world');
    // healthy via the health check
    await waitFor(async () => (await rt.inspect(ids.app))?.health === 'HEALTHY', 30_000, 'healthy');
    // adoption: every container of the task is found again by its label
    const listed = await rt.list({ [LABELS.taskArn]: t.taskArn });
    expect(listed.map((l) => l.labels[LABELS.containerName]).sort()).to.deep.equal(['app', 'data']);
  });

  it('resolves links to the docker names of the same task (one wgets the other)', async () => {
    const t = task('links', 'bridge', [
      { name: 'server', image: IMAGE, entryPoint: ['sh', '-c'], command: ['mkdir -p /www && echo linked-ok > /www/index.html && httpd -f -p 8080 -h /www'] },
      { name: 'client', image: IMAGE, links: ['server:web'], entryPoint: ['sh', '-c'], command: ['for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://web:8080/ && exit 0; sleep 0.5; done; exit 1'] },
    ]);
    tasks.push(t);
    const ids = await runTask(rt, t);
    const done = await waitFor(async () => {
      const c = await rt.inspect(ids.client);
      return c?.status === 'STOPPED' && c;
    }, 30_000, 'client exit');
    expect(done.exitCode).to.equal(0);
    expect(await output(rt, ids.client)).to.contain('linked-ok');
  });

  it('awsvpc: containers share a namespace (localhost) and the task has its own IP', async () => {
    const t = task('vpc', 'awsvpc', [
      { name: 'server', image: IMAGE, portMappings: [{ containerPort: 8080 }], entryPoint: ['sh', '-c'], command: ['mkdir -p /www && echo vpc-ok > /www/index.html && httpd -f -p 8080 -h /www'] },
      { name: 'client', image: IMAGE, entryPoint: ['sh', '-c'], command: ['for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://127.0.0.1:8080/ && exit 0; sleep 0.5; done; exit 1'] },
    ]);
    tasks.push(t);
    const res = await rt.prepareTask(t);
    expect(res.ipAddress).to.match(/^\d+\.\d+\.\d+\.\d+$/);
    const ids = await runTask(rt, t);
    const done = await waitFor(async () => {
      const c = await rt.inspect(ids.client);
      return c?.status === 'STOPPED' && c;
    }, 30_000, 'client exit');
    expect(done.exitCode).to.equal(0);
    expect(await output(rt, ids.client)).to.contain('vpc-ok');
    const srv = await rt.inspectRaw(ids.server);
    expect(srv.HostConfig.NetworkMode).to.equal(`container:${res.namespaceContainerId}`);
    await rt.cleanupTask(t);
    expect(await rt.inspect(res.namespaceContainerId!)).to.equal(undefined);
  });

  it('daemon_bridge: bridge and awsvpc application tasks, even older ones, reach the daemon at 169.254.172.2', async () => {
    const early = task('early', 'bridge', [{ name: 'app', image: IMAGE, command: ['sleep', '300'] }]);
    tasks.push(early);
    const earlyIds = await runTask(rt, early);
    const daemon = task('xray', 'daemon_bridge', [
      { name: 'daemon', image: IMAGE, entryPoint: ['sh', '-c'], command: ['mkdir -p /www && echo daemon-ok > /www/index.html && httpd -f -p 2000 -h /www'] },
    ]);
    tasks.push(daemon);
    await runTask(rt, daemon);
    const fetch = `for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://${DAEMON_ADDRESS}:2000/ && exit 0; sleep 0.5; done; exit 1`;
    // a container that existed before the daemon bridge was connected to it
    expect(await execIn(docker, earlyIds.app, ['sh', '-c', fetch])).to.contain('daemon-ok');
    const early2 = await rt.inspect(earlyIds.app);
    expect(early2?.ipAddress, 'task IP is not the daemon-bridge address').to.not.match(/^169\.254\./);
    for (const mode of ['bridge', 'awsvpc'] as const) {
      const app = task(`app-${mode}`, mode, [{ name: 'app', image: IMAGE, entryPoint: ['sh', '-c'], command: [fetch] }]);
      tasks.push(app);
      const ids = await runTask(rt, app);
      const done = await waitFor(async () => {
        const c = await rt.inspect(ids.app);
        return c?.status === 'STOPPED' && c;
      }, 30_000, `${mode} app exit`);
      expect(done.exitCode, `${mode}: ${await output(rt, ids.app)}`).to.equal(0);
      expect(await output(rt, ids.app)).to.contain('daemon-ok');
    }
  });

  it('stop: SIGTERM ignored -> killed after the timeout', async () => {
    const t = task('stubborn', 'none', [{ name: 'app', image: IMAGE, entryPoint: ['sh', '-c'], command: ['trap "" TERM; while true; do sleep 1; done'] }]);
    tasks.push(t);
    const ids = await runTask(rt, t);
    await waitFor(async () => (await rt.inspect(ids.app))?.status === 'RUNNING', 10_000, 'running');
    const t0 = Date.now();
    await rt.stop(ids.app, 2000);
    const elapsed = Date.now() - t0;
    const c = await rt.inspect(ids.app);
    expect(c?.status).to.equal('STOPPED');
    expect(c?.exitCode).to.equal(137);
    expect(elapsed).to.be.at.least(1900);
    // a container that honours SIGTERM stops at once
    const t2 = task('polite', 'none', [{ name: 'app', image: IMAGE, entryPoint: ['sh', '-c'], command: ['trap "exit 0" TERM; while true; do sleep 0.2; done'] }]);
    tasks.push(t2);
    const ids2 = await runTask(rt, t2);
    await waitFor(async () => (await rt.inspect(ids2.app))?.status === 'RUNNING', 10_000, 'running');
    const t1 = Date.now();
    await rt.stop(ids2.app, 10_000);
    expect(Date.now() - t1).to.be.below(5000);
    expect((await rt.inspect(ids2.app))?.exitCode).to.equal(0);
  });

  it('event stream reports container events and reconnects after EOF with a resync', async () => {
    const events: RuntimeEvent[] = [];
    const off = rt.onEvent((e) => events.push(e));
    try {
      await waitFor(async () => events.some((e) => e.action === 'resync'), 10_000, 'initial resync');
      const t = task('events', 'none', [{ name: 'app', image: IMAGE, command: ['sleep', '300'] }]);
      tasks.push(t);
      const ids = await runTask(rt, t);
      await waitFor(async () => events.some((e) => e.action === 'start' && e.id === ids.app && e.labels[LABELS.taskArn] === t.taskArn), 10_000, 'start event');
      const resyncs = events.filter((e) => e.action === 'resync').length;
      rt.dropEventStream();
      await waitFor(async () => events.filter((e) => e.action === 'resync').length > resyncs, 10_000, 'resync after reconnect');
      await rt.stop(ids.app, 1000);
      await waitFor(async () => events.some((e) => e.action === 'die' && e.id === ids.app && e.exitCode !== undefined), 15_000, 'die event after reconnect');
    } finally {
      off();
    }
  });

  it('task runner: runs a task, and a restarted agent adopts its containers by label without duplicates', async () => {
    const t = task('adopt', 'bridge', [
      { name: 'web', image: IMAGE, entryPoint: ['sh', '-c'], command: ['mkdir -p /www && echo adopt > /www/index.html && httpd -f -p 80 -h /www'], portMappings: [{ containerPort: 80 }], links: ['db'] },
      { name: 'db', image: IMAGE, command: ['sleep', '300'], stopTimeout: 2 },
    ]);
    tasks.push(t);
    const dataDir = path.join(tmp, 'agent-data');
    const r1 = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dataDir), defaultStopTimeoutMs: 2000 });
    await r1.start();
    const first = await r1.waitFor((r) => r.known === 'RUNNING', 30_000);
    expect(first.containers.find((c) => c.name === 'web')?.networkBindings[0]?.hostPort).to.be.greaterThan(0);
    await r1.close();
    // "restart": a new runtime client, a checkpoint loaded from disk
    const rt2 = new DockerRuntime({ config: cfg });
    const ck = new Checkpoint(dataDir);
    expect((await ck.load()).tasks[t.taskArn].containerNames).to.have.keys(['web', 'db']);
    const r2 = new TaskRunner(t, { runtime: rt2, checkpoint: ck, defaultStopTimeoutMs: 2000 });
    await r2.start();
    const second = await r2.waitFor((r) => r.known === 'RUNNING', 30_000);
    expect(second.containers.map((c) => c.runtimeId)).to.deep.equal(first.containers.map((c) => c.runtimeId));
    expect(await rt2.list({ [LABELS.taskArn]: t.taskArn })).to.have.length(2);
    // an essential container killed outside the agent stops the whole task
    await docker.getContainer(second.containers[1].runtimeId!).kill();
    const stopped = await r2.waitFor((r) => r.known === 'STOPPED', 30_000);
    expect(stopped.stoppedReason).to.equal('Essential container in task exited');
    expect(stopped.containers.find((c) => c.name === 'db')?.exitCode).to.equal(137);
    await r2.cleanup();
    expect(await rt2.list({ [LABELS.taskArn]: t.taskArn })).to.have.length(0);
    await r2.close();
    await rt2.close();
  });

  it('R2-8: an image cleanup cycle run between a task\'s pull and its create keeps the image, and the task starts', async () => {
    // an image of its own (a commit of busybox) this agent tracked long ago and no container uses: cleanup's to take
    const ref = `berth-test/r28:${randomBytes(4).toString('hex')}`;
    const seed = await docker.createContainer({ Image: IMAGE, Cmd: ['true'] });
    const img = (await seed.commit({ repo: ref.split(':')[0], tag: ref.split(':')[1] })) as { Id: string };
    await seed.remove();
    const ck = new Checkpoint(path.join(tmp, 'r28'));
    await ck.recordImageUse(img.Id, ref, 0);
    const inUse = new ImagesInUse();
    const cleanup = new ImageCleanup({ api: rt.api, checkpoint: ck, config: { ...cfg, imageMinimumCleanupAgeMs: 3600_000 }, logger: silentLogger(), owner: { cluster: 'test', instance: 'r28' }, inUse });
    // the runtime (real Docker; the image is local, so prefer-cached) runs a cleanup cycle right after each pull
    const local = new DockerRuntime({ config: { ...cfg, imagePullBehavior: 'prefer-cached' } });
    const inWindow: string[] = [];
    const hooked = new Proxy(local, {
      get(target, key) {
        if (key === 'pull') {
          return async (...args: Parameters<DockerRuntime['pull']>) => {
            const r = await target.pull(...args);
            inWindow.push(...(await cleanup.runOnce()));
            return r;
          };
        }
        const v = Reflect.get(target, key, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const t = task('r28', 'none', [{ name: 'app', image: ref, command: ['sleep', '300'], stopTimeout: 2 }]);
    tasks.push(t);
    const r = new TaskRunner(t, { runtime: hooked, checkpoint: ck, defaultStopTimeoutMs: 1000, images: inUse });
    try {
      await r.start();
      const got = await r.waitFor((x) => x.known === 'RUNNING' || x.known === 'STOPPED', 60_000);
      expect(inWindow, 'the cycle between pull and create removed the image').to.deep.equal([]);
      expect(got.known, got.stoppedReason).to.equal('RUNNING');
      expect(inUse.size, 'the container exists: nothing is held any more').to.equal(0);
      // once the task is gone, the image is the cleanup's again
      r.stop('done');
      await r.waitFor((x) => x.known === 'STOPPED', 30_000);
      await r.cleanup();
      expect(await cleanup.runOnce()).to.deep.equal([ref]);
    } finally {
      await r.close();
      await local.close();
      await docker.getImage(ref).remove({ force: true }).catch(() => undefined);
    }
  });

  it('logs: complete output and a followed stream', async () => {
    const t = task('logs', 'none', [{ name: 'app', image: IMAGE, entryPoint: ['sh', '-c'], command: ['echo one; sleep 0.2; echo two >&2; sleep 1; echo three'] }]);
    tasks.push(t);
    const ids = await runTask(rt, t);
    const s = await rt.logs(ids.app, { follow: true });
    let text = '';
    for await (const chunk of s) text += chunk.toString();
    expect(text.split('\n').filter(Boolean)).to.deep.equal(['one', 'two', 'three']);
    expect(await output(rt, ids.app)).to.equal('one\ntwo\nthree\n');
  });

  it('create is idempotent by name: a second create returns the same container', async () => {
    const t = task('idem', 'none', [{ name: 'app', image: IMAGE, command: ['sleep', '300'] }]);
    tasks.push(t);
    const res = await rt.prepareTask(t);
    const name = containerRuntimeName(t, 'app', 'abcdef123456' + randomBytes(2).toString('hex'));
    const a = await rt.create(t, 'app', { name, resources: res, peers: {} });
    const b = await rt.create(t, 'app', { name, resources: res, peers: {} });
    expect(b.id).to.equal(a.id);
    expect((await rt.list({ [LABELS.taskArn]: t.taskArn })).length).to.equal(1);
  });

  it('refuses privileged when disabled and unavailable log drivers, creating nothing', async () => {
    const strict = new DockerRuntime({ config: { ...cfg, disablePrivileged: true } });
    const t = task('refuse', 'bridge', [{ name: 'app', image: IMAGE, privileged: true }]);
    tasks.push(t);
    const res = await strict.prepareTask(t);
    let err: unknown;
    try {
      await strict.create(t, 'app', { name: containerRuntimeName(t, 'app', 'x1'), resources: res, peers: {} });
    } catch (e) {
      err = e;
    }
    expect(isBerthError(err, 'Invalid'), String(err)).to.equal(true);
    expect((err as Error).message).to.contain('privileged');
    const t2 = task('refuse', 'bridge', [{ name: 'app', image: IMAGE, logConfiguration: { logDriver: 'syslog' } }]);
    tasks.push(t2);
    err = undefined;
    try {
      await rt.create(t2, 'app', { name: containerRuntimeName(t2, 'app', 'x2'), resources: res, peers: {} });
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.contain('syslog').and.contain('logConfiguration.logDriver');
    expect(await rt.list({ [LABELS.taskArn]: t.taskArn })).to.have.length(0);
    expect(await rt.list({ [LABELS.taskArn]: t2.taskArn })).to.have.length(0);
    await strict.close();
  });

  it('pull behaviour: default falls back to the cached image quickly; always fails; prefer-cached skips the pull', async () => {
    const t0 = Date.now();
    const r = await rt.pull(IMAGE);
    expect(Date.now() - t0).to.be.below(10_000);
    expect(r.fromCache).to.equal(true);
    const always = new DockerRuntime({ config: { ...cfg, imagePullBehavior: 'always' }, pullAttempts: 2, pullBackoff: { minMs: 100, maxMs: 200, multiplier: 2, jitter: 0 } });
    let err: unknown;
    try {
      await always.pull('berth-test/does-not-exist:1');
    } catch (e) {
      err = e;
    }
    expect((err as Error)?.message).to.contain('CannotPullContainerError');
    const cached = new DockerRuntime({ config: { ...cfg, imagePullBehavior: 'prefer-cached' } });
    const t1 = Date.now();
    expect((await cached.pull(IMAGE)).fromCache).to.equal(true);
    expect(Date.now() - t1).to.be.below(2000);
    await always.close();
    await cached.close();
  });
  it('daemon_bridge: the first daemons of an instance starting together both get the daemon namespace (no "Pool overlaps")', async () => {
    // a fresh instance: no daemon namespace yet (the earlier tests' containers go first, they are attached to it)
    for (const t of tasks.splice(0)) {
      for (const c of await rt.list({ [LABELS.taskArn]: t.taskArn })) await rt.remove(c.id);
      await rt.cleanupTask(t);
    }
    const DAEMON_BRIDGE = daemonNames({ cluster: cfg.cluster, instance: '' });
    await docker.getContainer(DAEMON_BRIDGE.container).remove({ force: true }).catch(() => undefined);
    await docker.getNetwork(DAEMON_BRIDGE.network).remove().catch(() => undefined);
    const fresh = new DockerRuntime({ config: cfg, pullAttempts: 2, reconnectDelayMs: 100 });
    const d1 = task('mon', 'daemon_bridge', [{ name: 'd', image: IMAGE, command: ['sleep', '300'] }]);
    const d2 = task('logs', 'daemon_bridge', [{ name: 'd', image: IMAGE, command: ['sleep', '300'] }]);
    tasks.push(d1, d2);
    // two task runners preparing at once, as the agent does for two daemons; neither may fail
    await Promise.all([fresh.prepareTask(d1), fresh.prepareTask(d2)]);
    expect((await docker.getContainer(DAEMON_BRIDGE.container).inspect()).State.Running).to.equal(true);
    expect((await docker.listNetworks({ filters: { name: [DAEMON_BRIDGE.network] } })).filter((n) => n.Name === DAEMON_BRIDGE.network)).to.have.length(1);
    await fresh.close();
  });
});

describe('docker runtime translation (pure)', () => {
  const cfg = { disablePrivileged: false, availableLoggingDrivers: ['json-file'] };
  const base = (defs: unknown[], mode: RuntimeTask['networkMode'] = 'bridge'): RuntimeTask => ({
    taskArn: 'arn:t', cluster: 'c', family: 'f', revision: 3, networkMode: mode, containers: defs.map((d) => ContainerDefinition.parse(d)),
  });
  it('uses the scheduler-assigned host port', () => {
    const t = base([{ name: 'a', image: 'x', portMappings: [{ containerPort: 80 }] }]);
    t.assignedHostPorts = { [hostPortKey('a', 80)]: 32768 };
    const b = toCreateBody(t, t.containers[0], { name: 'n', resources: { volumeSources: {} }, peers: {}, config: cfg });
    expect(b.HostConfig?.PortBindings).to.deep.equal({ '80/tcp': [{ HostPort: '32768' }] });
  });
  it('refuses links outside bridge mode and unknown link targets', () => {
    const t = base([{ name: 'a', image: 'x', links: ['b'] }], 'host');
    expect(() => toCreateBody(t, t.containers[0], { name: 'n', resources: { volumeSources: {} }, peers: { b: 'nb' }, config: cfg })).to.throw(/links/);
    const t2 = base([{ name: 'a', image: 'x', links: ['b'] }]);
    expect(() => toCreateBody(t2, t2.containers[0], { name: 'n', resources: { volumeSources: {} }, peers: {}, config: cfg })).to.throw(/"b"/);
  });
  it('cpu 0 -> 2 shares, cpu 512 -> 512', () => {
    const t = base([{ name: 'a', image: 'x', cpu: 512 }]);
    expect(toCreateBody(t, t.containers[0], { name: 'n', resources: { volumeSources: {} }, peers: {}, config: cfg }).HostConfig?.CpuShares).to.equal(512);
  });
  it('engine auth: docker and dockercfg formats', () => {
    expect(engineAuthFor('busybox', 'docker', '{"https://index.docker.io/v1/":{"username":"u","password":"p","email":"e"}}')).to.include({ username: 'u', password: 'p' });
    const auth = Buffer.from('u2:p:2').toString('base64');
    expect(engineAuthFor('my.reg:5000/app:1', 'dockercfg', `{"my.reg:5000":{"auth":"${auth}","email":"e"}}`)).to.include({ username: 'u2', password: 'p:2' });
    expect(engineAuthFor('other.reg/app', 'docker', '{"my.reg":{"username":"u"}}')).to.equal(undefined);
  });
});
