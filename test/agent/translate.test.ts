import { expect } from 'chai';
import { ContainerDefinition } from '../../pkg/api/taskdefinition.ts';
import type { RuntimeTask } from '../../pkg/agent/runtime/runtime.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import {
  daemonNames,
  daemonSysctlScript,
  fromInspect,
  parseEventLine,
  splitTaskLimits,
  taskNamespaceBody,
  taskNamespaceName,
  taskVolumeName,
  toCreateBody,
  type DockerInspect,
} from '../../pkg/agent/runtime/translate.ts';
import { taskCgroupLimits } from '../../pkg/agent/runtime/cgroup.ts';

const task = (defs: unknown[], o: Partial<RuntimeTask> = {}): RuntimeTask => ({
  taskArn: 'arn:aws:ecs:r:0:task/c/abc',
  cluster: 'c',
  instance: 'i1',
  family: 'f',
  revision: 2,
  networkMode: 'bridge',
  containers: defs.map((d) => ContainerDefinition.parse(d)),
  ...o,
});
const cfg = { disablePrivileged: false, availableLoggingDrivers: ['json-file'] };
const body = (t: RuntimeTask, i = 0, o: Record<string, unknown> = {}) => toCreateBody(t, t.containers[i], { name: 'n', peers: {}, resources: { volumeSources: {}, namespaceContainerId: 'ns1' }, config: cfg, daemonNamespaceId: 'dns', ...o });

