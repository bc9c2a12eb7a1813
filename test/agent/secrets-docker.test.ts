import { expect } from 'chai';
import { mkdtemp, readdir, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Task } from '../../pkg/api/kinds.ts';
import { Agent } from '../../pkg/agent/agent.ts';
import { loadAgentConfig } from '../../pkg/agent/config.ts';
import { DockerRuntime } from '../../pkg/agent/runtime/docker.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { Client } from '../../pkg/client/client.ts';
import { newKeyLine, Keyring } from '../../pkg/secrets/keyring.ts';
import { berthSecretName } from '../../pkg/secrets/refs.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { ensureBusyboxImage, ensureDocker, type DockerHandle } from '../support/docker.ts';
import { eventually } from '../support/fleet.ts';
import { startRegistry } from '../support/registry.ts';

const PW = 'pw-only-in-the-container-5c1e';
const TOKEN = 'token-from-json-key-0d42';
const FILE_A = 'from-first-env-file-a8e3';

/** every file under dir, as text */
async function allText(dir: string): Promise<string> {
  let out = '';
  for (const e of await readdir(dir, { recursive: true })) {
    const p = join(dir, e);
    if ((await stat(p)).isFile()) out += await readFile(p, 'utf8');
  }
  return out;
}

describe('agent on real Docker: secrets, environment files and references resolved at container creation', function () {
  this.timeout(120_000);
  let h: DockerHandle;
  let api: TestApiServer;
  let admin: Client;
  let agent: Agent;
  let runtime: DockerRuntime;
  let dir: string;
  let logs = '';
  let n = 0;

  before(async () => {
    h = await ensureDocker();
    await ensureBusyboxImage(h.docker);
    dir = await mkdtemp(join(tmpdir(), 'berth-secrets-agent-'));
    await writeFile(join(dir, 'keys'), newKeyLine('k1'));
    api = await startApiServer({ auditLog: join(dir, 'audit.log'), build: { keyring: Keyring.fromFile(join(dir, 'keys')) } });
    admin = new Client({ server: api.url, token: api.adminToken });
    const secret = (name: string, data: Record<string, string>, type = 'Opaque') => admin.create({ apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name }, spec: { type, data } });
    await secret('db-password', { value: PW });
    await secret('log-max-size', { value: '3m' });
    await secret('app', { user: 'u', token: TOKEN });
    await secret(berthSecretName('cfg-bucket/app.env'), { value: `# comment\nA=${FILE_A}\nB=from-file\n` }, 'EnvFile');
    await secret(berthSecretName('cfg-bucket/second.env'), { A: 'from-second-file', C: 'from-second' }, 'EnvFile');
    const cfg = loadAgentConfig({
      env: {
        ECS_CLUSTER: 'default',
        ECS_DATADIR: join(dir, 'agent'),
        BERTH_BOOTSTRAP_TOKEN: api.bootstrapToken,
        ECS_BACKEND_HOST: api.url,
        ECS_INTROSPECTION_PORT: '0',
        ECS_CONTAINER_STOP_TIMEOUT: '1s',
        ECS_IMAGE_PULL_BEHAVIOR: 'prefer-cached',
        DOCKER_HOST: h.dockerHost,
      },
    });
    runtime = new DockerRuntime({ config: cfg, reconnectDelayMs: 100 });
    // the agent's own log, at its most talkative, is searched for values below
    const sink = new Writable({ write: (c, _e, cb) => ((logs += String(c)), cb()) });
    agent = new Agent({ config: cfg, client: new Client({ server: api.url, token: api.bootstrapToken }), runtime, log: pino({ level: 'trace' }, sink), fingerprint: `secrets-${dir}`, heartbeatMs: 2000 });
    await agent.start();
  });

  after(async () => {
    await agent?.stop().catch(() => undefined);
    for (const c of await h.docker.listContainers({ all: true, filters: { label: [`${LABELS.cluster}=default`] } }).catch(() => [])) {
      if (c.Labels[LABELS.instance] === agent?.instanceId) await h.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    }
    await runtime?.close().catch(() => undefined);
    admin?.close();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function run(td: string, spec: Record<string, unknown>): Promise<string> {
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: td }, spec });
    const name = `t${++n}`;
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: 'default' }, spec: { taskDefinition: td } });
    const r = await admin.bind('default', [{ task: name, containerInstance: agent.instanceId }]);
    expect(r.results[0].bound, JSON.stringify(r.results[0])).to.equal(true);
    return name;
  }
  const task = (name: string) => admin.get<Task>('Task', 'default', name);
  const inspectOf = async (name: string) => {
    const t = await task(name);
    const [c] = await h.docker.listContainers({ all: true, filters: { label: [`${LABELS.taskArn}=${t.status!.taskArn}`] } });
    return h.docker.getContainer(c.Id).inspect();
  };

  it('gives the container its secrets (whole, and a JSON key), env files under environment, log secret options, and nothing else shows them', async () => {
    const t = await run('with-secrets', {
      containerDefinitions: [
        {
          name: 'app',
          image: 'busybox:latest',
          memory: 32,
          command: ['sleep', '600'],
          environment: [{ name: 'B', value: 'from-environment' }],
          logConfiguration: { logDriver: 'json-file', options: { 'max-file': '2' }, secretOptions: [{ name: 'max-size', valueFrom: 'log-max-size' }] },
          environmentFiles: [
            { value: 'arn:aws:s3:::cfg-bucket/app.env', type: 's3' },
            { value: 'arn:aws:s3:::cfg-bucket/second.env', type: 's3' },
          ],
          secrets: [
            { name: 'DB_PASSWORD', valueFrom: 'arn:aws:ssm:us-east-1:000000000000:parameter/db-password' },
            { name: 'APP_TOKEN', valueFrom: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:app:token::' },
            { name: 'BARE', valueFrom: 'db-password' },
          ],
        },
      ],
    });
    await eventually(async () => (await task(t)).status?.lastStatus === 'RUNNING', 30_000, 'the task RUNNING');
    const inspected = await inspectOf(t);
    expect(inspected.HostConfig.LogConfig?.Config).to.deep.equal({ 'max-file': '2', 'max-size': '3m' });
    const env = inspected.Config.Env;
    expect(env).to.include.members([`DB_PASSWORD=${PW}`, `APP_TOKEN=${TOKEN}`, `BARE=${PW}`, `A=${FILE_A}`, 'B=from-environment', 'C=from-second']);
    // a task beside it, without secrets: its inspect shows none of them
    const other = await run('plain', { containerDefinitions: [{ name: 'p', image: 'busybox:latest', memory: 16, command: ['sleep', '600'] }] });
    await eventually(async () => (await task(other)).status?.lastStatus === 'RUNNING', 30_000, 'the plain task RUNNING');
    const oi = JSON.stringify(await inspectOf(other));
    const own = await inspectOf(t);
    const elsewhere = [oi, JSON.stringify(own.Config.Labels), JSON.stringify(await task(t)), logs, await allText(join(dir, 'agent')), await readFile(join(dir, 'audit.log'), 'utf8').catch(() => '')];
    for (const v of [PW, TOKEN, FILE_A]) for (const [i, text] of elsewhere.entries()) expect(text, `place ${i}`).not.to.contain(v);
  });

  it('stops a task whose secret is missing with ECS reason, before any container starts', async () => {
    const t = await run('missing-secret', {
      containerDefinitions: [{ name: 'm', image: 'busybox:latest', memory: 16, command: ['sleep', '600'], secrets: [{ name: 'X', valueFrom: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:no-such-secret' }] }],
    });
    const s = await eventually(async () => {
      const o = await task(t);
      return o.status?.lastStatus === 'STOPPED' ? o.status : undefined;
    }, 30_000, 'the task STOPPED');
    expect(s.stoppedReason).to.match(/^ResourceInitializationError: unable to pull secrets or registry auth: .*no-such-secret.*ResourceNotFoundException/);
    expect(s.stopCode).to.equal('TaskFailedToStart');
    expect(await h.docker.listContainers({ all: true, filters: { label: [`${LABELS.taskArn}=${s.taskArn}`] } })).to.have.length(0);
  });

  it('pulls from a private registry with repositoryCredentials (and fails the pull without them)', async () => {
    const reg = await startRegistry('puller', 'reg-pw-0b7e');
    const image = `${reg.host}/private/busybox:1`;
    try {
      await h.docker.getImage('busybox:latest').tag({ repo: `${reg.host}/private/busybox`, tag: '1' });
      const push = await h.docker.getImage(image).push({ authconfig: { username: 'puller', password: 'reg-pw-0b7e', serveraddress: reg.host } });
      await new Promise<void>((res, rej) => h.docker.modem.followProgress(push, (e: Error | null, out: Array<{ error?: string }>) => (e || out.some((o) => o.error) ? rej(e ?? new Error(JSON.stringify(out.filter((o) => o.error)))) : res())));
      await h.docker.getImage(image).remove(); // the agent must pull it
      await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name: 'registry' }, spec: { type: 'RegistryAuth', data: { username: 'puller', password: 'reg-pw-0b7e' } } });
      const c = { name: 'p', image, memory: 16, command: ['sleep', '600'] };
      const ok = await run('private-pull', { containerDefinitions: [{ ...c, repositoryCredentials: { credentialsParameter: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:registry' } }] });
      await eventually(async () => (await task(ok)).status?.lastStatus === 'RUNNING', 60_000, 'the privately pulled task RUNNING');
      await h.docker.getImage(image).remove({ force: true }).catch(() => undefined);
      const denied = await run('private-no-creds', { containerDefinitions: [c] });
      const st = await eventually(async () => {
        const o = await task(denied);
        return o.status?.lastStatus === 'STOPPED' ? o.status : undefined;
      }, 60_000, 'the task without credentials STOPPED');
      expect(st.stoppedReason).to.contain('CannotPullContainerError');
      expect(logs).not.to.contain('reg-pw-0b7e');
    } finally {
      for (const c of await h.docker.listContainers({ all: true, filters: { ancestor: [image] } }).catch(() => [])) await h.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
      await h.docker.getImage(image).remove({ force: true }).catch(() => undefined);
      await reg.stop();
    }
  });
});
