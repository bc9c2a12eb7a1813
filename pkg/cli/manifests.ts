/**
 * Reading what `berth apply -f` is given: files, directories (their .yaml/.yml/.json files,
 * sorted), or stdin; YAML with many documents, JSON objects, JSON arrays and `List`s; berth
 * manifests and the raw ECS JSON shapes of ECS's documents (register-task-definition input,
 * describe-task-definition output, create-service input), converted to manifests.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ecsShapeOf, ecsToManifest } from '../api/ecsjson.ts';
import type { Resource } from '../api/meta.ts';
import { badRequest } from '../errors/errors.ts';

export interface Manifest {
  /** where it came from: `file.yaml#2` */
  source: string;
  resource: Resource;
}

const EXTS = new Set(['.yaml', '.yml', '.json']);

/** Every manifest in `text` (named `source` in errors). Throws a BadRequest naming the document. */
export function parseManifests(text: string, source: string): Manifest[] {
  const docs: unknown[] = [];
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      const v = JSON.parse(text);
      docs.push(...(Array.isArray(v) ? v : [v]));
    } catch (e) {
      throw badRequest(`${source}: not valid JSON: ${(e as Error).message}`);
    }
  } else {
    for (const d of parseAllDocuments(text)) {
      if (d.errors.length) throw badRequest(`${source}: not valid YAML: ${d.errors[0].message}`);
      const v = d.toJS();
      if (v !== null && v !== undefined) docs.push(v);
    }
  }
  const out: Manifest[] = [];
  const add = (doc: unknown, where: string) => {
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw badRequest(`${where}: expected an object (a berth manifest or an ECS JSON document)`);
    const d = doc as Record<string, unknown>;
    if (d.kind === 'List' && Array.isArray(d.items)) {
      d.items.forEach((it, i) => add(it, `${where}.items[${i}]`));
      return;
    }
    if (ecsShapeOf(d)) {
      out.push({ source: where, resource: ecsToManifest(d) });
      return;
    }
    if (typeof d.apiVersion !== 'string' || typeof d.kind !== 'string') {
      throw badRequest(`${where}: missing apiVersion/kind (berth manifests are apiVersion: berth.dev/v1 with a kind; ECS JSON needs family+containerDefinitions or serviceName)`);
    }
    out.push({ source: where, resource: d as unknown as Resource });
  };
  docs.forEach((d, i) => add(d, docs.length > 1 ? `${source}#${i + 1}` : source));
  return out;
}

/** Reads `-f` arguments: `-` is stdin (given as `stdin`), a directory is walked (not recursively). */
export async function readManifests(paths: string[], stdin: () => Promise<string>): Promise<Manifest[]> {
  const out: Manifest[] = [];
  for (const p of paths) {
    if (p === '-') {
      out.push(...parseManifests(await stdin(), 'stdin'));
      continue;
    }
    let st;
    try {
      st = await stat(p);
    } catch {
      throw badRequest(`${p}: no such file or directory`);
    }
    if (st.isDirectory()) {
      const files = (await readdir(p)).filter((f) => EXTS.has(extname(f))).sort();
      for (const f of files) out.push(...parseManifests(await readFile(join(p, f), 'utf8'), join(p, f)));
    } else {
      out.push(...parseManifests(await readFile(p, 'utf8'), p));
    }
  }
  return out;
}
