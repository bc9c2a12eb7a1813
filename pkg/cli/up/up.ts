/**
 * `berth up`: one machine, one process. The apiserver on the embedded store (TLS and plain
 * HTTP on one loopback port), the ECS API on the same port, the controllers, and an agent
 * on the local Docker (berth's own dockerd when none answers); writes the kubeconfig and the
 * AWS credentials; creates the `default` cluster; prints how to use it.
 */
import { Keyring } from '../../secrets/keyring.ts';
import { buildApiServer, listen, parseListen, type ApiParts, type FrontDoor } from '../../apiserver/apiserver.ts';
import { Kinds } from '../../api/kinds.ts';
import { isBerthError, badRequest } from '../../errors/errors.ts';
import type { Logger } from '../../log/log.ts';
import { openStore } from '../../store/open.ts';
import { ensureSelfSignedCert } from '../../tls/selfsigned.ts';
import { findDocker, startDockerd } from '../../dockerd/dockerd.ts';
import { ensureBusyboxImage } from '../../dockerd/image.ts';
import { isLoopback } from '../../cmdutil/cmdutil.ts';
import { join } from 'node:path';
import { ensureCredentials, writeClientFiles, type Credentials, type UpFiles } from './files.ts';

/** Something `up` started and stops on the way out. */
export interface Component {
  name: string;
  stop(): Promise<void>;
}

export interface UpHooks {
  /** the ECS API front door (SigV4 keys from the access-key file) */
  ecsFrontDoor?: (parts: ApiParts, accessKeyFile: string, region: string) => FrontDoor;
  startControllers?: (server: string, caPem: string, token: string, log: Logger) => Promise<Component>;
  /** berth-lb on loopback: listeners of load balancers bind 127.0.0.1 */
  startLoadBalancer?: (server: string, caPem: string, token: string, dir: string, log: Logger) => Promise<Component>;
  startAgent?: (o: { server: string; caPem: string; bootstrapToken: string; dockerHost: string; dataDir: string; log: Logger }) => Promise<Component>;
}

export interface UpOptions {
  files: UpFiles;
  listen: string;
  region: string;
  /** run an agent on the local Docker (default true) */
  agent: boolean;
  /** the agent's runtime: hollow needs no Docker */
  runtime?: 'docker' | 'hollow';
  log: Logger;
  out: (line: string) => void;
}

export interface Running {
  url: string;
  credentials: Credentials;
  components: Component[];
  stop(): Promise<void>;
}

