import { expect } from 'chai';
import { DescribeDaemonCommand, DescribeTaskDefinitionCommand, DescribeTasksCommand, type ECSClient } from '@aws-sdk/client-ecs';
import { startEcsServer, type EcsTestServer } from '../ecsapi/support.ts';
import { eventually, startControlPlane, type Running } from '../support/fleet.ts';
import { kubectl } from '../support/kubectl.ts';

/**
 * The server never rewrites what the user owns in spec (kubectl's conventions): a re-apply of
 * an unchanged file is `unchanged` for task definitions (ECS's defaults are applied where the
 * spec is read, not stored), daemons and tasks naming a family (the revision they run is
 * status.taskDefinition); the ECS face still answers with ECS's defaults and the resolved
 * revisions; a daemon naming a family follows its newer revisions.
 */

// no essential, cpu, protocol, networkMode, health check timings: ECS's defaults
const tdYaml = (cmd: string) => `apiVersion: berth.dev/v1
kind: TaskDefinition
metadata:
  name: specweb
spec:
  containerDefinitions:
  - name: web
    image: busybox
    memory: 64
    command: ["sleep", "${cmd}"]
    portMappings:
    - containerPort: 8080
    healthCheck:
      command: ["CMD-SHELL", "true"]
`;
const dtdYaml = (ports: string, cmd = '3600', family = 'specagent') => `apiVersion: berth.dev/v1
kind: DaemonTaskDefinition
metadata:
  name: ${family}
  annotations: {berth.dev/ports: "${ports}"}
spec:
  containerDefinitions:
  - name: agent
    image: busybox
    memory: 32
    command: ["sleep", "${cmd}"]
`;
const daemonYaml = (name: string, td: string) => `apiVersion: berth.dev/v1
kind: Daemon
metadata:
  name: ${name}
  namespace: specs
spec:
  daemonTaskDefinition: ${td}
`;
const taskYaml = `apiVersion: berth.dev/v1
kind: Task
metadata:
  name: once
  namespace: specs
spec:
  taskDefinition: specweb
`;

