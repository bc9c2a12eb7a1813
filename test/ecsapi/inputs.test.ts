import { expect } from 'chai';
import { startEcsServer, type EcsTestServer } from './support.ts';

const TARGET = 'AmazonEC2ContainerServiceV20141113.';

/** Inputs the fuzzer (test/apiserver/fuzz.test.ts) found answered wrongly, kept as regressions. */
describe('ECS inputs found by the fuzzer', function () {
  this.timeout(60_000);
  let s: EcsTestServer;
  before(async () => {
    s = await startEcsServer();
  });
  after(async () => s?.stop());

  it("FZ3: RegisterTaskDefinition with a member named like another document's (kind, apiVersion, serviceName, taskDefinition) is a ClientException naming it, not a 500 or another kind", async () => {
    const base = { family: 'fz3', containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32 }] };
    for (const [member, v] of [
      ['kind', { a: 1 }],
      ['apiVersion', 'berth.dev/v1'],
      ['serviceName', 'web'],
      ['taskDefinition', { family: 'other', containerDefinitions: [{ name: 'x', image: 'busybox', memory: 32 }] }],
    ] as const) {
      const r = await s.raw(`${TARGET}RegisterTaskDefinition`, JSON.stringify({ ...base, [member]: v }));
      expect([r.status, r.body.__type], `${member}: ${JSON.stringify(r.body)}`).to.deep.equal([400, 'ClientException']);
      expect(r.body.message, member).to.contain(member);
    }
    // nothing was registered under either family
    const listed = await s.raw(`${TARGET}ListTaskDefinitionFamilies`, '{}');
    expect(listed.body.families).to.not.include('fz3');
    expect(listed.body.families).to.not.include('other');
  });
});
