import { expect } from 'chai';
import { RegisterTaskDefinitionCommand, type ContainerDefinition } from '@aws-sdk/client-ecs';
import { startEcsServer, thrown, type EcsTestServer } from '../ecsapi/support.ts';

/**
 * D12 on both API faces: what the agent cannot run is refused when the task definition is
 * registered -- a 4xx naming the field through the resource API, a ClientException naming
 * it through the ECS API -- and nothing is stored.
 */
describe('D12: registration refuses what the agent would drop, on both API faces', function () {
  this.timeout(60_000);
  let s: EcsTestServer;
  before(async () => {
    s = await startEcsServer();
  });
  after(async () => s?.stop());

  const base = { name: 'app', image: 'busybox', memory: 16 };
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['a secret reference that names no secret', { containerDefinitions: [{ ...base, secrets: [{ name: 'PW', valueFrom: 'arn:aws:kms:us-east-1:0:key/pw' }] }] }, 'containerDefinitions[0].secrets[0].valueFrom'],
    ['an environment file that is not an S3 .env object', { containerDefinitions: [{ ...base, environmentFiles: [{ value: 'arn:aws:s3:::b/x.txt', type: 's3' }] }] }, 'containerDefinitions[0].environmentFiles[0].value'],
    ['taskRoleArn', { taskRoleArn: 'arn:aws:iam::0:role/app', containerDefinitions: [base] }, 'taskRoleArn'],
    ['awsvpc dnsServers', { networkMode: 'awsvpc', containerDefinitions: [{ ...base, dnsServers: ['10.0.0.2'] }] }, 'containerDefinitions[0].dnsServers'],
    ['mutual links', { containerDefinitions: [{ ...base, links: ['b'] }, { name: 'b', image: 'busybox', memory: 16, links: ['app'] }] }, 'containerDefinitions'],
  ];

  for (const [what, spec, field] of cases) {
    it(what, async () => {
      const family = `refused-${what.replace(/\W+/g, '-')}`;
      const r = await s.api.call('POST', '/apis/berth.dev/v1/taskdefinitions', { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: family }, spec });
      expect(r.status, JSON.stringify(r.body)).to.equal(422);
      expect(r.body.details.causes.map((c: { field: string }) => c.field)).to.include(`spec.${field}`);
      const e = await thrown(() => s.client().send(new RegisterTaskDefinitionCommand({ family, ...(spec as { containerDefinitions: ContainerDefinition[] }) })));
      expect(e.name).to.equal('ClientException');
      expect(e.message).to.contain(field);
      expect((await s.api.call('GET', `/apis/berth.dev/v1/taskdefinitions/${family}`)).status, 'nothing stored').to.equal(404);
    });
  }
});
