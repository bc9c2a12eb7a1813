import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError } from '../../pkg/errors/errors.ts';
import { Arns, parseArn, resolveIdentifier, newId } from '../../pkg/api/arn.ts';
import { ecsShapeOf, ecsToManifest, manifestToEcs, taskDefinitionToEcs } from '../../pkg/api/ecsjson.ts';
import { KINDS, kindByName } from '../../pkg/api/kinds.ts';
import { validateObject, contentHash, DEFAULT_LIMITS } from '../../pkg/api/validate.ts';
import { renderCrds } from '../../pkg/api/crds.ts';
import type { TaskDefinitionSpec } from '../../pkg/api/taskdefinition.ts';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = (n: string) => JSON.parse(readFileSync(join(here, 'fixtures', n), 'utf8'));

const td = (spec: Record<string, unknown>, name = 'fam') => ({
  apiVersion: 'berth.dev/v1',
  kind: 'TaskDefinition',
  metadata: { name },
  spec,
});
const c = (over: Record<string, unknown> = {}) => ({ name: 'app', image: 'busybox', memory: 64, ...over });

/** The causes of an Invalid error, as "field: message" strings. */
function causes(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof BerthError)) throw e;
    if (e.reason === 'RequestEntityTooLarge') return [`<too large> ${e.message}`];
    expect(e.reason).to.equal('Invalid');
    return (e.details.causes ?? []).map((c) => `${c.field}: ${c.message}`);
  }
  return [];
}

