/**
 * C13 (apiserver.md): RunTask and the placement controller never fight over the same task.
 * RunTask creates its tasks bound, in one txn, so the controller never sees them pending;
 * it never answers ALREADY_BOUND and never deletes a task that was placed. `berth start-task`
 * (create, then bind) creates its task nominated for its instance, which the controller
 * leaves alone and the binder honours.
 *
 * The real controller-manager (in-process) and three hollow agents beside an apiserver whose
 * store commits every txn 10 ms late (etcd-like), with a service keeping the placement
 * controller busy while RunTask calls land.
 */
import { expect } from 'chai';
import { CreateServiceCommand, RegisterTaskDefinitionCommand, RunTaskCommand, type ECSClient, type RunTaskCommandOutput } from '@aws-sdk/client-ecs';
import { runCli } from '../../pkg/cli/commands.ts';
import { Client } from '../../pkg/client/client.ts';
import { startControlPlane, type Running } from '../support/fleet.ts';
import { delayedStore, eventually } from '../support/haapi.ts';
import { startEcsServer, type EcsTestServer } from './support.ts';

const V = '/apis/berth.dev/v1';
const idOf = (arn: string | undefined) => arn!.split('/').pop()!;

describe('C13: RunTask beside the placement controller (10 ms store latency)', function () {
  this.timeout(180_000);
  let s: EcsTestServer;
  let cp: Running;
  let ecs: ECSClient;

  before(async () => {
    s = await startEcsServer({ wrapStore: (st) => delayedStore(st, { txnMs: 10 }) });
    cp = await startControlPlane(s.api, 3, { fleet: { memoryMiB: 8192, cpus: 8 } });
    ecs = s.client();
    await ecs.send(new RegisterTaskDefinitionCommand({ family: 'one-off', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 8, command: ['sleep', '3600'] }] }));
    await eventually(async () => (await s.api.call('GET', `${V}/namespaces/default/containerinstances`)).body.items.length === 3, 'three instances');
  });
  after(async () => {
    await cp?.stop();
    await s?.stop();
  });

  it('RunTask count 10, three at a time, while the controller places a service: every returned task exists, bound where RunTask said, and stays', async () => {
    await ecs.send(new CreateServiceCommand({ cluster: 'default', serviceName: 'busy', taskDefinition: 'one-off', desiredCount: 30 }));
    const runs: RunTaskCommandOutput[] = [];
    for (let round = 0; round < 3; round++) {
      runs.push(...(await Promise.all([0, 1, 2].map(() => ecs.send(new RunTaskCommand({ cluster: 'default', taskDefinition: 'one-off', count: 10 }))))));
    }
    const placed = new Map<string, string>();
    for (const r of runs) {
      expect(r.failures, JSON.stringify(r.failures)).to.deep.equal([]);
      expect(r.tasks).to.have.length(10);
      for (const t of r.tasks!) {
        expect(t.containerInstanceArn, t.taskArn).to.be.a('string');
        placed.set(idOf(t.taskArn), idOf(t.containerInstanceArn));
      }
    }
    expect(placed.size).to.equal(90);
    const check = async () => {
      for (const [task, instance] of placed) {
        const r = await s.api.call('GET', `${V}/namespaces/default/tasks/${task}`);
        expect(r.status, `task ${task} (RunTask placed it on ${instance})`).to.equal(200);
        expect(r.body.spec.containerInstance, task).to.equal(instance);
        expect(r.body.spec.desiredStatus, task).to.equal('RUNNING');
      }
    };
    await check();
    // the controller has placed the service meanwhile, and RunTask's tasks are still where they were
    await eventually(async () => (await s.api.call('GET', `${V}/namespaces/default/services/busy`)).body.status?.runningCount === 30, 'the service running', 120_000);
    await check();
  });

  it('berth start-task (create, then bind) beside the controller: the task starts on the instance asked for, never elsewhere', async () => {
    const instances = (await s.api.call('GET', `${V}/namespaces/default/containerinstances`)).body.items.map((i: { metadata: { name: string } }) => i.metadata.name);
    const client = new Client({ server: s.api.url, token: s.api.adminToken });
    // a slow link between the CLI's create and its bind: the controller sees the task first
    const slow = new Proxy(client, {
      get(t, p) {
        if (p === 'bind') {
          return async (...a: Parameters<Client['bind']>) => {
            await new Promise((r) => setTimeout(r, 300));
            return t.bind(...a);
          };
        }
        const v = (t as unknown as Record<string | symbol, unknown>)[p];
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
    try {
      const run = async (ci: string) => {
        let out = '';
        let err = '';
        const code = await runCli(['start-task', '--task-definition', 'one-off', '--container-instances', ci], {
          io: { out: (x) => void (out += x), err: (x) => void (err += x), stdin: async () => '' },
          version: 'test',
          connect: async () => ({ client: slow, namespace: 'default' }),
        });
        return { code, out, err, ci };
      };
      // the controller busy with the cluster meanwhile: the service grows
      const grow = s.api.call('PATCH', `${V}/namespaces/default/services/busy`, { spec: { desiredCount: 60 } }, { contentType: 'application/merge-patch+json' });
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => run(instances[i % instances.length])));
      expect((await grow).status).to.equal(200);
      for (const r of results) {
        expect(r.code, r.err).to.equal(0);
        const task = /task\/([0-9a-f]+) started on/.exec(r.out)![1];
        const t = await s.api.call('GET', `${V}/namespaces/default/tasks/${task}`);
        expect(t.body.spec.containerInstance).to.equal(r.ci);
        expect(t.body.spec.desiredStatus).to.equal('RUNNING');
      }
    } finally {
      client.close();
    }
  });
});
