import { expect } from 'chai';
import { ContainerDefinition, DaemonContainerDefinition, DaemonTaskDefinitionSpec, TaskDefinitionSpec } from '../../pkg/api/taskdefinition.ts';
import { validateObject } from '../../pkg/api/validate.ts';
import { newEngineTask } from '../../pkg/agent/engine/engine.ts';
import { taskVolume, toCreateBody, type TranslateOptions } from '../../pkg/agent/runtime/translate.ts';
import type { RuntimeTask } from '../../pkg/agent/runtime/runtime.ts';
import { BerthError } from '../../pkg/errors/errors.ts';
import { leaves, type Schema } from '../support/schemawalk.ts';

/**
 * Review D12, "nothing accepted is dropped": every field of the container-definition and
 * task-definition schemas (walked from the zod schemas, so a new field without handling fails
 * here) either changes the Docker create body (or the Docker volume) the agent builds, changes
 * what the task engine does, is refused at registration naming the field, or is listed as
 * having no Docker meaning (with why). The daemon schemas are walked too.
 */

type Handling =
  /** set in the container definition: `where` in the create body changes */
  | { docker: string; def: Record<string, unknown>; task?: Partial<RuntimeTask>; opts?: Partial<TranslateOptions> }
  /** set in the container definition: the engine's view of the task changes */
  | { engine: Record<string, unknown> }
  /** refused at registration naming the field */
  | { refused: Record<string, unknown>; taskLevel?: boolean; networkMode?: string }
  /** no Docker parameter: where it takes effect instead */
  | { none: string };

const base = { name: 'app', image: 'busybox', memory: 64 };
const peers = { db: 'ecs-f-1-db-x', data: 'ecs-f-1-data-x' };
const withPeers = { opts: { peers } };
const vol = { task: { volumes: [{ name: 'v', host: { sourcePath: '/srv' } }] }, opts: { resources: { volumeSources: { v: { type: 'bind' as const, source: '/srv' } } } } };
/** read from berth Secrets by the agent at container creation: test/agent/secrets-docker.test.ts sees them in the container */
const fromSecrets = (where: string): Handling => ({ none: `resolved from berth Secrets at container creation into ${where}` });