describe('task definition schema', () => {
  it('applies ECS defaults', () => {
    const v = validateObject(td({ containerDefinitions: [c({ portMappings: [{ containerPort: 80 }], mountPoints: [], volumesFrom: [] })] }));
    const spec = v.spec as TaskDefinitionSpec;
    expect(spec.networkMode).to.equal('bridge');
    expect(spec.containerDefinitions[0].essential).to.equal(true);
    expect(spec.containerDefinitions[0].cpu).to.equal(0);
    expect(spec.containerDefinitions[0].portMappings![0].protocol).to.equal('tcp');
  });

  it('normalizes task-level cpu and memory units', () => {
    const cases: Array<[unknown, unknown, string, string]> = [
      ['256', '512', '256', '512'],
      ['1 vCPU', '1 GB', '1024', '1024'],
      ['0.25 vcpu', '2GB', '256', '2048'],
      [512, 1024, '512', '1024'],
    ];
    for (const [cpu, memory, ecpu, emem] of cases) {
      const spec = validateObject(td({ cpu, memory, containerDefinitions: [c({ memory: undefined })] })).spec as TaskDefinitionSpec;
      expect([spec.cpu, spec.memory]).to.deep.equal([ecpu, emem]);
    }
    expect(causes(() => validateObject(td({ cpu: 'lots', containerDefinitions: [c()] })))).to.deep.equal([
      'spec.cpu: cpu must be CPU units ("256") or vCPUs ("0.25 vCPU")',
    ]);
  });

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['unknown field', { containerDefinitions: [c({ colour: 'red' })] }, 'spec.containerDefinitions[0].colour: unknown field "colour"'],
    ['unknown top-level field', { containerDefinitions: [c()], family: 'x' }, 'spec.family: unknown field "family"'],
    ['no containers', { containerDefinitions: [] }, 'spec.containerDefinitions: a task definition needs at least one container'],
    ['missing image', { containerDefinitions: [{ name: 'a', memory: 10 }] }, 'spec.containerDefinitions[0].image: image is required'],
    ['bad container name', { containerDefinitions: [c({ name: 'a b' })] }, 'spec.containerDefinitions[0].name: container name must be 1-255 letters, digits, hyphens (-) and underscores (_)'],
    ['tiny memory', { containerDefinitions: [c({ memory: 2 })] }, 'spec.containerDefinitions[0].memory: memory must be at least 4 MiB'],
    ['no memory at all', { containerDefinitions: [c({ memory: undefined })] }, 'spec.containerDefinitions[0].memory: container "app" needs memory or memoryReservation (or the task definition a task-level memory)'],
    ['reservation above limit', { containerDefinitions: [c({ memory: 64, memoryReservation: 128 })] }, 'spec.containerDefinitions[0].memoryReservation: memoryReservation (128) must not be greater than memory (64)'],
    ['bad protocol', { containerDefinitions: [c({ portMappings: [{ containerPort: 80, protocol: 'sctp' }] })] }, 'spec.containerDefinitions[0].portMappings[0].protocol: protocol must be "tcp" or "udp"'],
    ['port out of range', { containerDefinitions: [c({ portMappings: [{ containerPort: 70000 }] })] }, 'spec.containerDefinitions[0].portMappings[0].containerPort: containerPort must be between 0 and 65535'],
    ['duplicate names', { containerDefinitions: [c(), c()] }, 'spec.containerDefinitions[1].name: duplicate container name "app"'],
    ['no essential', { containerDefinitions: [c({ essential: false })] }, 'spec.containerDefinitions: at least one container must be essential'],
    ['link to nowhere', { containerDefinitions: [c({ links: ['db'] })] }, 'spec.containerDefinitions[0].links[0]: links to container "db" which is not defined in this task definition'],
    ['links in awsvpc', { networkMode: 'awsvpc', containerDefinitions: [c({ links: ['b'] }), c({ name: 'b' })] }, 'spec.containerDefinitions[0].links[0]: links are supported only in bridge network mode, not awsvpc'],
    ['volumesFrom nowhere', { containerDefinitions: [c({ volumesFrom: [{ sourceContainer: 'x' }] })] }, 'spec.containerDefinitions[0].volumesFrom[0].sourceContainer: names container "x" which is not defined in this task definition'],
    ['mount of unknown volume', { containerDefinitions: [c({ mountPoints: [{ sourceVolume: 'v', containerPath: '/v' }] })] }, 'spec.containerDefinitions[0].mountPoints[0].sourceVolume: names volume "v" which is not defined in this task definition\'s volumes'],
    ['relative containerPath', { volumes: [{ name: 'v' }], containerDefinitions: [c({ mountPoints: [{ sourceVolume: 'v', containerPath: 'v' }] })] }, 'spec.containerDefinitions[0].mountPoints[0].containerPath: containerPath must be an absolute path'],
    ['dependsOn unknown', { containerDefinitions: [c({ dependsOn: [{ containerName: 'x', condition: 'START' }] })] }, 'spec.containerDefinitions[0].dependsOn[0].containerName: names container "x" which is not defined in this task definition'],
    ['HEALTHY without healthCheck', { containerDefinitions: [c({ dependsOn: [{ containerName: 'b', condition: 'HEALTHY' }] }), c({ name: 'b' })] }, 'spec.containerDefinitions[0].dependsOn[0].condition: HEALTHY needs a healthCheck on container "b"'],
    ['dependsOn cycle', { containerDefinitions: [c({ dependsOn: [{ containerName: 'b', condition: 'START' }] }), c({ name: 'b', dependsOn: [{ containerName: 'app', condition: 'START' }] })] }, 'spec.containerDefinitions: dependsOn has a cycle: app -> b -> app'],
    ['host mode hostPort differs', { networkMode: 'host', containerDefinitions: [c({ portMappings: [{ containerPort: 80, hostPort: 8080 }] })] }, 'spec.containerDefinitions[0].portMappings[0].hostPort: in host network mode hostPort must be empty or equal to containerPort (80)'],
    ['same host port twice', { containerDefinitions: [c({ portMappings: [{ containerPort: 80, hostPort: 80 }] }), c({ name: 'b', portMappings: [{ containerPort: 81, hostPort: 80 }] })] }, 'spec.containerDefinitions[1].portMappings[0].hostPort: host port tcp/80 is already used by container "app"'],
    ['bad network mode', { networkMode: 'overlay', containerDefinitions: [c()] }, 'spec.networkMode: networkMode must be bridge, host, none or awsvpc'],
    ['bad ulimit', { containerDefinitions: [c({ ulimits: [{ name: 'files', softLimit: 1, hardLimit: 2 }] })] }, 'spec.containerDefinitions[0].ulimits[0].name: ulimit name must be one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack'],
    ['bad healthcheck', { containerDefinitions: [c({ healthCheck: { command: ['curl', 'x'] } })] }, 'spec.containerDefinitions[0].healthCheck.command: healthCheck.command must start with "CMD" or "CMD-SHELL"'],
  ];
  for (const [what, spec, expected] of bad) {
    it(`rejects: ${what}`, () => {
      expect(causes(() => validateObject(td(spec)))).to.include(expected);
    });
  }

  it('rejects more than 10 containers', () => {
    const many = Array.from({ length: 11 }, (_, i) => c({ name: `c${i}` }));
    expect(causes(() => validateObject(td({ containerDefinitions: many })))).to.include(
      'spec.containerDefinitions: a task definition may have at most 10 containers',
    );
  });

  it('enforces the size limit, configurably', () => {
    const big = c({ environment: Array.from({ length: 400 }, (_, i) => ({ name: `VAR_${i}`, value: 'x'.repeat(150) })) });
    const r = causes(() => validateObject(td({ containerDefinitions: [big] })));
    expect(r[0]).to.match(/^<too large> .*the limit is 65536 bytes/);
    expect(() => validateObject(td({ containerDefinitions: [big] }), { limits: { ...DEFAULT_LIMITS, taskDefinitionBytes: 1 << 20 } })).not.to.throw();
    const small = causes(() => validateObject(td({ containerDefinitions: [c({ environment: [{ name: 'A', value: 'x'.repeat(40000) }] })] }), { limits: { ...DEFAULT_LIMITS, taskDefinitionBytes: 32 * 1024 } }));
    expect(small[0]).to.match(/the limit is 32768 bytes/);
  });

  it('reports every problem at once, each with its field path', () => {
    const r = causes(() => validateObject(td({ containerDefinitions: [c({ memory: 1, image: '' }), c({ links: ['nope'] })] }, 'bad name!')));
    expect(r).to.include('metadata.name: "bad name!" must be 1-255 letters, digits, hyphens (-) and underscores (_)');
    expect(r).to.include('spec.containerDefinitions[0].memory: memory must be at least 4 MiB');
    expect(r).to.include('spec.containerDefinitions[0].image: image is required');
  });

  it('accepts task definition names family and family:revision only where allowed', () => {
    expect(() => validateObject(td({ containerDefinitions: [c()] }, 'web:3'), { allowRevisionName: true })).not.to.throw();
    expect(causes(() => validateObject(td({ containerDefinitions: [c()] }, 'web:3')))[0]).to.match(/^metadata.name/);
    expect(causes(() => validateObject(td({ containerDefinitions: [c()] }, 'x'.repeat(256))))[0]).to.match(/^metadata.name/);
  });

  it('hashes equal content equally, whatever the key order', () => {
    const a = validateObject(td({ containerDefinitions: [c({ cpu: 1, command: ['a'] })] })).spec;
    const b = validateObject(td({ containerDefinitions: [{ command: ['a'], cpu: 1, memory: 64, image: 'busybox', name: 'app' }] })).spec;
    const d = validateObject(td({ containerDefinitions: [c({ cpu: 2, command: ['a'] })] })).spec;
    expect(contentHash(a)).to.equal(contentHash(b));
    expect(contentHash(a)).not.to.equal(contentHash(d));
  });
});

