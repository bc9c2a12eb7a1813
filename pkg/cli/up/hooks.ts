import { loadAgentConfig } from '../../agent/config.ts';
import { launchAgent } from '../../agent/launch.ts';
import { Client } from '../../client/client.ts';
import { ControllerManager } from '../../controller/manager.ts';
import { DEPLOYMENT_WAIT_MS, ecsFrontDoor } from '../../ecsapi/ecsapi.ts';
import { LoadBalancerHost } from '../../lb/lb.ts';
import type { UpHooks } from './up.ts';

/**
 * The components `berth up` runs beside its apiserver, each talking to it through the API
 * exactly as when they run apart: the controller-manager (no leader election: one process)
 * and an agent on the local Docker (or the hollow runtime).
 */
export function upHooks(o: { runtime: 'docker' | 'hollow'; env?: Record<string, string | undefined> }): UpHooks {
  return {
    ecsFrontDoor: (parts, accessKeyFile, region) => ecsFrontDoor(parts, { accessKeyFile, region, deploymentWaitMs: DEPLOYMENT_WAIT_MS }),
    startControllers: async (server, caPem, token, log) => {
      const client = new Client({ server, token, ca: caPem, userAgent: 'berth-controller-manager' });
      const mgr = new ControllerManager({ client, log, leaderElect: false });
      await mgr.start();
      return {
        name: 'controllers',
        stop: async () => {
          await mgr.stop();
          client.close();
        },
      };
    },
    startLoadBalancer: async (server, caPem, token, dir, log) => {
      const client = new Client({ server, token, ca: caPem, userAgent: 'berth-lb' });
      const host = new LoadBalancerHost({ client, log, dir, bindAddress: '127.0.0.1' });
      try {
        await host.start();
      } catch (e) {
        await host.stop();
        client.close();
        throw e;
      }
      return {
        name: 'lb',
        stop: async () => {
          await host.stop();
          client.close();
        },
      };
    },
    startAgent: async (a) => {
      const env = o.env ?? process.env;
      const cfg = loadAgentConfig({
        env: {
          ...env,
          ECS_CLUSTER: env.ECS_CLUSTER ?? 'default',
          ECS_BACKEND_HOST: a.server,
          BERTH_BOOTSTRAP_TOKEN: a.bootstrapToken,
          ECS_DATADIR: a.dataDir,
          ECS_CHECKPOINT: 'true',
          DOCKER_HOST: a.dockerHost,
          BERTH_RUNTIME: o.runtime,
          // where ECS's agent serves it (ECS_INTROSPECTION_PORT=0 turns it off)
          ECS_INTROSPECTION_PORT: env.ECS_INTROSPECTION_PORT ?? '51678',
          // one host, images built or loaded locally: use what is cached (pulls of an image no
          // registry has would retry, as ECS's do, before falling back to the cache)
          ECS_IMAGE_PULL_BEHAVIOR: env.ECS_IMAGE_PULL_BEHAVIOR ?? 'prefer-cached',
          BERTH_LOGS_LISTEN: env.BERTH_LOGS_LISTEN ?? '127.0.0.1:0',
        },
      });
      const running = await launchAgent(cfg, a.log, { caPem: a.caPem });
      return { name: 'agent', stop: running.stop };
    },
  };
}
