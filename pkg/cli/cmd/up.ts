import type { Command } from 'commander';
import { onShutdown } from '../../cmdutil/cmdutil.ts';
import { badRequest } from '../../errors/errors.ts';
import type { CommandContext } from '../command.ts';
import { upFiles } from '../up/paths.ts';

/** `berth up`: everything on this machine, until a signal. Its machinery loads only here. */
interface UpOptions {
  listen: string;
  region: string;
  agent: boolean;
  runtime: 'docker' | 'hollow';
  logLevel: string;
}

export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'up')
    .option('--listen <host:port>', 'loopback address to serve on', '127.0.0.1:6443')
    .option('--region <region>', 'the region the ECS API answers as', 'us-east-1')
    .option('--no-agent', 'do not run an agent on this machine')
    .option('--runtime <runtime>', 'docker, or hollow for a demo without Docker (containers are simulated)', 'docker')
    .option('--log-level <level>', 'pino level', process.env.BERTH_LOG_LEVEL ?? 'info')
    .action(async (f: { listen: string; region: string; agent: boolean; runtime: string; logLevel: string }) => {
      if (f.runtime !== 'docker' && f.runtime !== 'hollow') throw badRequest(`--runtime ${f.runtime}: choose docker or hollow`);
      await run(ctx, { ...f, runtime: f.runtime });
    });
}

async function run(ctx: CommandContext, o: UpOptions): Promise<void> {
  const [{ up }, { upHooks }, { newLogger }] = await Promise.all([import('../up/up.ts'), import('../up/hooks.ts'), import('../../log/log.ts')]);
  const log = newLogger({ level: o.logLevel });
  const running = await up({ files: upFiles(), listen: o.listen, region: o.region, agent: o.agent, runtime: o.runtime, log, out: (l) => ctx.io.out(l + '\n') }, upHooks({ runtime: o.runtime }));
  onShutdown(log, running.stop);
  await new Promise(() => undefined); // serve until a signal
}