describe('the task definitions of ECS\'s documents', () => {
  for (const f of ['sleep360.json', 'console-sample-app.json', 'wordpress.json', 'xray-bridge.json', 'xray-awsvpc.json']) {
    it(`${f} converts from ECS JSON and validates`, () => {
      const raw = fixture(f);
      expect(ecsShapeOf(raw)).to.equal('task-definition');
      const m = ecsToManifest(raw);
      expect(m.kind).to.equal('TaskDefinition');
      expect(m.metadata.name).to.equal(raw.family);
      const v = validateObject(m);
      expect((v.spec as TaskDefinitionSpec).containerDefinitions.map((x) => x.name)).to.deep.equal(raw.containerDefinitions.map((x: { name: string }) => x.name));
      // and back: the ECS shape again, with every field the document gave
      const back = manifestToEcs(m);
      expect(back).to.deep.equal(raw);
    });
  }
  it('xray bridge: the dynamic UDP port stays dynamic', () => {
    const spec = validateObject(ecsToManifest(fixture('xray-bridge.json'))).spec as TaskDefinitionSpec;
    expect(spec.containerDefinitions[0].portMappings![0]).to.deep.equal({ hostPort: 0, containerPort: 2000, protocol: 'udp' });
  });
  it('describe-task-definition output round trips through the ECS shape', () => {
    const m = ecsToManifest(fixture('sleep360.json'));
    const v = validateObject(m);
    const stored = { apiVersion: 'berth.dev/v1' as const, kind: 'TaskDefinition', metadata: { name: 'sleep360:1' }, spec: v.spec, status: { family: 'sleep360', revision: 1, status: 'ACTIVE', taskDefinitionArn: new Arns().taskDefinition('sleep360:1') } };
    const ecs = taskDefinitionToEcs(stored);
    expect(ecs).to.include({ family: 'sleep360', revision: 1, status: 'ACTIVE', networkMode: 'bridge', taskDefinitionArn: 'arn:aws:ecs:us-east-1:000000000000:task-definition/sleep360:1' });
    expect(ecsShapeOf({ taskDefinition: ecs })).to.equal('describe-task-definition');
    const again = ecsToManifest({ taskDefinition: ecs });
    expect(again.metadata.name).to.equal('sleep360');
    expect(validateObject(again).spec).to.deep.equal(v.spec);
  });
  it('the service definition of the ECS Developer Guide becomes a Service manifest without its blank placeholders', () => {
    const m = ecsToManifest(fixture('service-definition.json'));
    expect(m).to.deep.equal({
      apiVersion: 'berth.dev/v1',
      kind: 'Service',
      metadata: { name: 'ecs-simple-service', namespace: 'default' },
      spec: { taskDefinition: 'sleep360:1', desiredCount: 10 },
    });
    expect(() => validateObject(m)).not.to.throw();
  });
});

