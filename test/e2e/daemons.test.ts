import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ensureBusyboxImage, ensureDocker, type DockerHandle } from '../support/docker.ts';
import { freePort } from '../support/etcd.ts';
import { eventually } from '../support/fleet.ts';

interface TaskRow {
  metadata: { name: string };
  spec: { group?: string; desiredStatus: string; containerInstance?: string };
  status?: { lastStatus?: string; stoppedReason?: string };
}

/**
 * A new user's report: `berth apply -f deploy/examples/` on a fresh `berth up`
 * left the monitoring daemon with four tasks, one desired RUNNING and last STOPPED after its
 * container failed to create, still there after the daemon was deleted. On real Docker:
 * every daemon of the examples converges to exactly one task per instance, no task is left
 * desired RUNNING and STOPPED, and deleting the daemons leaves none of their tasks running.
 */
describe('the daemons of deploy/examples/ on a fresh berth up (real Docker)', function () {
  this.timeout(600_000);
  let home: string;
  let docker: DockerHandle;
  let up: ChildProcess;
  let upOut = '';
  let port: number;
  const env = () => ({ ...process.env, BERTH_HOME: home, DOCKER_HOST: docker.dockerHost, ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '1s', BERTH_LOG_LEVEL: 'warn' });
  const berth = (args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, ['cmd/berth/bin.mjs', ...args], { env: env() });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
      p.stdin.end('');
    });
  const ok = async (...args: string[]) => {
    const r = await berth(args);
    expect(r.code, `berth ${args.join(' ')}: ${r.err}`).to.equal(0);
    return r.out;
  };
  const tasks = async (group: string): Promise<TaskRow[]> => JSON.parse(await ok('get', 'tasks', '--field-selector', `spec.group=${group}`, '-o', 'json')).items ?? [];
  const taskContainers = async () => (await docker.docker.listContainers({ all: true, filters: { label: ['com.amazonaws.ecs.cluster=default'] } })).filter((c) => c.Labels['com.amazonaws.ecs.task-arn']);

  before(async () => {
    docker = await ensureDocker();
    await ensureBusyboxImage(docker.docker);
    home = await mkdtemp(join(tmpdir(), 'berth-daemons-'));
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
    for (const c of await taskContainers().catch(() => [])) await docker.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
  });

  it('every daemon converges to exactly one task per instance; none is left desired RUNNING and STOPPED, before or after the delete', async () => {
    await ok('apply', '-f', 'deploy/examples/');
    const groups = ['daemon:monitoring-daemon', 'daemon:log-collector'];
    const instances = (await ok('get', 'ci', '-o', 'name')).trim().split('\n').length;
    for (const g of groups) {
      await eventually(async () => {
        const ts = await tasks(g);
        const running = ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING');
        return running.length === instances && ts.filter((t) => t.spec.desiredStatus === 'RUNNING').length === instances;
      }, 180_000, `${g}: one RUNNING task per instance`).catch(async (e) => {
        console.log(JSON.stringify(await tasks(g), null, 1));
        throw e;
      });
    }
    // it stays so (no copy appears and fails while it settles)
    await new Promise((r) => setTimeout(r, 5000));
    for (const g of groups) {
      const ts = await tasks(g);
      const stuck = ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'STOPPED');
      expect(stuck, `${g}: ${JSON.stringify(stuck.map((t) => t.status?.stoppedReason))}`).to.deep.equal([]);
      expect(ts.filter((t) => t.spec.desiredStatus === 'RUNNING'), g).to.have.length(instances);
    }
    await ok('delete', '-f', 'deploy/examples/');
    for (const g of groups) {
      await eventually(async () => (await tasks(g)).every((t) => t.spec.desiredStatus === 'STOPPED' && t.status?.lastStatus === 'STOPPED'), 120_000, `${g}: every task stopped after the delete`);
    }
    await eventually(async () => (await taskContainers()).filter((c) => c.State === 'running').length === 0, 120_000, 'no task container running');
  });
});
