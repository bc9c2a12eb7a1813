import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { Client, clientFromKubeconfig } from '../../pkg/client/client.ts';
import { onShutdown, runMain } from '../../pkg/cmdutil/cmdutil.ts';
import { badRequest } from '../../pkg/errors/errors.ts';
import { haproxyVersion } from '../../pkg/lb/haproxy.ts';
import { LoadBalancerHost } from '../../pkg/lb/lb.ts';
import { newLogger } from '../../pkg/log/log.ts';

const program = new Command('berth-lb')
  .description("a load balancer host: runs Debian's HAProxy for berth's LoadBalancers and TargetGroups, driven through its Runtime API")
  .option('--server <url>', 'the apiserver URL')
  .option('--token <token>', 'bearer token (or BERTH_TOKEN)')
  .option('--kubeconfig <file>', 'take server, token and CA from a kubeconfig (berth up writes ~/.berth/config)')
  .option('--certificate-authority <file>', 'CA bundle that signed the apiserver certificate')
  .option('--bind-address <ip>', 'the address the listeners bind', '0.0.0.0')
  .option('--load-balancers <names>', 'serve only these load balancers (comma-separated; default all)')
  .option('--data-dir <dir>', 'haproxy.cfg, the admin socket and the pid file', '/var/lib/berth-lb')
  .option('--haproxy <path>', 'the haproxy binary (2.4 or newer: add server / del server)', 'haproxy')
  .option('--log-level <level>', 'pino level', process.env.BERTH_LOG_LEVEL ?? 'info')
  .showHelpAfterError();

runMain('berth-lb', async () => {
  program.parse();
  const o = program.opts<{ server?: string; token?: string; kubeconfig?: string; certificateAuthority?: string; bindAddress: string; loadBalancers?: string; dataDir: string; haproxy: string; logLevel: string }>();
  const v = await haproxyVersion(o.haproxy);
  if (!v) throw badRequest(`--haproxy ${o.haproxy}: not found or not HAProxy (apt-get install haproxy)`);
  if (v[0] < 2 || (v[0] === 2 && v[1] < 4)) throw badRequest(`HAProxy ${v.join('.')} is too old: berth-lb needs 2.4 or newer (add server / del server on the Runtime API)`);
  let client: Client;
  if (o.kubeconfig) client = (await clientFromKubeconfig({ path: o.kubeconfig, server: o.server, token: o.token })).client;
  else {
    if (!o.server) throw badRequest('--server (or --kubeconfig) is required');
    client = new Client({ server: o.server, token: o.token ?? process.env.BERTH_TOKEN, ca: o.certificateAuthority ? readFileSync(o.certificateAuthority) : undefined, userAgent: 'berth-lb' });
  }
  const log = newLogger({ level: o.logLevel }).child({ component: 'lb' });
  const host = new LoadBalancerHost({ client, log, dir: o.dataDir, bindAddress: o.bindAddress, binary: o.haproxy, loadBalancers: o.loadBalancers?.split(',').map((s) => s.trim()).filter(Boolean) });
  await host.start();
  log.info({ server: client.server, haproxy: v.join('.') }, 'berth-lb running');
  onShutdown(log, async () => {
    await host.stop();
    client.close();
  });
});
