import { z } from 'zod';
import { API_VERSION, GROUP, ObjectMeta, VERSION, type KindInfo } from './meta.ts';

type Schema = Record<string, unknown>;

/**
 * A zod schema as an OpenAPI v3 *structural* schema (what a CustomResourceDefinition and
 * kubectl accept): no additionalProperties:false (strictness is enforced by admission),
 * int-or-string for number|string unions, preserve-unknown-fields for free-form values,
 * tuples as plain arrays.
 */
export function structural(schema: z.ZodType, io: 'input' | 'output' = 'input'): Schema {
  const raw = z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Schema;
  return clean(raw);
}

function clean(s: Schema): Schema {
  const out: Schema = {};
  const anyOf = s.anyOf as Schema[] | undefined;
  if (anyOf) {
    const types = new Set(anyOf.map((a) => a.type));
    if (types.size === 2 && types.has('string') && (types.has('number') || types.has('integer'))) {
      return { 'x-kubernetes-int-or-string': true };
    }
    if (types.size === 1 && anyOf.every((a) => a.type !== undefined && a.type !== 'object' && a.type !== 'array')) {
      return { type: anyOf[0].type };
    }
    return { 'x-kubernetes-preserve-unknown-fields': true };
  }
  for (const [k, v] of Object.entries(s)) {
    if (k === '$schema' || k === 'additionalProperties' || k === 'nullable' || k === 'prefixItems') continue;
    if ((k === 'minimum' || k === 'maximum') && Math.abs(v as number) >= Number.MAX_SAFE_INTEGER) continue;
    if (k === 'properties') {
      out.properties = Object.fromEntries(Object.entries(v as Record<string, Schema>).map(([p, ps]) => [p, clean(ps)]));
    } else if (k === 'items') {
      out.items = clean(v as Schema);
    } else {
      out[k] = v;
    }
  }
  const add = s.additionalProperties;
  if (add && typeof add === 'object' && !s.properties) out.additionalProperties = clean(add as Schema);
  if (out.type === undefined && out.properties === undefined && !out['x-kubernetes-int-or-string']) {
    return { 'x-kubernetes-preserve-unknown-fields': true, ...(out.description ? { description: out.description } : {}) };
  }
  if (out.type === 'object' && !out.properties && !out.additionalProperties) {
    out['x-kubernetes-preserve-unknown-fields'] = true;
  }
  return out;
}

/** The OpenAPI schema of a whole object of a kind. */
export function openApiSchemaFor(kind: KindInfo): Schema {
  return {
    type: 'object',
    description: `${kind.kind} (${API_VERSION})`,
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: structural(ObjectMeta),
      spec: structural(kind.spec),
      status: structural(kind.status, 'output'),
    },
    ...(kind.kind === 'Cluster' || kind.kind === 'Lease' ? {} : { required: ['spec'] }),
  };
}

/** The CustomResourceDefinition of a kind. */
export function crdFor(kind: KindInfo): Schema {
  const schema = openApiSchemaFor(kind);
  // a CRD's metadata schema may only restrict name/generateName: leave it to the server
  (schema.properties as Schema).metadata = { type: 'object' };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${kind.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: kind.namespaced ? 'Namespaced' : 'Cluster',
      names: {
        kind: kind.kind,
        plural: kind.plural,
        singular: kind.singular,
        listKind: `${kind.kind}List`,
        ...(kind.shortNames.length ? { shortNames: kind.shortNames } : {}),
        categories: ['berth', 'all'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: schema },
          subresources: { status: {}, ...(kind.scale ? { scale: kind.scale } : {}) },
          additionalPrinterColumns: kind.printerColumns.map((c) => ({
            name: c.name,
            type: c.type,
            jsonPath: c.jsonPath,
            ...(c.description ? { description: c.description } : {}),
            ...(c.priority ? { priority: c.priority } : {}),
          })),
          ...(kind.fieldSelectors.length ? { selectableFields: kind.fieldSelectors.map((f) => ({ jsonPath: `.${f}` })) } : {}),
        },
      ],
    },
  };
}
