import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { cases, td, V } from '../support/badinput.ts';

describe('apiserver bad input corpus', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer();
    expect((await s.call('POST', `${V}/taskdefinitions`, td)).status).to.equal(201);
  });
  after(async () => s?.stop());

  it('answers every bad request with a 4xx Status that says what is wrong, and writes nothing', async () => {
    const before = await s.store.list('/berth/');
    const failures: string[] = [];
    for (const c of cases) {
      const r = await s.call(c.method, c.path, c.raw === undefined ? c.body : undefined, { raw: c.raw, contentType: c.contentType });
      const body = r.body as { kind?: string; message?: string; details?: unknown };
      const text = `${body?.message ?? ''} ${JSON.stringify(body?.details ?? '')}`;
      if (r.status !== c.status || body?.kind !== 'Status' || !text.toLowerCase().includes(c.says.toLowerCase())) {
        failures.push(`${c.name}: got ${r.status} ${JSON.stringify(body).slice(0, 300)}`);
      }
    }
    expect(failures, failures.join('\n')).to.deep.equal([]);
    const after = await s.store.list('/berth/');
    expect(after.items.map((k) => `${k.key}@${k.modRevision}`)).to.deep.equal(before.items.map((k) => `${k.key}@${k.modRevision}`));
    // still serving
    expect((await s.call('GET', '/readyz', undefined, { token: '' })).status).to.equal(200);
  });

  it('FZ2 (found by the fuzzer): a target starting with // that URL parsing reads as a bad host is a 4xx, not a crash of the process', async () => {
    // before: new URL('///%F3%98%BB%90/x') threw outside the handler's try: an unhandled rejection
    for (const path of ['///%F3%98%BB%90/x', '//%ff', '//[::1/x']) {
      const r = await s.call('GET', path, undefined, { token: '' });
      expect(r.status, path).to.be.within(400, 499);
      expect(r.body.kind, path).to.equal('Status');
    }
    expect((await s.call('GET', '/readyz', undefined, { token: '' })).status).to.equal(200);
  });
});
