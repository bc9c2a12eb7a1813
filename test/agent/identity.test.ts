import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { pino } from 'pino';
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
import { registeringAgent } from '../support/registering.ts';
import { eventually } from '../support/fleet.ts';

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

describe('agent registration refused for now (429: the bootstrap token\'s connections are all in use)', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let dir: string;
  before(async () => {
    // one connection per identity: a fleet's hosts registering at once on one bootstrap token, in small
    api = await startApiServer({ build: { serverLimits: { maxConnectionsPerIdentity: 1 } } });
    dir = await mkdtemp(join(tmpdir(), 'berth-register-429-'));
  });
  after(async () => {
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('retries after the Retry-After instead of failing its start, and registers once a connection is free', async () => {
    // another host's agent holds the token's one connection (keep-alive, idle)
    const sock = connect(Number(new URL(api.url).port), '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    let answered = '';
    sock.on('data', (d) => (answered += d.toString()));
    sock.write(`GET /apis/berth.dev/v1/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${api.bootstrapToken}\r\n\r\n`);
    await eventually(() => /^HTTP\/1.1 (\d+)/.exec(answered), 10_000, 'the holder\'s answer');
    const a = registeringAgent({ server: api.url, bootstrapToken: api.bootstrapToken, dataDir: dir, fingerprint: 'host-429' });
    let started: unknown;
    const start = a.start().then(() => (started = true), (e: Error) => (started = e));
    await new Promise((r) => setTimeout(r, 1500));
    // before the retry its start failed here with "too many connections for bootstrap"
    expect(started, String(started)).to.equal(undefined);
    sock.destroy();
    await start;
    expect(started, String(started)).to.equal(true);
    expect(a.instanceId).to.be.a('string');
    await a.stop();
  });

  it('lets the bootstrap token\'s connection go once registered: the next host registers at once, not after the server\'s idle timeout', async () => {
    const refusals: string[] = [];
    const agentOn = async (n: number) => {
      const d = await mkdtemp(join(tmpdir(), `berth-register-next-${n}-`));
      const log = pino({ level: 'warn' }, { write: (line: string) => void (/refused for now/.test(line) && refusals.push(`host ${n}: ${line}`)) });
      return registeringAgent({ server: api.url, bootstrapToken: api.bootstrapToken, dataDir: d, fingerprint: `host-next-${n}`, log });
    };
    const first = await agentOn(1);
    await first.start();
    const second = await agentOn(2);
    await second.start();
    // with the first host's idle bootstrap connection still open, the second was refused (429)
    // and waited for the server to close it (65 s idle) through backoffs
    expect(refusals).to.deep.equal([]);
    await first.stop();
    await second.stop();
  });
});

