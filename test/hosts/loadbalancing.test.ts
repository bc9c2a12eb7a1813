import fsp from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import type { Task, TargetGroup } from '../../pkg/api/kinds.ts';
import { parseShowStat, runtimeCommand, serverName } from '../../pkg/lb/haproxy.ts';
import { LoadBalancerHost } from '../../pkg/lb/lb.ts';
import { newLogger } from '../../pkg/log/log.ts';
import { freePort } from '../support/etcd.ts';
import { eventually } from '../support/fleet.ts';
import { httpGet } from '../support/haproxy.ts';
import { registerTaskDefinition } from '../support/hostsapi.ts';
import { startTopology, type TopoHost, type Topology } from '../support/topology.ts';

/**
 * berth-lb (pkg/lb's LoadBalancerHost, Debian's HAProxy) in the root namespace, on its
 * address on the topology network, fronting a service spread over three hosts: requests
 * reach tasks on several hosts; when one host's link goes down, HAProxy's own checks take
 * its target out of rotation within the unhealthy threshold x interval (+ one check timeout)
 * and requests keep succeeding, answered only by the other hosts' tasks.
 */
const INTERVAL_S = 2;
const TIMEOUT_S = 1;
const UNHEALTHY = 2;
/**
 * the checks' own bound, plus slack for the check schedule's phase, the test's polling and a
 * loaded CI machine (the first CI run, both lanes at once on 2 cores, missed a 2 s slack)
 */
const OUT_OF_ROTATION_MS = (UNHEALTHY * INTERVAL_S + TIMEOUT_S) * 1000 + 8_000;