describe('daemon task definitions (ECS\'s managed daemons documentation)', () => {
  const dtd = (spec: Record<string, unknown>) => ({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'd' }, spec });
  it('accepts the documentation\'s examples', () => {
    for (const f of ['daemon-log-collector.json', 'daemon-monitoring.json']) {
      const m = ecsToManifest(fixture(f), { daemon: true });
      expect(m.kind).to.equal('DaemonTaskDefinition');
      expect(() => validateObject(m)).not.to.throw();
    }
    expect(() => validateObject(dtd({ containerDefinitions: [{ name: 's', image: 'x', memory: 10, privileged: true }] }))).not.to.throw();
  });
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['networkMode', { networkMode: 'bridge', containerDefinitions: [c()] }, /^spec.networkMode: daemon task definitions cannot set networkMode: daemons always use daemon_bridge$/],
    ['portMappings', { containerDefinitions: [c({ portMappings: [{ containerPort: 80 }] })] }, /^spec.containerDefinitions\[0\].portMappings: daemon task definitions do not support "portMappings" in a container definition/],
    ['links', { containerDefinitions: [c({ links: ['x'] })] }, /do not support "links"/],
    ['volumesFrom', { containerDefinitions: [c({ volumesFrom: [] })] }, /do not support "volumesFrom"/],
    ['Docker volume', { volumes: [{ name: 'v', host: {} }], containerDefinitions: [c()] }, /^spec.volumes\[0\].host.sourcePath: daemon volumes are host bind mounts/],
    ['dockerVolumeConfiguration', { volumes: [{ name: 'v', host: { sourcePath: '/x' }, dockerVolumeConfiguration: {} }], containerDefinitions: [c()] }, /do not support "dockerVolumeConfiguration" in a volume/],
    ['linuxParameters.devices', { containerDefinitions: [c({ linuxParameters: { devices: [] } })] }, /do not support "devices" in linuxParameters/],
  ];
  for (const [what, spec, re] of bad) {
    it(`rejects ${what} with a message that says why`, () => {
      const r = causes(() => validateObject(dtd(spec)));
      expect(r.some((x) => re.test(x)), r.join('\n')).to.equal(true);
    });
  }
});

