import { Agent } from '../../pkg/agent/agent.ts';
import { loadAgentConfig } from '../../pkg/agent/config.ts';
import { HollowRuntime } from '../../pkg/agent/runtime/hollow.ts';
import { Client } from '../../pkg/client/client.ts';
import { silentLogger, type Logger } from '../../pkg/log/log.ts';

/**
 * A real agent (hollow runtime) that registers in cluster `default` with a bootstrap token:
 * its data dir, the apiserver it talks to, the host it says it runs on.
 */
export function registeringAgent(o: { server: string; bootstrapToken: string; dataDir: string; fingerprint: string; log?: Logger }): Agent {
  return new Agent({
    config: loadAgentConfig({ env: { ECS_CLUSTER: 'default', ECS_DATADIR: o.dataDir, ECS_CHECKPOINT: 'true', BERTH_BOOTSTRAP_TOKEN: o.bootstrapToken, ECS_BACKEND_HOST: o.server, ECS_INTROSPECTION_PORT: '0' } }),
    client: new Client({ server: o.server, token: o.bootstrapToken }),
    runtime: new HollowRuntime(),
    log: o.log ?? silentLogger(),
    fingerprint: o.fingerprint,
  });
}
