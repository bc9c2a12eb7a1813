import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Agent, hostFingerprint, sameHost } from '../../pkg/agent/agent.ts';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { loadAgentConfig } from '../../pkg/agent/config.ts';
import { HollowRuntime } from '../../pkg/agent/runtime/hollow.ts';
import { Client } from '../../pkg/client/client.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

describe('agent identity in ECS_DATADIR (real apiserver)', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let dir: string;
  const agent = (fingerprint: string, cluster = 'default') =>
    new Agent({
      config: loadAgentConfig({ env: { ECS_CLUSTER: cluster, ECS_DATADIR: dir, ECS_CHECKPOINT: 'true', BERTH_BOOTSTRAP_TOKEN: api.bootstrapToken, ECS_BACKEND_HOST: api.url, ECS_INTROSPECTION_PORT: '0' } }),
      client: new Client({ server: api.url, token: api.bootstrapToken }),
      runtime: new HollowRuntime(),
      log: silentLogger(),
      fingerprint,
    });

  before(async () => {
    api = await startApiServer();
    dir = await mkdtemp(join(tmpdir(), 'berth-identity-'));
  });
  after(async () => {
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('resumes its instance on restart, and refuses a data dir from another host or cluster', async () => {
    const a = agent('host-a');
    await a.start();
    const id = a.instanceId;
    await a.stop();
    const again = agent('host-a');
    await again.start();
    expect(again.instanceId).to.equal(id);
    await again.stop();
    const list = await (await fetch(`${api.url}/apis/berth.dev/v1/namespaces/default/containerinstances`, { headers: { authorization: `Bearer ${api.adminToken}` } })).json();
    expect((list as { items: unknown[] }).items).to.have.length(1);
    const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: Error) => e);
    expect((await failure(agent('host-b').start()))?.message).to.match(/was created on another host/);
    expect((await failure(agent('host-a', 'other').start()))?.message).to.match(/belongs to container instance .* of cluster "default", not "other"/);
  });

  it('D14: the host fingerprint is the machine id, so renaming the host keeps its data dir; older fingerprints still match', function () {
    if (!existsSync('/etc/machine-id')) this.skip();
    const fp = hostFingerprint();
    const machine = readFileSync('/etc/machine-id', 'utf8').trim();
    expect(fp).to.equal(`m:${createHash('sha256').update(machine).digest('hex').slice(0, 30)}`);
    expect(fp, 'no hostname in it').to.not.equal(`m:${createHash('sha256').update(`${machine}|${os.hostname()}`).digest('hex').slice(0, 30)}`);
    // a data dir written before (machine id + hostname) is still this host's
    const legacy = createHash('sha256').update(`${machine}|${os.hostname()}`).digest('hex').slice(0, 32);
    expect(sameHost(legacy, fp)).to.equal(true);
    expect(sameHost('m:0123456789abcdef0123456789abcd', fp)).to.equal(false);
  });
});
