import { expect } from 'chai';
import type { ContainerInstance } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { instanceHealthController } from '../../pkg/controller/instancehealth/controller.ts';
import { AGENT_CONNECTED_CONDITION } from '../../pkg/controller/instancehealth/plan.ts';
import { SharedInformers } from '../../pkg/controller/informers.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const log = silentLogger();
const cfg = { heartbeatTimeoutMs: 2000, lostGraceMs: 1000 };

describe('R3-3: an instance recorded disconnected without a time gets one, once, not at every controller start', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let admin: Client;
  before(async () => {
    api = await startApiServer();
    admin = new Client({ server: api.url, token: api.adminToken });
  });
  after(async () => {
    admin?.close();
    await api?.stop();
  });

  const agentCond = (i: ContainerInstance) => i.status?.conditions?.find((c) => c.type === AGENT_CONNECTED_CONDITION);

  /** one controller process: its informers and the instance health controller, until `stop` */
  const startController = async () => {
    const inf = new SharedInformers(admin, log);
    await inf.start(inf.instances, inf.tasks, inf.instanceLeases);
    const c = instanceHealthController(admin, inf, log, cfg);
    await c.run();
    c.enqueue('default');
    return async () => {
      await c.stop();
      inf.stop();
    };
  };

  it('R3-3: the disconnect time is recorded on first sight, and a second controller (a failover) writes nothing more', async () => {
    const instance = { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'old-1', namespace: 'default' }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }] } };
    const created = await admin.create<ContainerInstance>(instance as ContainerInstance);
    // a record from before the condition was kept: disconnected, no AgentConnected condition
    const old = await admin.updateStatus<ContainerInstance>({ ...created, status: { ...created.status!, agentConnected: false, conditions: (created.status?.conditions ?? []).filter((c) => c.type !== AGENT_CONNECTED_CONDITION) } });
    expect(agentCond(old)).to.equal(undefined);

    const t0 = Date.now();
    const stop1 = await startController();
    const backfilled = await eventually(async () => {
      const i = await admin.get<ContainerInstance>('ContainerInstance', 'default', 'old-1');
      return agentCond(i) && i;
    }, 20_000, 'the disconnect time recorded');
    await stop1();
    const cond = agentCond(backfilled)!;
    expect(cond.status).to.equal('False');
    expect(Date.parse(cond.lastTransitionTime!)).to.be.within(t0 - 1000, Date.now() + 1000);
    expect(backfilled.status?.agentConnected, 'still disconnected').to.equal(false);

    // a failover: another controller starts, sees the instance for the first time, and passes over it several times
    const stop2 = await startController();
    await new Promise((r) => setTimeout(r, 3 * Math.max(500, cfg.heartbeatTimeoutMs / 4)));
    await stop2();
    const after = await admin.get<ContainerInstance>('ContainerInstance', 'default', 'old-1');
    expect(agentCond(after), 'the recorded time is kept, not stamped again').to.deep.equal(cond);
    expect(after.metadata.resourceVersion, 'nothing written').to.equal(backfilled.metadata.resourceVersion);
  });
});