const CONTAINER: Record<string, Handling> = {
  name: { docker: 'Labels', def: { name: 'other' } },
  image: { docker: 'Image', def: { image: 'nginx' } },
  cpu: { docker: 'HostConfig.CpuShares', def: { cpu: 512 } },
  memory: { docker: 'HostConfig.Memory', def: { memory: 128 } },
  memoryReservation: { docker: 'HostConfig.MemoryReservation', def: { memoryReservation: 32 } },
  links: { docker: 'HostConfig.Links', def: { links: ['db:database'] }, ...withPeers },
  'portMappings.containerPort': { docker: 'ExposedPorts', def: { portMappings: [{ containerPort: 80 }] } },
  'portMappings.hostPort': { docker: 'HostConfig.PortBindings', def: { portMappings: [{ containerPort: 80, hostPort: 8080 }] } },
  'portMappings.protocol': { docker: 'ExposedPorts', def: { portMappings: [{ containerPort: 80, protocol: 'udp' }] } },
  'portMappings.name': { none: 'a Service Connect port name: ECS uses it only for Service Connect, which berth does not offer; no Docker parameter' },
  'portMappings.appProtocol': { none: 'a Service Connect protocol: as portMappings.name' },
  essential: { engine: { essential: false } },
  entryPoint: { docker: 'Entrypoint', def: { entryPoint: ['sh', '-c'] } },
  command: { docker: 'Cmd', def: { command: ['sleep', '1'] } },
  'environment.name': { docker: 'Env', def: { environment: [{ name: 'A', value: '1' }] } },
  'environment.value': { docker: 'Env', def: { environment: [{ name: 'A', value: '2' }] } },
  'environmentFiles.value': fromSecrets('Env (under environment)'),
  'environmentFiles.type': fromSecrets('Env (under environment)'),
  'secrets.name': fromSecrets('Env'),
  'secrets.valueFrom': fromSecrets('Env'),
  'mountPoints.sourceVolume': { docker: 'HostConfig.Binds', def: { mountPoints: [{ sourceVolume: 'v', containerPath: '/data' }] }, ...vol },
  'mountPoints.containerPath': { docker: 'HostConfig.Binds', def: { mountPoints: [{ sourceVolume: 'v', containerPath: '/other' }] }, ...vol },
  'mountPoints.readOnly': { docker: 'HostConfig.Binds', def: { mountPoints: [{ sourceVolume: 'v', containerPath: '/data', readOnly: true }] }, ...vol },
  'volumesFrom.sourceContainer': { docker: 'HostConfig.VolumesFrom', def: { volumesFrom: [{ sourceContainer: 'data' }] }, ...withPeers },
  'volumesFrom.readOnly': { docker: 'HostConfig.VolumesFrom', def: { volumesFrom: [{ sourceContainer: 'data', readOnly: true }] }, ...withPeers },
  privileged: { docker: 'HostConfig.Privileged', def: { privileged: true } },
  user: { docker: 'User', def: { user: 'nobody' } },
  workingDirectory: { docker: 'WorkingDir', def: { workingDirectory: '/tmp' } },
  readonlyRootFilesystem: { docker: 'HostConfig.ReadonlyRootfs', def: { readonlyRootFilesystem: true } },
  'logConfiguration.logDriver': { docker: 'HostConfig.LogConfig', def: { logConfiguration: { logDriver: 'syslog' } } },
  'logConfiguration.options': { docker: 'HostConfig.LogConfig', def: { logConfiguration: { logDriver: 'json-file', options: { 'max-size': '1m' } } } },
  'logConfiguration.secretOptions.name': fromSecrets('HostConfig.LogConfig.Config'),
  'logConfiguration.secretOptions.valueFrom': fromSecrets('HostConfig.LogConfig.Config'),
  'healthCheck.command': { docker: 'Healthcheck', def: { healthCheck: { command: ['CMD', 'true'] } } },
  'healthCheck.interval': { docker: 'Healthcheck.Interval', def: { healthCheck: { command: ['CMD', 'true'], interval: 7 } } },
  'healthCheck.timeout': { docker: 'Healthcheck.Timeout', def: { healthCheck: { command: ['CMD', 'true'], timeout: 3 } } },
  'healthCheck.retries': { docker: 'Healthcheck.Retries', def: { healthCheck: { command: ['CMD', 'true'], retries: 9 } } },
  'healthCheck.startPeriod': { docker: 'Healthcheck.StartPeriod', def: { healthCheck: { command: ['CMD', 'true'], startPeriod: 9 } } },
  'dependsOn.containerName': { engine: { dependsOn: [{ containerName: 'db', condition: 'START' }] } },
  'dependsOn.condition': { engine: { dependsOn: [{ containerName: 'db', condition: 'HEALTHY' }] } },
  'ulimits.name': { docker: 'HostConfig.Ulimits', def: { ulimits: [{ name: 'nofile', softLimit: 1, hardLimit: 2 }] } },
  'ulimits.softLimit': { docker: 'HostConfig.Ulimits', def: { ulimits: [{ name: 'core', softLimit: 3, hardLimit: 4 }] } },
  'ulimits.hardLimit': { docker: 'HostConfig.Ulimits', def: { ulimits: [{ name: 'core', softLimit: 3, hardLimit: 5 }] } },
  'systemControls.namespace': { docker: 'HostConfig.Sysctls', def: { systemControls: [{ namespace: 'net.ipv4.ip_forward', value: '1' }] } },
  'systemControls.value': { docker: 'HostConfig.Sysctls', def: { systemControls: [{ namespace: 'kernel.shmmax', value: '1' }] } },
  'linuxParameters.capabilities.add': { docker: 'HostConfig.CapAdd', def: { linuxParameters: { capabilities: { add: ['NET_ADMIN'] } } } },
  'linuxParameters.capabilities.drop': { docker: 'HostConfig.CapDrop', def: { linuxParameters: { capabilities: { drop: ['MKNOD'] } } } },
  'linuxParameters.initProcessEnabled': { docker: 'HostConfig.Init', def: { linuxParameters: { initProcessEnabled: true } } },
  'linuxParameters.sharedMemorySize': { docker: 'HostConfig.ShmSize', def: { linuxParameters: { sharedMemorySize: 64 } } },
  'linuxParameters.devices.hostPath': { docker: 'HostConfig.Devices', def: { linuxParameters: { devices: [{ hostPath: '/dev/fuse' }] } } },
  'linuxParameters.devices.containerPath': { docker: 'HostConfig.Devices', def: { linuxParameters: { devices: [{ hostPath: '/dev/fuse', containerPath: '/dev/f' }] } } },
  'linuxParameters.devices.permissions': { docker: 'HostConfig.Devices', def: { linuxParameters: { devices: [{ hostPath: '/dev/fuse', permissions: ['read'] }] } } },
  'linuxParameters.tmpfs.containerPath': { docker: 'HostConfig.Tmpfs', def: { linuxParameters: { tmpfs: [{ containerPath: '/run', size: 8 }] } } },
  'linuxParameters.tmpfs.size': { docker: 'HostConfig.Tmpfs', def: { linuxParameters: { tmpfs: [{ containerPath: '/run', size: 16 }] } } },
  'linuxParameters.tmpfs.mountOptions': { docker: 'HostConfig.Tmpfs', def: { linuxParameters: { tmpfs: [{ containerPath: '/run', size: 8, mountOptions: ['noexec'] }] } } },
  'linuxParameters.maxSwap': { docker: 'HostConfig.MemorySwap', def: { linuxParameters: { maxSwap: 128 } } },
  'linuxParameters.swappiness': { docker: 'HostConfig.MemorySwappiness', def: { linuxParameters: { swappiness: 10 } } },
  hostname: { docker: 'Hostname', def: { hostname: 'h' } },
  dnsServers: { docker: 'HostConfig.Dns', def: { dnsServers: ['10.0.0.2'] } },
  dnsSearchDomains: { docker: 'HostConfig.DnsSearch', def: { dnsSearchDomains: ['corp'] } },
  'extraHosts.hostname': { docker: 'HostConfig.ExtraHosts', def: { extraHosts: [{ hostname: 'db', ipAddress: '10.0.0.9' }] } },
  'extraHosts.ipAddress': { docker: 'HostConfig.ExtraHosts', def: { extraHosts: [{ hostname: 'db', ipAddress: '10.0.0.8' }] } },
  dockerLabels: { docker: 'Labels', def: { dockerLabels: { team: 'x' } } },
  dockerSecurityOptions: { docker: 'HostConfig.SecurityOpt', def: { dockerSecurityOptions: ['no-new-privileges'] } },
  'repositoryCredentials.credentialsParameter': fromSecrets('the pull\'s registry auth'),
  'restartPolicy.enabled': { engine: { restartPolicy: { enabled: true } } },
  'restartPolicy.ignoredExitCodes': { engine: { restartPolicy: { enabled: true, ignoredExitCodes: [0] } } },
  'restartPolicy.restartAttemptPeriod': { engine: { restartPolicy: { enabled: true, restartAttemptPeriod: 120 } } },
  stopTimeout: { docker: 'StopTimeout', def: { stopTimeout: 10 } },
  startTimeout: { engine: { startTimeout: 30 } },
  disableNetworking: { docker: 'NetworkDisabled', def: { disableNetworking: true } },
  interactive: { docker: 'OpenStdin', def: { interactive: true } },
  pseudoTerminal: { docker: 'Tty', def: { pseudoTerminal: true } },
  'portMappings.containerPortRange': { refused: { portMappings: [{ containerPort: 80, containerPortRange: '80-90' }] } },
  versionConsistency: { refused: { versionConsistency: 'enabled' } },
  resourceRequirements: { refused: { resourceRequirements: [{ type: 'GPU', value: '1' }] } },
  firelensConfiguration: { refused: { firelensConfiguration: { type: 'fluentbit' } } },
  credentialSpecs: { refused: { credentialSpecs: ['credentialspec:arn:aws:s3:::b/x'] } },
};

