import type { Command } from 'commander';
import type { CommandContext } from '../command.ts';

/** `berth version`: the client's, then the server's (an unreachable server is said, not fatal). */
export function register(program: Command, ctx: CommandContext): void {
  ctx.sub(program, 'version').action(async (_f: unknown, cmd: Command) => {
    ctx.io.out(`Client Version: ${ctx.deps.version}\n`);
    try {
      const { client } = await ctx.conn(cmd);
      const v = await client.request<{ gitVersion?: string }>('GET', '/version');
      ctx.io.out(`Server Version: ${v.gitVersion ?? JSON.stringify(v)}\n`);
    } catch (e) {
      ctx.io.err(`Server: ${(e as Error).message}\n`);
    }
  });
}
