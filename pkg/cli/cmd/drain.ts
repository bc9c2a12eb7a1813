import type { Command } from 'commander';
import type { CommandContext } from '../command.ts';

/** `berth drain INSTANCE [--undo]`: ECS's UpdateContainerInstancesState to DRAINING (or back to ACTIVE). */
export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'drain')
    .argument('<instance>')
    .option('--undo', 'set it back to ACTIVE')
    .action(async (ci: string, o: { undo?: boolean }, cmd: Command) => {
      const name = ci.replace(/^(containerinstance|containerinstances|ci)\//, '');
      const { client, namespace } = await ctx.conn(cmd);
      await client.patch('ContainerInstance', namespace, name, { spec: { status: o.undo ? 'ACTIVE' : 'DRAINING' } });
      ctx.io.out(`containerinstance/${name} ${o.undo ? 'active' : 'draining'}\n`);
    });
}
