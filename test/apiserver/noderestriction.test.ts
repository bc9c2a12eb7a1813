import { expect } from 'chai';
import { Kinds } from '../../pkg/api/kinds.ts';
import type { KindInfo } from '../../pkg/api/meta.ts';
import { NODE_INSTANCE_STATUS_FIELDS, NODE_TASK_STATUS_FIELDS, nodeWriteProblem } from '../../pkg/apiserver/noderestriction.ts';
import type { Obj } from '../../pkg/apiserver/registry.ts';

const NODE = { cluster: 'default', instance: 'na' };

const instance = (name = 'na', ns = 'default'): Obj => ({
  apiVersion: 'berth.dev/v1',
  kind: 'ContainerInstance',
  metadata: { name, namespace: ns, resourceVersion: '5', labels: { a: 'b' } },
  spec: { status: 'ACTIVE', registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }] },
  status: {
    containerInstanceArn: `arn:aws:ecs:us-east-1:000000000000:container-instance/${ns}/${name}`,
    agentConnected: true,
    lastHeartbeat: '2026-01-01T00:00:00.000Z',
    registeredAt: '2026-01-01T00:00:00.000Z',
    registeredAddress: '10.0.0.5',
    status: 'ACTIVE',
    runningTasksCount: 0,
    pendingTasksCount: 0,
  },
});

const task = (bound: string | null = 'na', ns = 'default'): Obj => ({
  apiVersion: 'berth.dev/v1',
  kind: 'Task',
  metadata: { name: 't1', namespace: ns, resourceVersion: '7' },
  spec: { taskDefinition: 'web:1', desiredStatus: 'RUNNING', ...(bound !== null ? { containerInstance: bound } : {}) },
  status: { taskArn: `arn:aws:ecs:us-east-1:000000000000:task/${ns}/t1`, lastStatus: 'PENDING', version: 1 },
});

const withStatus = (o: Obj, patch: Record<string, unknown>): Obj => ({ ...structuredClone(o), status: { ...(o.status as object), ...patch } });
const update = (kind: KindInfo, prev: Obj, next: Obj, sub: 'status' | 'spec' = 'status') => nodeWriteProblem(NODE, { verb: 'update', kind, sub: sub === 'status' ? 'status' : undefined, prev, next });