const TASK: Record<string, Handling | { volume: string; spec: Record<string, unknown> } | { task: string; spec: Record<string, unknown>; opts?: Partial<TranslateOptions> }> = {
  containerDefinitions: { none: 'the containers: walked field by field above' },
  'volumes.name': { volume: 'Name', spec: { volumes: [{ name: 'other' }] } },
  'volumes.host.sourcePath': { volume: 'source', spec: { volumes: [{ name: 'v', host: { sourcePath: '/srv' } }] } },
  'volumes.dockerVolumeConfiguration.scope': { volume: 'Name', spec: { volumes: [{ name: 'v', dockerVolumeConfiguration: { scope: 'shared' } }] } },
  'volumes.dockerVolumeConfiguration.autoprovision': { volume: 'mustExist', spec: { volumes: [{ name: 'v', dockerVolumeConfiguration: { scope: 'shared', autoprovision: false } }] } },
  'volumes.dockerVolumeConfiguration.driver': { volume: 'Driver', spec: { volumes: [{ name: 'v', dockerVolumeConfiguration: { driver: 'rexray' } }] } },
  'volumes.dockerVolumeConfiguration.driverOpts': { volume: 'DriverOpts', spec: { volumes: [{ name: 'v', dockerVolumeConfiguration: { driverOpts: { type: 'tmpfs' } } }] } },
  'volumes.dockerVolumeConfiguration.labels': { volume: 'Labels', spec: { volumes: [{ name: 'v', dockerVolumeConfiguration: { labels: { a: 'b' } } }] } },
  networkMode: { task: 'HostConfig.NetworkMode', spec: { networkMode: 'host' } },
  // ... and without one: per-container limits that sum to the task's (splitTaskLimits)
  cpu: { task: 'HostConfig.NanoCpus', spec: { cpu: '512' } },
  // with a task cgroup (ECS_ENABLE_TASK_CPU_MEM_LIMIT and Docker's cgroupfs driver) ...
  memory: { task: 'HostConfig.CgroupParent', spec: { memory: '512' }, opts: { cgroupParent: '/berth/t1' } },
  pidMode: { task: 'HostConfig.PidMode', spec: { pidMode: 'host' } },
  ipcMode: { task: 'HostConfig.IpcMode', spec: { ipcMode: 'none' } },
  taskRoleArn: { refused: { taskRoleArn: 'arn:aws:iam::0:role/app' }, taskLevel: true },
  executionRoleArn: { none: 'the role the ECS agent pulls from ECR, reads secrets and ships awslogs with: none of that happens off AWS (the agent reads berth Secrets with its node identity instead)' },
  'placementConstraints.type': { none: 'placement (the scheduler), not the agent' },
  'placementConstraints.expression': { none: 'placement (the scheduler), not the agent' },
  requiresCompatibilities: { none: 'placement compatibility, checked by the control plane' },
  'tags.key': { none: 'API metadata (ListTagsForResource)' },
  'tags.value': { none: 'API metadata (ListTagsForResource)' },
  'volumes.configuredAtLaunch': { refused: { volumes: [{ name: 'v', configuredAtLaunch: true }] }, taskLevel: true },
  'volumes.efsVolumeConfiguration': { refused: { volumes: [{ name: 'v', efsVolumeConfiguration: { fileSystemId: 'fs-1' } }] }, taskLevel: true },
  'volumes.fsxWindowsFileServerVolumeConfiguration': { refused: { volumes: [{ name: 'v', fsxWindowsFileServerVolumeConfiguration: { fileSystemId: 'fs-1' } }] }, taskLevel: true },
  'volumes.s3filesVolumeConfiguration': { refused: { volumes: [{ name: 'v', s3filesVolumeConfiguration: { bucket: 'b' } }] }, taskLevel: true },
  enableFaultInjection: { refused: { enableFaultInjection: true }, taskLevel: true },
  proxyConfiguration: { refused: { proxyConfiguration: { containerName: 'app' } }, taskLevel: true },
  inferenceAccelerators: { refused: { inferenceAccelerators: [{ deviceName: 'd', deviceType: 'eia2.medium' }] }, taskLevel: true },
  ephemeralStorage: { refused: { ephemeralStorage: { sizeInGiB: 30 } }, taskLevel: true },
  'runtimePlatform.operatingSystemFamily': { refused: { runtimePlatform: { operatingSystemFamily: 'WINDOWS_SERVER_2022_CORE' } }, taskLevel: true },
  'runtimePlatform.cpuArchitecture': { refused: { runtimePlatform: { cpuArchitecture: 'ARM64' } }, taskLevel: true },
};

