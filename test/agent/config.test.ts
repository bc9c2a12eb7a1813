import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAgentConfig, parseDuration, parseEnvFile } from '../../pkg/agent/config.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';

describe('agent config', () => {
  it('has the seed defaults', () => {
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
