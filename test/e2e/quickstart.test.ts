import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ensureBusyboxImage, ensureDocker, type DockerHandle } from '../support/docker.ts';
import { freePort } from '../support/etcd.ts';
import { eventually } from '../support/fleet.ts';
import { kubectl } from '../support/kubectl.ts';

/**
 * The README quickstart as a new user runs it: `berth up` in the background (what `npm run
 * up` runs once set-up is done) on real Docker, then the README's commands as separate
 * processes, then everything deleted and no task container left.
 */
describe('quickstart end to end (berth up on real Docker, the CLI as a user runs it)', function () {
  this.timeout(600_000);
  let home: string;
  let docker: DockerHandle;
  let up: ChildProcess;
  let upOut = '';
  let port: number;
  const env = () => ({ ...process.env, BERTH_HOME: home, DOCKER_HOST: docker.dockerHost, ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '1s', BERTH_LOG_LEVEL: 'warn' });
  const berth = (args: string[], input?: string) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, ['cmd/berth/bin.mjs', ...args], { env: env() });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
      p.stdin.end(input ?? '');
    });
  const ok = async (...args: string[]) => {
    const r = await berth(args);
    expect(r.code, `berth ${args.join(' ')}: ${r.err}`).to.equal(0);
    return r.out;
  };
  const taskContainers = async () => (await docker.docker.listContainers({ all: true, filters: { label: ['com.amazonaws.ecs.cluster=default'] } })).filter((c) => c.Labels['com.amazonaws.ecs.task-arn']);

  before(async () => {
    docker = await ensureDocker();
    await ensureBusyboxImage(docker.docker);
    home = await mkdtemp(join(tmpdir(), 'berth-quickstart-'));
    port = await freePort();
    up = spawn(process.execPath, ['cmd/berth/bin.mjs', 'up', '--listen', `127.0.0.1:${port}`], { env: env() });
    up.stdout!.on('data', (d) => (upOut += d));
    up.stderr!.on('data', (d) => (upOut += d));
    await eventually(() => upOut.includes('berth is up on'), 60_000, `berth up (output so far: ${upOut})`);
    await eventually(async () => (await berth(['get', 'ci', '-o', 'name'])).out.includes('containerinstance'), 30_000, 'the agent registered');
  });

  after(async () => {
    if (up && up.exitCode === null) {
      up.kill('SIGTERM');
      await new Promise((r) => up.once('exit', r));
    }
    // berth up leaves tasks running on purpose; the test leaves nothing
    for (const c of await taskContainers().catch(() => [])) await docker.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
  });

  it("serves the agent's introspection API where ECS's agent does (127.0.0.1:51678)", async () => {
    const md = (await (await fetch('http://127.0.0.1:51678/v1/metadata')).json()) as { Cluster?: string; ContainerInstanceArn?: string };
    expect(md.Cluster).to.equal('default');
    expect(md.ContainerInstanceArn).to.match(/:container-instance\/default\/[0-9a-f]{32}$/);
  });

  it('runs sleep360, a service through a scale and a rollout, a daemon, logs, drain, and cleans up', async () => {
    expect(upOut).to.include('kubectl --kubeconfig');
    expect(await ok('apply', '-f', 'deploy/examples/sleep360.yaml')).to.equal('taskdefinition/sleep360:1 created\n');
    const run = await ok('run-task', '--task-definition', 'sleep360', '--wait');
    const sleepTask = /^task\/(\w+) created/.exec(run)![1];
    await eventually(async () => /RUNNING\s+RUNNING/.test(await ok('get', 'tasks', sleepTask)), 60_000, 'sleep360 RUNNING');

    // a service: up to 3, back to 1, then a new revision rolled out
    await ok('apply', '-f', 'deploy/examples/web-service.yaml');
    await ok('scale', 'service/web', '--replicas', '3');
    expect(await ok('rollout', 'status', 'service/web', '--timeout', '120')).to.include('successfully rolled out (web:1, 3 running)');
    await ok('scale', 'service/web', '--replicas', '1');
    expect(await ok('rollout', 'status', 'service/web', '--timeout', '120')).to.include('successfully rolled out (web:1, 1 running)');
    const edited = (await import('node:fs')).readFileSync('deploy/examples/web-service.yaml', 'utf8').replace('/etc]', '/etc, -v]').replace('desiredCount: 3', 'desiredCount: 1');
    // the service names the family as written, so it is unchanged, and it follows the family to web:2
    expect(await (await berth(['apply', '-f', '-'], edited)).out).to.equal('taskdefinition/web:2 created\nservice/web unchanged\n');
    expect(await ok('rollout', 'status', 'service/web', '--timeout', '180')).to.include('successfully rolled out (web:2, 1 running)');

    // the daemon example: one copy on the instance
    await ok('apply', '-f', 'deploy/examples/daemon.yaml');
    await eventually(async () => /RUNNING\s+RUNNING/.test(await ok('get', 'tasks', '--field-selector', 'spec.group=daemon:log-collector')), 60_000, 'daemon task RUNNING');

    // logs of a container that prints
    await berth(['apply', '-f', '-'], 'apiVersion: berth.dev/v1\nkind: TaskDefinition\nmetadata: {name: hello}\nspec:\n  containerDefinitions:\n  - {name: hello, image: busybox, memory: 8, command: [sh, -c, "echo hello from berth; sleep 600"]}\n');
    const hello = /^task\/(\w+) created/.exec(await ok('run-task', '--task-definition', 'hello', '--wait'))![1];
    await eventually(async () => (await berth(['logs', hello])).out === 'hello from berth\n', 60_000, 'logs');

    // the ECS Developer Guide's console sample app: a Docker volume shared through volumesFrom, written by
    // a non-essential busybox and served by the web container on host port 8080
    await ok('apply', '-f', 'deploy/examples/console-sample-app.yaml');
    const date = await eventually(async () => {
      const r = await fetch('http://127.0.0.1:8080/my-vol/date').catch(() => undefined);
      return r?.status === 200 && (await r.text());
    }, 90_000, 'the sample app serving the date the writer keeps in the shared volume');
    expect(date).to.match(/\d{2}:\d{2}:\d{2}/);
    await ok('delete', '-f', 'deploy/examples/console-sample-app.yaml');

    // the X-Ray sidecar of ECS's X-Ray daemon guide: a dynamic UDP host port chosen at binding, reported by the agent
    await ok('apply', '-f', 'deploy/examples/xray-scorekeep.yaml');
    const xray = /^task\/(\w+) created/.exec(await ok('run-task', '--task-definition', 'scorekeep', '--wait'))![1];
    const udp = await eventually(async () => {
      const t = JSON.parse(await ok('get', 'task', xray, '-o', 'json'));
      const bindings = t.status?.lastStatus === 'RUNNING' ? t.status.containers.find((c: { name: string }) => c.name === 'xray-daemon')?.networkBindings : undefined;
      return bindings?.find((b: { protocol: string }) => b.protocol === 'udp');
    }, 90_000, 'scorekeep RUNNING with its UDP binding reported');
    expect(udp.containerPort).to.equal(2000);
    expect(udp.hostPort).to.be.greaterThan(1023);
    await ok('stop-task', xray);

    // real kubectl against berth up
    const k = await kubectl(join(home, 'config'), ['get', 'tasks.berth.dev', '-n', 'default']);
    expect(k.code, k.stderr).to.equal(0);
    expect(k.stdout).to.include(sleepTask);

    // drain the only instance, and back
    const ci = (await ok('get', 'ci', '-o', 'name')).trim().split('/').pop()!;
    await ok('drain', ci);
    expect(await ok('describe', 'ci', ci)).to.match(/Status:\s+DRAINING/);
    await ok('drain', ci, '--undo');

    // delete everything: no task container is left
    await ok('stop-task', sleepTask);
    await ok('stop-task', hello);
    await ok('delete', '-f', 'deploy/examples/web-service.yaml');
    await ok('delete', '-f', 'deploy/examples/daemon.yaml');
    await eventually(async () => (await taskContainers()).length === 0, 120_000, 'no task containers left');

    // berth up keeps the apiserver's audit log in its home: the user's writes, under the admin's name, and no token
    const audit = await readFile(join(home, 'audit.log'), 'utf8');
    const entries = audit.trim().split('\n').map((l) => JSON.parse(l) as { user?: string; verb?: string; resource?: { plural?: string; name?: string } });
    expect(entries.some((e) => e.user === 'admin' && e.verb === 'delete' && e.resource?.plural === 'services' && e.resource.name === 'web'), 'the service deletion').to.equal(true);
    for (const line of (await readFile(join(home, 'tokens.csv'), 'utf8')).trim().split('\n')) expect(audit).to.not.contain(line.split(',')[0]);
  });
});
