import { expect } from 'chai';
import type { ContainerInstance, Task } from '../../pkg/api/kinds.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startControlPlane, type Running } from '../support/fleet.ts';

/**
 * The logs token an agent registers is the apiserver's: responses never show it, so a client
 * that writes an instance's status back from a read (the instance health controller does, when
 * it records a condition) must not erase it, or that instance's logs are refused until its
 * agent's next heartbeat (the multi-host lane's `berth logs` failed twice on exactly that).
 */
describe('an instance status written back from a read keeps the logs token (real apiserver, hollow agents)', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let cp: Running;

  before(async () => {
    api = await startApiServer();
    cp = await startControlPlane(api, 1, { fleet: { memoryMiB: 512, hollow: { rules: [{ image: 'busybox', logs: ['line from hollow'] }] } } });
  });
  after(async () => {
    await cp?.stop();
    await api?.stop();
  });

  it('logs are served after an admin writes the status it read (token stripped from the read)', async () => {
    const c = cp.client;
    await c.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'lt' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 32, command: ['sleep', '3600'] }] } });
    await c.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'lt1', namespace: 'default' }, spec: { taskDefinition: 'lt' } });
    await eventually(async () => (await c.get<Task>('Task', 'default', 'lt1')).status?.lastStatus === 'RUNNING', 30_000, 'lt1 running');
    const logs = async () => api.call('GET', '/apis/berth.dev/v1/namespaces/default/tasks/lt1/log');
    // the agent's first heartbeat brings its logs endpoint and token
    await eventually(async () => (await logs()).status === 200, 30_000, 'logs served');
    const [ci] = (await c.list<ContainerInstance>('ContainerInstance', 'default')).items;
    expect(ci.status?.logs?.endpoint).to.be.a('string');
    expect((ci.status?.logs as { token?: string }).token, 'a read never shows the token').to.equal(undefined);
    const stored = async () => JSON.parse((await api.store.get(`/berth/containerinstances/default/${ci.metadata.name}`))!.value).status.logs;
    const token = (await stored()).token;
    expect(token).to.be.a('string');
    await c.updateStatus<ContainerInstance>({ ...ci, status: { ...ci.status!, conditions: [{ type: 'AgentConnected', status: 'True', reason: 'Heartbeat', message: 'written back', lastTransitionTime: new Date().toISOString() }] } });
    // the write committed the condition and kept the token (before the fix it committed none)
    const after = JSON.parse((await api.store.get(`/berth/containerinstances/default/${ci.metadata.name}`))!.value).status;
    expect(after.conditions?.[0]?.message).to.equal('written back');
    expect(after.logs.token).to.equal(token);
    const r = await logs();
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
  });
});
