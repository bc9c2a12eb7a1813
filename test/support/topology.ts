/**
 * Test support: berth on many hosts, for real, on one machine.
 *
 *   root ns (the test) --veth--+
 *   control ns: etcd x3 (TLS, client certificates), berth-apiserver xA, HAProxy, controller-manager xM
 *   host ns h1..hN: its own dockerd (bridge, address pool, iptables of its own) and berth-agent
 *   all on one bridge in a switch namespace: 198.18.K.0/24 (the benchmarking range, no real network)
 *
 * Everything that crosses hosts goes over the namespaces' network with TLS: agents and
 * controller-managers reach the apiservers through HAProxy and verify the berth CA; the
 * apiservers reach etcd with a client certificate. The processes run the binaries with the
 * flags of deploy/systemd, the agents read an ecs.config made from deploy/ecs.config, HAProxy
 * runs deploy/haproxy/haproxy.cfg's configuration. The root namespace only gains one veth
 * (removed afterwards); its iptables are never touched (each dockerd's rules live in its
 * host's namespace). Names carry `bt<pid>_<n>`; leftovers of a crashed run are swept first.
 *
 * Task addresses (awsvpc) route between hosts as in a VPC: each host's Docker bridge is a
 * /27 of 198.19.K.0/25, every host routes the others' bridges through their host address,
 * and each host's DOCKER-USER chain accepts traffic from the topology's subnet to its bridge.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import type { ContainerInstance } from '../../pkg/api/kinds.ts';
import { parseEnvFile } from '../../pkg/agent/config.ts';
import { newToken } from '../../pkg/apiserver/auth.ts';
import { Client } from '../../pkg/client/client.ts';
import { startDockerd, type OwnDockerd } from '../../pkg/dockerd/dockerd.ts';
import { ensureBusyboxImage } from '../../pkg/dockerd/image.ts';
import { caIn, createCa, issueCertificate } from '../../pkg/tls/ca.ts';
import { Cleanup } from './cleanup.ts';
import { startEtcdCluster, type EtcdCluster } from './etcdcluster.ts';
import { eventually } from './fleet.ts';
import { haproxyConfig } from './haproxy.ts';
import { startRecordingProxy, type RecordingProxy } from './recorder.ts';
import { deleteLink, deleteNetns, inNetns, ip, nsExec, nsExecAsync, spawnIn, sweepLeftovers, type Proc } from './netns.ts';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const bin = (name: string) => path.join(ROOT, 'cmd', name, 'bin.mjs');

export interface TopologyOptions {
  hosts?: number;
  apiservers?: number;
  controllerManagers?: number;
  /** extra flags for every controller-manager (e.g. shorter instance-health timeouts) */
  controllerManagerArgs?: string[];
  /** extra ecs.config entries for every agent */
  agentConfig?: Record<string, string>;
  /** extra flags for every apiserver (a scenario's short compaction retention, say); deploy/ runs without them */
  apiserverArgs?: string[];
  /**
   * put a recording proxy (test/support/recorder.ts, in the test's process, on the root
   * namespace's address) between each controller-manager and the load balancer, so a test
   * can tell which process wrote what, and when
   */
  recordControllerManagers?: boolean;
}

export interface TopoHost {
  name: string;
  ns: string;
  /** the host's own hostname (the agent runs in a UTS namespace of its own, as on a machine of its own) */
  hostname: string;
  /** the host's address on the topology network */
  ip: string;
  /** the host's Docker bridge (awsvpc and bridge-mode container addresses) */
  bridgeCidr: string;
  dockerHost: string;
  docker: Docker;
  dockerd: OwnDockerd;
  agent: Proc;
  dir: string;
  /** the agent's ECS_DATADIR (its checkpoint, berth-agent.json, is in it) */
  dataDir: string;
  /** the container instance id the agent registered */
  instanceId: string;
  /** pull the cable: the switch side of the host's link goes down (routes in the host stay) */
  linkDown(): void;
  linkUp(): void;
  /** stop the agent process (SIGTERM) and start it again on its data dir */
  restartAgent(): Promise<void>;
  /** start the agent process again (after it was killed or exited) on its data dir; a running one is left alone */
  startAgent(): Proc;
  /**
   * restart the host's dockerd (SIGTERM: without live-restore its containers stop with it),
   * on the same data root, bridge and address pool; the agent is left alone
   */
  restartDockerd(): Promise<void>;
  /** GET the agent's introspection API (ECS_INTROSPECTION_PORT on the host's loopback), e.g. `/v1/tasks` */
  introspect(urlPath: string): Promise<unknown>;
}

