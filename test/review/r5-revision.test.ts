import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

/**
 * Regression test of the fifth review, R5-1: a task definition revision is what it runs, ECS's
 * defaults applied (a registration with `essential: true` written out is the revision that
 * left it to the default). A PUT or apply of the named revision (`rv:1`) that differs from the
 * stored spec only by a written-out default is no change to the revision, as its registration
 * by family is; only a different revision content is refused as immutable.
 */

const V = '/apis/berth.dev/v1';
const spec = (extra: Record<string, unknown> = {}) => ({ containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32, ...extra }] });
const td = (name: string, extra: Record<string, unknown> = {}) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec: spec(extra) });

describe('review R5: writes to a named task definition revision', function () {
  this.timeout(30_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer();
    expect((await s.call('POST', `${V}/taskdefinitions`, td('rv'))).status).to.equal(201);
  });
  after(async () => s?.stop());

  it('R5-1: a PUT of rv:1 with ECS defaults written out (essential, cpu, protocol) is the same revision, not refused 422', async () => {
    const cur = (await s.call('GET', `${V}/taskdefinitions/rv:1`)).body;
    const put = await s.call('PUT', `${V}/taskdefinitions/rv:1`, { ...cur, metadata: { ...cur.metadata, labels: { team: 'a' } }, spec: spec({ essential: true, cpu: 0 }) });
    expect(put.status, JSON.stringify(put.body)).to.equal(200);
    expect(put.body.metadata.labels).to.deep.equal({ team: 'a' });
    // still one revision, with the content it had
    const list = (await s.call('GET', `${V}/taskdefinitions`)).body.items.filter((t: { status: { family: string } }) => t.status.family === 'rv');
    expect(list.map((t: { metadata: { name: string } }) => t.metadata.name)).to.deep.equal(['rv:1']);
    expect(list[0].status.contentHash).to.equal(cur.status.contentHash);
  });

  it('R5-1: a PUT of rv:1 that changes what it runs is refused as immutable, and nothing is written', async () => {
    const cur = (await s.call('GET', `${V}/taskdefinitions/rv:1`)).body;
    const put = await s.call('PUT', `${V}/taskdefinitions/rv:1`, { ...cur, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] } });
    expect(put.status, JSON.stringify(put.body)).to.equal(422);
    expect(put.body.message).to.match(/immutable/);
    const after = (await s.call('GET', `${V}/taskdefinitions/rv:1`)).body;
    expect(after.metadata.resourceVersion).to.equal(cur.metadata.resourceVersion);
  });
});
