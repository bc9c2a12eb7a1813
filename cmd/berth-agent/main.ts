import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { container } from 'tsyringe';
import { loadAgentConfig, pinoLevel, type AgentConfig } from '../../pkg/agent/config.ts';
import { launchAgent } from '../../pkg/agent/launch.ts';
import { onShutdown, runMain } from '../../pkg/cmdutil/cmdutil.ts';
import { badRequest } from '../../pkg/errors/errors.ts';
import { newLogger, type Logger } from '../../pkg/log/log.ts';

const program = new Command('berth-agent')
  .description('the berth node agent: registers this host as a container instance and runs its tasks on Docker.\nConfigured by the ECS agent environment variables (ECS_CLUSTER, ECS_BACKEND_HOST, ECS_DATADIR, ...), BERTH_BOOTSTRAP_TOKEN and BERTH_CA_FILE.')
  .option('--config <file>', 'an ecs.config-style KEY=VALUE file (the environment wins)')
  .option('--loglevel <level>', 'crit, error, warn, info, debug (overrides ECS_LOGLEVEL); -loglevel as the ECS agent spells it works too')
  .option('-k, --insecure', 'do not verify the apiserver\'s TLS certificate (the ECS agent\'s -k; not recommended)')
  .showHelpAfterError();

runMain('berth-agent', async () => {
  // the ECS agent's Go-style single-dash flag
  program.parse(process.argv.map((a) => (a === '-loglevel' ? '--loglevel' : a.startsWith('-loglevel=') ? `-${a}` : a)));
  const o = program.opts<{ config?: string; loglevel?: string; insecure?: boolean }>();
  // -loglevel is overridden by ECS_LOGLEVEL when that is present (as the ECS agent's README says)
  const env = { ...(o.loglevel ? { ECS_LOGLEVEL: o.loglevel } : {}), ...process.env };
  container.register<AgentConfig>('AgentConfig', { useValue: loadAgentConfig({ env, file: o.config }) });
  const cfg = container.resolve<AgentConfig>('AgentConfig');
  container.register<Logger>('Logger', { useValue: newLogger({ level: pinoLevel(cfg.logLevel), format: cfg.logOutputFormat, file: cfg.logFile || undefined }) });
  const log = container.resolve<Logger>('Logger');
  // BERTH_CA_FILE from the environment or the ecs.config file: the agent verifies the apiserver against it
  let caPem: string | undefined;
  if (cfg.caFile) {
    try {
      caPem = readFileSync(cfg.caFile, 'utf8');
    } catch (e) {
      throw badRequest(`BERTH_CA_FILE ${cfg.caFile}: ${(e as Error).message}`);
    }
    if (!caPem.includes('-----BEGIN CERTIFICATE-----')) throw badRequest(`BERTH_CA_FILE ${cfg.caFile}: not a PEM certificate bundle`);
  }
  const running = await launchAgent(cfg, log, { caPem, insecureSkipTlsVerify: o.insecure });
  onShutdown(log, () => running.stop());
});
