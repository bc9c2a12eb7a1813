import { expect } from 'chai';
import { runCli, type CliDeps } from '../../pkg/cli/commands.ts';
import type { Client } from '../../pkg/client/client.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startControlPlane, type Running } from '../support/fleet.ts';
import { expectRestart } from '../support/restart.ts';

describe('berth rollout restart (in-process CLI, real apiserver, controllers and hollow agents)', function () {
  this.timeout(120_000);
  let api: TestApiServer;
  let client: Client;
  let cp: Running;

  const run = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const deps: CliDeps = {
      io: { out: (s) => void (out += s), err: (s) => void (err += s), stdin: async () => '' },
      version: 'test',
      connect: async () => ({ client, namespace: 'default' }),
    };
    return { code: await runCli(argv, deps), out, err };
  };

  before(async () => {
    api = await startApiServer();
    cp = await startControlPlane(api, 2, { fleet: { memoryMiB: 1024, cpus: 2 } });
    client = cp.client;
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, command: ['sleep', '3600'] }] } });
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { taskDefinition: 'web', desiredCount: 2 } });
  });
  after(async () => {
    await cp?.stop();
    await api?.stop();
  });

  it('replaces every task with one of the same revision; rollout status follows it to the end', async () => {
    await expectRestart(client, 'default', 'web', async () => {
      const r = await run('rollout', 'restart', 'service/web');
      expect(r.code, r.err).to.equal(0);
      expect(r.out).to.equal('service/web restarted\n');
      const st = await run('rollout', 'status', 'service/web', '--timeout', '60');
      expect(st.code, st.err).to.equal(0);
      expect(st.out).to.match(/service\/web successfully rolled out \(web:1, 2 running\)/);
    }, { desired: 2 });
    // twice in a row: two requests, two deployments
    await expectRestart(client, 'default', 'web', async () => {
      expect((await run('rollout', 'restart', 'web')).code).to.equal(0);
    }, { desired: 2 });
  });

  it('names the service that does not exist', async () => {
    const r = await run('rollout', 'restart', 'service/nope');
    expect(r.code).to.not.equal(0);
    expect(r.err).to.match(/nope/);
  });
});
