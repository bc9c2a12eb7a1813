import type { Command } from 'commander';
import { BerthError } from '../../errors/errors.ts';
import { serviceArg, type CommandContext } from '../command.ts';

/** `berth scale service/NAME --replicas N`: the service's desired count. */
export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'scale')
    .argument('<service>', 'service/NAME or NAME')
    .requiredOption('--replicas <n>', 'the desired count')
    .action(async (svc: string, f: { replicas: string }, cmd: Command) => {
      const n = Number(f.replicas);
      if (!Number.isInteger(n) || n < 0) throw new BerthError('BadRequest', `--replicas ${f.replicas}: must be a whole number, 0 or more`);
      const name = serviceArg(svc);
      const { client, namespace } = await ctx.conn(cmd);
      await client.patch('Service', namespace, name, { spec: { desiredCount: n } });
      ctx.io.out(`service/${name} scaled to ${n}\n`);
    });
}
