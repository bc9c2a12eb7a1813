// Regression test (R5-4, found by the review of the fix). Before it: stop() while registration is in refusedRetried's sleep. The loop checks
// `stopped` only after a failed call, so the create is sent again after stop() returned; when
// it succeeds, start() carries on: the instance is registered, its heartbeat timer and informer
// run, and the checkpoint is written after stop() unlocked it.
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { registeringAgent } from '../support/registering.ts';
import { eventually } from '../support/fleet.ts';

describe('review R5-4: stop() during the registration retry', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let dir: string;
  before(async () => {
    api = await startApiServer({ build: { serverLimits: { maxConnectionsPerIdentity: 1 } } });
    dir = await mkdtemp(join(tmpdir(), 'r5-probe-stop-'));
  });
  after(async () => {
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('an agent stopped while its registration waits to retry registers nothing and runs nothing afterwards', async () => {
    // another host holds the bootstrap token's only connection
    const sock = connect(Number(new URL(api.url).port), '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    let answered = '';
    sock.on('data', (d) => (answered += d.toString()));
    sock.write(`GET /apis/berth.dev/v1/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${api.bootstrapToken}\r\n\r\n`);
    await eventually(() => /^HTTP\/1.1 (\d+)/.exec(answered), 10_000, 'holder answered');
    const refusals: string[] = [];
    const a = registeringAgent({ server: api.url, bootstrapToken: api.bootstrapToken, dataDir: dir, fingerprint: 'host-stop-probe', log: pino({ level: 'warn' }, { write: (l: string) => void (/refused for now/.test(l) && refusals.push(l)) }) });
    let started: unknown;
    const start = a.start().then(() => (started = 'resolved'), (e: Error) => (started = e));
    await eventually(() => refusals.length > 0 || undefined, 10_000, 'first refusal');
    await a.stop(); // the operator stops the agent while it waits
    sock.destroy(); // the connection frees up
    await Promise.race([start, new Promise((r) => setTimeout(r, 35_000))]);
    const list = await (await fetch(`${api.url}/apis/berth.dev/v1/namespaces/default/containerinstances`, { headers: { authorization: `Bearer ${api.adminToken}` } })).json() as { items: Array<{ metadata: { name: string } }> };
    const renewalsAtEnd = a.leaseRenewals;
    const report = `start() after stop(): ${started instanceof Error ? started.message : started}; instances registered: ${list.items.length}; agent.instanceId=${a.instanceId}; lease renewals after stop: ${renewalsAtEnd}`;
    await a.stop(); // clean up whatever start() left running
    expect(list.items, report).to.have.length(0);
    expect(started, report).to.not.equal('resolved');
  });
});