export async function up(o: UpOptions, hooks: UpHooks): Promise<Running> {
  const { host } = parseListen(o.listen);
  if (!isLoopback(host)) throw badRequest(`--listen ${o.listen}: berth up serves on loopback only; run berth-apiserver with --token-auth-file and TLS for anything else`);
  const components: Component[] = [];
  const stopAll = async () => {
    for (const c of [...components].reverse()) {
      try {
        await c.stop();
      } catch (e) {
        o.log.warn({ component: c.name, err: (e as Error).message }, 'stopping failed');
      }
    }
  };
  try {
    const creds = await ensureCredentials(o.files);
    const cert = await ensureSelfSignedCert(o.files.pkiDir);
    const store = await openStore(`embedded:${o.files.dataDir}`);
    components.push({ name: 'store', stop: () => store.close() });
    const api = await buildApiServer({
      store,
      log: o.log.child({ component: 'apiserver' }),
      tokens: creds.tokens,
      auditLog: o.files.auditLog,
      console: true,
      keyring: Keyring.ensureFile(o.files.encryptionKeyFile),
      frontDoors: hooks.ecsFrontDoor ? (parts) => [hooks.ecsFrontDoor!(parts, o.files.accessKeyFile, o.region)] : undefined,
    });
    components.push({ name: 'watch cache', stop: async () => api.stop() });
    const { server, url } = await listen(api.handler, { listen: o.listen, tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile, alsoPlain: true }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') throw badRequest(`${o.listen} is in use: is another berth up running? (stop it, or pass --listen 127.0.0.1:PORT)`);
      throw e;
    });
    components.push({
      name: 'listener',
      stop: async () => {
        server.close();
        server.closeAllConnections();
      },
    });
    // the default cluster, as ECS creates it on first use
    try {
      await api.registry.create(Kinds.Cluster, undefined, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } }, { user: 'berth-up' });
    } catch (e) {
      if (!isBerthError(e, 'AlreadyExists')) throw e;
    }
    await writeClientFiles(o.files, creds, url, cert.certPem);

    if (hooks.startControllers) components.push(await hooks.startControllers(url, cert.certPem, creds.admin.token, o.log.child({ component: 'controller-manager' })));
    if (hooks.startLoadBalancer) {
      try {
        components.push(await hooks.startLoadBalancer(url, cert.certPem, creds.admin.token, join(o.files.home, 'lb'), o.log.child({ component: 'lb' })));
      } catch (e) {
        o.log.warn({ err: (e as Error).message }, 'berth-lb did not start (install haproxy); load balancers will not serve');
      }
    }
    if (o.agent && hooks.startAgent) {
      let socket = o.runtime === 'hollow' ? '/dev/null' : await findDocker();
      if (!socket) {
        o.out('berth: no Docker daemon answers; starting berth\'s own dockerd');
        const d = await startDockerd({ dir: o.files.dockerDir, bridgeName: 'berth0', octet: 15, liveRestore: true });
        components.push({ name: 'dockerd', stop: d.stop });
        socket = d.socketPath;
      }
      if (o.runtime !== 'hollow') {
        // no registry may be reachable: make sure the local busybox image the examples use exists
        try {
          const Docker = (await import('dockerode')).default;
          await ensureBusyboxImage(new Docker({ socketPath: socket }));
        } catch (e) {
          o.log.warn({ err: (e as Error).message }, 'could not build the local busybox image (install busybox-static); examples that use it will fail to pull');
        }
      }
      components.push(await hooks.startAgent({ server: url, caPem: cert.certPem, bootstrapToken: creds.bootstrap.token, dockerHost: `unix://${socket}`, dataDir: o.files.agentDir, log: o.log.child({ component: 'agent' }) }));
    }
    const plain = url.replace(/^https:/, 'http:');
    // the console's one-time link: the code rides in the fragment, which no server log sees, and
    // opens a session of its own (the admin token never goes to the browser)
    const { admin } = creds;
    const loginCode = api.consoleLogins!.issueCode({ user: admin.user, uid: admin.uid, groups: admin.groups });
    o.out(
      [
        `berth is up on ${url}`,
        '',
        `  kubectl:  kubectl --kubeconfig ${o.files.kubeconfig} get clusters`,
        `  berth:    npx berth get services        (reads ${o.files.kubeconfig})`,
        `  AWS SDK:  endpoint ${plain}  region ${o.region}`,
        `            AWS_SHARED_CREDENTIALS_FILE=${o.files.awsCredentials} AWS_PROFILE=berth`,
        `            aws ecs list-clusters --endpoint-url ${plain} --region ${o.region}`,
        '',
        `  console:  ${plain}/ui/   (log in with a token from ${o.files.tokenFile})`,
        `            one-time login link (valid 10 minutes): ${plain}/ui/#code=${loginCode}`,
        '',
        `audit log: ${o.files.auditLog}`,
        '',
        `running: apiserver (embedded store in ${o.files.dataDir})${hooks.ecsFrontDoor ? ', ECS API' : ''}${hooks.startControllers ? ', controllers' : ''}${hooks.startLoadBalancer ? ', load balancer (haproxy on 127.0.0.1)' : ''}${o.agent && hooks.startAgent ? ', agent' : ''}. Ctrl-C stops.`,
      ].join('\n'),
    );
    return { url, credentials: creds, components, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
