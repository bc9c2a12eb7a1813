import type { Command } from 'commander';
import type { AnyObj, Client } from '../../client/client.ts';
import { BerthError, isBerthError } from '../../errors/errors.ts';
import { kindOf, type CommandContext } from '../command.ts';
import { readManifests, type Manifest } from '../manifests.ts';

/** `berth apply -f`: create what is missing, update what differs, say which (kubectl's words). */
interface ApplyOptions {
  filenames: string[];
  dryRun: boolean;
}

export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'apply')
    .requiredOption('-f, --filename <path...>', 'file, directory or - for stdin')
    .option('--dry-run', 'show what would happen, change nothing')
    .action(async (f: { filename: string[]; dryRun?: boolean }, cmd: Command) => run(ctx, cmd, { filenames: f.filename, dryRun: !!f.dryRun }));
}

async function run(ctx: CommandContext, cmd: Command, o: ApplyOptions): Promise<void> {
  const { client, namespace } = await ctx.conn(cmd);
  const ms = await readManifests(o.filenames, ctx.io.stdin);
  const errors: string[] = [];
  for (const m of ms) {
    try {
      ctx.io.out(`${await applyOne(client, m, namespace, o.dryRun)}\n`);
    } catch (e) {
      errors.push(`${m.source}: ${(e as Error).message}`);
    }
  }
  if (errors.length) throw new BerthError('BadRequest', errors.join('\n'));
}

/** Stable JSON of a value for "did anything change" decisions. */
const stable = (v: unknown): string => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x));

export async function applyOne(client: Client, m: Manifest, ns: string, dryRun: boolean): Promise<string> {
  const r = m.resource as AnyObj;
  const kind = kindOf(r.kind ?? '');
  const namespace = kind.namespaced ? (r.metadata?.namespace ?? ns) : undefined;
  const name = r.metadata?.name;
  if (!name) throw new BerthError('BadRequest', `${m.source}: metadata.name is required`);
  const body: AnyObj = { ...r, apiVersion: 'berth.dev/v1', kind: kind.kind, metadata: { ...r.metadata, name, ...(namespace ? { namespace } : {}) } };
  delete body.status;
  const q = dryRun ? { dryRun: 'All' } : undefined;
  const suffix = dryRun ? ' (dry run)' : '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await client.tryGet(kind, namespace, name);
    if (!cur) {
      const out = await client.request<AnyObj>('POST', client.path(kind, namespace), body, { query: q });
      return `${kind.singular}/${out.metadata.name} created${suffix}`;
    }
    const next = { ...body, metadata: { ...cur.metadata, labels: body.metadata.labels ?? cur.metadata.labels, annotations: body.metadata.annotations ?? cur.metadata.annotations } };
    try {
      const out = await client.request<AnyObj>('PUT', client.path(kind, namespace, name), next, { query: q });
      if (kind.immutableSpec) {
        // a task definition family: a changed spec registers the next revision
        const rev = (o: AnyObj) => (o.status?.family ? `${o.status.family}:${o.status.revision}` : o.metadata.name);
        return rev(out) !== rev(cur) ? `${kind.singular}/${rev(out)} created${suffix}` : `${kind.singular}/${rev(out)} unchanged`;
      }
      // what the user writes (spec, labels, annotations) decides, not the status admission may move along
      // with the write (a service following its family to a revision registered a moment before)
      const own = (o: AnyObj) => stable({ spec: o.spec, labels: o.metadata.labels ?? {}, annotations: o.metadata.annotations ?? {} });
      if (own(out) === own(cur)) return `${kind.singular}/${out.metadata.name} unchanged`;
      return `${kind.singular}/${out.metadata.name} configured${suffix}`;
    } catch (e) {
      if (!isBerthError(e, 'Conflict')) throw e;
    }
  }
  throw new BerthError('Conflict', `${kind.singular}/${name} kept changing while being applied; try again`);
}
