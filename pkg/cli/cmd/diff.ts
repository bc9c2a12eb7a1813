import type { Command } from 'commander';
import type { AnyObj } from '../../client/client.ts';
import { kindOf, type CommandContext } from '../command.ts';
import { readManifests } from '../manifests.ts';

/** `berth diff -f`: what apply would change, from a dry run on the server (its defaults and revisions). */
interface DiffOptions {
  filenames: string[];
}

export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'diff')
    .requiredOption('-f, --filename <path...>', 'file, directory or - for stdin')
    .action(async (f: { filename: string[] }, cmd: Command) => run(ctx, cmd, { filenames: f.filename }));
}

async function run(ctx: CommandContext, cmd: Command, o: DiffOptions): Promise<void> {
  const { client, namespace } = await ctx.conn(cmd);
  const { stringify } = await import('yaml');
  let changed = false;
  for (const m of await readManifests(o.filenames, ctx.io.stdin)) {
    const r = m.resource as AnyObj;
    const kind = kindOf(r.kind ?? '');
    const ns = kind.namespaced ? (r.metadata?.namespace ?? namespace) : undefined;
    const cur = await client.tryGet(kind, ns, r.metadata.name);
    const body: AnyObj = { ...r, apiVersion: 'berth.dev/v1', kind: kind.kind, metadata: { ...(cur?.metadata ?? {}), ...r.metadata, ...(ns ? { namespace: ns } : {}) } };
    delete body.status;
    const next = cur
      ? await client.request<AnyObj>('PUT', client.path(kind, ns, r.metadata.name), body, { query: { dryRun: 'All' } })
      : await client.request<AnyObj>('POST', client.path(kind, ns), body, { query: { dryRun: 'All' } });
    const view = (x: AnyObj | undefined) => (x ? stringify({ metadata: { labels: x.metadata.labels, annotations: x.metadata.annotations }, spec: x.spec }) : '');
    const lines = lineDiff(view(cur), view(next));
    if (!lines.some((l) => l.startsWith('+') || l.startsWith('-'))) continue;
    changed = true;
    const label = (x: AnyObj) => (x.status?.family ? `${x.status.family}:${x.status.revision}` : x.metadata.name);
    ctx.io.out(`--- ${kind.singular}/${cur ? label(cur) : '(new)'}\n+++ ${kind.singular}/${label(next)}\n`);
    ctx.io.out(lines.join('\n') + '\n');
  }
  if (!changed) ctx.io.out('no differences\n');
}

/** A line diff (LCS) with `+`, `-` and two-space context lines. */
export function lineDiff(a: string, b: string): string[] {
  const x = a ? a.trimEnd().split('\n') : [];
  const y = b ? b.trimEnd().split('\n') : [];
  const n = x.length;
  const m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      out.push(`  ${x[i++]}`);
      j++;
    } else if (j < m && (i === n || L[i][j + 1] >= L[i + 1][j])) out.push(`+ ${y[j++]}`);
    else out.push(`- ${x[i++]}`);
  }
  return out;
}
