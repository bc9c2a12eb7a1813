import { stringify } from 'yaml';
import { KINDS } from './kinds.ts';
import { crdFor } from './openapi.ts';

const HEADER = '# Generated from the zod schemas in pkg/api by `npm run gen:crds`. Do not edit.\n';

/** [file name, YAML text] of every kind's CRD, as crds/ should hold them. */
export function renderCrds(): Array<[string, string]> {
  return KINDS.map((k) => [`${k.plural}.berth.dev.yaml`, HEADER + stringify(crdFor(k), { lineWidth: 0 })]);
}
