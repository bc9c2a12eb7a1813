import type { Command } from 'commander';
import type { KindNames } from '../../api/names.ts';
import { BerthError } from '../../errors/errors.ts';
import { kindOf, target, type CommandContext } from '../command.ts';
import { readManifests } from '../manifests.ts';

/** `berth delete KIND NAME... | -f FILE`: each one deleted, every failure named (a family: every revision deregistered). */
export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'delete')
    .argument('[kind]')
    .argument('[names...]')
    .option('-f, --filename <path...>', 'delete what these manifests name')
    .action(async (kindWord: string | undefined, names: string[], f: { filename?: string[] }, cmd: Command) => {
      if (!kindWord && !f.filename) throw new BerthError('BadRequest', 'give KIND NAME or -f FILE');
      const named = kindWord ? target(kindWord, names[0]) : undefined;
      const all = named ? (kindWord!.includes('/') ? [named.name!, ...names] : names) : [];
      if (named && !all.length) throw new BerthError('BadRequest', `name which ${named.kind.plural} to delete`);
      const { client, namespace } = await ctx.conn(cmd);
      const targets: Array<{ kind: KindNames; name: string; ns?: string }> = [];
      if (f.filename)
        for (const m of await readManifests(f.filename, ctx.io.stdin)) {
          const k = kindOf(m.resource.kind);
          targets.push({ kind: k, name: m.resource.metadata.name!, ns: k.namespaced ? (m.resource.metadata.namespace ?? namespace) : undefined });
        }
      if (named) for (const n of all) targets.push({ kind: named.kind, name: n, ns: named.kind.namespaced ? namespace : undefined });
      if (!targets.length) throw new BerthError('BadRequest', 'give KIND NAME or -f FILE');
      const errors: string[] = [];
      for (const t of targets) {
        try {
          await client.delete(t.kind, t.ns, t.name);
          ctx.io.out(`${t.kind.singular}/${t.name} deleted\n`);
        } catch (e) {
          errors.push(`${t.kind.singular}/${t.name}: ${(e as Error).message}`);
        }
      }
      if (errors.length) throw new BerthError('BadRequest', errors.join('\n'));
    });
}
