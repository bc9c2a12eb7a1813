// Regression test (R5-4, found by the review of the fix). Before it: refusedRetried promises that "a call whose outcome is unknown ... is the
// caller's", but the client turns every socket error into ServiceUnavailable (with notSent),
// and the loop retries any ServiceUnavailable. A registration whose create committed but whose
// answer was lost (connection reset after the request was sent) is sent again: 409 AlreadyExists,
// the agent's start fails, and the committed instance (its node credential never received) is
// left registered. The next start (no instanceId in the checkpoint) registers a second one.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { registeringAgent } from '../support/registering.ts';

describe('review R5-4: a registration whose answer was lost', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let dir: string;
  let proxy: net.Server;
  let posts = 0;
  before(async () => {
    api = await startApiServer();
    dir = await mkdtemp(join(tmpdir(), 'r5-probe-reset-'));
    const upstreamPort = Number(new URL(api.url).port);
    let cut = true; // the first create's answer is lost
    proxy = net.createServer((client) => {
      const up = net.connect(upstreamPort, '127.0.0.1');
      let isCreate = false;
      client.on('data', (d) => {
        if (/^POST \/apis\/berth\.dev\/v1\/namespaces\/default\/containerinstances/.test(d.toString())) {
          posts++;
          isCreate = true;
        }
        up.write(d);
      });
      up.on('data', (d) => {
        if (isCreate && cut) {
          cut = false;
          client.resetAndDestroy();
          up.destroy();
          return;
        }
        client.write(d);
      });
      client.on('error', () => up.destroy());
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
      up.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  });
  after(async () => {
    proxy?.close();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('does not send a create again whose outcome it does not know (and leaves no instance it cannot use)', async () => {
    const url = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const a = registeringAgent({ server: url, bootstrapToken: api.bootstrapToken, dataDir: dir, fingerprint: 'host-reset-probe' });
    const err = await a.start().then(() => undefined, (e: Error) => e);
    await a.stop().catch(() => undefined);
    const list = (await (await fetch(`${api.url}/apis/berth.dev/v1/namespaces/default/containerinstances`, { headers: { authorization: `Bearer ${api.adminToken}` } })).json()) as { items: unknown[] };
    const report = `creates sent: ${posts}; start(): ${err ? `${(err as { reason?: string }).reason}: ${err.message}` : 'resolved'}; instances in the store: ${list.items.length}`;
    // the host's agent is restarted (systemd): no instanceId in its checkpoint, so a new one
    const again = registeringAgent({ server: api.url, bootstrapToken: api.bootstrapToken, dataDir: dir, fingerprint: 'host-reset-probe' });
    await again.start();
    await again.stop();
    const after = (await (await fetch(`${api.url}/apis/berth.dev/v1/namespaces/default/containerinstances`, { headers: { authorization: `Bearer ${api.adminToken}` } })).json()) as { items: unknown[] };
    expect(posts, report).to.equal(1);
  });
});