const get = (o: unknown, path: string): unknown => path.split('.').reduce<unknown>((a, k) => (a as Record<string, unknown> | undefined)?.[k], o);

function runtimeTask(spec: Record<string, unknown>, extra: Partial<RuntimeTask> = {}): RuntimeTask {
  const s = TaskDefinitionSpec.parse({ containerDefinitions: [base, { name: 'db', image: 'x', memory: 8 }, { name: 'data', image: 'x', memory: 8 }], ...spec });
  return {
    taskArn: 'arn:aws:ecs:r:0:task/c/t1',
    cluster: 'c',
    instance: 'i1',
    family: 'f',
    revision: 1,
    networkMode: s.networkMode as RuntimeTask['networkMode'],
    containers: s.containerDefinitions,
    volumes: s.volumes,
    ...(s.cpu ? { cpu: Number(s.cpu) } : {}),
    ...(s.memory ? { memory: Number(s.memory) } : {}),
    ...(s.pidMode ? { pidMode: s.pidMode } : {}),
    ...(s.ipcMode ? { ipcMode: s.ipcMode } : {}),
    ...extra,
  };
}

const translateOpts = (o: Partial<TranslateOptions> = {}): TranslateOptions => ({
  name: 'n',
  peers: {},
  resources: { volumeSources: {}, namespaceContainerId: 'ns' },
  config: { disablePrivileged: false, availableLoggingDrivers: ['json-file', 'syslog'], taskCpuMemLimit: true },
  ...o,
});

