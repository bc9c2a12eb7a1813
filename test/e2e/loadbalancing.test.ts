import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ensureBusyboxImage, ensureDocker, type DockerHandle } from '../support/docker.ts';
import { freePort } from '../support/etcd.ts';
import { eventually } from '../support/fleet.ts';
import { kubectl } from '../support/kubectl.ts';

/**
 * Services behind berth's HAProxy (berth up runs berth-lb on loopback), on real Docker, with
 * real HTTP through the load balancer: requests reach every task; a rolling deployment and
 * a scale 3 -> 1 -> 3 under a request loop fail no request (targets pass their health
 * checks before they take traffic and drain before their task stops); a task whose health
 * path starts failing is taken out of rotation, stopped with ECS's reason and replaced.
 */
describe('load balancing end to end (berth up, berth-lb on HAProxy, busybox httpd tasks)', function () {
  this.timeout(300_000);
  let home: string;
  let docker: DockerHandle;
  let up: ChildProcess;
  let upOut = '';
  let lbPort: number;
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
  const ok = async (args: string[], input?: string) => {
    const r = await berth(args, input);
    expect(r.code, `berth ${args.join(' ')}: ${r.err}`).to.equal(0);
    return r.out;
  };
  const getJson = async (kind: string, name: string) => JSON.parse(await ok(['get', kind, name, '-o', 'json']));
  /** one GET through the load balancer on a new connection: its status and body, or the error */
  const get = (path = '/') =>
    new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
      const req = request({ host: '127.0.0.1', port: lbPort, path, agent: false, timeout: 5_000 }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
        res.on('error', (e) => resolve({ error: e.message }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => resolve({ error: e.message }));
      req.end();
    });
  const manifest = () => readFileSync('deploy/examples/lb-web.yaml', 'utf8').replace('loadBalancerPort: 8081', `loadBalancerPort: ${lbPort}`);
  const targets = async () => ((await getJson('targetgroup', 'lb-web')).status?.targets ?? []) as Array<{ task: string; state: string; port: number }>;
  const serviceTasks = async () => {
    const list = JSON.parse(await ok(['get', 'tasks', '--field-selector', 'spec.group=service:lb-web', '-o', 'json'])).items as Array<{ metadata: { name: string }; spec: { desiredStatus: string; stopReason?: string }; status?: { lastStatus: string; containers?: Array<{ dockerId?: string }> } }>;
    return list;
  };
  const ourContainers = async () => docker.docker.listContainers({ all: true, filters: { label: ['com.amazonaws.ecs.task-definition-family=lb-web'] } });

  /** a request loop until `stop()`: every answer, and every failure */
  const loop = () => {
    const answers: string[] = [];
    const failures: string[] = [];
    let running = true;
    const done = (async () => {
      while (running) {
        const r = await get();
        if ('error' in r) failures.push(r.error);
        else if (r.status !== 200) failures.push(`HTTP ${r.status}`);
        else answers.push(r.body);
      }
    })();
    return {
      answers,
      failures,
      stop: async () => {
        running = false;
        await done;
      },
    };
  };

  before(async () => {
    docker = await ensureDocker();
    await ensureBusyboxImage(docker.docker);
    home = await mkdtemp(join(tmpdir(), 'berth-lb-'));
    const port = await freePort();
    lbPort = await freePort();
    up = spawn(process.execPath, ['cmd/berth/bin.mjs', 'up', '--listen', `127.0.0.1:${port}`], { env: env() });
    up.stdout!.on('data', (d) => (upOut += d));
    up.stderr!.on('data', (d) => (upOut += d));
    await eventually(() => upOut.includes('berth is up on'), 60_000, `berth up (output so far: ${upOut})`);
    await eventually(async () => (await berth(['get', 'ci', '-o', 'name'])).out.includes('containerinstance'), 30_000, 'the agent registered');
  });

  afterEach(async function () {
    if (!process.env.LB_DEBUG || this.currentTest?.state !== 'failed') return;
    upOut += `\n---- ${this.currentTest.title}\n${(await berth(['get', 'tg', '-o', 'yaml'])).out}\n${(await berth(['describe', 'service', 'lb-web'])).out}\n${(await berth(['get', 'tasks', '-o', 'wide'])).out}\n${await readFile(join(home, 'lb', 'haproxy.cfg'), 'utf8').catch(() => 'no cfg')}`;
  });

  after(async () => {
    if (up && up.exitCode === null) {
      up.kill('SIGTERM');
      await new Promise((r) => up.once('exit', r));
    }
    // haproxy stops with berth up; by pid if it outlived it
    const pid = Number((await readFile(join(home, 'lb', 'haproxy.pid'), 'utf8').catch(() => '')).trim());
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    if (process.env.LB_DEBUG) (await import('node:fs')).writeFileSync('/tmp/lbtest-up.log', upOut);
    for (const c of await ourContainers().catch(() => [])) await docker.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
  });

  it('refuses a service whose load balancer names a container port the task definition does not have', async () => {
    await ok(['apply', '-f', '-'], manifest().split('\n---\n').slice(0, 3).join('\n---\n'));
    const bad = manifest().split('\n---\n')[3].replace('containerPort: 80\n', 'containerPort: 81\n').replace('name: lb-web\nspec:\n  taskDefinition', 'name: lb-bad\nspec:\n  taskDefinition');
    const r = await berth(['apply', '-f', '-'], bad);
    expect(r.code).to.not.equal(0);
    expect(r.err).to.include('spec.loadBalancers[0].containerPort');
    const missing = bad.replace('targetGroupArn: lb-web', 'targetGroupArn: nope').replace('containerPort: 81', 'containerPort: 80');
    expect((await berth(['apply', '-f', '-'], missing)).err).to.include('target group "nope" not found');
    expect((await berth(['get', 'service', 'lb-bad'])).code).to.not.equal(0);
  });

  it('serves through HAProxy from all 3 tasks, and rolls and scales without a failed request', async () => {
    await ok(['apply', '-f', '-'], manifest());
    expect(await ok(['rollout', 'status', 'service/lb-web', '--timeout', '120'])).to.include('successfully rolled out (lb-web:1, 3 running)');
    const healthy = await targets();
    expect(healthy.map((t) => t.state)).to.deep.equal(['healthy', 'healthy', 'healthy']);
    expect(new Set(healthy.map((t) => t.port)).size).to.equal(3);
    // every task answers through the load balancer (round robin)
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const r = await get();
      expect(r).to.have.property('status', 200);
      seen.add((r as { body: string }).body);
    }
    expect(seen.size).to.equal(3);
    const events = (await getJson('service', 'lb-web')).status.events.map((e: { message: string }) => e.message) as string[];
    const arn = (await getJson('targetgroup', 'lb-web')).status.targetGroupArn as string;
    expect(events.some((m) => m.startsWith('(service lb-web) registered') && m.endsWith(`targets in (target-group ${arn})`)), events.join('\n')).to.equal(true);

    const l = loop();
    // a rolling deployment of a new revision
    await ok(['apply', '-f', '-'], manifest().replace('value: "1"', 'value: "2"'));
    expect(await ok(['rollout', 'status', 'service/lb-web', '--timeout', '150'])).to.include('successfully rolled out (lb-web:2, 3 running)');
    // scale in to 1 and back to 3
    await ok(['scale', 'service/lb-web', '--replicas', '1']);
    await eventually(async () => (await targets()).length === 1, 60_000, 'two targets drained and removed');
    await ok(['scale', 'service/lb-web', '--replicas', '3']);
    await eventually(async () => {
      const ts = await targets();
      return ts.length === 3 && ts.every((t) => t.state === 'healthy');
    }, 60_000, 'three healthy targets again');
    await new Promise((r) => setTimeout(r, 1_000));
    await l.stop();
    expect(l.failures, `failed requests: ${l.failures.slice(0, 5).join(', ')}`).to.deep.equal([]);
    expect(l.answers.length).to.be.greaterThan(50);
    // the answers came from at least the 3 old and 3 new tasks
    expect(new Set(l.answers).size).to.be.greaterThanOrEqual(6);
    const stopped = (await serviceTasks()).filter((t) => t.spec.desiredStatus === 'STOPPED');
    expect(stopped.length).to.be.greaterThanOrEqual(5);
    const after = (await getJson('service', 'lb-web')).status.events.map((e: { message: string }) => e.message) as string[];
    expect(after.some((m) => /has begun draining connections on \d+ tasks/.test(m))).to.equal(true);

    // the resource API and kubectl see the kinds; get and describe show the targets
    expect(await ok(['get', 'targetgroups,loadbalancers'])).to.match(/lb-web[\s\S]*healthy/);
    expect(await ok(['describe', 'service', 'lb-web'])).to.match(/Targets:[\s\S]*127.0.0.1:\d+\s+\w+\s+healthy/);
    const k = await kubectl(join(home, 'config'), ['get', 'targetgroups.berth.dev', 'lb-web', '-o', 'jsonpath={.status.targets[*].state}']);
    expect(k.code, k.stderr).to.equal(0);
    expect(k.stdout.trim()).to.equal('healthy healthy healthy');
  });

  it('takes a task whose health path fails out of rotation, stops it with ECS reason and replaces it', async () => {
    const arn = (await getJson('targetgroup', 'lb-web')).status.targetGroupArn as string;
    const victim = (await serviceTasks()).find((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING')!;
    const dockerId = victim.status!.containers![0].dockerId!;
    const exec = await docker.docker.getContainer(dockerId).exec({ Cmd: ['rm', '/www/health'], AttachStdout: true, AttachStderr: true });
    await new Promise<void>((resolve, reject) => exec.start({}, (err, stream) => (err ? reject(err) : stream ? (stream.on('end', () => resolve()), stream.resume()) : resolve())));
    const l = loop();
    await eventually(async () => (await targets()).find((t) => t.task === `default/${victim.metadata.name}`)?.state === 'unhealthy', 30_000, 'the target unhealthy');
    const stopReason = await eventually(async () => (await serviceTasks()).find((t) => t.metadata.name === victim.metadata.name)?.spec.stopReason, 30_000, 'the task asked to stop');
    expect(stopReason).to.equal(`Task failed ELB health checks in (target-group ${arn})`);
    await eventually(async () => {
      const ts = await targets();
      return ts.length === 3 && ts.every((t) => t.state === 'healthy') && !ts.some((t) => t.task === `default/${victim.metadata.name}`);
    }, 60_000, 'a replacement healthy in its place');
    await l.stop();
    // its traffic path still answered until it was out of rotation: no request failed
    expect(l.failures, l.failures.slice(0, 5).join(', ')).to.deep.equal([]);

    await ok(['delete', 'service', 'lb-web']);
    await eventually(async () => (await targets()).length === 0, 60_000, 'every target deregistered');
  });
});