export interface Topology {
  id: string;
  dir: string;
  subnet: string;
  /** https://LB:6443: what agents, controller-managers and users use */
  url: string;
  /** each apiserver's own https://ADDRESS:6443 (behind the load balancer; the serving certificate names them) */
  apiserverUrls: string[];
  /** the berth CA's directory: the etcd client certificate (berth-apiserver.crt/.key) for tests that read the store */
  pkiDir: string;
  caPem: string;
  caFile: string;
  adminToken: string;
  /** a token of group berth:viewers (reads only) */
  viewerToken: string;
  bootstrapToken: string;
  accessKey: { accessKeyId: string; secretAccessKey: string };
  /** an ECS access key of group berth:viewers */
  viewerAccessKey: { accessKeyId: string; secretAccessKey: string };
  /** an admin client through the load balancer (from the root namespace) */
  client: Client;
  etcd: EtcdCluster;
  apiservers: Proc[];
  controllerManagers: Proc[];
  /** with recordControllerManagers: the requests of each controller-manager, by index */
  cmRecorders: RecordingProxy[];
  haproxy: Proc;
  hosts: TopoHost[];
  controlNs: string;
  /** start apiserver `i` again (SIGTERM first if it runs) and wait until it is ready */
  restartApiserver(i: number): Promise<void>;
  /** the last lines of every process's log, for a failing test's message */
  logs(chars?: number): string;
  stop(): Promise<void>;
}

let seq = 0;

/** A /24 of 198.18.0.0/16 that no route of this machine uses yet. */
function freeSubnet(): number {
  const used = ip('-4', 'route', 'show').split('\n');
  const start = (process.pid * 7 + seq * 13) % 250;
  for (let i = 0; i < 250; i++) {
    const k = ((start + i) % 250) + 1;
    if (!used.some((l) => l.startsWith(`198.18.${k}.`) || l.startsWith(`198.19.${k}.`))) return k;
  }
  throw new Error('no free /24 in 198.18.0.0/16');
}

