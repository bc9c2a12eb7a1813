import type { Command } from 'commander';
import { TABLE_ACCEPT, target, type CommandContext } from '../command.ts';
import type { Connection } from '../commands.ts';
import { parseOutput, renderObjects, renderTable, type OutputFormat, type Table } from '../printers.ts';

/** `berth get KIND[,KIND] [NAME]`: the server's Table (kubectl's columns), or the objects as json/yaml/name. */
interface GetOptions {
  kinds: string[];
  name?: string;
  output: OutputFormat;
  selector?: string;
  fieldSelector?: string;
  allNamespaces: boolean;
  watch: boolean;
}

interface GetFlags {
  output?: string;
  selector?: string;
  fieldSelector?: string;
  allNamespaces?: boolean;
  watch?: boolean;
}

export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'get')
    .argument('<kind>', 'e.g. services (svc), tasks (tk), taskdefinitions (td), containerinstances (ci), clusters')
    .argument('[name]')
    .option('-o, --output <format>', 'wide, json, yaml or name')
    .option('-l, --selector <labels>', 'label selector')
    .option('--field-selector <fields>', 'field selector, e.g. status.lastStatus=RUNNING')
    .option('-A, --all-namespaces', 'every cluster')
    .option('-w, --watch', 'after listing, print changes as they happen')
    .action(async (kinds: string, name: string | undefined, f: GetFlags, cmd: Command) => {
      const o = options(kinds, name, f);
      const c = await ctx.conn(cmd);
      // `get loadbalancers,targetgroups`: each kind in turn
      for (const k of o.kinds) await run(ctx, c, k, o);
    });
}

/** the flags as options, validated before anything is sent */
export function options(kinds: string, name: string | undefined, f: GetFlags): GetOptions {
  const o: GetOptions = { kinds: kinds.split(',').filter(Boolean), name, output: parseOutput(f.output), selector: f.selector, fieldSelector: f.fieldSelector, allNamespaces: !!f.allNamespaces, watch: !!f.watch };
  for (const k of o.kinds) target(k, name); // an unknown kind fails here, naming the known ones
  return o;
}

async function run(ctx: CommandContext, { client, namespace }: Connection, kindWord: string, o: GetOptions): Promise<void> {
  const { io } = ctx;
  const t = target(kindWord, o.name);
  const fmt = o.output;
  const ns = t.kind.namespaced && !o.allNamespaces ? namespace : undefined;
  const query = { labelSelector: o.selector, fieldSelector: o.fieldSelector };
  const path = t.kind.namespaced && !ns ? `/apis/berth.dev/v1/${t.kind.plural}` : client.path(t.kind, ns, t.name);
  if (fmt === 'table' || fmt === 'wide') {
    const table = await client.request<Table>('GET', path, undefined, { query, accept: TABLE_ACCEPT });
    if (!table.rows?.length && !t.name) io.err(`No resources found${ns ? ` in ${ns} cluster` : ''}.\n`);
    else io.out(renderTable(table, { wide: fmt === 'wide', namespace: t.kind.namespaced && !ns }));
  } else if (t.name) {
    io.out(await renderObjects([await client.get(t.kind, ns, t.name)], fmt, true));
  } else {
    io.out(await renderObjects((await client.listAll(t.kind, ns, query)).items, fmt, false));
  }
  if (!o.watch) return;
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  const start = (await client.list(t.kind, ns, { ...query, limit: 1 })).resourceVersion;
  for await (const ev of client.watch(t.kind, ns, { ...query, resourceVersion: start, signal: ac.signal })) {
    if (ev.type === 'BOOKMARK' || ev.type === 'ERROR') continue;
    if (t.name && ev.object.metadata.name !== t.name) continue;
    if (ev.type === 'DELETED' || fmt === 'name') {
      io.out(`${ev.type === 'DELETED' ? 'deleted ' : ''}${t.kind.singular}/${ev.object.metadata.name}\n`);
      continue;
    }
    if (fmt === 'json' || fmt === 'yaml') io.out(await renderObjects([ev.object], fmt, true));
    else {
      const one = await client.request<Table>('GET', client.path(t.kind, ev.object.metadata.namespace, ev.object.metadata.name), undefined, { accept: TABLE_ACCEPT }).catch(() => undefined);
      if (one) io.out(renderTable(one, { wide: fmt === 'wide', noHeaders: true }));
    }
  }
}
