import { expect } from 'chai';
import { diffLines } from '../../pkg/console/app/diff.ts';
import { ConsoleLogins, SESSION_PREFIX } from '../../pkg/console/logins.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const admin = { user: 'admin', uid: '1', groups: ['berth:admins'] };

describe('web console: login codes and sessions', () => {
  it('a code opens one session, once, before it expires; a session ends at its expiry or at logout', () => {
    let now = 1_000_000;
    const l = new ConsoleLogins({ codeTtlMs: 1000, sessionTtlMs: 5000, now: () => now });
    const code = l.issueCode(admin);
    const s = l.exchange(code)!;
    expect(s.token.startsWith(SESSION_PREFIX)).to.equal(true);
    expect(s.user).to.equal('admin');
    expect(l.authenticate(s.token)).to.deep.equal(admin);
    expect(l.exchange(code), 'spent').to.equal(undefined);

    const late = l.issueCode(admin);
    now += 1000;
    expect(l.exchange(late), 'expired code').to.equal(undefined);

    now += 4000;
    expect(l.authenticate(s.token), 'expired session').to.equal(undefined);

    const t = l.exchange(l.issueCode(admin))!.token;
    expect(l.revoke(t)).to.equal(true);
    expect(l.authenticate(t)).to.equal(undefined);
    expect(l.revoke(t)).to.equal(false);
  });

  const unknown: Array<[string, string]> = [
    ['not a session token', 'abc'],
    ['an unknown session token', `${SESSION_PREFIX}nope`],
    ['the prefix alone', SESSION_PREFIX],
  ];
  for (const [what, token] of unknown) {
    it(`does not authenticate ${what}`, () => {
      expect(new ConsoleLogins().authenticate(token)).to.equal(undefined);
    });
  }
});

describe('web console: side-by-side diff of two revisions', () => {
  const cases: Array<[string, string[], string[], string]> = [
    ['equal', ['a', 'b'], ['a', 'b'], '=a =b'],
    ['a line added', ['a', 'c'], ['a', 'b', 'c'], '=a +b =c'],
    ['a line removed', ['a', 'b', 'c'], ['a', 'c'], '=a -b =c'],
    ['a line changed', ['a', 'x', 'c'], ['a', 'y', 'c'], '=a x|y =c'],
    ['one line changed, one added', ['a', 'x'], ['a', 'y', 'z'], '=a x|y +z'],
    ['two removed, one added', ['x1', 'x2', 'c'], ['y', 'c'], 'x1|y -x2 =c'],
    ['from nothing', [], ['a'], '+a'],
    ['to nothing', ['a'], [], '-a'],
  ];
  for (const [what, a, b, want] of cases) {
    it(what, () => {
      const got = diffLines(a, b)
        .map((r) => (r.op === 'same' ? `=${r.left}` : r.op === 'add' ? `+${r.right}` : r.op === 'del' ? `-${r.left}` : `${r.left}|${r.right}`))
        .join(' ');
      expect(got).to.equal(want);
    });
  }
});

describe('web console: /ui/ on the apiserver', function () {
  this.timeout(30_000);
  let api: TestApiServer;
  before(async () => {
    api = await startApiServer({ build: { console: true } });
  });
  after(async () => api?.stop());

  const post = (body: string) => fetch(`${api.url}/ui/session`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });

  const bad: Array<[string, string, number, string]> = [
    ['not JSON', '{', 400, 'must be JSON'],
    ['no code', '{}', 400, 'code:'],
    ['a code that is not a string', '{"code": 5}', 400, 'code:'],
    ['an unknown code', '{"code": "nope"}', 401, 'unknown, already used or expired'],
    ['a body over the limit', JSON.stringify({ code: 'x'.repeat(5000) }), 413, 'over 4096 bytes'],
  ];
  for (const [what, body, status, message] of bad) {
    it(`refuses ${what} with ${status} and says why`, async () => {
      const r = await post(body);
      expect(r.status).to.equal(status);
      expect(((await r.json()) as { message: string }).message).to.include(message);
    });
  }

  it('answers other methods with 405, /ui with a redirect to /ui/, an unknown asset with 404', async () => {
    expect((await fetch(`${api.url}/ui/session`)).status).to.equal(405);
    expect((await fetch(`${api.url}/ui/x`, { method: 'POST', body: '{}' })).status).to.equal(405);
    const r = await fetch(`${api.url}/ui`, { redirect: 'manual' });
    expect([r.status, r.headers.get('location')]).to.deep.equal([308, '/ui/']);
    expect((await fetch(`${api.url}/ui/assets/app-NOPE.js`)).status).to.equal(404);
  });

  it('a session token is a bearer token for the API; the pages themselves need none', async () => {
    expect((await fetch(`${api.url}/ui/`)).status).to.equal(200);
    const s = api.api.consoleLogins!.exchange(api.api.consoleLogins!.issueCode({ user: 'viewer', uid: '2', groups: ['berth:viewers'] }))!;
    const r = await api.call('GET', '/apis/berth.dev/v1/clusters', undefined, { token: s.token });
    expect(r.status).to.equal(200);
    const w = await api.call('DELETE', '/apis/berth.dev/v1/clusters/default', undefined, { token: s.token });
    expect(w.status, 'a viewer session is a viewer').to.equal(403);
    expect((await api.call('GET', '/apis/berth.dev/v1/clusters/default')).status, 'nothing deleted').to.equal(200);
  });
});
