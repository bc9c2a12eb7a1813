import type { Logger } from 'pino';
import { Client } from '../client/client.ts';
import { BerthError } from '../errors/errors.ts';
import { Agent } from './agent.ts';
import type { AgentConfig } from './config.ts';
import { DockerRuntime } from './runtime/docker.ts';
import { HollowRuntime } from './runtime/hollow.ts';
import type { ContainerRuntime } from './runtime/runtime.ts';

/**
 * Builds and starts an agent from its configuration: the runtime it names (Docker, or the
 * hollow one), a client of ECS_BACKEND_HOST with the bootstrap token, and the agent.
 * Shared by `berth-agent` and `berth up`.
 */
export async function launchAgent(cfg: AgentConfig, log: Logger, opts: { caPem?: string; insecureSkipTlsVerify?: boolean } = {}): Promise<{ agent: Agent; runtime: ContainerRuntime; stop(): Promise<void> }> {
  if (!cfg.backendHost) throw new BerthError('BadRequest', 'ECS_BACKEND_HOST is required: the URL of the berth apiserver (e.g. https://10.0.0.5:6443)');
  let runtime: ContainerRuntime;
  let dockerVersion: string | undefined;
  if (cfg.runtime === 'hollow') runtime = new HollowRuntime();
  else {
    const d = new DockerRuntime({ config: cfg, logger: log });
    try {
      dockerVersion = (await d.api.version()).Version;
    } catch (e) {
      await d.close();
      throw new BerthError('ServiceUnavailable', `cannot reach Docker at ${cfg.dockerHost} (DOCKER_HOST): ${(e as Error).message}`);
    }
    runtime = d;
  }
  const client = new Client({ server: cfg.backendHost, token: cfg.bootstrapToken || undefined, ca: opts.caPem, insecureSkipTlsVerify: opts.insecureSkipTlsVerify, userAgent: 'berth-agent' });
  const agent = new Agent({ config: cfg, client, runtime, log, dockerVersion });
  try {
    await agent.start();
  } catch (e) {
    await runtime.close();
    throw e;
  }
  return {
    agent,
    runtime,
    async stop() {
      await agent.stop();
      await runtime.close();
    },
  };
}