function bodyOf(def: Record<string, unknown>, task: Partial<RuntimeTask> = {}, opts: Partial<TranslateOptions> = {}) {
  const t = runtimeTask({}, task);
  const d = ContainerDefinition.parse({ ...base, ...def });
  t.containers = [d, ...t.containers.slice(1)];
  return toCreateBody(t, d, translateOpts(opts));
}

function refusal(spec: Record<string, unknown>, kind: 'TaskDefinition' | 'DaemonTaskDefinition' = 'TaskDefinition'): string[] {
  try {
    validateObject({ apiVersion: 'berth.dev/v1', kind, metadata: { name: 'f' }, spec });
  } catch (e) {
    if (e instanceof BerthError) return (e.details.causes ?? []).map((c) => `${c.field}: ${c.message}`);
    throw e;
  }
  return [];
}

describe('D12: every accepted task-definition field reaches Docker, the engine, or is refused at registration', () => {
  const containerFields = leaves(ContainerDefinition as unknown as Schema);
  const taskFields = leaves(TaskDefinitionSpec as unknown as Schema).filter((f) => !f.startsWith('containerDefinitions.'));

  it('the walk sees the schemas (a new field must be handled here)', () => {
    expect(containerFields.length).to.be.greaterThan(60);
    expect(containerFields.filter((f) => !(f in CONTAINER)), 'container fields without handling').to.deep.equal([]);
    expect(taskFields.filter((f) => !(f in TASK)), 'task fields without handling').to.deep.equal([]);
    const daemonFields = [...leaves(DaemonContainerDefinition as unknown as Schema), ...leaves(DaemonTaskDefinitionSpec as unknown as Schema).filter((f) => !f.startsWith('containerDefinitions.'))];
    expect(daemonFields.filter((f) => !(f in CONTAINER) && !(f in TASK)), 'daemon fields without handling').to.deep.equal([]);
  });

  for (const [field, h] of Object.entries(CONTAINER)) {
    it(`containerDefinitions[].${field}`, () => {
      if ('docker' in h) {
        const before = get(bodyOf({}, h.task, h.opts), h.docker);
        const after = get(bodyOf(h.def, h.task, h.opts), h.docker);
        expect(JSON.stringify(after), `${h.docker} carries ${field}`).to.not.equal(JSON.stringify(before));
        expect(after, `${h.docker} is set`).to.not.equal(undefined);
      } else if ('engine' in h) {
        const defs = (d: Record<string, unknown>) => [ContainerDefinition.parse({ ...base, ...d }), ContainerDefinition.parse({ name: 'db', image: 'x', memory: 8, healthCheck: { command: ['CMD', 'true'] } })];
        const a = newEngineTask('t', defs({}), 30_000);
        const b = newEngineTask('t', defs(h.engine), 30_000);
        expect(JSON.stringify(b.containers[0]), `the engine sees ${field}`).to.not.equal(JSON.stringify(a.containers[0]));
      } else if ('refused' in h) {
        const got = refusal({ containerDefinitions: [{ ...base, ...h.refused }] });
        const top = field.split('.')[0];
        expect(got.some((c) => c.startsWith(`spec.containerDefinitions[0].${top}`)), `refused naming ${top}: ${got.join('; ')}`).to.equal(true);
        // the daemon face refuses it as well (where the daemon schema has the field)
        if (top in (DaemonContainerDefinition as unknown as { shape: object }).shape) {
          expect(refusal({ containerDefinitions: [{ ...base, ...h.refused }] }, 'DaemonTaskDefinition').some((c) => c.includes(top))).to.equal(true);
        }
      } else {
        expect(h.none).to.be.a('string').and.have.length.greaterThan(20);
      }
    });
  }

  for (const [field, h] of Object.entries(TASK)) {
    it(`task definition ${field}`, () => {
      if ('volume' in h) {
        const t = runtimeTask(h.spec);
        const v = taskVolume(t, t.volumes![0]);
        const plain = taskVolume(runtimeTask({ volumes: [{ name: 'v' }] }), { name: 'v' });
        const pick = (x: typeof v) => (h.volume === 'source' || h.volume === 'mustExist' ? get(x, h.volume) : get(x.create, h.volume));
        expect(JSON.stringify(pick(v)), `the volume carries ${field}`).to.not.equal(JSON.stringify(pick(plain)));
      } else if ('task' in h && typeof h.task === 'string' && 'spec' in h) {
        const t = runtimeTask(h.spec);
        const plain = runtimeTask({});
        const o = translateOpts(h.opts);
        const a = toCreateBody(plain, plain.containers[0], o);
        const b = toCreateBody(t, t.containers[0], o);
        expect(JSON.stringify(get(b, h.task)), `${h.task} carries ${field}`).to.not.equal(JSON.stringify(get(a, h.task)));
      } else if ('refused' in h) {
        const got = refusal({ containerDefinitions: [base], ...h.refused });
        // a list member's cause names its index (spec.volumes[0].x for volumes.x)
        const names = (c: string) => c.replace(/\[\d+\]/g, '').startsWith(`spec.${field}`);
        expect(got.some(names), got.join('; ')).to.equal(true);
        const daemon = refusal({ containerDefinitions: [base], ...h.refused }, 'DaemonTaskDefinition');
        expect(daemon.some((c) => names(c) || c.includes(`"${field.split('.')[0]}"`)), daemon.join('; ')).to.equal(true);
      } else if ('none' in h) {
        expect(h.none).to.be.a('string').and.have.length.greaterThan(20);
      }
    });
  }
});

