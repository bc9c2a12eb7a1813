// Whether dist/ (the esbuild bundles of cmd/*, written by hack/build.mjs) may be run: plain
// JavaScript with no dependency, because every binary's bin.mjs asks it before anything loads.
// The bundle is stale when any file it was built from (dist/build.json lists them), the lock
// file or the build script is newer than the build, or when an entry point is missing: one
// stat per source file, about a millisecond for the whole tree.
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = join(ROOT, 'dist');
export const MANIFEST = join(DIST, 'build.json');
/** what the bundle depends on besides its inputs */
export const BUILD_FILES = ['package-lock.json', 'hack/build.mjs'];

const mtime = (root, rel) => {
  try {
    return statSync(join(root, rel)).mtimeMs;
  } catch {
    return Infinity; // a deleted input: stale
  }
};

/**
 * undefined when dist/ is fresh, else why not (one short phrase). `entry` (e.g. 'berth')
 * additionally requires that binary's bundle. `root`: another checkout (the tests').
 */
export function staleReason(entry, root = ROOT) {
  let m;
  try {
    m = JSON.parse(readFileSync(join(root, 'dist', 'build.json'), 'utf8'));
  } catch {
    return 'dist/ is not built';
  }
  if (entry && !m.entries?.includes(entry)) return `dist/ has no ${entry} bundle`;
  for (const rel of [...BUILD_FILES, ...m.inputs]) {
    if (mtime(root, rel) > m.builtAtMs) return `${rel} changed since dist/ was built`;
  }
  return undefined;
}

/**
 * The bundle of one binary when it is fresh, else the TypeScript entry point through tsx.
 * `sourceMaps`: stack traces through dist/'s source maps, which costs a start about 30 ms (node
 * reads the map of every chunk it loads): the servers want them, the CLI (one-sentence errors)
 * does not (NODE_OPTIONS=--enable-source-maps still turns them on).
 */
export async function launch(entry, { sourceMaps = true } = {}) {
  const why = staleReason(entry);
  if (!why) {
    if (sourceMaps) process.setSourceMapsEnabled(true);
    await import(pathToFileURL(join(DIST, `${entry}.mjs`)).href);
    return;
  }
  process.stderr.write(`berth: ${why} (npm run build): running ${entry} through tsx, slower to start\n`);
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(ROOT, 'cmd', entry, 'main.ts')).href);
}
