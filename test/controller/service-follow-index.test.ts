import { expect } from 'chai';
import type { Service } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { SharedInformers } from '../../pkg/controller/informers.ts';
import { serviceController } from '../../pkg/controller/service/controller.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;

/** A new task definition revision is looked up by the family services follow (an index), not by walking every service. */
describe('service controller: a new revision enqueues the services that follow its family', function () {
  this.timeout(30_000);
  let s: TestApiServer;
  let admin: Client;
  let inf: SharedInformers;
  const enqueued: string[] = [];
  before(async () => {
    s = await startApiServer();
    admin = new Client({ server: s.url, token: s.adminToken });
    const register = async (family: string) => {
      const r = await s.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: family }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32 }] } });
      expect(r.status, JSON.stringify(r.body)).to.equal(201);
    };
    await register('web');
    await register('other');
    for (const [name, taskDefinition] of [['f1', 'web'], ['f2', 'web'], ['pinned', 'web:1'], ['o', 'other']]) {
      const r = await s.call('POST', `${NS}/services`, { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name }, spec: { taskDefinition, desiredCount: 0 } });
      expect(r.status, JSON.stringify(r.body)).to.equal(201);
    }
    inf = new SharedInformers(admin, silentLogger());
    await inf.start(inf.services, inf.taskDefinitions);
    // the controller is not run: what its handlers enqueue is recorded instead
    const c = serviceController(admin, inf, silentLogger());
    c.enqueue = (key: string) => void enqueued.push(key);
  });
  after(async () => {
    inf?.stop();
    admin?.close();
    await s?.stop();
  });

  /** registers a revision of `family` and returns what the controller enqueued once its informer has it */
  async function newRevision(family: string, revision: number): Promise<string[]> {
    enqueued.length = 0;
    // the lookup is the index: no handler walks the services
    const list = inf.services.list;
    let walks = 0;
    inf.services.list = () => (walks++, list.call(inf.services));
    const r = await s.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: family }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32 + revision }] } });
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    await eventually(() => expect(inf.taskDefinitions.get(`${family}:${revision}`)).to.not.equal(undefined));
    inf.services.list = list;
    expect(walks, 'services walked for one new revision').to.equal(0);
    return [...enqueued].sort();
  }

  it('enqueues exactly the services naming the bare family (not one pinned to a revision, not another family)', async () => {
    expect(await newRevision('web', 2)).to.deep.equal(['default/f1', 'default/f2']);
    expect(await newRevision('other', 2)).to.deep.equal(['default/o']);
  });

  it('follows a service that changes the family it names', async () => {
    const cur = await admin.get<Service>('Service', 'default', 'f2');
    await admin.update<Service>({ ...cur, spec: { ...cur.spec, taskDefinition: 'other' } });
    await eventually(() => expect(inf.services.get('default/f2')?.spec.taskDefinition).to.equal('other'));
    expect(await newRevision('web', 3)).to.deep.equal(['default/f1']);
    expect(await newRevision('other', 3)).to.deep.equal(['default/f2', 'default/o']);
  });
});