describe('the spec is the user\'s: kubectl re-applies say unchanged (real kubectl, ECS face through the SDK)', function () {
  this.timeout(120_000);
  let e: EcsTestServer;
  let ecs: ECSClient;
  let cp: Running | undefined;
  let k: (args: string[], input?: string) => ReturnType<typeof kubectl>;
  before(async () => {
    e = await startEcsServer();
    ecs = e.client();
    k = (args, input) => kubectl(e.api.kubeconfigPath, args, input);
    const r = await k(['apply', '-f', '-'], 'apiVersion: berth.dev/v1\nkind: Cluster\nmetadata:\n  name: specs\n');
    expect(r.code, r.stderr).to.equal(0);
  });
  after(async () => {
    await cp?.stop();
    await e?.stop();
  });

  it('an unchanged task definition re-applied is unchanged; the stored spec is as written; the ECS face answers with the defaults', async () => {
    let r = await k(['apply', '-f', '-'], tdYaml('360'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('created');
    r = await k(['apply', '-f', '-'], tdYaml('360'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.equal('taskdefinition.berth.dev/specweb unchanged');
    r = await k(['get', 'td', 'specweb', '-o', 'json']);
    const td = JSON.parse(r.stdout);
    expect(td.status.revision).to.equal(1);
    expect(td.spec).to.deep.equal({
      containerDefinitions: [{ name: 'web', image: 'busybox', memory: 64, command: ['sleep', '360'], portMappings: [{ containerPort: 8080 }], healthCheck: { command: ['CMD-SHELL', 'true'] } }],
    });
    // the defaults written out are the same content: no new revision
    r = await k(['apply', '-f', '-'], tdYaml('360').replace('    memory: 64', '    memory: 64\n    essential: true\n    cpu: 0'));
    expect(r.code, r.stderr).to.equal(0);
    r = await k(['get', 'td', '-o', 'jsonpath={.items[*].metadata.name}']);
    expect(r.stdout.split(' ').filter((n) => n.startsWith('specweb:'))).to.deep.equal(['specweb:1']);
    const out = (await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'specweb' }))).taskDefinition!;
    expect(out.revision).to.equal(1);
    expect(out.networkMode).to.equal('bridge');
    const c = out.containerDefinitions![0];
    expect(c.essential).to.equal(true);
    expect(c.cpu).to.equal(0);
    expect(c.portMappings).to.deep.equal([{ containerPort: 8080, protocol: 'tcp' }]);
    expect(c.healthCheck).to.deep.equal({ command: ['CMD-SHELL', 'true'], interval: 30, timeout: 5, retries: 3 });
    expect(c.environment).to.deep.equal([]);
  });

  it('a task naming a family: re-applied unchanged, spec as written, status.taskDefinition and DescribeTasks the revision', async () => {
    let r = await k(['apply', '-f', '-'], taskYaml);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('task.berth.dev/once created');
    r = await k(['apply', '-f', '-'], taskYaml);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.equal('task.berth.dev/once unchanged');
    r = await k(['get', 'task', 'once', '-n', 'specs', '-o', 'jsonpath={.spec.taskDefinition} {.status.taskDefinition}']);
    expect(r.stdout).to.equal('specweb specweb:1');
    r = await k(['get', 'task', 'once', '-n', 'specs', '--no-headers']);
    expect(r.stdout).to.match(/^once\s+specweb:1\s/);
    const t = (await ecs.send(new DescribeTasksCommand({ cluster: 'specs', tasks: ['once'] }))).tasks![0];
    expect(t.taskDefinitionArn).to.match(/:task-definition\/specweb:1$/);
    // the spec's task definition is fixed: naming another is refused, naming the same is no change
    r = await k(['patch', 'task', 'once', '-n', 'specs', '--type=merge', '-p', '{"spec":{"taskDefinition":"specweb:1"}}']);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.contain('spec.taskDefinition');
  });

  it('a daemon naming a family: re-applied unchanged, follows a newer revision, not one whose ports clash', async () => {
    let r = await k(['apply', '-f', '-'], dtdYaml('tcp/7001'));
    expect(r.code, r.stderr).to.equal(0);
    r = await k(['apply', '-f', '-'], daemonYaml('agentd', 'specagent'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('daemon.berth.dev/agentd created');
    r = await k(['apply', '-f', '-'], daemonYaml('agentd', 'specagent'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.equal('daemon.berth.dev/agentd unchanged');
    r = await k(['get', 'daemon', 'agentd', '-n', 'specs', '-o', 'jsonpath={.spec.daemonTaskDefinition} {.status.taskDefinition}']);
    expect(r.stdout).to.equal('specagent specagent:1');
    // another daemon holds tcp/7002
    r = await k(['apply', '-f', '-'], dtdYaml('tcp/7002', '3600', 'specother'));
    expect(r.code, r.stderr).to.equal(0);
    r = await k(['apply', '-f', '-'], daemonYaml('otherd', 'specother:1'));
    expect(r.code, r.stderr).to.equal(0);

    const daemonArn = (await k(['get', 'daemon', 'agentd', '-n', 'specs', '-o', 'jsonpath={.status.daemonArn}'])).stdout;
    const revisionArn = async () => (await ecs.send(new DescribeDaemonCommand({ daemonArn }))).daemon!.currentRevisions?.[0]?.arn;
    const first = await revisionArn();
    cp = await startControlPlane({ url: e.api.url, adminToken: e.api.adminToken, bootstrapToken: e.api.bootstrapToken }, 0);
    const revision = async () => (await k(['get', 'daemon', 'agentd', '-n', 'specs', '-o', 'jsonpath={.status.taskDefinition}'])).stdout;
    // an edited daemon task definition applied: the daemon takes the new revision
    r = await k(['apply', '-f', '-'], dtdYaml('tcp/7001', '3601'));
    expect(r.code, r.stderr).to.equal(0);
    await eventually(async () => (await revision()) === 'specagent:2', 20_000, 'the daemon to follow specagent:2');
    // the ECS face's current revision is the one followed
    expect(await revisionArn()).to.be.a('string').and.not.equal(first);
    r = await k(['get', 'daemon', 'agentd', '-n', 'specs', '-o', 'jsonpath={.status.daemonTaskDefinitionArn}']);
    expect(r.stdout).to.match(/:daemon-task-definition\/specagent:2$/);
    r = await k(['apply', '-f', '-'], daemonYaml('agentd', 'specagent'));
    expect(r.stdout.trim()).to.equal('daemon.berth.dev/agentd unchanged');
    // a revision listening on the other daemon's port is not taken
    r = await k(['apply', '-f', '-'], dtdYaml('tcp/7002', '3602'));
    expect(r.code, r.stderr).to.equal(0);
    await new Promise((res) => setTimeout(res, 2000));
    expect(await revision()).to.equal('specagent:2');
  });
});
