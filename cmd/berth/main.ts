import 'reflect-metadata';
import { Command } from 'commander';
import { onShutdown, runMain } from '../../pkg/cmdutil/cmdutil.ts';
import { newLogger } from '../../pkg/log/log.ts';
import { upFiles } from '../../pkg/cli/up/files.ts';
import { up, type UpHooks } from '../../pkg/cli/up/up.ts';
import { upHooks } from '../../pkg/cli/up/hooks.ts';
import { badRequest } from '../../pkg/errors/errors.ts';

const program = new Command('berth').description('berth: an orchestrator that does what Amazon ECS does, on your own hosts').showHelpAfterError();

program
  .command('up')
  .description('run berth on this machine: apiserver (embedded store), ECS API, controllers and an agent on the local Docker')
  .option('--listen <host:port>', 'loopback address to serve on', '127.0.0.1:6443')
  .option('--region <region>', 'the region the ECS API answers as', 'us-east-1')
  .option('--no-agent', 'do not run an agent on this machine')
  .option('--runtime <runtime>', 'docker, or hollow for a demo without Docker (containers are simulated)', 'docker')
  .option('--log-level <level>', 'pino level', process.env.BERTH_LOG_LEVEL ?? 'info')
  .action(async (o: { listen: string; region: string; agent: boolean; runtime: string; logLevel: string }) => {
    if (o.runtime !== 'docker' && o.runtime !== 'hollow') throw badRequest(`--runtime ${o.runtime}: choose docker or hollow`);
    const log = newLogger({ level: o.logLevel });
    const hooks: UpHooks = upHooks({ runtime: o.runtime });
    const running = await up({ files: upFiles(), listen: o.listen, region: o.region, agent: o.agent, runtime: o.runtime, log, out: (l) => process.stdout.write(l + '\n') }, hooks);
    onShutdown(log, running.stop);
  });

runMain('berth', async () => {
  await program.parseAsync();
});
