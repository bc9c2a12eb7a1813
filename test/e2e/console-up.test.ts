import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { freePort } from '../support/etcd.ts';
import { eventually } from '../support/fleet.ts';

/**
 * `berth up --runtime hollow` prints the console's address and a one-time login link; the
 * link's code opens one session of its own, and neither the admin token nor the session
 * token appears in what berth up logs or audits.
 */
describe('berth up prints the web console and a one-time login link', function () {
  this.timeout(60_000);
  let home: string;
  let up: ChildProcess;
  let out = '';

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'berth-console-up-'));
    const port = await freePort();
    up = spawn(process.execPath, ['cmd/berth/bin.mjs', 'up', '--runtime', 'hollow', '--listen', `127.0.0.1:${port}`, '--log-level', 'debug'], { env: { ...process.env, BERTH_HOME: home } });
    up.stdout!.on('data', (d) => (out += d));
    up.stderr!.on('data', (d) => (out += d));
    await eventually(() => out.includes('one-time login link'), 45_000, `berth up (output so far: ${out})`);
  });

  after(async () => {
    if (up && up.exitCode === null) {
      up.kill('SIGTERM');
      await new Promise((r) => up.once('exit', r));
    }
    await rm(home, { recursive: true, force: true });
  });

  it('the link opens a session once; the tokens stay out of the logs and the audit log', async () => {
    const link = /one-time login link \(valid 10 minutes\): (http:\/\/127\.0\.0\.1:\d+\/ui\/)#code=([\w-]+)/.exec(out);
    expect(link, out).to.not.equal(null);
    const [, ui, code] = link!;
    expect(out).to.include(`console:  ${ui}`);
    const base = ui.replace(/\/ui\/$/, '');
    expect((await fetch(ui)).status).to.equal(200);

    const exchange = () => fetch(`${base}/ui/session`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code }) });
    const first = await exchange();
    expect(first.status).to.equal(201);
    const session = (await first.json()) as { token: string; user: string };
    expect(session.user).to.equal('admin');
    expect((await exchange()).status, 'spent').to.equal(401);

    // the session acts as the admin, through the same authorization
    const auth = { Authorization: `Bearer ${session.token}` };
    expect((await fetch(`${base}/apis/berth.dev/v1/clusters`, { headers: auth })).status).to.equal(200);
    const patched = await fetch(`${base}/apis/berth.dev/v1/clusters/default`, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'application/merge-patch+json' }, body: JSON.stringify({ spec: { tags: [{ key: 'from', value: 'console' }] } }) });
    expect(patched.status, await patched.clone().text()).to.equal(200);
    // logging out ends it
    expect((await fetch(`${base}/ui/session`, { method: 'DELETE', headers: auth })).status).to.equal(200);
    expect((await fetch(`${base}/apis/berth.dev/v1/clusters`, { headers: auth })).status).to.equal(401);

    const adminToken = (await readFile(join(home, 'tokens.csv'), 'utf8')).split('\n').find((l) => l.includes(',admin,'))!.split(',')[0];
    const audit = await readFile(join(home, 'audit.log'), 'utf8').catch(() => '');
    expect(audit, 'the audit log has the console session write').to.include('"user":"admin"');
    for (const secret of [adminToken, session.token]) {
      expect(out.includes(secret), 'berth up output').to.equal(false);
      expect(audit.includes(secret), 'audit log').to.equal(false);
    }
    expect(audit.includes(code), 'the code is never in a URL the server sees').to.equal(false);
  });
});
