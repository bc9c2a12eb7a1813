#!/usr/bin/env node
// `npm run build`: bundles every binary (cmd/*/main.ts) with esbuild into dist/, so that
// `npx berth`, `npm run up`, the tests and the systemd units start on plain node instead of
// compiling TypeScript through tsx at each start. Code splitting keeps what a command loads
// with a dynamic import (the up machinery, the AWS SDK, the store) in chunks of its own,
// read only when that command runs. Packages that read files beside their own sources at run
// time (.proto files, worker scripts) or are native stay external and load from node_modules.
// `--if-stale` builds only when hack/dist.mjs finds the bundle stale (hack/ensure-deps.sh).
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { DIST, ROOT, staleReason } from './dist.mjs';

export const EXTERNAL = [
  // native, or optional native dependencies of ssh2 (through docker-modem)
  'better-sqlite3', 'cpu-features', 'ssh2',
  // read .proto files or worker scripts relative to __dirname
  'etcd3', '@grpc/grpc-js', '@grpc/proto-loader', 'dockerode', 'docker-modem', 'pino', 'thread-stream',
  // large and only loaded by `berth config` (dynamic import); its own undici reads __filename
  '@kubernetes/client-node',
  // the web console's bundler (the apiserver builds the console on first use when it is stale): finds its native binary beside itself
  'esbuild',
];

/**
 * zod re-exports every locale (`z.locales`, `z.core.locales`: 360 KB of the bundle that the CLI
 * compiles at each start); berth uses only the default English messages, so the bundle gets a
 * locales module with `en` alone.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (a) => (/[\\/]zod[\\/]v4[\\/](classic|core|mini)$/.test(a.resolveDir) ? { path: join(a.resolveDir, '../locales/index.js'), namespace: 'zod-en' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'zod-en' }, (a) => ({ contents: `export { default as en } from ${JSON.stringify(join(dirname(a.path), 'en.js'))};`, resolveDir: dirname(a.path) }));
  },
};

export function entries() {
  return readdirSync(join(ROOT, 'cmd'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(ROOT, 'cmd', d.name, 'main.ts')))
    .map((d) => d.name)
    .sort();
}

/** esbuild comes with tsx (a dependency): the one npm hoisted, else tsx's own */
async function loadEsbuild() {
  try {
    return await import('esbuild');
  } catch {
    return createRequire(join(ROOT, 'node_modules/tsx/package.json'))('esbuild');
  }
}

export async function build() {
  const esbuildApi = await loadEsbuild();
  const esbuild = esbuildApi.build;
  const builtAtMs = Date.now(); // before any input is read: an edit during the build leaves it stale
  const names = entries();
  // built beside dist/ (same depth: the source maps' relative paths hold) and renamed into place,
  // so a binary starting meanwhile finds the old bundle or the new one, never half of one
  const tmp = join(ROOT, `.dist-tmp-${process.pid}`);
  const old = join(ROOT, `.dist-old-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  // one build per binary: a binary's static imports then sit in one or two files of its own
  // (node loads each file separately; one shared split of all four gave the CLI a dozen)
  const results = await Promise.all(names.map((n) => esbuild({
    absWorkingDir: ROOT,
    entryPoints: { [n]: `cmd/${n}/main.ts` },
    outdir: tmp,
    outExtension: { '.js': '.mjs' },
    chunkNames: `chunks/${n}/[name]-[hash]`,
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    // smaller to parse at each start; identifiers keep their names (stack traces, constructor.name)
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [zodEnglishOnly],
    external: EXTERNAL,
    metafile: true,
    logLevel: 'warning',
    // bundled CommonJS calls require() (node builtins, the external packages): give ESM one
    banner: { js: "import { createRequire as __berthRequire } from 'node:module'; const require = __berthRequire(import.meta.url);" },
  }))).catch((e) => {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  });
  const r = { metafile: { inputs: Object.assign({}, ...results.map((x) => x.metafile.inputs)), outputs: Object.assign({}, ...results.map((x) => x.metafile.outputs)) } };
  writeFileSync(join(tmp, 'meta.json'), JSON.stringify(r.metafile)); // for esbuild's analyzer (npx esbuild --analyze)
  const inputs = Object.keys(r.metafile.inputs).filter((f) => !f.startsWith('node_modules/') && !f.includes(':')).sort(); // zod-en:… is the plugin's
  writeFileSync(join(tmp, 'build.json'), JSON.stringify({ builtAtMs, esbuild: esbuildApi.version, entries: names, inputs }, null, 1) + '\n');
  if (existsSync(DIST)) renameSync(DIST, old);
  renameSync(tmp, DIST);
  rmSync(old, { recursive: true, force: true });
  return { entries: names, inputs: inputs.length, ms: Date.now() - builtAtMs };
}

if (process.argv[1] && relative(process.argv[1], new URL(import.meta.url).pathname) === '') {
  const ifStale = process.argv.includes('--if-stale');
  const why = staleReason();
  if (ifStale && !why) process.exit(0);
  const b = await build();
  process.stderr.write(`berth: built dist/ (${b.entries.join(', ')}; ${b.inputs} source files) in ${b.ms} ms${ifStale ? ` because ${why}` : ''}\n`);
}