/** GET a URL over TLS with the CA, resolving to the status code (0 when unreachable). */
function httpsStatus(url: string, ca: string, timeoutMs = 3000): Promise<number> {
  return new Promise((resolve) => {
    const req = httpsRequest(url, { ca, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

export async function startTopology(o: TopologyOptions = {}): Promise<Topology> {
  const nHosts = o.hosts ?? 3;
  const nApi = o.apiservers ?? 2;
  const nCm = o.controllerManagers ?? 2;
  if (nHosts < 1 || nHosts > 4) throw new Error('a topology has 1 to 4 hosts (each host has a /27 of the bridge range)');
  if (nApi < 1 || nApi > 3) throw new Error('a topology has 1 to 3 apiservers');
  sweepLeftovers();
  const id = `bt${process.pid.toString(36)}_${seq++}`;
  const cleanup = new Cleanup();
  const procs: Proc[] = [];
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `berth-topo-${id}-`));
  cleanup.add(`dir ${dir}`, () => fsp.rm(dir, { recursive: true, force: true }));
  try {
    const k = freeSubnet();
    const net = `198.18.${k}`;
    const addr = {
      root: `${net}.1`,
      etcd: [`${net}.2`, `${net}.3`, `${net}.4`],
      api: [`${net}.5`, `${net}.6`, `${net}.7`].slice(0, nApi),
      lb: `${net}.10`,
      host: (i: number) => `${net}.${11 + i}`,
      bridge: (i: number) => `198.19.${k}.${i * 32}/27`,
      bridgeGw: (i: number) => `198.19.${k}.${i * 32 + 1}/27`,
    };

    // --- the network: a switch namespace with a bridge; every namespace (and the root) plugs in
    const sw = `${id}-sw`;
    const ctl = `${id}-c`;
    const hostNs = Array.from({ length: nHosts }, (_, i) => `${id}-h${i + 1}`);
    for (const ns of [sw, ctl, ...hostNs]) {
      ip('netns', 'add', ns);
      cleanup.add(`netns ${ns}`, () => deleteNetns(ns), () => deleteNetns(ns));
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', sw, 'link', 'set', 'br0', 'up');
    const plug = (ns: string | undefined, port: string, inside: string, cidrs: string[]) => {
      const a = `${id}${port}a`;
      const b = `${id}${port}b`;
      ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
      cleanup.add(`link ${a}`, () => deleteLink(a), () => deleteLink(a));
      ip('link', 'set', b, 'netns', sw);
      ip('-n', sw, 'link', 'set', b, 'name', port);
      ip('-n', sw, 'link', 'set', port, 'master', 'br0');
      ip('-n', sw, 'link', 'set', port, 'up');
      if (ns) {
        ip('link', 'set', a, 'netns', ns);
        ip('-n', ns, 'link', 'set', a, 'name', inside);
      }
      const dev = ns ? inside : a;
      for (const c of cidrs) ip(...(ns ? ['-n', ns] : []), 'addr', 'add', c, 'dev', dev);
      ip(...(ns ? ['-n', ns] : []), 'link', 'set', dev, 'up');
    };
    plug(undefined, 'r', '', [`${addr.root}/24`]);
    plug(ctl, 'c', 'eth0', [...addr.etcd, ...addr.api, addr.lb].map((a) => `${a}/24`));
    hostNs.forEach((ns, i) => plug(ns, `h${i + 1}`, 'eth0', [`${addr.host(i)}/24`]));
    // every host routes the other hosts' Docker bridges through them (the VPC of awsvpc task addresses)
    hostNs.forEach((ns, i) => hostNs.forEach((_o, j) => j !== i && ip('-n', ns, 'route', 'add', addr.bridge(j), 'via', addr.host(j))));

    // --- certificates: one berth CA, made with the functions behind `berth certs`
    const pki = path.join(dir, 'pki');
    await createCa({ dir: pki });
    const ca = caIn(pki);
    await issueCertificate({ ca, dir: pki, base: 'apiserver', role: 'server', commonName: 'berth-apiserver', names: [addr.lb, ...addr.api, addr.root, 'berth.topology.internal'] });
    await issueCertificate({ ca, dir: pki, base: 'berth-apiserver', role: 'client', commonName: 'berth-apiserver' });
    const caPem = readFileSync(ca.certFile, 'utf8');
    const f = (n: string) => path.join(pki, n);

    // --- etcd: three members in the control namespace, TLS for clients and peers, client certificates required.
    // (deploy/ gives each member its own `berth certs etcd --member`; the fixture's members share one for all three addresses)
    await issueCertificate({ ca, dir: pki, base: 'etcd-members', role: 'peer', commonName: 'etcd', names: addr.etcd });
    const etcdEnv = parseEnvFile(readFileSync(path.join(ROOT, 'deploy/etcd/etcd-cluster.env'), 'utf8'), 'deploy/etcd/etcd-cluster.env');
    const fromDeploy = ['ETCD_MAX_TXN_OPS', 'ETCD_QUOTA_BACKEND_BYTES', 'ETCD_AUTO_COMPACTION_MODE', 'ETCD_AUTO_COMPACTION_RETENTION'];
    const etcd = await startEtcdCluster({
      members: 3,
      hosts: addr.etcd,
      wrap: () => inNetns(ctl),
      tls: { caFile: ca.certFile, certFile: f('etcd-members.crt'), keyFile: f('etcd-members.key'), clientCertFile: f('berth-apiserver.crt'), clientKeyFile: f('berth-apiserver.key') },
      extraArgs: fromDeploy.map((key) => `--${key.slice(5).toLowerCase().replace(/_/g, '-')}=${etcdEnv[key]}`),
    });
    cleanup.add('etcd', () => etcd.stop(), () => etcd.members.forEach((m) => m.pid && tryKill(m.pid)));

    // --- credentials of the apiservers (deploy/README.md: tokens.csv, access-keys.csv)
    const adminToken = newToken();
    const controllerToken = newToken();
    const bootstrapToken = newToken();
    const viewerToken = newToken();
    await fsp.writeFile(f('tokens.csv'), [
      `${adminToken},admin,1,"berth:admins"`,
      `${controllerToken},berth-controller-manager,2,"berth:admins"`,
      `${bootstrapToken},bootstrap,3,"berth:bootstrappers"`,
      `${viewerToken},viewer,4,"berth:viewers"`,
    ].join('\n') + '\n', { mode: 0o600 });
    const accessKey = { accessKeyId: 'AKIATOPOLOGY0000001', secretAccessKey: newToken() };
    const viewerAccessKey = { accessKeyId: 'AKIATOPOLOGY0000002', secretAccessKey: newToken() };
    await fsp.writeFile(f('access-keys.csv'), [
      `${accessKey.accessKeyId},${accessKey.secretAccessKey},admin,"berth:admins"`,
      `${viewerAccessKey.accessKeyId},${viewerAccessKey.secretAccessKey},viewer,"berth:viewers"`,
    ].join('\n') + '\n', { mode: 0o600 });

    const start = (ns: string | undefined, name: string, argv: string[], env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME }) => {
      const p = spawnIn(ns, name, argv, { logFile: path.join(dir, `${name}.log`), env, cwd: ROOT });
      procs.push(p);
      cleanup.add(`process ${name}`, () => p.stop(10_000), () => tryKill(p.pid));
      return p;
    };

    // --- apiservers: deploy/systemd/berth-apiserver.service's flags
    const apiserverCmd = (a: string) => [process.execPath, bin('berth-apiserver'), ...apiserverArgv({
      store: etcd.storeUrl, ca: ca.certFile, etcdCert: f('berth-apiserver.crt'), etcdKey: f('berth-apiserver.key'), listen: `${a}:6443`,
      cert: f('apiserver.crt'), key: f('apiserver.key'), tokens: f('tokens.csv'), accessKeys: f('access-keys.csv'),
      // HAProxy runs in the control namespace and connects from one of its addresses
      proxyTrusted: [...addr.etcd, ...addr.api, addr.lb].map((x) => `${x}/32`).join(','),
    }), ...(o.apiserverArgs ?? [])];
    const apiserverReady = (p: Proc, i: number) => eventually(async () => {
      if (!p.running) throw new Error(`${p.name} exited:\n${p.tail()}`);
      return (await httpsStatus(`https://${addr.api[i]}:6443/readyz`, caPem)) === 200;
    }, 90_000, `${p.name} ready`);
    const apiservers = addr.api.map((a, i) => start(ctl, `apiserver-${i + 1}`, apiserverCmd(a)));
    await Promise.all(apiservers.map((p, i) => apiserverReady(p, i)));

    // --- HAProxy: deploy/haproxy/haproxy.cfg with this topology's addresses
    await fsp.writeFile(path.join(dir, 'haproxy.cfg'), haproxyConfig({ bind: `${addr.lb}:6443`, servers: addr.api.map((a, i) => ({ name: `apiserver-${i + 1}`, address: `${a}:6443` })), caFile: ca.certFile, sendProxy: true }));
    const haproxy = start(ctl, 'haproxy', ['haproxy', '-db', '-f', path.join(dir, 'haproxy.cfg')]);
    const url = `https://${addr.lb}:6443`;
    await eventually(async () => {
      if (!haproxy.running) throw new Error(`haproxy exited:\n${haproxy.tail()}`);
      return (await httpsStatus(`${url}/readyz`, caPem)) === 200;
    }, 30_000, 'the load balancer');
    const client = new Client({ server: url, token: adminToken, ca: caPem, userAgent: 'berth-topology-test' });
    cleanup.add('admin client', () => client.close());
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } }).catch((e: Error) => {
      if (!/exists/i.test(e.message)) throw e;
    });

    // --- controller-managers: deploy/systemd/berth-controller-manager.service's flags
    const cmRecorders: RecordingProxy[] = [];
    if (o.recordControllerManagers) {
      for (let i = 0; i < nCm; i++) {
        const r = await startRecordingProxy({ host: addr.root, certFile: f('apiserver.crt'), keyFile: f('apiserver.key'), upstream: url, caPem });
        cleanup.add(`recorder ${i + 1}`, () => r.close());
        cmRecorders.push(r);
      }
    }
    const controllerManagers = Array.from({ length: nCm }, (_, i) =>
      start(ctl, `controller-manager-${i + 1}`, [process.execPath, bin('berth-controller-manager'), ...controllerManagerArgv({
        server: cmRecorders[i]?.url ?? url, ca: ca.certFile, token: controllerToken,
        extra: o.controllerManagerArgs ?? ['--instance-heartbeat-timeout', '60', '--instance-lost-grace', '120'],
      })]),
    );

    // --- hosts: a dockerd and an agent each, in parallel
    const deployEcsConfig = readFileSync(path.join(ROOT, 'deploy/ecs.config'), 'utf8');
    const hosts = await Promise.all(hostNs.map(async (ns, i): Promise<TopoHost> => {
      const name = `h${i + 1}`;
      const hdir = path.join(dir, name);
      await fsp.mkdir(path.join(hdir, 'ecs'), { recursive: true });
      const dockerdOptions = {
        dir: path.join(hdir, 'docker'), netns: ns, bridgeName: 'docker0', octet: 0,
        bridgeCidr: addr.bridgeGw(i), addressPool: `base=198.19.${k}.128/25,size=28`,
      };
      let dockerd = await startDockerd(dockerdOptions);
      // the current dockerd (restartDockerd replaces it)
      cleanup.add(`dockerd ${name}`, () => dockerd.stop(), () => tryKill(dockerd.pid));
      const docker = new Docker({ socketPath: dockerd.socketPath });
      await ensureBusyboxImage(docker);
      // the VPC: other hosts (and the test) may reach this host's task addresses
      const vpcRule = ['DOCKER-USER', '-s', `${net}.0/24`, '-d', addr.bridge(i), '-j', 'ACCEPT'];
      nsExec(ns, 'iptables', '-I', ...vpcRule);
      // the agent: only ecs.config (deploy/ecs.config with this host's values) and a bare environment
      const cfgFile = path.join(hdir, 'ecs.config');
      const dataDir = path.join(hdir, 'ecs', 'data');
      const overrides: Record<string, string> = {
        ECS_CLUSTER: 'default',
        ECS_BACKEND_HOST: url,
        BERTH_CA_FILE: ca.certFile,
        BERTH_BOOTSTRAP_TOKEN: bootstrapToken,
        ECS_DATADIR: dataDir,
        ECS_LOGFILE: '', // stdout, into this process's log
        DOCKER_HOST: `unix://${dockerd.socketPath}`,
        ECS_CONTAINER_STOP_TIMEOUT: '5s',
        ECS_INSTANCE_ATTRIBUTES: JSON.stringify({ stack: 'topology', host: name }),
        // no registry reaches these hosts (images are imported): as deploy/ecs.config says for such hosts
        ECS_IMAGE_PULL_BEHAVIOR: 'prefer-cached',
        ...o.agentConfig,
      };
      await fsp.writeFile(cfgFile, ecsConfigFrom(deployEcsConfig, overrides));
      // each host is a machine of its own: its own hostname too (a UTS namespace for the agent),
      // so what the agent derives from the hostname (its host fingerprint) differs between hosts
      const hostname = `${id.replace(/_/g, '-')}-${name}`;
      // and its own /etc/machine-id (what the agent's host fingerprint is made of, so a data dir copied
      // from another host is refused as on real hosts), bind-mounted in a mount namespace of the agent's
      const machineIdFile = path.join(hdir, 'machine-id');
      writeFileSync(machineIdFile, `${randomBytes(16).toString('hex')}\n`);
      const agentArgv = [
        'unshare', '--uts', '--mount', '--propagation', 'private', '--',
        'sh', '-c', 'mount --bind "$1" /etc/machine-id && hostname "$0" && shift && exec "$@"',
        hostname, machineIdFile, process.execPath, bin('berth-agent'), '--config', cfgFile,
      ];
      const introspectionPort = Number(parseEnvFile(ecsConfigFrom(deployEcsConfig, overrides)).ECS_INTROSPECTION_PORT ?? 51678);
      const h: TopoHost = {
        name, ns, hostname, ip: addr.host(i), bridgeCidr: addr.bridge(i), dockerHost: `unix://${dockerd.socketPath}`, docker, dockerd, dir: hdir, dataDir, instanceId: '',
        agent: start(ns, `agent-${name}`, agentArgv),
        linkDown: () => ip('-n', sw, 'link', 'set', name, 'down'),
        linkUp: () => ip('-n', sw, 'link', 'set', name, 'up'),
        async restartAgent() {
          await h.agent.stop();
          h.agent = start(ns, `agent-${name}`, agentArgv);
        },
        startAgent() {
          if (!h.agent.running) h.agent = start(ns, `agent-${name}`, agentArgv);
          return h.agent;
        },
        async restartDockerd() {
          await dockerd.stop();
          dockerd = await startDockerd(dockerdOptions);
          h.dockerd = dockerd;
          try {
            nsExec(ns, 'iptables', '-C', ...vpcRule);
          } catch {
            nsExec(ns, 'iptables', '-I', ...vpcRule);
          }
        },
        async introspect(urlPath: string) {
          const out = await nsExecAsync(ns, 'curl', '-sS', '--max-time', '10', `http://127.0.0.1:${introspectionPort}${urlPath}`);
          return JSON.parse(out) as unknown;
        },
      };
      return h;
    }));
    // every agent registered (its instance says which host it is)
    await eventually(async () => {
      for (const h of hosts) if (!h.agent.running) throw new Error(`agent of ${h.name} exited:\n${h.agent.tail()}`);
      const cis = (await client.list<ContainerInstance>('ContainerInstance', 'default')).items;
      for (const h of hosts) h.instanceId = cis.find((c) => c.spec.attributes?.some((a) => a.name === 'host' && a.value === h.name))?.metadata.name ?? '';
      return hosts.every((h) => h.instanceId);
    }, 120_000, 'every agent registered');

    const topo: Topology = {
      id, dir, subnet: `${net}.0/24`, url, apiserverUrls: addr.api.map((a) => `https://${a}:6443`), pkiDir: pki, caPem, caFile: ca.certFile,
      adminToken, viewerToken, bootstrapToken, accessKey, viewerAccessKey, client, etcd,
      apiservers, controllerManagers, cmRecorders, haproxy, hosts, controlNs: ctl,
      async restartApiserver(i: number) {
        await apiservers[i].stop();
        apiservers[i] = start(ctl, `apiserver-${i + 1}`, apiserverCmd(addr.api[i]));
        await apiserverReady(apiservers[i], i);
      },
      // one entry per process name (a restarted agent appends to the same log file)
      logs: (chars = 1500) => [...new Map(procs.map((p) => [p.name, p])).values()].map((p) => `--- ${p.name} (pid ${p.pid}${p.running ? '' : ', exited'})\n${p.tail(chars)}`).join('\n'),
      async stop() {
        const failed = await cleanup.run();
        if (failed.length) throw new Error(`topology ${id}: cleanup failed: ${failed.join('; ')}`);
      },
    };
    return topo;
  } catch (e) {
    const tails = procs.map((p) => `--- ${p.name}\n${p.tail(1500)}`).join('\n');
    await cleanup.run();
    (e as Error).message += tails ? `\n${tails}` : '';
    throw e;
  }
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** berth-apiserver's flags, as deploy/systemd/berth-apiserver.service passes them (a test compares the two). */
export function apiserverArgv(v: {
  store: string; ca: string; etcdCert: string; etcdKey: string; listen: string; cert: string; key: string; tokens: string; accessKeys: string;
  /** the load balancer's address (CIDR): it sends the PROXY protocol, so agents' real addresses count */
  proxyTrusted: string;
}): string[] {
  return [
    '--store', v.store,
    '--etcd-cafile', v.ca, '--etcd-certfile', v.etcdCert, '--etcd-keyfile', v.etcdKey,
    '--listen', v.listen,
    '--tls-cert-file', v.cert, '--tls-private-key-file', v.key,
    '--token-auth-file', v.tokens,
    '--access-key-file', v.accessKeys, '--region', 'us-east-1',
    '--proxy-protocol-trusted', v.proxyTrusted,
    '--log-level', 'info',
  ];
}

/** berth-controller-manager's flags, as deploy/systemd/berth-controller-manager.service passes them. */
export function controllerManagerArgv(v: { server: string; ca: string; token: string; extra: string[] }): string[] {
  return ['--server', v.server, '--certificate-authority', v.ca, '--token', v.token, '--controllers', 'service,placement,daemon,instancehealth,gc', ...v.extra];
}

/** deploy/ecs.config with some values replaced (and others added): the file an operator edits. */
export function ecsConfigFrom(deployFile: string, overrides: Record<string, string>): string {
  const left = new Map(Object.entries(overrides));
  const lines = deployFile.split('\n').map((line) => {
    const m = /^([A-Z_][A-Z0-9_]*)=/.exec(line);
    if (!m || !left.has(m[1])) return line;
    const v = left.get(m[1])!;
    left.delete(m[1]);
    return `${m[1]}=${v}`;
  });
  return [...lines, ...[...left].map(([key, v]) => `${key}=${v}`)].join('\n') + '\n';
}
