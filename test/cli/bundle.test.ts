import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { BUILD_FILES, staleReason } from '../../hack/dist.mjs';
import { startApiProcesses, type ApiProcesses } from '../support/apiprocs.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** runs a command to its exit: code, stdout, stderr */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env, timeout: 60_000 }, (e, out, err) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out: String(out), err: String(err) }));
  });
}

describe('the binaries run from the esbuild bundle in dist/', function () {
  this.timeout(120_000);
  let api: TestApiServer;
  let home: string;

  before(async () => {
    // what `npm test`, `npm run up` and `npx berth` run first
    const r = await run('bash', ['hack/ensure-deps.sh']);
    expect(r.code, r.err).to.equal(0);
    api = await startApiServer();
    const td = { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: { containerDefinitions: [{ name: 'web', image: 'busybox', memory: 64 }] } };
    expect((await api.call('POST', '/apis/berth.dev/v1/taskdefinitions', td)).status).to.equal(201);
    for (const name of ['web-a', 'web-b']) {
      const s = { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name }, spec: { taskDefinition: 'web', desiredCount: 0 } };
      expect((await api.call('POST', '/apis/berth.dev/v1/namespaces/default/services', s)).status).to.equal(201);
    }
    home = mkdtempSync(join(tmpdir(), 'berth-bundle-'));
  });
  after(async () => {
    await api?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('ensure-deps leaves dist/ fresh, with a bundle for every binary in cmd/', () => {
    expect(staleReason()).to.equal(undefined);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'dist/build.json'), 'utf8')) as { entries: string[]; inputs: string[] };
    // one bundle per binary: the folders of cmd/
    expect(manifest.entries).to.deep.equal(readdirSync(join(ROOT, 'cmd')).sort());
    expect(manifest.inputs).to.include.members(['cmd/berth/main.ts', 'pkg/cli/commands.ts', 'pkg/apiserver/apiserver.ts']);
  });

  it('berth version, get services and describe service answer from a real apiserver through the bundle, with no tsx note', async () => {
    const env = { ...process.env, HOME: home };
    const kc = ['--kubeconfig', api.kubeconfigPath];
    const v = await run(process.execPath, ['dist/berth.mjs', 'version', ...kc], env);
    expect(v.code, v.err).to.equal(0);
    expect(v.out).to.match(/^Client Version: berth v\S+\nServer Version: v\S+/);
    // the way npx runs it: the bin entry, which must pick the bundle (no fallback note)
    const g = await run(process.execPath, ['cmd/berth/bin.mjs', 'get', 'services', ...kc], env);
    expect(g.code, g.err).to.equal(0);
    expect(g.err).to.equal('');
    expect(g.out.split('\n')[0]).to.match(/^NAME\s/);
    expect(g.out).to.match(/^web-a\s/m).and.to.match(/^web-b\s/m);
    const d = await run(process.execPath, ['cmd/berth/bin.mjs', 'describe', 'service', 'web-b', ...kc], env);
    expect(d.code, d.err).to.equal(0);
    expect(d.out).to.match(/^Name:\s+web-b$/m);
    const missing = await run(process.execPath, ['cmd/berth/bin.mjs', 'describe', 'service', 'nope', ...kc], env);
    expect(missing.code).to.not.equal(0);
    expect(missing.err).to.contain('"nope" not found');
  });

  it('berth-apiserver runs from its bundle on the embedded store and the CLI bundle talks to it with --server', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-bundle-store-'));
    let procs: ApiProcesses | undefined;
    try {
      procs = await startApiProcesses(`embedded:${join(dir, 'data')}`, 1);
      const url = procs.servers[0].url;
      const v = await run(process.execPath, ['cmd/berth/bin.mjs', 'version', '--server', url], { ...process.env, HOME: home });
      expect(v.code, v.err).to.equal(0);
      expect(v.out).to.match(/^Server Version: v\S+/m);
      expect(procs.servers[0].log()).to.not.contain('through tsx');
    } finally {
      await procs?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the controller-manager and agent bundles start (their --help)', async () => {
    for (const bin of ['berth-controller-manager', 'berth-agent']) {
      const r = await run(process.execPath, [`cmd/${bin}/bin.mjs`, '--help']);
      expect(r.code, `${bin}: ${r.err}`).to.equal(0);
      expect(r.out, bin).to.contain(`Usage: ${bin}`);
      expect(r.err, bin).to.equal('');
    }
  });

  it('the CLI bundle does not load the AWS SDK, dockerode, etcd, the store, pino or the up machinery before a command asks for them', () => {
    const meta = JSON.parse(readFileSync(join(ROOT, 'dist/meta.json'), 'utf8')) as { outputs: Record<string, { imports: Array<{ path: string; kind: string; external?: boolean }>; inputs: Record<string, unknown>; entryPoint?: string }> };
    // every file the entry loads with static imports, and the packages it imports by name
    const loaded = new Set<string>();
    const packages = new Set<string>();
    const walk = (out: string) => {
      if (loaded.has(out)) return;
      loaded.add(out);
      for (const i of meta.outputs[out].imports) {
        if (i.kind !== 'import-statement') continue;
        if (i.external) packages.add(i.path);
        else walk(i.path);
      }
    };
    walk(Object.keys(meta.outputs).find((o) => meta.outputs[o].entryPoint === 'cmd/berth/main.ts')!);
    const inputs = [...loaded].flatMap((o) => Object.keys(meta.outputs[o].inputs));
    expect(inputs).to.include('pkg/cli/commands.ts');
    for (const heavy of ['node_modules/@aws-sdk/', 'node_modules/dockerode/', 'node_modules/@kubernetes/', 'pkg/store/', 'pkg/cli/up/up.ts', 'pkg/cli/up/hooks.ts', 'pkg/agent/agent.ts', 'pkg/controller/', 'pkg/log/log.ts']) {
      expect(inputs.filter((f) => f.startsWith(heavy)), heavy).to.deep.equal([]);
    }
    for (const p of ['dockerode', 'etcd3', 'better-sqlite3', 'pino', '@kubernetes/client-node']) expect([...packages], p).to.not.include(p);
  });

  it('systemd units run the bundles, rebuilding them first when stale', () => {
    for (const bin of ['berth-apiserver', 'berth-controller-manager', 'berth-agent']) {
      const unit = readFileSync(join(ROOT, `deploy/systemd/${bin}.service`), 'utf8');
      expect(unit, bin).to.match(new RegExp(`^ExecStart=.*/usr/bin/node /opt/berth/dist/${bin}\\.mjs`, 'm'));
      expect(unit, bin).to.match(/^ExecStartPre=\/usr\/bin\/node \/opt\/berth\/hack\/build\.mjs --if-stale$/m);
    }
  });
});

