import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { commandWord } from '../../pkg/cli/commands.ts';
import { COMMANDS } from '../../pkg/cli/cmd/index.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

interface Output {
  imports: Array<{ path: string; kind: string; external?: boolean }>;
  inputs: Record<string, unknown>;
  entryPoint?: string;
}

describe('berth loads only the command it runs (issue 22: a quick CLI)', function () {
  this.timeout(120_000);
  let outputs: Map<string, Output>;
  before(() => {
    execFileSync('node', ['hack/build.mjs', '--if-stale'], { cwd: ROOT, stdio: 'ignore' });
    const meta = JSON.parse(readFileSync(join(ROOT, 'dist/meta.json'), 'utf8')) as { outputs: Record<string, Output> };
    // the build writes beside dist/ and renames: strip that directory from every path
    const strip = (p: string) => p.replace(/^[^/]*\//, '');
    outputs = new Map(Object.entries(meta.outputs).map(([k, v]) => [strip(k), { ...v, imports: v.imports.map((i) => ({ ...i, path: i.external ? i.path : strip(i.path) })) }]));
  });

  /** every input (source file or package file) loaded when `file` loads, without its dynamic imports */
  function staticClosure(file: string): Set<string> {
    const seen = new Set<string>();
    const inputs = new Set<string>();
    if (!outputs.has(file)) throw new Error(`${file} is not in the bundle's metafile`);
    const walk = (f: string) => {
      if (seen.has(f)) return;
      seen.add(f);
      const o = outputs.get(f);
      if (!o) return inputs.add(f); // an external package (node_modules at run time)
      for (const i of Object.keys(o.inputs)) inputs.add(i);
      for (const i of o.imports) if (i.kind === 'import-statement') walk(i.path);
    };
    walk(file);
    return inputs;
  }
  const chunkOf = (input: string) => [...outputs.entries()].find(([k, o]) => k.endsWith('.mjs') && input in o.inputs)![0];
  const heavy = (s: Set<string>) => [...s].filter((i) => /node_modules\/(zod|yaml|@aws-sdk|@smithy|commander-never)\/|^(dockerode|etcd3|better-sqlite3|pino|@grpc\/grpc-js)$|pkg\/(store|agent|controller|apiserver|ecsapi)\//.test(i));

  it('the berth entry loads no schema, no YAML, no store, Docker, AWS SDK or server code', () => {
    const s = staticClosure('berth.mjs');
    expect(heavy(s)).to.deep.equal([]);
    expect([...s].some((i) => i.includes('node_modules/commander/'))).to.equal(true); // the walk sees the entry's packages
  });

  for (const [cmd, file] of [['version', 'pkg/cli/cmd/version.ts'], ['get', 'pkg/cli/cmd/get.ts'], ['describe', 'pkg/cli/cmd/describe.ts'], ['scale', 'pkg/cli/cmd/scale.ts'], ['rollout', 'pkg/cli/cmd/rollout.ts']]) {
    it(`berth ${cmd} loads no zod schema (the kinds' names come without them)`, () => {
      expect(heavy(staticClosure(chunkOf(file)))).to.deep.equal([]);
    });
  }

  it('apply loads the schemas it needs to read ECS JSON (the check above can fail)', () => {
    expect(heavy(staticClosure(chunkOf('pkg/cli/cmd/apply.ts'))).some((i) => i.includes('node_modules/zod/'))).to.equal(true);
  });

  it('finds the command after the global flags', () => {
    const table: Array<[string[], string | undefined]> = [
      [['get', 'svc'], 'get'],
      [['-n', 'prod', 'get', 'svc'], 'get'],
      [['--kubeconfig', '/x', '--context', 'c', 'describe', 'svc', 'web'], 'describe'],
      [['--server', 'https://x', '--token', 't', 'version'], 'version'],
      [['--no-color', 'scale', 'web'], 'scale'],
      [['--kubeconfig=/x', 'logs', 't'], 'logs'],
      [['--help'], undefined],
      [[], undefined],
      [['--', 'get'], 'get'],
    ];
    for (const [argv, want] of table) expect(commandWord(argv), argv.join(' ')).to.equal(want);
  });

  it('every kind has its names without its schema, the same as the kind has (the client finds kinds by them)', async () => {
    const { Kinds } = await import('../../pkg/api/kinds.ts');
    const { KIND_NAMES } = await import('../../pkg/api/names.ts');
    expect(Object.keys(KIND_NAMES).sort()).to.deep.equal(Object.keys(Kinds).sort());
    for (const [k, v] of Object.entries(Kinds)) for (const f of Object.keys((KIND_NAMES as Record<string, object>)[k])) expect((v as Record<string, unknown>)[f], `${k}.${f}`).to.deep.equal((KIND_NAMES as Record<string, Record<string, unknown>>)[k][f]);
  });

  it('every command in the table has a module that registers it', async () => {
    for (const c of COMMANDS) expect(typeof (await c.load()).register, c.name).to.equal('function');
  });
});
