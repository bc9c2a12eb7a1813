import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { ContainerInstance, Task } from '../../pkg/api/kinds.ts';
import { Agent } from '../../pkg/agent/agent.ts';
import { loadAgentConfig } from '../../pkg/agent/config.ts';
import { HollowRuntime, type HollowOptions } from '../../pkg/agent/runtime/hollow.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { Client } from '../../pkg/client/client.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';
import { startHttpProxy, type HttpProxy } from '../support/httpproxy.ts';
import { freePort } from '../support/etcd.ts';

/**
 * The agent against a real apiserver, on the hollow runtime (the findings here are about the
 * agent and the API, not Docker): status reports, cleanup after a restart, deleted tasks,
 * resuming the registered instance.
 */
describe('agent against a real apiserver (hollow runtime)', function () {
  this.timeout(120_000);
  let api: TestApiServer;
  let admin: Client;
  const dirs: string[] = [];
  const agents: Agent[] = [];
  let n = 0;

  before(async () => {
    api = await startApiServer();
    admin = new Client({ server: api.url, token: api.adminToken });
  });
  after(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    admin?.close();
    await api?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function newAgent(o: { dir?: string; runtime?: HollowRuntime; hollow?: HollowOptions; env?: Record<string, string>; server?: string; deps?: Partial<ConstructorParameters<typeof Agent>[0]> } = {}) {
    const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'berth-agent-api-')));
    if (!o.dir) dirs.push(dir);
    const runtime = o.runtime ?? new HollowRuntime(o.hollow);
    const server = o.server ?? api.url;
    const agent = new Agent({
      config: loadAgentConfig({ env: { ECS_CLUSTER: 'default', ECS_DATADIR: dir, BERTH_BOOTSTRAP_TOKEN: api.bootstrapToken, ECS_BACKEND_HOST: server, ECS_INTROSPECTION_PORT: '0', ECS_CONTAINER_STOP_TIMEOUT: '1s', ...o.env } }),
      client: new Client({ server, token: api.bootstrapToken }),
      runtime,
      log: silentLogger(),
      host: { cpus: 2, totalMemory: 4096 * 1024 * 1024 },
      fingerprint: `hollow-${dir}`,
      heartbeatMs: 1000,
      ...o.deps,
    });
    agents.push(agent);
    await agent.start();
    return { agent, runtime, dir };
  }

  async function runTask(instance: string, td: string, containers: unknown[], extra: Record<string, unknown> = {}) {
    const name = `t${++n}`;
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: td }, spec: { containerDefinitions: containers, ...extra } });
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: 'default' }, spec: { taskDefinition: td } });
    const r = await admin.bind('default', [{ task: name, containerInstance: instance }]);
    expect(r.results[0].bound, JSON.stringify(r.results[0])).to.equal(true);
    return name;
  }
  const getTask = (name: string) => admin.get<Task>('Task', 'default', name);
  const memoryLeft = async (instance: string) => (await admin.get<ContainerInstance>('ContainerInstance', 'default', instance)).status?.remainingResources?.find((r) => r.name === 'MEMORY')?.integerValue;

  it('D1: a restart-policy task whose container exits three times never reports STOPPED and keeps its allocation', async () => {
    // the injected clock says every run lasted longer than the restart attempt period
    const { agent, runtime } = await newAgent({ hollow: { rules: [{ image: 'flaky', exitAfterMs: 300, exitCode: 1 }] }, deps: { runner: { now: () => Date.now() + 120_000 } } });
    const before = await memoryLeft(agent.instanceId);
    const name = await runTask(agent.instanceId, 'd1', [{ name: 'a', image: 'flaky', memory: 128, restartPolicy: { enabled: true, restartAttemptPeriod: 60 } }]);
    const statuses: string[] = [];
    let restarts = 0;
    for (const t0 = Date.now(); Date.now() - t0 < 60_000 && restarts < 3; ) {
      const t = await getTask(name);
      statuses.push(t.status?.lastStatus ?? '');
      restarts = t.status?.containers?.[0]?.restartCount ?? 0;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(restarts, 'three restarts').to.be.at.least(3);
    const running = statuses.indexOf('RUNNING');
    expect(running).to.be.at.least(0);
    expect(statuses.slice(running).filter((s) => s !== 'RUNNING'), 'after RUNNING, only RUNNING').to.deep.equal([]);
    expect(await memoryLeft(agent.instanceId), 'the allocation is held').to.equal(before! - 128);
    expect(await runtime.list({ [LABELS.taskArn]: (await getTask(name)).status!.taskArn! }), 'restarted in place').to.have.length(1);
    expect(agent.statusWriteFailures, 'no write the apiserver refused').to.equal(0);
  });

  it('D4: a task that stopped before the agent restarted is cleaned up on schedule after the restart', async () => {
    const runtime = new HollowRuntime({ rules: [{ image: 'job', exitAfterMs: 50, exitCode: 0 }] });
    const first = await newAgent({ runtime, env: { ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '3s' } });
    const name = await runTask(first.agent.instanceId, 'd4', [{ name: 'job', image: 'job', memory: 8 }]);
    await eventually(async () => (await getTask(name)).status?.lastStatus === 'STOPPED', 20_000, 'STOPPED');
    const arn = (await getTask(name)).status!.taskArn!;
    await first.agent.stop(); // before its cleanup timer fired
    expect(await runtime.list({ [LABELS.taskArn]: arn }), 'still there when the agent stops').to.have.length(1);
    const again = await newAgent({ runtime, dir: first.dir, env: { ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '3s' } });
    expect(again.agent.instanceId).to.equal(first.agent.instanceId);
    await eventually(async () => (await runtime.list({ [LABELS.taskArn]: arn })).length === 0, 20_000, 'cleaned up after the restart');
    expect(again.agent.checkpoint.task(arn), 'forgotten in the checkpoint').to.equal(undefined);
  });

  it('D6: a transient runtime failure while adopting a task neither kills the agent nor loses the task', async () => {
    const runtime = new HollowRuntime();
    const first = await newAgent({ runtime });
    const name = await runTask(first.agent.instanceId, 'd6', [{ name: 'a', image: 'app', memory: 8 }]);
    await eventually(async () => (await getTask(name)).status?.lastStatus === 'RUNNING', 20_000, 'RUNNING');
    await first.agent.stop();
    runtime.inject({ op: 'list', times: 2, error: () => new Error('Cannot connect to the Docker daemon') });
    const again = await newAgent({ runtime, dir: first.dir, env: { ECS_INTROSPECTION_PORT: String(await freePort()) } });
    // the runner's adoption failed twice and was retried; the task is still run by this agent
    await eventually(async () => runtime.calls.list >= 3, 20_000, 'adoption retried');
    const arn = (await getTask(name)).status!.taskArn!;
    const introspect = async () => (await (await fetch(`http://127.0.0.1:${again.agent.introspectionPort}/v1/tasks?taskarn=${encodeURIComponent(arn)}`)).json()) as { KnownStatus?: string };
    await eventually(async () => (await introspect()).KnownStatus === 'RUNNING', 20_000, 'adopted');
    expect(await runtime.list({ [LABELS.taskArn]: arn }), 'no duplicate').to.have.length(1);
  });

  describe('through a fault-injecting proxy', () => {
    let proxy: HttpProxy;
    beforeEach(async () => {
      proxy = await startHttpProxy({ port: Number(new URL(api.url).port) });
    });
    afterEach(async () => proxy.close());

    it('D7: status reports the apiserver refuses are retried with backoff, not at 10 Hz, and land once it answers', async () => {
      const { agent } = await newAgent({ server: proxy.url });
      let refusing = false;
      let refused = 0;
      proxy.setRule((req) => {
        // a status report: the batch call, or a single status PATCH
        if (refusing && ((req.method === 'PATCH' && /\/tasks\/[^/]+\/status/.test(req.url ?? '')) || (req.method === 'POST' && /\/taskstatuses$/.test(req.url ?? '')))) {
          refused++;
          return { status: 503 };
        }
        return undefined;
      });
      refusing = true;
      const name = await runTask(agent.instanceId, 'd7', [{ name: 'a', image: 'app', memory: 8 }]);
      await new Promise((r) => setTimeout(r, 4000));
      // 200 ms, 400, 800, 1600 ... : a handful in 4 s (at 10 Hz it would be about 40)
      expect(refused).to.be.within(2, 8);
      refusing = false;
      await eventually(async () => (await getTask(name)).status?.lastStatus === 'RUNNING', 40_000, 'the report lands');
    });

    it('reports every task status change of an interval in one taskstatuses call, no status PATCH', async () => {
      const { agent } = await newAgent({ server: proxy.url });
      const seen = { batch: 0, single: 0 };
      proxy.setRule((req) => {
        if (req.method === 'POST' && /\/taskstatuses$/.test(req.url ?? '')) seen.batch++;
        if (req.method === 'PATCH' && /\/tasks\/[^/]+\/status/.test(req.url ?? '')) seen.single++;
        return undefined;
      });
      const names: string[] = [];
      for (let i = 0; i < 4; i++) names.push(await runTask(agent.instanceId, 'batch1', [{ name: 'a', image: 'app', memory: 8 }]));
      for (const name of names) await eventually(async () => (await getTask(name)).status?.lastStatus === 'RUNNING', 40_000, `${name} RUNNING`);
      expect(seen.single, 'no single status PATCH').to.equal(0);
      expect(seen.batch).to.be.greaterThan(0);
      // PENDING -> RUNNING of four tasks (and their container states) in fewer calls than changes
      expect(seen.batch).to.be.lessThan(names.length * 2);
    });

    it('against an apiserver without the taskstatuses route (404), reports each status with its own PATCH', async () => {
      const seen = { batch: 0, single: 0 };
      proxy.setRule((req) => {
        if (req.method === 'POST' && /\/taskstatuses$/.test(req.url ?? '')) {
          seen.batch++;
          // what an apiserver of before the route answers
          return { status: 404, body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'the server does not have a resource type "taskstatuses"', details: { name: 'taskstatuses', kind: 'resource' } } };
        }
        if (req.method === 'PATCH' && /\/tasks\/[^/]+\/status/.test(req.url ?? '')) seen.single++;
        return undefined;
      });
      const { agent } = await newAgent({ server: proxy.url });
      const a = await runTask(agent.instanceId, 'batch2', [{ name: 'a', image: 'app', memory: 8 }]);
      const b = await runTask(agent.instanceId, 'batch2', [{ name: 'a', image: 'app', memory: 8 }]);
      for (const name of [a, b]) await eventually(async () => (await getTask(name)).status?.lastStatus === 'RUNNING', 40_000, `${name} RUNNING`);
      expect(seen.batch, 'asked once, then remembered for a while').to.equal(1);
      expect(seen.single).to.be.greaterThan(0);
    });

    it('D13: a task deleted while its task definition is being read is not run', async () => {
      const runtime = new HollowRuntime();
      const { agent } = await newAgent({ server: proxy.url, runtime });
      proxy.setRule((req) => (req.method === 'GET' && /\/taskdefinitions\/d13/.test(req.url ?? '') ? { delayResponseMs: 1500 } : undefined));
      const name = await runTask(agent.instanceId, 'd13', [{ name: 'a', image: 'app', memory: 8 }]);
      const arn = (await getTask(name)).status!.taskArn!;
      await new Promise((r) => setTimeout(r, 300));
      await admin.delete('Task', 'default', name);
      await new Promise((r) => setTimeout(r, 3000));
      const left = await runtime.list({ [LABELS.taskArn]: arn });
      expect(left.filter((c) => c.status === 'RUNNING'), 'no container of the deleted task runs').to.deep.equal([]);
      await eventually(async () => (await runtime.list({ [LABELS.taskArn]: arn })).length === 0, 10_000, 'nothing left');
    });

    it('D14/S4: a 401 on resume from an apiserver that has not seen the credential yet is retried, never a second instance', async () => {
      const first = await newAgent({ server: proxy.url });
      const id = first.agent.instanceId;
      await first.agent.stop();
      proxy.seen.length = 0;
      const lagging = Date.now() + 2500;
      proxy.setRule((req) => {
        const nodeToken = req.headers.authorization !== `Bearer ${api.bootstrapToken}`;
        if (Date.now() < lagging && nodeToken && req.method === 'GET' && req.url?.includes(`/containerinstances/${id}`)) return { status: 401, body: { kind: 'Status', status: 'Failure', code: 401, reason: 'Unauthorized', message: 'Unauthorized' } };
        return undefined;
      });
      const again = await newAgent({ server: proxy.url, dir: first.dir });
      expect(again.agent.instanceId, 'the same instance resumed').to.equal(id);
      const all = (await admin.list<ContainerInstance>('ContainerInstance', 'default')).items.map((i) => i.metadata.name);
      expect(all.filter((x) => x === id)).to.have.length(1);
      expect(proxy.seen.filter((s) => s.startsWith('POST') && s.includes('/containerinstances')), 'no registration').to.deep.equal([]);
      await again.agent.stop();
      // still refused after the resume window: the agent stops with a message, registering nothing
      proxy.setRule((req) => (req.headers.authorization !== `Bearer ${api.bootstrapToken}` && req.url?.includes(`/containerinstances/${id}`) ? { status: 401, body: { kind: 'Status', status: 'Failure', code: 401, reason: 'Unauthorized', message: 'Unauthorized' } } : undefined));
      const err = await newAgent({ server: proxy.url, dir: first.dir, deps: { resumeWindowMs: 1500 } }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).to.match(/refuses the node credential of container instance .* not registering a second instance/);
      expect(proxy.seen.filter((s) => s.startsWith('POST') && s.includes('/containerinstances'))).to.deep.equal([]);
    });
  });

  it('registers instance type and zone from the configuration (ecs.config too) and its capabilities', async () => {
    const { agent } = await newAgent({ env: { ECS_INSTANCE_TYPE: 'c5.large', ECS_AVAILABILITY_ZONE: 'rack-7', ECS_AVAILABLE_LOGGING_DRIVERS: '["json-file","syslog"]' } });
    const attrs = (await admin.get<ContainerInstance>('ContainerInstance', 'default', agent.instanceId)).spec.attributes ?? [];
    const has = (name: string, value?: string) => attrs.some((a) => a.name === name && (value === undefined || a.value === value));
    expect(has('ecs.instance-type', 'c5.large')).to.equal(true);
    expect(has('ecs.availability-zone', 'rack-7')).to.equal(true);
    expect(has('com.amazonaws.ecs.capability.logging-driver.syslog')).to.equal(true);
    expect(has('com.amazonaws.ecs.capability.logging-driver.awslogs')).to.equal(false);
  });

  it('D14: an instance confirmed gone (deleted) is registered anew', async () => {
    const first = await newAgent();
    const id = first.agent.instanceId;
    await first.agent.stop();
    await admin.delete('ContainerInstance', 'default', id);
    const again = await newAgent({ dir: first.dir });
    expect(again.agent.instanceId).to.not.equal(id);
  });
});