describe('when dist/ is stale (hack/dist.mjs)', () => {
  const cases: Array<{ name: string; setup: (root: string, builtAtMs: number) => void; stale: RegExp | undefined; entry?: string }> = [
    { name: 'fresh: every input older than the build', setup: () => undefined, stale: undefined },
    { name: 'a source touched after the build', setup: (r, t) => utimesSync(join(r, 'pkg/a.ts'), (t + 5000) / 1000, (t + 5000) / 1000), stale: /pkg\/a\.ts changed/ },
    { name: 'a source deleted', setup: (r) => rmSync(join(r, 'pkg/a.ts')), stale: /pkg\/a\.ts changed/ },
    { name: 'the lock file newer (other packages installed)', setup: (r, t) => utimesSync(join(r, 'package-lock.json'), (t + 5000) / 1000, (t + 5000) / 1000), stale: /package-lock\.json changed/ },
    { name: 'no build.json', setup: (r) => rmSync(join(r, 'dist/build.json')), stale: /not built/ },
    { name: 'a binary without its bundle', setup: () => undefined, entry: 'berth-new', stale: /no berth-new bundle/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const root = mkdtempSync(join(tmpdir(), 'berth-stale-'));
      try {
        const builtAtMs = Date.now() - 1000;
        const old = (builtAtMs - 60_000) / 1000;
        for (const f of [...BUILD_FILES, 'pkg/a.ts']) {
          mkdirSync(dirname(join(root, f)), { recursive: true });
          writeFileSync(join(root, f), '');
          utimesSync(join(root, f), old, old);
        }
        mkdirSync(join(root, 'dist'));
        writeFileSync(join(root, 'dist/build.json'), JSON.stringify({ builtAtMs, entries: ['berth'], inputs: ['pkg/a.ts'] }));
        c.setup(root, builtAtMs);
        const why = staleReason(c.entry, root);
        if (c.stale) expect(why).to.match(c.stale);
        else expect(why).to.equal(undefined);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });
  }
});
