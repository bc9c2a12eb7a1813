import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { ContainerInstance, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import Docker from 'dockerode';
import { startDockerd, type OwnDockerd } from '../../pkg/dockerd/dockerd.ts';
import { ensureBusyboxImage } from '../support/docker.ts';
import { freePort } from '../support/etcd.ts';
import { eventually } from '../support/fleet.ts';

/**
 * The berth-agent process killed with SIGKILL at different moments of starting a task, on
 * real Docker: after every restart there is
 * exactly one container per container definition, none is restarted or replaced, the
 * instance is never registered twice, and the task ends RUNNING.
 */
describe('berth-agent killed with SIGKILL while starting tasks (real processes, real Docker)', function () {
  this.timeout(600_000);
  let api: TestApiServer;
  let client: Client;
  let docker: { docker: Docker; dockerHost: string };
  let dockerd: OwnDockerd;
  let dockerDir: string;
  let introspectionPort: number;
  let dataDir: string;
  let agent: ChildProcess | undefined;
  let image: string;

  const startAgent = () => {
    agent = spawn(process.execPath, ['cmd/berth-agent/bin.mjs'], {
      env: { ...process.env, ECS_CLUSTER: 'default', ECS_BACKEND_HOST: api.url, BERTH_BOOTSTRAP_TOKEN: api.bootstrapToken, ECS_DATADIR: dataDir, ECS_CHECKPOINT: 'true', DOCKER_HOST: docker.dockerHost, ECS_INTROSPECTION_PORT: String(introspectionPort), ECS_LOGLEVEL: 'warn', ECS_CONTAINER_STOP_TIMEOUT: '1s', ECS_IMAGE_PULL_BEHAVIOR: 'prefer-cached' },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
  };
  const kill = async () => {
    if (agent && agent.exitCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGKILL');
      await exited;
    }
  };
  const instances = async () => (await client.list<ContainerInstance>('ContainerInstance', 'default')).items;
  const containersOf = async (arn: string) => docker.docker.listContainers({ all: true, filters: { label: [`${LABELS.taskArn}=${arn}`] } });

  before(async () => {
    // a daemon of its own, so the test can restart Docker under the agent
    dockerDir = await mkdtemp(join(tmpdir(), 'berth-crash-docker-'));
    dockerd = await startDockerd({ dir: dockerDir, bridgeName: `brck${process.pid.toString(36)}`.slice(0, 15), octet: 230 + (process.pid % 20) });
    docker = { docker: new Docker({ socketPath: dockerd.socketPath }), dockerHost: `unix://${dockerd.socketPath}` };
    image = await ensureBusyboxImage(docker.docker);
    introspectionPort = await freePort();
    api = await startApiServer();
    client = new Client({ server: api.url, token: api.adminToken });
    dataDir = await mkdtemp(join(tmpdir(), 'berth-crash-'));
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'crash' }, spec: { containerDefinitions: [{ name: 'a', image, memory: 8, command: ['sleep', '600'] }, { name: 'b', image, memory: 8, command: ['sleep', '600'], dependsOn: [{ containerName: 'a', condition: 'START' }] }] } });
    startAgent();
    await eventually(async () => (await instances()).length === 1, 60_000, 'the agent registered');
  });

  after(async () => {
    await kill();
    for (const c of await docker.docker.listContainers({ all: true, filters: { label: [`${LABELS.cluster}=default`] } }).catch(() => [])) await docker.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    client?.close();
    await api?.stop();
    await dockerd?.stop();
    await rm(dockerDir, { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  });

  it('never duplicates, restarts or re-registers, wherever the agent dies', async () => {
    const ci = (await instances())[0].metadata.name;
    const started = new Map<string, string>(); // container id -> StartedAt
    for (const delay of [0, 100, 250, 500, 900, 1500]) {
      const name = `crash${delay}`;
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: 'default' }, spec: { taskDefinition: 'crash' } });
      const r = await client.bind('default', [{ task: name, containerInstance: ci }]);
      expect(r.results[0].bound, JSON.stringify(r.results[0])).to.equal(true);
      await new Promise((res) => setTimeout(res, delay));
      await kill();
      startAgent();
      const t = await eventually(async () => {
        const t = await client.get<Task>('Task', 'default', name);
        return t.status?.lastStatus === 'RUNNING' && t;
      }, 60_000, `${name} RUNNING after the agent was killed ${delay} ms in`);
      const cs = await containersOf(t.status!.taskArn!);
      expect(cs.map((c) => c.Labels[LABELS.containerName]).sort(), `${name}: one container per definition`).to.deep.equal(['a', 'b']);
      for (const c of cs) expect(c.State, `${name}/${c.Labels[LABELS.containerName]}`).to.equal('running');
      // every container started so far is still the same one, started once
      for (const [id, at] of started) {
        const info = await docker.docker.getContainer(id).inspect();
        expect(info.State.StartedAt, `container ${id} was restarted`).to.equal(at);
        expect(info.RestartCount).to.equal(0);
      }
      for (const c of cs) started.set(c.Id, (await docker.docker.getContainer(c.Id).inspect()).State.StartedAt);
    }
    expect(await instances()).to.have.length(1);
    expect(started.size).to.equal(12);
  });

  it('a container killed behind the restarted agent\'s back stops its task with the essential-container reason', async () => {
    const name = 'after-docker-restart';
    const ci = (await instances())[0].metadata.name;
    const victim = await client.get<Task>('Task', 'default', 'crash0');
    const cs = await containersOf(victim.status!.taskArn!);
    await docker.docker.getContainer(cs[0].Id).kill();
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: 'default' }, spec: { taskDefinition: 'crash' } });
    await client.bind('default', [{ task: name, containerInstance: ci }]);
    await eventually(async () => (await client.get<Task>('Task', 'default', name)).status?.lastStatus === 'RUNNING', 60_000, 'running');
    await eventually(async () => (await client.get<Task>('Task', 'default', 'crash0')).status?.lastStatus === 'STOPPED', 60_000, 'the killed essential container stopped its task');
    const t0 = await client.get<Task>('Task', 'default', 'crash0');
    expect(t0.status?.stoppedReason).to.match(/Essential container/);
  });

  it('serves the introspection API with the shapes of the ECS Developer Guide', async () => {
    const base = `http://127.0.0.1:${introspectionPort}`;
    const meta = (await (await fetch(`${base}/v1/metadata`)).json()) as any;
    expect(meta).to.include({ Cluster: 'default' });
    expect(meta.ContainerInstanceArn).to.match(/^arn:aws:ecs:[^:]+:\d+:container-instance\/default\/\w+$/);
    expect(meta.Version).to.match(/^berth-agent v/);
    const all = (await (await fetch(`${base}/v1/tasks`)).json()) as any;
    const t = await client.get<Task>('Task', 'default', 'after-docker-restart');
    const one = all.Tasks.find((x: { Arn: string }) => x.Arn === t.status!.taskArn);
    expect(one).to.include({ DesiredStatus: 'RUNNING', KnownStatus: 'RUNNING', Family: 'crash', Version: '1' });
    expect(one.Containers.map((c: { Name: string }) => c.Name).sort()).to.deep.equal(['a', 'b']);
    const byArn = (await (await fetch(`${base}/v1/tasks?taskarn=${encodeURIComponent(t.status!.taskArn!)}`)).json()) as any;
    expect(byArn.Arn).to.equal(t.status!.taskArn);
    const byDocker = (await (await fetch(`${base}/v1/tasks?dockerid=${one.Containers[0].DockerId.slice(0, 12)}`)).json()) as any;
    expect(byDocker.Arn).to.equal(t.status!.taskArn);
    expect((await fetch(`${base}/v1/tasks?taskarn=nope`)).status).to.equal(404);
  });

  it('notices what happened while Docker was restarted under it, and runs new tasks after', async () => {
    const before = await client.get<Task>('Task', 'default', 'after-docker-restart');
    expect(before.status?.lastStatus).to.equal('RUNNING');
    // Docker goes away (without live-restore its containers die with it) and comes back
    await dockerd.stop();
    dockerd = await startDockerd({ dir: dockerDir, bridgeName: `brck${process.pid.toString(36)}`.slice(0, 15), octet: 230 + (process.pid % 20) });
    // the agent reopens its event stream, re-lists, and reports the dead essential containers
    await eventually(async () => (await client.get<Task>('Task', 'default', 'after-docker-restart')).status?.lastStatus === 'STOPPED', 90_000, 'the task whose containers died with Docker is STOPPED');
    const ci = (await instances())[0].metadata.name;
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'after-restart-new', namespace: 'default' }, spec: { taskDefinition: 'crash' } });
    await client.bind('default', [{ task: 'after-restart-new', containerInstance: ci }]);
    await eventually(async () => (await client.get<Task>('Task', 'default', 'after-restart-new')).status?.lastStatus === 'RUNNING', 90_000, 'a new task runs on the restarted Docker');
    expect(await instances()).to.have.length(1);
  });
});