describe('load balancing across hosts: berth-lb on HAProxy fronting tasks on three hosts, one host cut off', function () {
  this.timeout(240_000);
  let t: Topology;
  let lb: LoadBalancerHost | undefined;
  let lbDir = '';
  let lbAddr = '';
  let lbPort = 0;
  let cut: TopoHost | undefined;

  /** one GET through the load balancer on a new connection: the body is the answering container's hostname */
  const get = () => httpGet(lbAddr, lbPort, '/', 15_000);
  /** which host runs the container whose hostname (the first 12 characters of its id) answered */
  const hostOf = async (): Promise<Map<string, string>> => {
    const m = new Map<string, string>();
    for (const h of t.hosts) {
      for (const c of await h.docker.listContainers({ filters: { label: ['com.amazonaws.ecs.task-definition-family=lbx'] } })) m.set(c.Id.slice(0, 12), h.name);
    }
    return m;
  };
  const servers = async () => parseShowStat(await runtimeCommand(path.join(lbDir, 'admin.sock'), 'show stat')).filter((s) => s.server !== 'BACKEND' && s.server !== 'FRONTEND');

  before(async function () {
    this.timeout(400_000);
    t = await startTopology({
      hosts: 3,
      apiservers: 1,
      controllerManagers: 1,
      controllerManagerArgs: ['--instance-heartbeat-timeout', '60', '--instance-lost-grace', '120', '--controllers', 'service,placement,daemon,instancehealth,gc,targets'],
    });
    // the root namespace's address on the topology network (x.x.x.1 of its /24)
    lbAddr = t.subnet.replace(/\.0\/24$/, '.1');
    lbPort = await freePort();
    lbDir = await fsp.mkdtemp(path.join(t.dir, 'lb-'));
    lb = new LoadBalancerHost({ client: t.client, log: newLogger({ level: 'warn' }).child({ component: 'lb' }), dir: lbDir, bindAddress: lbAddr, syncMs: 500 });
    await lb.start();
    await t.client.create({
      apiVersion: 'berth.dev/v1', kind: 'TargetGroup', metadata: { name: 'lbx' },
      spec: { protocol: 'HTTP', port: 80, healthCheckPath: '/health', healthCheckIntervalSeconds: INTERVAL_S, healthCheckTimeoutSeconds: TIMEOUT_S, healthyThresholdCount: 2, unhealthyThresholdCount: UNHEALTHY, deregistrationDelaySeconds: 3 },
    });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'LoadBalancer', metadata: { name: 'lbx' }, spec: { listeners: [{ protocol: 'HTTP', loadBalancerPort: lbPort, targetGroupArn: 'lbx' }] } });
    await registerTaskDefinition(t, 'lbx', {
      containerDefinitions: [{
        name: 'web', image: 'busybox', memory: 32, portMappings: [{ containerPort: 80, hostPort: 0 }],
        command: ['sh', '-c', 'mkdir -p /www && hostname > /www/index.html && echo ok > /www/health && exec httpd -f -p 80 -h /www'],
      }],
    });
    await t.client.create({
      apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'lbx', namespace: 'default' },
      spec: {
        taskDefinition: 'lbx', desiredCount: 3, healthCheckGracePeriodSeconds: 0, placementStrategy: [{ type: 'spread', field: 'instanceId' }],
        loadBalancers: [{ targetGroupArn: 'lbx', containerName: 'web', containerPort: 80 }],
        deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200 },
      },
    });
  });

  after(async function () {
    this.timeout(120_000);
    cut?.linkUp();
    const pid = lb?.haproxyPid;
    await lb?.stop();
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL'); // by pid, if it outlived stop()
      } catch {
        /* gone */
      }
    }
    await t?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && t) console.error(t.logs(2000));
  });

  it('serves from tasks on several hosts; a host cut off leaves rotation within unhealthy threshold x interval and the others keep answering', async () => {
    // three targets, one per host, healthy in HAProxy and in the target group
    const targets = await eventually(async () => {
      const tg = await t.client.get<TargetGroup>('TargetGroup', undefined, 'lbx');
      const ts = tg.status?.targets ?? [];
      return ts.length === 3 && ts.every((x) => x.state === 'healthy') ? ts : undefined;
    }, 150_000, 'three healthy targets in target group lbx');
    const hostIps = new Set(t.hosts.map((h) => h.ip));
    expect(targets.map((x) => x.id).sort(), 'each target is a host\'s address on the topology network').to.deep.equal([...hostIps].sort());

    let where = await hostOf();
    /** requests one after another, while `more(i)`: which host answered each, and what failed */
    const served = async (more: (i: number) => boolean) => {
      const by: string[] = [];
      const failures: string[] = [];
      for (let i = 0; more(i); i++) {
        const r = await get();
        if ('error' in r) failures.push(r.error);
        else if (r.status !== 200) failures.push(`HTTP ${r.status}`);
        else by.push(where.get(r.body) ?? `unknown:${r.body}`);
      }
      return { by, failures };
    };
    const before = await served((i) => i < 12);
    expect(before.failures, 'requests before the cut').to.deep.equal([]);
    expect(new Set(before.by).size, `hosts answering before the cut: ${before.by.join(',')}`).to.be.at.least(2);

    // the host to cut: one that answered
    const tasks = (await t.client.list<Task>('Task', 'default')).items.filter((x) => x.spec.group === 'service:lbx' && x.status?.lastStatus === 'RUNNING');
    cut = t.hosts.find((h) => before.by.includes(h.name) && tasks.some((x) => x.spec.containerInstance === h.instanceId))!;
    const others = t.hosts.filter((h) => h !== cut).map((h) => h.name);

    // a request loop through the cut
    let looping = true;
    const loop = served(() => looping);

    const cutTarget = targets.find((x) => x.id === cut!.ip)!;
    const cutServer = serverName(cutTarget.id, cutTarget.port);
    expect((await servers()).find((x) => x.server === cutServer)?.status, `${cutServer} before the cut`).to.match(/^UP/);
    const tCut = Date.now();
    cut.linkDown();
    await eventually(async () => {
      const s = (await servers()).find((x) => x.server === cutServer);
      return s !== undefined && s.status.startsWith('DOWN');
    }, OUT_OF_ROTATION_MS, `${cut.name}'s target DOWN in HAProxy within ${OUT_OF_ROTATION_MS} ms`);
    const outMs = Date.now() - tCut;
    console.log(`      ${cut.name}'s target out of rotation ${outMs} ms after its link went down (bound ${OUT_OF_ROTATION_MS} ms)`);

    // after it left rotation: every request succeeds, answered only by the other hosts
    const tOut = Date.now();
    await new Promise((r) => setTimeout(r, 3_000));
    looping = false;
    const { by: during, failures: duringFailures } = await loop;
    // the service may have replaced the cut-off task (its target failed its checks) on another host
    where = await hostOf();
    const after = await served((i) => i < 12);
    expect(duringFailures, 'requests during and after the cut').to.deep.equal([]);
    expect(after.failures, 'requests after the cut').to.deep.equal([]);
    expect(after.by.every((h) => others.includes(h)), `answered after the cut by ${after.by.join(',')} (only ${others.join(',')})`).to.equal(true);
    expect(new Set(after.by).size, 'both remaining hosts answer').to.equal(2);
    expect(during.length, 'requests answered while the host was cut off').to.be.greaterThan(0);
    // and berth-lb wrote HAProxy's verdict into the target group
    await eventually(async () => {
      const tg = await t.client.get<TargetGroup>('TargetGroup', undefined, 'lbx');
      const mine = (tg.status?.targets ?? []).filter((x) => x.id === cut!.ip);
      return mine.length > 0 && mine.every((x) => x.state === 'unhealthy' || x.state === 'draining');
    }, 10_000, `${cut.name}'s target unhealthy (or draining) in the target group`);
    expect(Date.now() - tOut).to.be.lessThan(60_000);
  });
});
