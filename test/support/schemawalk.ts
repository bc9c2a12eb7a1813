import type { z } from 'zod';

export type Schema = z.ZodType & { _zod: { def: { type: string; innerType?: Schema; element?: Schema; shape?: Record<string, Schema>; options?: Schema[]; in?: Schema } } };

/** Leaf field paths of a zod schema ("portMappings.containerPort"; arrays are transparent, records are leaves). */
export function leaves(s: Schema, prefix = ''): string[] {
  const d = s._zod.def;
  switch (d.type) {
    case 'optional':
    case 'default':
    case 'nullable':
    case 'prefault':
      return leaves(d.innerType!, prefix);
    case 'array':
      return leaves(d.element!, prefix);
    case 'object': {
      const shape = (s as unknown as { shape: Record<string, Schema> }).shape;
      return Object.entries(shape).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
    }
    default:
      return [prefix];
  }
}
