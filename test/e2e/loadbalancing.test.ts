import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { startBerthUp, type BerthUp } from '../support/berthup.ts';
import { freePort } from '../support/etcd.ts';
import { eventually } from '../support/fleet.ts';
import { httpGet } from '../support/haproxy.ts';
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
  let b: BerthUp;
  let lbPort: number;
  const berth = (args: string[], input?: string) => b.berth(args, input);
  const ok = (args: string[], input?: string) => b.ok(args, input);
  const getJson = async (kind: string, name: string) => JSON.parse(await ok(['get', kind, name, '-o', 'json']));
  /** one GET through the load balancer on a new connection: its status and body, or the error */
  const get = (path = '/') => httpGet('127.0.0.1', lbPort, path, 5_000);
  const manifest = () => readFileSync('deploy/examples/lb-web.yaml', 'utf8').replace('loadBalancerPort: 8081', `loadBalancerPort: ${lbPort}`);
  const targets = async () => ((await getJson('targetgroup', 'lb-web')).status?.targets ?? []) as Array<{ task: string; state: string; port: number }>;
  const serviceTasks = async () => {
    const list = JSON.parse(await ok(['get', 'tasks', '--field-selector', 'spec.group=service:lb-web', '-o', 'json'])).items as Array<{ metadata: { name: string }; spec: { desiredStatus: string; stopReason?: string }; status?: { lastStatus: string; containers?: Array<{ dockerId?: string }> } }>;
    return list;
  };
  const ourContainers = async () => b.docker.docker.listContainers({ all: true, filters: { label: ['com.amazonaws.ecs.task-definition-family=lb-web'] } });

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
    lbPort = await freePort();
    // dynamic host ports from a range of our own: other Docker daemons on this machine publish
    // from the default one; and below the kernel's ephemeral ports (32768-60999): a range inside
    // them met connections' local ports (HAProxy's checks and the request loop's, thousands of
    // them), and a task's start failed with "bind: address already in use"
    const from = 29_000 + (process.pid % 60) * 60;
    // and an introspection port of our own: another berth up on this machine may hold the default one
    b = await startBerthUp('berth-lb-', { ECS_DYNAMIC_HOST_PORT_RANGE: `${from}-${from + 49}`, ECS_INTROSPECTION_PORT: String(await freePort()) });
  });

  afterEach(async function () {
    if (!process.env.LB_DEBUG || this.currentTest?.state !== 'failed') return;
    console.log(`${b.output()}\n${(await berth(['get', 'tg', '-o', 'yaml'])).out}\n${(await berth(['describe', 'service', 'lb-web'])).out}\n${(await berth(['get', 'tasks', '-o', 'wide'])).out}`);
  });

  after(async () => {
    if (!b) return;
    const pidFile = join(b.home, 'lb', 'haproxy.pid');
    const containers = await ourContainers().catch(() => []);
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    await b.stop();
    // haproxy stops with berth up; by pid if it outlived it
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    for (const c of containers) await b.docker.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
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
    const k = await kubectl(join(b.home, 'config'), ['get', 'targetgroups.berth.dev', 'lb-web', '-o', 'jsonpath={.status.targets[*].state}']);
    expect(k.code, k.stderr).to.equal(0);
    expect(k.stdout.trim()).to.equal('healthy healthy healthy');
  });

  it('takes a task whose health path fails out of rotation, stops it with ECS reason and replaces it', async () => {
    const arn = (await getJson('targetgroup', 'lb-web')).status.targetGroupArn as string;
    const victim = (await serviceTasks()).find((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING')!;
    const dockerId = victim.status!.containers![0].dockerId!;
    const exec = await b.docker.docker.getContainer(dockerId).exec({ Cmd: ['rm', '/www/health'], AttachStdout: true, AttachStderr: true });
    await new Promise<void>((resolve, reject) => exec.start({}, (err, stream) => (err ? reject(err) : stream ? (stream.on('end', () => resolve()), stream.resume()) : resolve())));
    const l = loop();
    // unhealthy (HAProxy's checks get 404s), so the service drains it and gives it its stop with ECS's reason
    const stopReason = await eventually(async () => (await serviceTasks()).find((t) => t.metadata.name === victim.metadata.name)?.spec.stopReason, 60_000, 'the task asked to stop');
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

  it('trips the circuit breaker on a revision whose tasks fail ELB health checks and rolls back, old tasks answering every request', async () => {
    const breaker = (m: string) => m.replace('maximumPercent: 200', 'maximumPercent: 200\n    deploymentCircuitBreaker: {enable: true, rollback: true}');
    await ok(['apply', '-f', '-'], breaker(manifest().replace('value: "1"', 'value: "3"')));
    expect(await ok(['rollout', 'status', 'service/lb-web', '--timeout', '120'])).to.include('3 running)');
    const good = (await getJson('service', 'lb-web')).status.taskDefinition as string;
    await eventually(async () => {
      const ts = await targets();
      return ts.length === 3 && ts.every((t) => t.state === 'healthy');
    }, 60_000, 'three healthy targets');
    const arn = (await getJson('targetgroup', 'lb-web')).status.targetGroupArn as string;
    // the old tasks' answers: their containers' hostnames
    const oldTasks = (await serviceTasks()).filter((t) => t.spec.desiredStatus === 'RUNNING');
    expect(oldTasks.length).to.equal(3);
    const old = new Set(await Promise.all(oldTasks.map(async (t) => (await b.docker.docker.getContainer(t.status!.containers![0].dockerId!).inspect()).Config.Hostname)));
    expect(old.size).to.equal(3);

    const l = loop();
    // the new revision serves no /health (HAProxy's checks get 404s) and would answer "bad HOSTNAME"
    const bad = breaker(manifest().replace('value: "1"', 'value: "4"').replace('hostname > /www/index.html && echo ok > /www/health', 'echo bad $(hostname) > /www/index.html'));
    await ok(['apply', '-f', '-'], bad);
    const badTd = await eventually(async () => {
      const td = (await getJson('service', 'lb-web')).status?.taskDefinition as string | undefined;
      return td && td !== good ? td : undefined;
    }, 15_000, 'the new revision deployed');
    const s = await eventually(async () => {
      const s = await getJson('service', 'lb-web');
      const primary = s.status?.deployments?.find((d: { status: string }) => d.status === 'PRIMARY');
      const rolledBack = (s.status?.events ?? []).some((e: { message: string }) => / rolling back to deployment /.test(e.message));
      return rolledBack && primary?.taskDefinition === good ? s : undefined;
    }, 75_000, 'the breaker trips and the service rolls back');
    expect(s.status.taskDefinition).to.equal(good);
    const failed = s.status.deployments.find((d: { taskDefinition: string }) => d.taskDefinition === badTd);
    if (failed) expect(failed.rolloutState).to.equal('FAILED');
    // back on the old revision: no task of the new one left, three healthy old targets
    await eventually(async () => {
      // live: meant to run and not stopped (a task whose start failed stays desired RUNNING, STOPPED)
      const live = (await serviceTasks()).filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED');
      const ts = await targets();
      return live.length === 3 && live.every((t) => (t.spec as { taskDefinition?: string }).taskDefinition === good) && ts.length === 3 && ts.every((t) => t.state === 'healthy');
    }, 60_000, 'only the old revision left');
    // the new revision's tasks were stopped for failing ELB health checks (what the breaker counts)
    const badTasks = (await serviceTasks()).filter((t) => (t.spec as { taskDefinition?: string }).taskDefinition === badTd);
    const elbStops = badTasks.filter((t) => t.spec.stopReason === `Task failed ELB health checks in (target-group ${arn})`);
    expect(elbStops.length, JSON.stringify(badTasks.map((t) => t.spec.stopReason))).to.be.greaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 1_000));
    await l.stop();
    expect(l.failures, `failed requests: ${l.failures.slice(0, 5).join(', ')}`).to.deep.equal([]);
    expect(l.answers.length).to.be.greaterThan(50);
    // every answer came from an old task
    expect([...new Set(l.answers)].filter((a) => !old.has(a))).to.deep.equal([]);
    expect(new Set(l.answers).size).to.be.greaterThanOrEqual(2);

    await ok(['delete', 'service', 'lb-web']);
    await eventually(async () => (await targets()).length === 0, 60_000, 'every target deregistered');
  });
});