describe('node restriction: what a node identity may write, field by field (table)', () => {
  const CI = Kinds.ContainerInstance;
  const TK = Kinds.Task;

  describe('its own container instance', () => {
    const allowed: Array<[string, Record<string, unknown>]> = [
      ['a heartbeat', { lastHeartbeat: '2026-01-01T00:01:00.000Z', agentConnected: true }],
      ['agentConnected false', { agentConnected: false }],
      ['versions', { versionInfo: { agentVersion: '0.2.0', dockerVersion: '27.0.0' } }],
      ['the logs endpoint (its address is admission\'s, S3)', { logs: { endpoint: 'http://10.0.0.5:4000', token: 't' } }],
      ['agentUpdateStatus', { agentUpdateStatus: 'UPDATED' }],
      ['nothing at all', {}],
    ];
    for (const [what, patch] of allowed) {
      it(`may write ${what}`, () => {
        expect(update(CI, instance(), withStatus(instance(), patch))).to.equal(undefined);
      });
    }
    const refused: Array<[string, Record<string, unknown>, string]> = [
      ['its ARN', { containerInstanceArn: 'arn:x' }, 'status.containerInstanceArn'],
      ['when it registered', { registeredAt: '2020-01-01T00:00:00.000Z' }, 'status.registeredAt'],
      ['the address it registered from', { registeredAddress: '169.254.169.254' }, 'status.registeredAddress'],
      ['its ECS status', { status: 'INACTIVE' }, 'status.status'],
      ['the computed counts', { runningTasksCount: 99 }, 'status.runningTasksCount'],
      ['the computed remaining resources', { remainingResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1 }] }, 'status.remainingResources'],
      ['conditions', { conditions: [{ type: 'Ready', status: 'True' }] }, 'status.conditions'],
    ];
    for (const [what, patch, field] of refused) {
      it(`may not write ${what} (${field})`, () => {
        expect(update(CI, instance(), withStatus(instance(), patch))).to.contain(field);
      });
    }
    it('may not write its spec (registered resources, attributes, DRAINING) or its metadata', () => {
      const spec = { ...structuredClone(instance()), spec: { status: 'DRAINING' } };
      expect(update(CI, instance(), spec, 'spec')).to.match(/not the spec/);
      const viaStatus = { ...structuredClone(instance()), spec: { status: 'ACTIVE', registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 999999 }] } };
      expect(update(CI, instance(), viaStatus)).to.contain('spec');
      const meta = structuredClone(instance());
      meta.metadata.labels = { a: 'changed' };
      expect(update(CI, instance(), meta)).to.contain('metadata');
    });
    it('a change of resourceVersion alone is no change of metadata', () => {
      const next = structuredClone(instance());
      delete next.metadata.resourceVersion;
      expect(update(CI, instance(), next)).to.equal(undefined);
    });
    it('fills defaults the stored status lacks without counting them as changes', () => {
      const prev = structuredClone(instance());
      delete (prev.status as Record<string, unknown>).pendingTasksCount;
      expect(update(CI, prev, withStatus(prev, { pendingTasksCount: 0, lastHeartbeat: 'later' }))).to.equal(undefined);
    });
    it('may not write another instance, or an instance of another cluster with its own name', () => {
      expect(update(CI, instance('nb'), withStatus(instance('nb'), { lastHeartbeat: 'x' }))).to.match(/may not write container instance default\/nb/);
      expect(update(CI, instance('na', 'other'), withStatus(instance('na', 'other'), { lastHeartbeat: 'x' }))).to.match(/other\/na/);
    });
  });

  describe('the tasks bound to it', () => {
    const reports: Array<[string, Record<string, unknown>]> = [
      ['RUNNING with containers', { lastStatus: 'RUNNING', startedAt: 'now', containers: [{ name: 'c', lastStatus: 'RUNNING', dockerId: 'abc', networkBindings: [{ containerPort: 80, hostPort: 32768, protocol: 'tcp' }] }], healthStatus: 'HEALTHY', version: 2 }],
      ['STOPPED with the stop code and reason', { lastStatus: 'STOPPED', stoppedAt: 'now', executionStoppedAt: 'now', stoppingAt: 'now', stoppedReason: 'Essential container exited', stopCode: 'EssentialContainerExited' }],
      ['its network attachment', { attachments: [{ id: 'eni', type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: '172.17.0.2' }] }] }],
      ['pull times and connectivity', { pullStartedAt: 'a', pullStoppedAt: 'b', connectivity: 'CONNECTED', connectivityAt: 'c' }],
    ];
    for (const [what, patch] of reports) {
      it(`may report ${what}`, () => {
        expect(update(TK, task(), withStatus(task(), patch))).to.equal(undefined);
      });
    }
    it('every field the agent reports is allowed, and taskArn is not', () => {
      expect([...NODE_TASK_STATUS_FIELDS]).to.include.members(['lastStatus', 'containers', 'startedAt', 'stoppedAt', 'stopCode', 'stoppedReason', 'version', 'attachments', 'healthStatus']);
      expect(NODE_TASK_STATUS_FIELDS.has('taskArn')).to.equal(false);
      expect(update(TK, task(), withStatus(task(), { taskArn: 'arn:other' }))).to.contain('status.taskArn');
      expect([...NODE_INSTANCE_STATUS_FIELDS]).to.include.members(['agentConnected', 'lastHeartbeat', 'versionInfo', 'logs']);
    });
    it('may not write the spec of a task (desiredStatus, the binding, overrides)', () => {
      const t = task();
      expect(update(TK, t, { ...structuredClone(t), spec: { ...(t.spec as object), desiredStatus: 'STOPPED' } }, 'spec')).to.match(/not the spec/);
      expect(update(TK, t, { ...structuredClone(t), spec: { ...(t.spec as object), containerInstance: 'nb' } })).to.contain('spec');
    });
    it('may not write a task bound to another instance, an unbound task, or one of another cluster', () => {
      expect(update(TK, task('nb'), withStatus(task('nb'), { lastStatus: 'RUNNING' }))).to.match(/not bound to this node/);
      expect(update(TK, task(null), withStatus(task(null), { lastStatus: 'RUNNING' }))).to.match(/not bound to this node/);
      expect(update(TK, task('na', 'other'), withStatus(task('na', 'other'), { lastStatus: 'RUNNING' }))).to.match(/not bound to this node/);
    });
  });

  describe('its own instance lease (its heartbeat)', () => {
    const IL = Kinds.InstanceLease;
    const lease = (name = 'na', ns = 'default', holder = name): Obj => ({
      apiVersion: 'berth.dev/v1',
      kind: 'InstanceLease',
      metadata: { name, namespace: ns, resourceVersion: '9' },
      spec: { holderIdentity: holder, renewTime: '2026-01-01T00:00:00.000Z', leaseDurationSeconds: 40 },
    });
    const renewed = (o: Obj) => ({ ...structuredClone(o), spec: { ...(o.spec as object), renewTime: '2026-01-01T00:00:10.000Z' } });
    const rows: Array<[string, Omit<Parameters<typeof nodeWriteProblem>[1], never>, RegExp | undefined]> = [
      ['creates its own', { verb: 'create', kind: IL, sub: undefined, next: lease() }, undefined],
      ['renews its own', { verb: 'update', kind: IL, sub: undefined, prev: lease(), next: renewed(lease()) }, undefined],
      ['creates no lease of another instance', { verb: 'create', kind: IL, sub: undefined, next: lease('nb') }, /only the lease of its own container instance \(default\/na\), not default\/nb/],
      ['renews no lease of another instance', { verb: 'update', kind: IL, sub: undefined, prev: lease('nb'), next: renewed(lease('nb')) }, /not default\/nb/],
      ['creates none in another cluster under its own name', { verb: 'create', kind: IL, sub: undefined, next: lease('na', 'other') }, /not other\/na/],
      ['names no other holder', { verb: 'update', kind: IL, sub: undefined, prev: lease(), next: lease('na', 'default', 'nb') }, /spec.holderIdentity/],
      ['deletes none, not even its own', { verb: 'delete', kind: IL, sub: undefined, prev: lease() }, /may not delete instance leases/],
      ['writes no status (computed)', { verb: 'update', kind: IL, sub: 'status', prev: lease(), next: lease() }, /status of an instance lease/],
      ['sets no labels on create', { verb: 'create', kind: IL, sub: undefined, next: { ...lease(), metadata: { ...lease().metadata, labels: { a: 'b' } } } }, /metadata.labels/],
      ['changes no metadata on renewal', { verb: 'update', kind: IL, sub: undefined, prev: lease(), next: { ...renewed(lease()), metadata: { ...lease().metadata, annotations: { a: 'b' } } } }, /metadata/],
    ];
    for (const [what, op, problem] of rows) {
      it(what, () => {
        const p = nodeWriteProblem(NODE, op);
        if (problem) expect(p).to.match(problem);
        else expect(p).to.equal(undefined);
      });
    }
  });

  describe('everything else', () => {
    it('creates and deletes nothing', () => {
      for (const kind of [Kinds.ContainerInstance, Kinds.Task, Kinds.Cluster, Kinds.Service]) {
        expect(nodeWriteProblem(NODE, { verb: 'create', kind, sub: undefined, next: task() })).to.match(/may not create/);
        expect(nodeWriteProblem(NODE, { verb: 'delete', kind, sub: undefined, prev: task() })).to.match(/may not delete/);
      }
    });
    it('writes the status of no other kind', () => {
      for (const kind of [Kinds.Cluster, Kinds.Service, Kinds.Daemon, Kinds.TaskDefinition, Kinds.Lease]) {
        const o = { ...task(), kind: kind.kind };
        expect(update(kind, o, withStatus(o, { x: 1 })), kind.kind).to.match(new RegExp(`may not write ${kind.plural}`));
      }
    });
  });
});
