import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The checkout's root: the nearest folder up from this module with a package.json (this module
 * runs from pkg/console/ through tsx, or from a chunk in dist/ when the binaries are bundled).
 */
function projectRoot(from: string): string {
  for (let d = from; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return d;
    if (dirname(d) === d) throw new Error(`no package.json above ${from}`);
  }
}
const CONSOLE_DIR = join(projectRoot(dirname(fileURLToPath(import.meta.url))), 'pkg', 'console');
/** the console's browser sources (plain TypeScript and CSS) and where their bundle is written */
export const APP_DIR = join(CONSOLE_DIR, 'app');
export const DIST_DIR = join(CONSOLE_DIR, 'dist');

export interface Asset {
  body: Buffer;
  type: string;
  /** hashed names never change content: cached for a year */
  immutable: boolean;
}

/** what is served under /ui/: `index.html` and `assets/NAME-HASH.EXT` */
export interface Bundle {
  sourceHash: string;
  files: Map<string, Asset>;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
};
const typeOf = (name: string) => TYPES[/\.[a-z]+$/.exec(name)?.[0] ?? ''] ?? 'application/octet-stream';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? sourceFiles(join(dir, d.name)) : [join(dir, d.name)]))
    .sort();
}

/** a hash of the sources (and the bundler's version): the bundle is stale when it differs */
export function sourceHash(): string {
  const h = createHash('sha256');
  h.update(JSON.parse(readFileSync(createRequire(import.meta.url).resolve('esbuild/package.json'), 'utf8')).version);
  // this file too: it writes the page
  h.update(readFileSync(join(CONSOLE_DIR, 'bundle.ts')));
  for (const f of sourceFiles(APP_DIR)) h.update(relative(APP_DIR, f)).update('\0').update(readFileSync(f)).update('\0');
  return h.digest('hex');
}

function indexHtml(script: string, style: string): string {
  // no inline script or style: the Content-Security-Policy allows only files from /ui/assets/
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="color-scheme" content="light dark">',
    '<title>berth console</title>',
    // no icon to fetch (the browser would ask the API for /favicon.ico)
    '<link rel="icon" href="data:,">',
    `<link rel="stylesheet" href="/ui/assets/${style}">`,
    `<script type="module" src="/ui/assets/${script}"></script>`,
    '</head>',
    '<body><div id="app"></div></body>',
    '</html>',
    '',
  ].join('\n');
}

/** bundles the sources with esbuild (minified, hashed names) into memory */
export async function buildBundle(): Promise<Bundle> {
  const esbuild = await import('esbuild');
  const hash = sourceHash();
  const r = await esbuild.build({
    entryPoints: { app: join(APP_DIR, 'main.ts'), style: join(APP_DIR, 'style.css') },
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    platform: 'browser',
    entryNames: '[name]-[hash]',
    outdir: join(DIST_DIR, 'assets'),
    write: false,
    logLevel: 'silent',
  });
  const files = new Map<string, Asset>();
  let script = '';
  let style = '';
  for (const f of r.outputFiles) {
    const name = basename(f.path);
    if (name.endsWith('.js')) script = name;
    if (name.endsWith('.css')) style = name;
    files.set(`assets/${name}`, { body: Buffer.from(f.contents), type: typeOf(name), immutable: true });
  }
  files.set('index.html', { body: Buffer.from(indexHtml(script, style)), type: typeOf('index.html'), immutable: false });
  return { sourceHash: hash, files };
}

function readDist(): Bundle | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(DIST_DIR, 'manifest.json'), 'utf8')) as { sourceHash: string; files: string[] };
    const files = new Map<string, Asset>();
    for (const name of manifest.files) files.set(name, { body: readFileSync(join(DIST_DIR, name)), type: typeOf(name), immutable: name.startsWith('assets/') });
    return { sourceHash: manifest.sourceHash, files };
  } catch {
    return undefined;
  }
}

/** writes the bundle to DIST_DIR whole (a temporary directory renamed into place) */
function writeDist(b: Bundle): void {
  const tmp = `${DIST_DIR}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  for (const [name, a] of b.files) {
    mkdirSync(dirname(join(tmp, name)), { recursive: true });
    writeFileSync(join(tmp, name), a.body);
  }
  writeFileSync(join(tmp, 'manifest.json'), JSON.stringify({ sourceHash: b.sourceHash, files: [...b.files.keys()] }));
  try {
    if (existsSync(DIST_DIR)) rmSync(DIST_DIR, { recursive: true, force: true });
    renameSync(tmp, DIST_DIR);
  } catch {
    // another process put its (equal) bundle there first
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The console bundle: the one in DIST_DIR when it was built from these sources (`npm run
 * build:console`, which hack/ensure-deps.sh runs), else built now and written there.
 */
export async function ensureBundle(): Promise<Bundle> {
  const want = sourceHash();
  const have = readDist();
  if (have?.sourceHash === want) return have;
  const b = await buildBundle();
  writeDist(b);
  return b;
}
