import 'reflect-metadata';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { container } from 'tsyringe';
import { Client, clientFromKubeconfig } from '../../pkg/client/client.ts';
import { onShutdown, runMain } from '../../pkg/cmdutil/cmdutil.ts';
import { ALL_CONTROLLERS, ControllerManager, type ControllerName } from '../../pkg/controller/manager.ts';
import { badRequest } from '../../pkg/errors/errors.ts';
import { newLogger, type Logger } from '../../pkg/log/log.ts';

const program = new Command('berth-controller-manager')
  .description('the berth controllers: services, placement, daemons, instance health, garbage collection')
  .option('--server <url>', 'the apiserver URL')
  .option('--token <token>', 'bearer token (or BERTH_TOKEN)')
  .option('--kubeconfig <file>', 'take server, token and CA from a kubeconfig (berth up writes ~/.berth/config)')
  .option('--certificate-authority <file>', 'CA bundle that signed the apiserver certificate')
  .option('--controllers <list>', `comma-separated, from ${ALL_CONTROLLERS.join(',')}`, ALL_CONTROLLERS.join(','))
  .option('--leader-elect <bool>', 'leader election on Lease objects, one per controller', 'true')
  .option('--instance-heartbeat-timeout <seconds>', 'an agent silent this long is marked disconnected', '60')
  .option('--instance-lost-grace <seconds>', 'then, after this long, its service and daemon tasks are replaced elsewhere', '120')
  .option('--stopped-task-retention <seconds>', 'how long a STOPPED task stays describable before it is deleted', '3600')
  .option('--task-healthy-after <seconds>', 'a service task without container health checks counts as healthy this long after it reaches RUNNING (ECS: 40)', '40')
  .option('--leader-elect-lease-duration <seconds>', 'how long a standby waits, by its own clock, before taking a lease that was not renewed', '12')
  .option('--leader-elect-renew-deadline <seconds>', 'the leader steps down when it could not renew for this long (shorter than the lease duration)', '8')
  .option('--leader-elect-retry-period <seconds>', 'how often leases are renewed or tried', '2')
  .option('--exit-on-lost-lease <bool>', 'exit (for systemd to restart it with fresh caches) when a lease is lost, as controller-runtime does', 'true')
  .option('--metrics-listen <host:port>', 'serve Prometheus metrics here (e.g. 127.0.0.1:10257)')
  .option('--log-level <level>', 'pino level', process.env.BERTH_LOG_LEVEL ?? 'info')
  .showHelpAfterError();

runMain('berth-controller-manager', async () => {
  program.parse();
  const o = program.opts<{
    server?: string;
    token?: string;
    kubeconfig?: string;
    certificateAuthority?: string;
    controllers: string;
    leaderElect: string;
    metricsListen?: string;
    logLevel: string;
    instanceHeartbeatTimeout: string;
    instanceLostGrace: string;
    stoppedTaskRetention: string;
    taskHealthyAfter: string;
    leaderElectLeaseDuration: string;
    leaderElectRenewDeadline: string;
    leaderElectRetryPeriod: string;
    exitOnLostLease: string;
  }>();
  const controllers = o.controllers.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = controllers.filter((c) => !(ALL_CONTROLLERS as readonly string[]).includes(c));
  if (unknown.length) throw badRequest(`--controllers: unknown controller(s) ${unknown.join(', ')}; choose from ${ALL_CONTROLLERS.join(', ')}`);
  if (!['true', 'false'].includes(o.leaderElect)) throw badRequest('--leader-elect must be true or false');
  if (!['true', 'false'].includes(o.exitOnLostLease)) throw badRequest('--exit-on-lost-lease must be true or false');
  const secs = (flag: string, v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw badRequest(`${flag} ${v}: must be a positive number of seconds`);
    return n * 1000;
  };
  const lease = { leaseDurationMs: secs('--leader-elect-lease-duration', o.leaderElectLeaseDuration), renewDeadlineMs: secs('--leader-elect-renew-deadline', o.leaderElectRenewDeadline), retryPeriodMs: secs('--leader-elect-retry-period', o.leaderElectRetryPeriod) };
  if (lease.renewDeadlineMs >= lease.leaseDurationMs) throw badRequest(`--leader-elect-renew-deadline (${o.leaderElectRenewDeadline} s) must be shorter than --leader-elect-lease-duration (${o.leaderElectLeaseDuration} s)`);
  const healthyAfter = Number(o.taskHealthyAfter);
  if (!Number.isFinite(healthyAfter) || healthyAfter < 0) throw badRequest(`--task-healthy-after ${o.taskHealthyAfter}: must be 0 or a positive number of seconds`);
  const health = { heartbeatTimeoutMs: secs('--instance-heartbeat-timeout', o.instanceHeartbeatTimeout), lostGraceMs: secs('--instance-lost-grace', o.instanceLostGrace) };
  let client: Client;
  if (o.kubeconfig) client = (await clientFromKubeconfig({ path: o.kubeconfig, server: o.server, token: o.token })).client;
  else {
    if (!o.server) throw badRequest('--server (or --kubeconfig) is required');
    client = new Client({ server: o.server, token: o.token ?? process.env.BERTH_TOKEN, ca: o.certificateAuthority ? readFileSync(o.certificateAuthority) : undefined, userAgent: 'berth-controller-manager' });
  }
  container.register<Logger>('Logger', { useValue: newLogger({ level: o.logLevel }) });
  container.register<Client>('Client', { useValue: client });
  const log = container.resolve<Logger>('Logger');
  let exiting = false;
  const mgr: ControllerManager = new ControllerManager({
    client: container.resolve<Client>('Client'),
    log,
    controllers: controllers as ControllerName[],
    leaderElect: o.leaderElect === 'true',
    ...lease,
    health,
    retentionMs: secs('--stopped-task-retention', o.stoppedTaskRetention),
    healthyAfterMs: healthyAfter * 1000,
    // controller-runtime's "leader election lost": the controller has stopped writing; the process
    // exits (releasing its other leases first) and its supervisor starts it again with fresh caches
    onLostLease: (controller, reason) => {
      if (o.exitOnLostLease !== 'true' || exiting) return;
      exiting = true;
      log.error({ controller, reason }, 'leader election lost; exiting');
      const bye = setTimeout(() => process.exit(1), 5000);
      void mgr.stop().finally(() => {
        clearTimeout(bye);
        process.exit(1);
      });
    },
  });
  await mgr.start();
  let metrics: ReturnType<typeof createServer> | undefined;
  if (o.metricsListen) {
    const [host, port] = [o.metricsListen.slice(0, o.metricsListen.lastIndexOf(':')), Number(o.metricsListen.slice(o.metricsListen.lastIndexOf(':') + 1))];
    metrics = createServer((req, res) => {
      if (req.url === '/metrics') res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' }).end(mgr.metrics.render());
      else if (req.url === '/healthz') res.writeHead(200).end('ok');
      else res.writeHead(404).end();
    }).listen(port, host);
  }
  log.info({ server: client.server, controllers, identity: mgr.identity }, 'berth-controller-manager running');
  onShutdown(log, async () => {
    metrics?.close();
    await mgr.stop();
    client.close();
  });
});
