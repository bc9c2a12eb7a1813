import type { Command } from 'commander';
import { badRequest } from '../../errors/errors.ts';
import type { CommandContext } from '../command.ts';
import { completionScript } from '../config.ts';

/** `berth completion bash`: needs every command registered (buildProgram loads them all for it) */
export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'completion')
    .argument('[shell]', 'bash', 'bash')
    .action((shell: string) => {
      if (shell !== 'bash') throw badRequest(`completion ${shell}: only bash is supported`);
      ctx.io.out(completionScript(program));
    });
}