describe('other kinds', () => {
  it('validates services, tasks, instances, clusters', () => {
    const ok = [
      { kind: 'Service', metadata: { name: 's', namespace: 'default' }, spec: { taskDefinition: 'web', desiredCount: 3, deploymentConfiguration: { minimumHealthyPercent: 50, maximumPercent: 200 } } },
      { kind: 'Task', metadata: { name: newId(), namespace: 'default' }, spec: { taskDefinition: 'web:1' } },
      { kind: 'ContainerInstance', metadata: { name: newId(), namespace: 'default' }, spec: { attributes: [{ name: 'ecs.os-type', value: 'linux' }] } },
      { kind: 'Cluster', metadata: { name: 'default' } },
      { kind: 'Daemon', metadata: { name: 'logs', namespace: 'default' }, spec: { daemonTaskDefinition: 'log-collector' } },
      { kind: 'Lease', metadata: { name: 'placement', namespace: 'default' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } },
    ];
    for (const o of ok) expect(() => validateObject({ apiVersion: 'berth.dev/v1', ...o }), o.kind).not.to.throw();
    const task = validateObject({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 't' }, spec: { taskDefinition: 'x' } });
    expect((task.spec as { desiredStatus: string }).desiredStatus).to.equal('RUNNING');
  });
  it('rejects bad values naming the field', () => {
    const r = causes(() => validateObject({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 's' }, spec: { taskDefinition: 'x', desiredCount: -1, deploymentConfiguration: { maximumPercent: 50 } } }));
    expect(r).to.deep.equal(['spec.desiredCount: desiredCount must be 0 or more', 'spec.deploymentConfiguration.maximumPercent: maximumPercent must be 100-200']);
    expect(causes(() => validateObject({ apiVersion: 'v2', kind: 'Task', metadata: { name: 't' }, spec: { taskDefinition: 'x' }, extra: 1 }))).to.deep.equal([
      'apiVersion: must be berth.dev/v1',
      'extra: unknown field "extra"',
    ]);
    expect(causes(() => validateObject({ apiVersion: 'berth.dev/v1', kind: 'Pod', metadata: { name: 't' } }))).to.deep.equal(['kind: unknown kind "Pod"']);
    expect(causes(() => validateObject({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 't', colour: 1 }, spec: { taskDefinition: 'x' } }))).to.deep.equal(['metadata.colour: unknown field "colour"']);
  });
  it('finds kinds by every name a person types', () => {
    for (const n of ['tasks', 'task', 'Task', 'tk', 'tasks.berth.dev']) expect(kindByName(n)?.kind).to.equal('Task');
    expect(kindByName('td')?.kind).to.equal('TaskDefinition');
    expect(kindByName('svc')?.kind).to.equal('Service');
    expect(kindByName('ci')?.kind).to.equal('ContainerInstance');
    expect(kindByName('nope')).to.equal(undefined);
  });
});

describe('ARNs', () => {
  const arns = new Arns({ region: 'eu-west-1', account: '123456789012' });
  it('formats the long format and parses it back', () => {
    const id = newId();
    expect(id).to.match(/^[0-9a-f]{32}$/);
    const cases: Array<[string, Record<string, unknown>]> = [
      [arns.task('default', id), { resource: 'task', cluster: 'default', name: id }],
      [arns.containerInstance('prod', 'abc'), { resource: 'container-instance', cluster: 'prod', name: 'abc' }],
      [arns.service('prod', 'web'), { resource: 'service', cluster: 'prod', name: 'web' }],
      [arns.cluster('prod'), { resource: 'cluster', name: 'prod' }],
      [arns.taskDefinition('sleep360:1'), { resource: 'task-definition', name: 'sleep360:1' }],
      [arns.daemon('prod', 'logs'), { resource: 'daemon', cluster: 'prod', name: 'logs' }],
    ];
    for (const [arn, want] of cases) {
      expect(arn.startsWith('arn:aws:ecs:eu-west-1:123456789012:')).to.equal(true);
      expect(parseArn(arn)).to.include(want);
    }
    expect(parseArn('arn:aws:ecs:us-east-1:000000000000:task/abc')).to.include({ resource: 'task', name: 'abc' });
  });
  it('resolves a name, an id or an ARN, and refuses an ARN of another kind', () => {
    expect(resolveIdentifier('web', 'service')).to.deep.equal({ name: 'web' });
    expect(resolveIdentifier(arns.service('c1', 'web'), 'service')).to.deep.equal({ name: 'web', cluster: 'c1' });
    expect(() => resolveIdentifier(arns.task('c1', 'x'), 'service')).to.throw(/is a task ARN, expected a service ARN/);
    expect(() => parseArn('arn:nope')).to.throw(/not a valid ECS ARN/);
  });
});

describe('crds/', () => {
  it('is generated from the current schemas (run `npm run gen:crds` when this fails)', () => {
    const dir = join(here, '..', '..', 'crds');
    const want = new Map(renderCrds());
    const have = new Set(readdirSync(dir).filter((f) => f.endsWith('.yaml')));
    expect([...have].sort()).to.deep.equal([...want.keys()].sort());
    for (const [file, text] of want) {
      expect(readFileSync(join(dir, file), 'utf8'), `crds/${file} is stale`).to.equal(text);
    }
    expect(want.size).to.equal(KINDS.length);
  });
});
