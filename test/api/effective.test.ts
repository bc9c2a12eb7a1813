import { expect } from 'chai';
import { effectiveTaskDefinition } from '../../pkg/api/taskdefinition.ts';
import { demandOf } from '../../pkg/api/allocation.ts';

/** ECS's defaults apply where a task definition is read: the stored spec is as the user wrote it. */
describe('effectiveTaskDefinition', () => {
  const cases: Array<{ name: string; spec: unknown; daemon?: boolean; want: (e: any) => void }> = [
    {
      name: 'a container without essential, cpu or protocol, a task without networkMode',
      spec: { containerDefinitions: [{ name: 'a', image: 'x', memory: 64, portMappings: [{ containerPort: 80 }] }] },
      want: (e) => {
        expect(e.networkMode).to.equal('bridge');
        expect(e.containerDefinitions[0]).to.include({ essential: true, cpu: 0 });
        expect(e.containerDefinitions[0].portMappings).to.deep.equal([{ containerPort: 80, protocol: 'tcp' }]);
      },
    },
    {
      name: 'what is written wins over a default',
      spec: { networkMode: 'host', containerDefinitions: [{ name: 'a', image: 'x', memory: 64, essential: false, cpu: 128, portMappings: [{ containerPort: 53, protocol: 'udp' }] }, { name: 'b', image: 'x', memory: 8 }] },
      want: (e) => {
        expect(e.networkMode).to.equal('host');
        expect(e.containerDefinitions[0]).to.include({ essential: false, cpu: 128 });
        expect(e.containerDefinitions[0].portMappings[0].protocol).to.equal('udp');
      },
    },
    {
      name: 'health check timings and task CPU in vCPUs',
      spec: { cpu: '0.25 vCPU', memory: '1 GB', containerDefinitions: [{ name: 'a', image: 'x', healthCheck: { command: ['CMD', 'true'] } }] },
      want: (e) => {
        expect(e.cpu).to.equal('256');
        expect(e.memory).to.equal('1024');
        expect(e.containerDefinitions[0].healthCheck).to.deep.equal({ command: ['CMD', 'true'], interval: 30, timeout: 5, retries: 3 });
      },
    },
    {
      name: 'a daemon task definition gets no networkMode (daemons use daemon_bridge)',
      daemon: true,
      spec: { containerDefinitions: [{ name: 'a', image: 'x', memory: 16 }] },
      want: (e) => {
        expect(e).to.not.have.property('networkMode');
        expect(e.containerDefinitions[0]).to.include({ essential: true, cpu: 0 });
      },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const before = structuredClone(c.spec);
      const e = effectiveTaskDefinition(c.spec, c.daemon ?? false);
      c.want(e);
      expect(c.spec, 'the stored spec is not touched').to.deep.equal(before);
      expect(effectiveTaskDefinition(e, c.daemon ?? false), 'a spec with its defaults is its own effective spec').to.deep.equal(e);
    });
  }

  it('one spec object read as a task\'s and as a daemon\'s gets each schema\'s answer (the cache is per schema)', () => {
    const spec = { containerDefinitions: [{ name: 'a', image: 'x', memory: 16 }] };
    expect(effectiveTaskDefinition(spec, true)).to.not.have.property('networkMode');
    expect(effectiveTaskDefinition(spec, false)).to.include({ networkMode: 'bridge' });
    expect(effectiveTaskDefinition(spec, true)).to.not.have.property('networkMode');
  });

  it('the scheduler demands by the effective spec (a task definition written with "0.5 vCPU")', () => {
    const d = demandOf({ cpu: '0.5 vCPU', containerDefinitions: [{ name: 'a', image: 'x', memory: 64, portMappings: [{ containerPort: 80, hostPort: 8080 }] }] } as never);
    expect(d.cpu).to.equal(512);
    expect(d.ports).to.deep.equal([{ containerName: 'a', containerPort: 80, protocol: 'tcp', hostPort: 8080 }]);
  });
});
