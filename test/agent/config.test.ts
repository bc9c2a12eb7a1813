import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAgentConfig, parseDuration, parseEnvFile } from '../../pkg/agent/config.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';

describe('agent config', () => {
  it('has the defaults of the ECS agent\'s README', () => {
    const c = loadAgentConfig({ env: {} });
    expect(c.cluster).to.equal('default');
    expect(c.reservedPorts).to.deep.equal([22, 2375, 2376, 51678, 51679]);
    expect(c.reservedPortsUdp).to.deep.equal([]);
    expect(c.reservedMemory).to.equal(0);
    expect(c.dataDir).to.equal('/data/');
    expect(c.checkpoint).to.equal(false);
    expect(c.taskCleanupWaitMs).to.equal(3 * 3600_000);
    expect(c.containerStopTimeoutMs).to.equal(30_000);
    expect(c.availableLoggingDrivers).to.deep.equal(['json-file', 'none']);
    expect(c.imagePullBehavior).to.equal('default');
    expect(c.dockerHost).to.equal('unix:///var/run/docker.sock');
    expect(c.disablePrivileged).to.equal(false);
    expect(c.instanceAttributes).to.deep.equal({});
    expect(c.introspectionPort).to.equal(51678);
    expect(c.dynamicHostPortRange.from).to.be.greaterThan(0);
  });

  const table: Array<[string, Record<string, string>, (c: ReturnType<typeof loadAgentConfig>) => unknown, unknown]> = [
    ['cluster', { ECS_CLUSTER: 'prod' }, (c) => c.cluster, 'prod'],
    ['reserved ports', { ECS_RESERVED_PORTS: '[22, 80]' }, (c) => c.reservedPorts, [22, 80]],
    ['udp ports', { ECS_RESERVED_PORTS_UDP: '[53,123]' }, (c) => c.reservedPortsUdp, [53, 123]],
    ['reserved memory', { ECS_RESERVED_MEMORY: '32' }, (c) => c.reservedMemory, 32],
    ['datadir implies checkpoint', { ECS_DATADIR: '/var/lib/berth' }, (c) => c.checkpoint, true],
    ['checkpoint explicit false', { ECS_DATADIR: '/x', ECS_CHECKPOINT: 'false' }, (c) => c.checkpoint, false],
    ['cleanup 10m', { ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '10m' }, (c) => c.taskCleanupWaitMs, 600_000],
    ['stop timeout 1m30s', { ECS_CONTAINER_STOP_TIMEOUT: '1m30s' }, (c) => c.containerStopTimeoutMs, 90_000],
    ['privileged disabled', { ECS_DISABLE_PRIVILEGED: 'true' }, (c) => c.disablePrivileged, true],
    ['logging drivers', { ECS_AVAILABLE_LOGGING_DRIVERS: '["json-file","syslog"]' }, (c) => c.availableLoggingDrivers, ['json-file', 'syslog']],
    ['attributes', { ECS_INSTANCE_ATTRIBUTES: '{"stack":"prod"}' }, (c) => c.instanceAttributes, { stack: 'prod' }],
    ['tags', { ECS_CONTAINER_INSTANCE_TAGS: '{"k":"v"}' }, (c) => c.containerInstanceTags, { k: 'v' }],
    ['port range', { ECS_DYNAMIC_HOST_PORT_RANGE: '100-200' }, (c) => c.dynamicHostPortRange, { from: 100, to: 200 }],
    ['pull behavior', { ECS_IMAGE_PULL_BEHAVIOR: 'prefer-cached' }, (c) => c.imagePullBehavior, 'prefer-cached'],
    ['backend', { ECS_BACKEND_HOST: 'http://127.0.0.1:6443' }, (c) => c.backendHost, 'http://127.0.0.1:6443'],
    ['auth type', { ECS_ENGINE_AUTH_TYPE: 'dockercfg', ECS_ENGINE_AUTH_DATA: '{}' }, (c) => c.engineAuthType, 'dockercfg'],
    ['log format', { ECS_LOG_OUTPUT_FORMAT: 'json' }, (c) => c.logOutputFormat, 'json'],
    ['token', { BERTH_BOOTSTRAP_TOKEN: 'abc' }, (c) => c.bootstrapToken, 'abc'],
    ['cleanup jitter', { ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION_JITTER: '1h' }, (c) => c.taskCleanupWaitJitterMs, 3_600_000],
    ['image cleanup off', { ECS_DISABLE_IMAGE_CLEANUP: 'true' }, (c) => c.disableImageCleanup, true],
    ['image cleanup interval', { ECS_IMAGE_CLEANUP_INTERVAL: '15m' }, (c) => c.imageCleanupIntervalMs, 900_000],
    ['image minimum age', { ECS_IMAGE_MINIMUM_CLEANUP_AGE: '30m' }, (c) => c.imageMinimumCleanupAgeMs, 1_800_000],
    ['non-ECS image minimum age', { NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE: '2h' }, (c) => c.nonEcsImageMinimumCleanupAgeMs, 7_200_000],
    ['images per cycle', { ECS_NUM_IMAGES_DELETE_PER_CYCLE: '9' }, (c) => c.numImagesDeletePerCycle, 9],
    ['untracked cleanup', { ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP: 'true' }, (c) => c.enableUntrackedImageCleanup, true],
    ['cleanup exclusions', { ECS_EXCLUDE_UNTRACKED_IMAGE: 'alpine:latest, nginx:1', ECS_IMAGE_CLEANUP_EXCLUDE: 'redis:7' }, (c) => c.imageCleanupExclude, ['alpine:latest', 'nginx:1', 'redis:7']],
    ['create timeout', { ECS_CONTAINER_CREATE_TIMEOUT: '2m' }, (c) => c.containerCreateTimeoutMs, 120_000],
    ['pull inactivity timeout', { ECS_IMAGE_PULL_INACTIVITY_TIMEOUT: '3m' }, (c) => c.imagePullInactivityTimeoutMs, 180_000],
    ['IPv6 bindings excluded by default (ECS default true)', {}, (c) => c.excludeIpv6PortBinding, true],
    ['IPv6 bindings included', { ECS_EXCLUDE_IPV6_PORTBINDING: 'false' }, (c) => c.excludeIpv6PortBinding, false],
    ['task cpu/mem limits on by default', {}, (c) => c.taskCpuMemLimit, true],
    ['task cpu/mem limits off', { ECS_ENABLE_TASK_CPU_MEM_LIMIT: 'false' }, (c) => c.taskCpuMemLimit, false],
    ['cgroup path', { ECS_CGROUP_PATH: '/host/cgroup' }, (c) => c.cgroupPath, '/host/cgroup'],
    ['cgroup cpu period', { ECS_CGROUP_CPU_PERIOD: '10ms' }, (c) => c.cgroupCpuPeriodMs, 10],
    ['pids limit', { ECS_TASK_PIDS_LIMIT: '100' }, (c) => c.taskPidsLimit, 100],
    ['dependent pulls wait by default (ECS default false)', {}, (c) => c.pullDependentUpfront, false],
    ['dependent pulls up front', { ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT: 'true' }, (c) => c.pullDependentUpfront, true],
    ['instance type', { ECS_INSTANCE_TYPE: 'm5.large' }, (c) => c.instanceType, 'm5.large'],
    ['availability zone', { ECS_AVAILABILITY_ZONE: 'zone-a' }, (c) => c.availabilityZone, 'zone-a'],
    ['service discovery DNS on by default, on the bridge gateway, upstreams from /etc/resolv.conf', {}, (c) => [c.dnsDisabled, c.dnsAddress, c.dnsResolvConf], [false, '', '/etc/resolv.conf']],
    ['service discovery DNS off, its address, its resolv.conf', { ECS_DISABLE_SERVICE_DISCOVERY_DNS: 'true', ECS_SERVICE_DISCOVERY_DNS_ADDRESS: '10.0.0.1', ECS_SERVICE_DISCOVERY_DNS_RESOLV_CONF: '/r' }, (c) => [c.dnsDisabled, c.dnsAddress, c.dnsResolvConf], [true, '10.0.0.1', '/r']],
  ];
  for (const [name, env, get, want] of table) {
    it(`reads ${name}`, () => expect(get(loadAgentConfig({ env }))).to.deep.equal(want));
  }

  const bad: Array<[string, string]> = [
    ['ECS_RESERVED_PORTS', '22,80'],
    ['ECS_RESERVED_PORTS', '[70000]'],
    ['ECS_RESERVED_MEMORY', 'lots'],
    ['ECS_CONTAINER_STOP_TIMEOUT', '30 seconds'],
    ['ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION', '3x'],
    ['ECS_DISABLE_PRIVILEGED', 'maybe'],
    ['ECS_IMAGE_PULL_BEHAVIOR', 'sometimes'],
    ['ECS_INSTANCE_ATTRIBUTES', '{"a":1}'],
    ['ECS_AVAILABLE_LOGGING_DRIVERS', 'json-file'],
    ['ECS_DYNAMIC_HOST_PORT_RANGE', '200-100'],
    ['ECS_LOGLEVEL', 'loud'],
    ['ECS_BACKEND_HOST', 'not a url'],
    ['ECS_SERVICE_DISCOVERY_DNS_ADDRESS', 'bridge0'],
    ['ECS_DISABLE_SERVICE_DISCOVERY_DNS', 'perhaps'],
  ];
  for (const [k, v] of bad) {
    it(`rejects ${k}=${v} naming the variable and value`, () => {
      let err: unknown;
      try {
        loadAgentConfig({ env: { [k]: v } });
      } catch (e) {
        err = e;
      }
      expect(isBerthError(err, 'Invalid'), String(err)).to.equal(true);
      expect((err as Error).message).to.contain(k).and.contain(v);
    });
  }

  it('bad ECS_ENGINE_AUTH_DATA stops start-up naming the variable, without echoing the credentials', () => {
    expect(() => loadAgentConfig({ env: { ECS_ENGINE_AUTH_TYPE: 'docker', ECS_ENGINE_AUTH_DATA: '{"secret-password' } }))
      .to.throw(/ECS_ENGINE_AUTH_DATA: is not a JSON object/)
      .with.property('message')
      .that.does.not.contain('secret-password');
  });

  it('env > file > default, file with comments and quotes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cfg-'));
    try {
      const f = path.join(dir, 'ecs.config');
      fs.writeFileSync(f, '# comment\nECS_CLUSTER=fromfile\n\nECS_RESERVED_MEMORY="64"\nexport ECS_LOGLEVEL=debug\n');
      const c = loadAgentConfig({ env: { ECS_CLUSTER: 'fromenv' }, file: f });
      expect(c.cluster).to.equal('fromenv');
      expect(c.reservedMemory).to.equal(64);
      expect(c.logLevel).to.equal('debug');
      expect(c.containerStopTimeoutMs).to.equal(30_000);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ECS_INSTANCE_ATTRIBUTES, ECS_INSTANCE_TYPE and ECS_AVAILABILITY_ZONE come from the config file too', () => {
    const c = loadAgentConfig({ env: {}, fileContents: { ECS_INSTANCE_TYPE: 'c5.xlarge', ECS_AVAILABILITY_ZONE: 'rack-2', ECS_INSTANCE_ATTRIBUTES: '{"stack":"prod"}' } });
    expect([c.instanceType, c.availabilityZone, c.instanceAttributes]).to.deep.equal(['c5.xlarge', 'rack-2', { stack: 'prod' }]);
  });

  it('the ECS bounds: too small values are refused or replaced as the ECS agent does, with a warning', () => {
    const table: Array<[Record<string, string>, (c: ReturnType<typeof loadAgentConfig>) => unknown, unknown, RegExp]> = [
      [{ ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '1ms' }, (c) => c.taskCleanupWaitMs, 3 * 3600_000, /ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=1ms is below the minimum of 1s/],
      [{ ECS_CONTAINER_CREATE_TIMEOUT: '10s' }, (c) => c.containerCreateTimeoutMs, 60_000, /ECS_CONTAINER_CREATE_TIMEOUT/],
      [{ ECS_IMAGE_PULL_INACTIVITY_TIMEOUT: '5s' }, (c) => c.imagePullInactivityTimeoutMs, 60_000, /ECS_IMAGE_PULL_INACTIVITY_TIMEOUT/],
      [{ ECS_IMAGE_CLEANUP_INTERVAL: '1m' }, (c) => c.imageCleanupIntervalMs, 30 * 60_000, /ECS_IMAGE_CLEANUP_INTERVAL/],
      [{ ECS_NUM_IMAGES_DELETE_PER_CYCLE: '0' }, (c) => c.numImagesDeletePerCycle, 5, /ECS_NUM_IMAGES_DELETE_PER_CYCLE/],
      [{ ECS_CGROUP_CPU_PERIOD: '1s' }, (c) => c.cgroupCpuPeriodMs, 100, /ECS_CGROUP_CPU_PERIOD/],
      [{ ECS_TASK_PIDS_LIMIT: '0' }, (c) => c.taskPidsLimit, undefined, /ECS_TASK_PIDS_LIMIT/],
    ];
    for (const [env, get, want, warning] of table) {
      const c = loadAgentConfig({ env });
      expect(get(c), JSON.stringify(env)).to.equal(want);
      expect(c.warnings.some((w) => warning.test(w)), `${JSON.stringify(env)}: ${c.warnings.join('; ')}`).to.equal(true);
    }
    expect(loadAgentConfig({ env: {} }).warnings).to.deep.equal([]);
    for (const [k, v] of [['ECS_CONTAINER_STOP_TIMEOUT', '500ms'], ['ECS_CONTAINER_START_TIMEOUT', '10s']]) {
      expect(() => loadAgentConfig({ env: { [k]: v } }), k).to.throw(new RegExp(`${k}: invalid value "${v}": must be at least`));
    }
  });

  it('rejects a malformed file line', () => {
    expect(() => parseEnvFile('ECS_CLUSTER=a\nthis is wrong\n', 'ecs.config')).to.throw(/ecs.config:2/);
  });

  const durations: Array<[string, number]> = [['3h', 10_800_000], ['30s', 30_000], ['1h30m', 5_400_000], ['250ms', 250], ['1.5h', 5_400_000], ['0', 0]];
  for (const [s, ms] of durations) it(`duration ${s}`, () => expect(parseDuration(s)).to.equal(ms));
  it('bad durations throw', () => {
    for (const s of ['', 'h', '5', '5d', '1h 2m']) expect(() => parseDuration(s), s).to.throw();
  });
});

describe('registered resources', () => {
  const table: Array<[number, number, number, number, number]> = [
    // cpus, memory MiB, reserved MiB, want cpu, want memory
    [1, 1024, 0, 1024, 1024],
    [2, 3953, 256, 2048, 3697],
    [4, 100, 200, 4096, 0],
  ];
  for (const [cpus, mib, reserved, wantCpu, wantMem] of table) {
    it(`${cpus} cores, ${mib} MiB, ${reserved} reserved`, async () => {
      const { registeredResources } = await import('../../pkg/agent/resources.ts');
      const r = registeredResources({ reservedMemory: reserved, reservedPorts: [22, 2375, 22], reservedPortsUdp: [] }, { cpus, totalMemory: mib * 1024 * 1024 });
      expect(r).to.deep.equal({ cpu: wantCpu, memory: wantMem, ports: [22, 2375], portsUdp: [] });
    });
  }
});
