/**
 * Output like kubectl's: aligned tables (from the server's Table responses, so columns are
 * the same as `kubectl get`), `-o json|yaml|name|wide`, and describe's indented key/value text.
 */
import { BerthError } from '../errors/errors.ts';

export interface TableColumn {
  name: string;
  type?: string;
  priority?: number;
}

export interface Table {
  columnDefinitions: TableColumn[];
  rows: Array<{ cells: unknown[]; object?: { metadata?: { name?: string; namespace?: string } } }>;
}

const cell = (v: unknown) => (v === undefined || v === null || v === '' ? '<none>' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** Aligned columns, 3 spaces apart, upper-case headers; `wide` shows priority>0 columns too. */
export function renderTable(t: Table, o: { wide?: boolean; namespace?: boolean; noHeaders?: boolean } = {}): string {
  const cols = t.columnDefinitions.map((c, i) => ({ c, i })).filter(({ c }) => o.wide || !c.priority);
  const header = [...(o.namespace ? ['NAMESPACE'] : []), ...cols.map(({ c }) => c.name.toUpperCase())];
  const rows = t.rows.map((r) => [...(o.namespace ? [r.object?.metadata?.namespace ?? ''] : []), ...cols.map(({ i }) => cell(r.cells[i]))]);
  const all = o.noHeaders ? rows : [header, ...rows];
  const widths = header.map((_, j) => Math.max(...all.map((r) => r[j].length)));
  return all.map((r) => r.map((v, j) => (j === r.length - 1 ? v : v.padEnd(widths[j]))).join('   ').trimEnd()).join('\n') + (all.length ? '\n' : '');
}

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml' | 'name';

export function parseOutput(s: string | undefined): OutputFormat {
  if (s === undefined) return 'table';
  if (['wide', 'json', 'yaml', 'name'].includes(s)) return s as OutputFormat;
  throw new BerthError('BadRequest', `--output ${JSON.stringify(s)}: use one of wide, json, yaml, name`);
}

/** Objects as json/yaml (one object, or a List like kubectl) or `kind.group/name` lines. */
export async function renderObjects(objs: Array<Record<string, any>>, format: 'json' | 'yaml' | 'name', single: boolean): Promise<string> {
  if (format === 'name') return objs.map((o) => `${String(o.kind).toLowerCase()}.berth.dev/${o.metadata?.name}`).join('\n') + (objs.length ? '\n' : '');
  const doc = single && objs.length === 1 ? objs[0] : { apiVersion: 'v1', kind: 'List', items: objs };
  if (format === 'json') return JSON.stringify(doc, null, 2) + '\n';
  const { stringify } = await import('yaml'); // only -o yaml needs the YAML printer
  return stringify(doc);
}

/** describe: `Key:  value` lines, nested objects indented, lists of scalars comma-joined. */
export function describeLines(obj: unknown, indent = 0): string[] {
  const pad = ' '.repeat(indent);
  const out: string[] = [];
  if (obj === null || typeof obj !== 'object') return [`${pad}${cell(obj)}`];
  const title = (k: string) => k.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) {
      if (v.every((x) => typeof x !== 'object' || x === null)) {
        out.push(`${pad}${title(k)}:`.padEnd(28) + (v.length ? v.join(', ') : '<none>'));
      } else {
        out.push(`${pad}${title(k)}:`);
        for (const item of v) {
          const lines = describeLines(item, indent + 4);
          if (lines.length) lines[0] = `${' '.repeat(indent + 2)}- ${lines[0].trimStart()}`;
          out.push(...lines);
        }
      }
    } else if (v !== null && typeof v === 'object') {
      out.push(`${pad}${title(k)}:`);
      out.push(...describeLines(v, indent + 2));
    } else {
      out.push(`${pad}${title(k)}:`.padEnd(Math.max(28, indent + title(k).length + 3)) + cell(v));
    }
  }
  return out;
}
