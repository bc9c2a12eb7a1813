import type { KindInfo } from '../api/meta.ts';
import type { Obj } from './watchcache.ts';

/** A human duration like kubectl prints: 45s, 5m, 3h, 2d, 1y. */
export function humanAge(fromIso: string | undefined, nowMs = Date.now()): string {
  if (!fromIso) return '<unknown>';
  const s = Math.max(0, Math.floor((nowMs - Date.parse(fromIso)) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 365 * 2) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

/** Evaluates the small JSONPath subset printer columns use: `.a.b`, `.a[*].b`, `.a[0]`. */
export function jsonPath(obj: unknown, path: string): unknown {
  const parts = path.replace(/^\./, '').split('.').filter(Boolean);
  let cur: unknown[] = [obj];
  let multi = false;
  for (const p0 of parts) {
    const m = /^([^[\]]+)(\[(\*|\d+)\])?$/.exec(p0);
    if (!m) return undefined;
    const next: unknown[] = [];
    for (const c of cur) {
      if (c === null || typeof c !== 'object') continue;
      const v = (c as Record<string, unknown>)[m[1]];
      if (m[3] === '*') {
        multi = true;
        if (Array.isArray(v)) next.push(...v);
      } else if (m[3] !== undefined) {
        if (Array.isArray(v) && v[Number(m[3])] !== undefined) next.push(v[Number(m[3])]);
      } else if (v !== undefined) next.push(v);
    }
    cur = next;
  }
  return multi ? cur : cur[0];
}

function cell(o: Obj, c: KindInfo['printerColumns'][number]): unknown {
  const v = jsonPath(o, c.jsonPath);
  if (c.type === 'date') return humanAge(v as string | undefined);
  if (Array.isArray(v)) return v.join(',');
  if (v === undefined || v === null) return c.type === 'string' ? '' : null;
  return v;
}

export interface Table {
  kind: 'Table';
  apiVersion: 'meta.k8s.io/v1';
  metadata: { resourceVersion?: string; continue?: string };
  columnDefinitions: Array<{ name: string; type: string; format: string; description: string; priority: number }>;
  rows: Array<{ cells: unknown[]; object: unknown }>;
}

/** A meta.k8s.io/v1 Table of objects, with the kind's printer columns after NAME. */
export function toTable(kind: KindInfo, objs: Obj[], meta: Table['metadata'] = {}, includeObject: 'Object' | 'Metadata' | 'None' = 'Object'): Table {
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: meta,
    columnDefinitions: [
      { name: 'Name', type: 'string', format: 'name', description: 'Name of the object', priority: 0 },
      ...kind.printerColumns.map((c) => ({
        name: c.name,
        type: c.type === 'date' ? 'string' : c.type,
        format: '',
        description: c.description ?? c.jsonPath,
        priority: c.priority ?? 0,
      })),
    ],
    rows: objs.map((o) => ({
      cells: [o.metadata.name, ...kind.printerColumns.map((c) => cell(o, c))],
      object:
        includeObject === 'None'
          ? undefined
          : includeObject === 'Metadata'
            ? { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata }
            : o,
    })),
  };
}