describe('D12: registration-time refusals (what Docker or berth cannot do is refused, not dropped)', () => {
  const table: Array<[string, Record<string, unknown>, RegExp]> = [
    ['mutual links deadlock', { containerDefinitions: [{ ...base, links: ['b'] }, { name: 'b', image: 'x', memory: 8, links: ['app'] }] }, /spec.containerDefinitions: the containers wait for each other in a cycle .*app -\(links\)-> b -\(links\)-> app/],
    ['links and volumesFrom in a cycle', { containerDefinitions: [{ ...base, links: ['b'] }, { name: 'b', image: 'x', memory: 8, volumesFrom: [{ sourceContainer: 'app' }] }] }, /cycle .*volumesFrom/],
    ['awsvpc dnsServers', { networkMode: 'awsvpc', containerDefinitions: [{ ...base, dnsServers: ['1.1.1.1'] }] }, /spec.containerDefinitions\[0\].dnsServers: dnsServers is not supported in awsvpc/],
    ['awsvpc extraHosts', { networkMode: 'awsvpc', containerDefinitions: [{ ...base, extraHosts: [{ hostname: 'a', ipAddress: '1.2.3.4' }] }] }, /extraHosts is not supported in awsvpc/],
    ['awsvpc dnsSearchDomains', { networkMode: 'awsvpc', containerDefinitions: [{ ...base, dnsSearchDomains: ['x'] }] }, /dnsSearchDomains is not supported in awsvpc/],
    ['awsvpc hostname', { networkMode: 'awsvpc', containerDefinitions: [{ ...base, hostname: 'h' }] }, /hostname is not supported in awsvpc/],
    ['net sysctl in host mode', { networkMode: 'host', containerDefinitions: [{ ...base, systemControls: [{ namespace: 'net.core.somaxconn', value: '1024' }] }] }, /systemControls\[0\].namespace: "net.core.somaxconn" cannot be set in host network mode/],
    ['not a namespaced sysctl', { containerDefinitions: [{ ...base, systemControls: [{ namespace: 'vm.swappiness', value: '1' }] }] }, /"vm.swappiness" is not a namespaced kernel parameter/],
    ['maxSwap without memory', { memory: '256', containerDefinitions: [{ name: 'app', image: 'x', linuxParameters: { maxSwap: 64 } }] }, /linuxParameters.maxSwap: maxSwap needs the container memory/],
    ['container memory above the task', { memory: '64', containerDefinitions: [{ ...base, memory: 128 }] }, /memory: container memory \(128 MiB\) must not be greater than the task memory \(64 MiB\)/],
    ['awsfirelens', { containerDefinitions: [{ ...base, logConfiguration: { logDriver: 'awsfirelens' } }] }, /logConfiguration.logDriver: awsfirelens needs a FireLens log router/],
  ];
  for (const [what, spec, want] of table) {
    it(what, () => {
      const got = refusal(spec);
      expect(got.some((c) => want.test(c)), got.join('; ')).to.equal(true);
    });
  }
  it('what ECS\'s documents register still registers', () => {
    expect(refusal({ networkMode: 'awsvpc', containerDefinitions: [{ ...base, portMappings: [{ containerPort: 80 }], systemControls: [{ namespace: 'net.ipv4.tcp_keepalive_time', value: '60' }] }] })).to.deep.equal([]);
    expect(refusal({ containerDefinitions: [{ ...base, links: ['db'] }, { name: 'db', image: 'x', memory: 8 }] })).to.deep.equal([]);
    expect(refusal({ containerDefinitions: [{ name: 'd', image: 'x', memoryReservation: 64, systemControls: [{ namespace: 'net.core.somaxconn', value: '512' }] }] }, 'DaemonTaskDefinition')).to.deep.equal([]);
  });
});
