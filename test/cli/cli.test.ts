import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import { runCli, type CliDeps } from '../../pkg/cli/commands.ts';
import { Client } from '../../pkg/client/client.ts';
import { cliRunner } from '../support/cli.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startControlPlane, type Fleet, type Running } from '../support/fleet.ts';
import { expectRestart } from '../support/restart.ts';

describe('berth CLI (in-process, against a real apiserver, controllers and hollow agents)', function () {
  this.timeout(120_000);
  let api: TestApiServer;
  let client: Client;
  let fleet: Fleet;
  let cp: Running;
  let dir: string;

  const run = cliRunner(() => client);

  before(async () => {
    api = await startApiServer();
    cp = await startControlPlane(api, 2, { fleet: { memoryMiB: 2048, hollow: { rules: [{ image: 'busybox', logs: ['hello from hollow', 'second line'] }] } }, manager: { resyncMs: 2000 } });
    ({ client, fleet } = cp);
    dir = await mkdtemp(join(tmpdir(), 'berth-cli-'));
  });
  after(async () => {
    await cp?.stop();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies manifests: created, then unchanged; an edited task definition registers the next revision', async () => {
    const f = join(dir, 'web.yaml');
    const doc = (mem: number, count: number) => `apiVersion: berth.dev/v1
kind: TaskDefinition
metadata: {name: web}
spec:
  containerDefinitions:
  - {name: web, image: busybox, memory: ${mem}, command: [httpd, -f]}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: web}
spec: {taskDefinition: web, desiredCount: ${count}}
`;
    await writeFile(f, doc(64, 2));
    let r = await run('apply', '-f', f);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.equal('taskdefinition/web:1 created\nservice/web created\n');
    r = await run('apply', '-f', f);
    expect(r.out).to.equal('taskdefinition/web:1 unchanged\nservice/web unchanged\n');
    await writeFile(f, doc(96, 2));
    r = await run('diff', '-f', f);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('--- taskdefinition/web:1\n+++ taskdefinition/web:2');
    expect(r.out).to.match(/^- +memory: 64$/m);
    expect(r.out).to.match(/^\+ +memory: 96$/m);
    r = await run('apply', '-f', f, '--dry-run');
    expect(r.out).to.include('(dry run)');
    expect((await client.list('TaskDefinition', undefined, { fieldSelector: 'status.family=web' })).items).to.have.length(1);
    // the service names the family: its spec is unchanged, and it follows the family to the newest revision
    r = await run('apply', '-f', f);
    expect(r.out, r.err).to.equal('taskdefinition/web:2 created\nservice/web unchanged\n');
    await eventually(async () => (await client.get<Service>('Service', 'default', 'web')).status?.taskDefinition === 'web:2', 20_000, 'the service follows to web:2');
  });

  it('applies the raw ECS JSON of the ECS Developer Guide (sleep360) as a task definition', async () => {
    const r = await run('apply', '-f', 'test/api/fixtures/sleep360.json');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.equal('taskdefinition/sleep360:1 created\n');
  });

  it('handles every document and aggregates errors, exiting non-zero', async () => {
    const f = join(dir, 'mixed.yaml');
    await writeFile(f, `apiVersion: berth.dev/v1
kind: TaskDefinition
metadata: {name: ok}
spec: {containerDefinitions: [{name: a, image: busybox, memory: 16}]}
---
apiVersion: berth.dev/v1
kind: TaskDefinition
metadata: {name: bad}
spec: {containerDefinitions: [{name: a, image: busybox, memory: 16, colour: red}]}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: nope}
spec: {taskDefinition: missing, desiredCount: 1}
`);
    const r = await run('apply', '-f', f);
    expect(r.code).to.equal(1);
    expect(r.out).to.equal('taskdefinition/ok:1 created\n');
    expect(r.err).to.match(/mixed\.yaml#2: .*colour/);
    expect(r.err).to.match(/mixed\.yaml#3: .*task definition "missing" not found/);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'kind: [unclosed');
    const r2 = await run('apply', '-f', bad);
    expect(r2.code).to.equal(1);
    expect(r2.err).to.match(/bad\.yaml: not valid YAML/);
  });

  it('gets tables like kubectl, and json/yaml/name', async () => {
    // the rollout to web:2 of the test before ends: one deployment, 2 running, nothing pending, no old task left RUNNING
    // (runningCount alone reaches 2 while old tasks still drain, and the task list then has more)
    await eventually(async () => {
      const st = (await client.get<Service>('Service', 'default', 'web')).status;
      if (st?.runningCount !== 2 || st.pendingCount !== 0 || st.deployments?.length !== 1) return false;
      return (await client.list('Task', 'default', { fieldSelector: 'status.lastStatus=RUNNING' })).items.length === 2;
    }, 30_000, 'web steady on 2 tasks of one deployment');
    let r = await run('get', 'svc');
    expect(r.out.split('\n')[0]).to.match(/^NAME\s+TASK-DEFINITION\s+DESIRED\s+RUNNING\s+PENDING\s+STATUS\s+AGE$/);
    expect(r.out).to.match(/\nweb\s+web:2\s+2\s+2\s+0\s+ACTIVE\s+\S+\n/);
    r = await run('get', 'tasks', '--field-selector', 'status.lastStatus=RUNNING', '-o', 'name');
    expect(r.out.trim().split('\n')).to.have.length(2);
    r = await run('get', 'td', 'web:2', '-o', 'json');
    expect(JSON.parse(r.out).spec.containerDefinitions[0].memory).to.equal(96);
    r = await run('get', 'nothing');
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/unknown resource type "nothing"; known: clusters/);
  });

  it('scales and follows a rollout to the end; describe shows deployments and events', async () => {
    let r = await run('scale', 'service/web', '--replicas', '3');
    expect(r.out).to.equal('service/web scaled to 3\n');
    r = await run('rollout', 'status', 'service/web', '--timeout', '30');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/service\/web successfully rolled out \(web:2, 3 running\)\n$/);
    r = await run('describe', 'svc', 'web');
    expect(r.out).to.match(/Task Definition:\s+web:2/);
    expect(r.out).to.match(/PRIMARY\s+web:2\s+3\s+3/);
    expect(r.out).to.include('(service web) has reached a steady state.');
    r = await run('rollout', 'undo', 'service/web');
    expect(r.out).to.equal('service/web rolled back to web:1\n');
    r = await run('rollout', 'status', 'svc/web', '--timeout', '30');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('successfully rolled out (web:1, 3 running)');
    r = await run('scale', 'service/web', '--replicas', '-1');
    expect(r.code).to.equal(1);
    expect(r.err).to.include('--replicas -1: must be a whole number');
  });

  it('runs, starts and stops tasks; drains and describes an instance', async () => {
    let r = await run('run-task', '--task-definition', 'sleep360', '--count', '2', '--wait');
    expect(r.code, r.err).to.equal(0);
    const lines = r.out.trim().split('\n');
    expect(lines).to.have.length(2);
    expect(lines[0]).to.match(/^task\/\w+ created \(sleep360:1\) on \w+$/);
    // logs: served by the agent of the task's instance, proxied by the apiserver
    const first = lines[0].split(' ')[0].slice('task/'.length);
    await eventually(async () => (await client.get<Task>('Task', 'default', first)).status?.lastStatus === 'RUNNING', 20_000, 'running');
    r = await run('logs', first);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.equal('hello from hollow\nsecond line\n');
    r = await run('logs', first, '-c', 'nope');
    expect(r.code).to.equal(1);
    expect(r.err).to.include('has no container named nope; it has sleep');
    r = await run('run-task', '--task-definition', 'sleep360', '--count', '11');
    expect(r.err).to.include('must be 1 to 10');
    const ci = fleet.agents[0].agent.instanceId;
    r = await run('start-task', '--task-definition', 'sleep360', '--container-instances', ci);
    expect(r.out).to.match(new RegExp(`started on ${ci}`));
    const name = lines[0].split(' ')[0].slice('task/'.length);
    r = await run('stop-task', name, '--reason', 'done with it');
    expect(r.out).to.equal(`task/${name} stopping\n`);
    await eventually(async () => (await client.get<Task>('Task', 'default', name)).status?.lastStatus === 'STOPPED', 20_000, 'stopped');
    expect((await client.get<Task>('Task', 'default', name)).spec.stopReason).to.equal('done with it');
    r = await run('drain', ci);
    expect(r.out).to.equal(`containerinstance/${ci} draining\n`);
    r = await run('describe', 'ci', ci);
    expect(r.out).to.match(/Status:\s+DRAINING/);
    expect(r.out).to.match(/MEMORY\s+2048\s+\d+/);
    await run('drain', ci, '--undo');
  });

  it('deletes by name and from a file; --help works', async () => {
    let r = await run('delete', 'service', 'web');
    expect(r.out).to.equal('service/web deleted\n');
    await eventually(async () => (await client.tryGet('Service', 'default', 'web')) === undefined, 30_000, 'service gone');
    r = await run('delete', 'td', 'ok', 'nothere');
    expect(r.out).to.equal('taskdefinition/ok deleted\n');
    expect(r.code).to.equal(1);
    expect(r.err).to.include('nothere');
    r = await run('--help');
    expect(r.code).to.equal(0);
    expect(r.out).to.include('apply');
    expect(r.out).to.include('rollout');
  });

  it('applies every example in deploy/examples, and the raw ECS JSON of ECS\'s documents', async () => {
    let r = await run('apply', '-f', 'deploy/examples');
    expect(r.code, r.err).to.equal(0);
    for (const want of ['taskdefinition/console-sample-app:1 created', 'service/console-sample-app created', 'daemon/log-collector created', 'daemon/monitoring-daemon created', 'taskdefinition/hello_world:1 created', 'taskdefinition/scorekeep:1 created', 'taskdefinition/scorekeep-awsvpc:1 created']) expect(r.out).to.include(want);
    r = await run('apply', '-f', 'deploy/examples/ecs-json');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('taskdefinition/hello_world:2 created');
  });

  it('version, config contexts and bash completion', async () => {
    let r = await run('version');
    expect(r.out).to.match(/^Client Version: test\nServer Version: v\S+\n$/);
    const kc = join(dir, 'kubeconfig');
    await writeFile(kc, (await import('node:fs')).readFileSync(api.kubeconfigPath, 'utf8'));
    const withConfig = async (...argv: string[]) => {
      let out = '';
      let err = '';
      const deps: CliDeps = {
        io: { out: (x) => void (out += x), err: (x) => void (err += x), stdin: async () => '' },
        version: 'test',
        connect: async () => ({ client, namespace: 'default' }),
        kubeconfigPath: (given) => given ?? kc,
      };
      return { code: await runCli(argv, deps), out, err };
    };
    r = await withConfig('config', 'current-context');
    expect(r.out).to.equal('berth\n');
    r = await withConfig('config', 'get-contexts');
    expect(r.out).to.match(/^\*\s+berth\s+berth\s+default$/m);
    r = await withConfig('config', 'use-context', 'nope');
    expect(r.code).to.equal(1);
    expect(r.err).to.include('no context named "nope"');
    r = await withConfig('config', 'view');
    expect(r.out).to.include('token: REDACTED');
    expect(r.out).to.not.include(api.adminToken);
    r = await withConfig('completion');
    expect(r.out).to.include('complete -F _berth berth');
    expect(r.out).to.match(/compgen -W "[^"]*apply[^"]*rollout/);
  });

  it('rollout restart replaces every task with one of the same revision; rollout status follows it to the end', async () => {
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'restartme' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 32, command: ['sleep', '3600'] }] } });
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'restartme', namespace: 'default' }, spec: { taskDefinition: 'restartme', desiredCount: 2 } });
    await expectRestart(client, 'default', 'restartme', async () => {
      const r = await run('rollout', 'restart', 'service/restartme');
      expect(r.code, r.err).to.equal(0);
      expect(r.out).to.equal('service/restartme restarted\n');
      const st = await run('rollout', 'status', 'service/restartme', '--timeout', '60');
      expect(st.code, st.err).to.equal(0);
      expect(st.out).to.match(/service\/restartme successfully rolled out \(restartme:1, 2 running\)/);
    }, { desired: 2 });
    // twice in a row: two requests, two deployments
    await expectRestart(client, 'default', 'restartme', async () => {
      expect((await run('rollout', 'restart', 'restartme')).code).to.equal(0);
    }, { desired: 2 });
    const r = await run('rollout', 'restart', 'service/nope');
    expect(r.code).to.not.equal(0);
    expect(r.err).to.match(/nope/);
  });
});