describe('Docker translation (pure)', () => {
  it('D9: names and labels carry the owner; two instances never share a name', () => {
    const a = task([{ name: 'x', image: 'i', memory: 8 }], { instance: 'i1' });
    const b = task([{ name: 'x', image: 'i', memory: 8 }], { instance: 'i2' });
    expect(taskNamespaceName(a)).to.not.equal(taskNamespaceName(b));
    expect(taskVolumeName(a, 'v')).to.not.equal(taskVolumeName(b, 'v'));
    const na = daemonNames({ cluster: 'c', instance: 'i1' });
    const nb = daemonNames({ cluster: 'c', instance: 'i2' });
    const nc = daemonNames({ cluster: 'other', instance: 'i1' });
    expect(new Set([na.network, nb.network, nc.network]).size).to.equal(3);
    for (const n of [na, nb, nc]) expect(n.bridge.length, 'a Linux interface name').to.be.at.most(15);
    expect(body(a).Labels).to.include({ [LABELS.cluster]: 'c', [LABELS.instance]: 'i1', [LABELS.taskArn]: a.taskArn, [LABELS.containerName]: 'x' });
  });

  it('network modes, pidMode and ipcMode', () => {
    const table: Array<[Partial<RuntimeTask>, string, string | undefined, string | undefined]> = [
      [{ networkMode: 'bridge' }, 'bridge', undefined, undefined],
      [{ networkMode: 'host', pidMode: 'host', ipcMode: 'host' }, 'host', 'host', 'host'],
      [{ networkMode: 'none', ipcMode: 'none' }, 'none', undefined, 'none'],
      [{ networkMode: 'awsvpc', pidMode: 'task', ipcMode: 'task' }, 'container:ns1', 'container:ns1', 'container:ns1'],
      [{ networkMode: 'daemon_bridge' }, 'container:dns', undefined, undefined],
    ];
    for (const [o, net, pid, ipc] of table) {
      const h = body(task([{ name: 'x', image: 'i', memory: 8 }], o)).HostConfig!;
      expect([h.NetworkMode, h.PidMode, h.IpcMode], JSON.stringify(o)).to.deep.equal([net, pid, ipc]);
    }
  });

  it('the agent\'s DNS is the resolver of bridge and host containers and awsvpc namespaces, unless a definition names its own', () => {
    const dns = (o: Partial<RuntimeTask>, def: Record<string, unknown> = {}) => body(task([{ name: 'x', image: 'i', memory: 8, ...def }], o), 0, { config: { ...cfg, dnsServers: ['172.17.0.1'] } }).HostConfig!.Dns;
    expect(dns({ networkMode: 'bridge' })).to.deep.equal(['172.17.0.1']);
    expect(dns({ networkMode: 'host' })).to.deep.equal(['172.17.0.1']);
    expect(dns({ networkMode: 'bridge' }, { dnsServers: ['9.9.9.9'] })).to.deep.equal(['9.9.9.9']);
    for (const networkMode of ['none', 'awsvpc', 'daemon_bridge'] as const) expect(dns({ networkMode }), networkMode).to.equal(undefined);
    const vpc = task([{ name: 'x', image: 'i', memory: 8 }], { networkMode: 'awsvpc' });
    expect(taskNamespaceBody(vpc, 'img', ['172.17.0.1']).HostConfig!.Dns).to.deep.equal(['172.17.0.1']);
    expect(taskNamespaceBody(vpc, 'img').HostConfig!.Dns).to.equal(undefined);
    expect(taskNamespaceBody(task([{ name: 'x', image: 'i', memory: 8 }], { pidMode: 'task' }), 'img', ['172.17.0.1']).HostConfig!.Dns, 'not a network namespace').to.equal(undefined);
  });

  it('D12: sysctls go where Docker accepts them: net.* to the namespace owner, IPC ones to the container', () => {
    const sc = [{ namespace: 'net.core.somaxconn', value: '1024' }, { namespace: 'kernel.shmmax', value: '68719476736' }];
    const def = [{ name: 'x', image: 'i', memory: 8, systemControls: sc }];
    expect(body(task(def)).HostConfig!.Sysctls).to.deep.equal({ 'net.core.somaxconn': '1024', 'kernel.shmmax': '68719476736' });
    // awsvpc: net.* on the task namespace, the IPC one on the container (it has its own IPC namespace)
    const vpc = task(def, { networkMode: 'awsvpc' });
    expect(body(vpc).HostConfig!.Sysctls).to.deep.equal({ 'kernel.shmmax': '68719476736' });
    expect(taskNamespaceBody(vpc, 'img').HostConfig!.Sysctls).to.deep.equal({ 'net.core.somaxconn': '1024' });
    // ipcMode task: the IPC one on the task namespace, which owns the IPC namespace
    const shared = task(def, { networkMode: 'awsvpc', ipcMode: 'task' });
    expect(body(shared).HostConfig!.Sysctls).to.equal(undefined);
    expect(taskNamespaceBody(shared, 'img').HostConfig).to.deep.include({ IpcMode: 'shareable', Sysctls: { 'net.core.somaxconn': '1024', 'kernel.shmmax': '68719476736' } });
    // daemons: net.* are set in the daemon namespace by a helper
    const d = task(def, { networkMode: 'daemon_bridge' });
    expect(body(d).HostConfig!.Sysctls).to.deep.equal({ 'kernel.shmmax': '68719476736' });
    expect(daemonSysctlScript(d)).to.equal("sysctl -w 'net.core.somaxconn=1024'");
  });

  it('task-level cpu and memory shared out so the containers sum to the task (no task cgroup)', () => {
    const t = task(
      [
        { name: 'a', image: 'i', memory: 100, cpu: 256 },
        { name: 'b', image: 'i', memoryReservation: 100, cpu: 512 },
        { name: 'c', image: 'i', memoryReservation: 300, cpu: 256 },
      ],
      { cpu: 1024, memory: 500 },
    );
    const s = splitTaskLimits(t);
    expect(s.a.memoryMiB, 'a keeps its own hard limit').to.equal(undefined);
    expect([s.b.memoryMiB, s.c.memoryMiB]).to.deep.equal([100, 300]);
    expect(100 + s.b.memoryMiB! + s.c.memoryMiB!).to.equal(500);
    expect(s.a.nanoCpus! + s.b.nanoCpus! + s.c.nanoCpus!).to.equal(1e9);
    expect(body(t, 1).HostConfig).to.include({ Memory: 100 * 1024 * 1024, NanoCpus: 5e8 });
    // with a task cgroup the limits are the cgroup's
    const h = toCreateBody(t, t.containers[1], { name: 'n', peers: {}, resources: { volumeSources: {} }, config: cfg, cgroupParent: '/berth/x' }).HostConfig!;
    expect(h.CgroupParent).to.equal('/berth/x');
    expect(h.NanoCpus).to.equal(undefined);
    expect(taskCgroupLimits({ cpu: 256, memory: 512 }, { cpuPeriodMs: 100, pidsLimit: 100 })).to.deep.equal({ cpuPeriodUs: 100_000, cpuQuotaUs: 25_000, memoryBytes: 512 * 1024 * 1024, pids: 100 });
  });

  it('ECS_EXCLUDE_IPV6_PORTBINDING: a port bound on 0.0.0.0 and :: is reported once by default', () => {
    const i = {
      Id: 'id',
      Name: '/n',
      Config: { Image: 'i', Labels: {}, StopTimeout: 12 },
      State: { Status: 'running', ExitCode: 0, StartedAt: '2024-01-01T00:00:00Z', FinishedAt: '0001-01-01T00:00:00Z' },
      NetworkSettings: { Ports: { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '32768' }, { HostIp: '::', HostPort: '32768' }] }, Networks: {} },
    } as unknown as DockerInspect;
    expect(fromInspect(i).networkBindings).to.deep.equal([{ containerPort: 80, hostPort: 32768, protocol: 'tcp', bindIP: '0.0.0.0' }]);
    expect(fromInspect(i, { excludeIpv6: false }).networkBindings).to.have.length(2);
    expect(fromInspect(i).stopTimeoutMs).to.equal(12_000);
  });

  it('D8: events outside the ECS allowlist (exec_*, attach, ...) are dropped; die carries its exit code', () => {
    const ev = (Action: string, extra: Record<string, string> = {}) => JSON.stringify({ Type: 'container', Action, Actor: { ID: 'c1', Attributes: { 'com.amazonaws.ecs.task-arn': 't', image: 'x', ...extra } }, timeNano: 1_700_000_000_123_000_000 });
    for (const a of ['exec_create: sh', 'exec_start: sh', 'exec_die', 'attach', 'resize', 'top', 'kill', 'commit']) expect(parseEventLine(ev(a, { exitCode: '0' })), a).to.equal(undefined);
    const die = parseEventLine(ev('die', { exitCode: '137' }))!;
    expect(die).to.include({ action: 'die', id: 'c1', exitCode: 137 });
    expect(die.labels).to.deep.equal({ 'com.amazonaws.ecs.task-arn': 't' });
    expect(die.time.getTime()).to.equal(1_700_000_000_123);
    expect(parseEventLine(ev('health_status: healthy'))?.action).to.equal('health_status');
    expect(parseEventLine(ev('start', { exitCode: '1' }))?.exitCode, 'only die has an exit code').to.equal(undefined);
    expect(parseEventLine(JSON.stringify({ Type: 'network', Action: 'connect', Actor: { ID: 'n' } }))).to.equal(undefined);
  });
});
