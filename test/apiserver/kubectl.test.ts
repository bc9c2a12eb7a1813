import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { kubectl, kubectlSpawn } from '../support/kubectl.ts';

const tdYaml = (cmd: string) => `apiVersion: berth.dev/v1
kind: TaskDefinition
metadata:
  name: sleeper
spec:
  containerDefinitions:
  - name: sleep
    image: busybox
    memory: 64
    command: ["sleep", "${cmd}"]
`;
const svcYaml = (count: number) => `apiVersion: berth.dev/v1
kind: Service
metadata:
  name: web
  namespace: prod
  labels: {tier: front}
spec:
  taskDefinition: sleeper
  desiredCount: ${count}
`;

async function until(f: () => boolean, ms = 10_000) {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const store of ['embedded', 'etcd'] as const) {
  describe(`real kubectl against the apiserver (${store} store)`, function () {
    this.timeout(90_000);
    let s: TestApiServer;
    let k: (args: string[], input?: string) => ReturnType<typeof kubectl>;
    before(async () => {
      s = await startApiServer({ store });
      k = (args, input) => kubectl(s.kubeconfigPath, args, input);
    });
    after(async () => s?.stop());

    it('kubectl get --chunk-size pages through every object (continue tokens from the store)', async () => {
      for (let i = 0; i < 7; i++) {
        const r = await s.call('POST', '/apis/berth.dev/v1/clusters', { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: `chunk-${i}`, labels: { chunk: 'yes' } } });
        expect(r.status).to.equal(201);
      }
      const r = await k(['get', 'clusters', '-l', 'chunk=yes', '--chunk-size=2', '-o', 'json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout).items.map((i: any) => i.metadata.name)).to.deep.equal(Array.from({ length: 7 }, (_, i) => `chunk-${i}`));
      const t = await k(['get', 'clusters', '-l', 'chunk=yes', '--chunk-size=3', '--no-headers']);
      expect(t.code, t.stderr).to.equal(0);
      expect(t.stdout.trim().split('\n')).to.have.length(7);
    });

    it('lists the api resources with short names', async () => {
      const r = await k(['api-resources', '--api-group=berth.dev']);
      expect(r.code, r.stderr).to.equal(0);
      for (const line of ['taskdefinitions', 'containerinstances', 'services', 'tasks', 'clusters']) expect(r.stdout).to.contain(line);
      expect(r.stdout).to.match(/services\s+svc\s+berth\.dev\/v1\s+true\s+Service/);
    });

    it('applies a task definition, is a no-op the second time, registers a new revision after an edit', async () => {
      let r = await k(['apply', '-f', '-'], tdYaml('360'));
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.contain('created');
      r = await k(['apply', '-f', '-'], tdYaml('360'));
      expect(r.code, r.stderr).to.equal(0);
      r = await k(['get', 'td', '-o', 'json']);
      expect(JSON.parse(r.stdout).items.map((i: any) => i.metadata.name)).to.deep.equal(['sleeper:1']);
      r = await k(['apply', '-f', '-'], tdYaml('361'));
      expect(r.code, r.stderr).to.equal(0);
      r = await k(['get', 'taskdefinitions']);
      expect(r.stdout).to.match(/sleeper:1\s+sleeper\s+1\s+ACTIVE/);
      expect(r.stdout).to.match(/sleeper:2\s+sleeper\s+2\s+ACTIVE/);
      r = await k(['get', 'td', 'sleeper', '-o', 'jsonpath={.status.revision} {.spec.containerDefinitions[0].command[1]}']);
      expect(r.stdout).to.equal('2 361');
      // strict field validation: unknown fields are errors
      r = await k(['apply', '-f', '-'], tdYaml('1').replace('    memory: 64', '    memory: 64\n    colour: red'));
      expect(r.code).to.not.equal(0);
      expect(r.stderr).to.contain('colour');
    });

    it('creates, updates, gets, watches, describes and deletes a service in a cluster namespace', async () => {
      let r = await k(['apply', '-f', '-'], `apiVersion: berth.dev/v1\nkind: Cluster\nmetadata:\n  name: prod\n`);
      expect(r.code, r.stderr).to.equal(0);
      const watch = kubectlSpawn(s.kubeconfigPath, ['get', 'services', '-n', 'prod', '-w', '--output-watch-events']);
      try {
        r = await k(['apply', '-f', '-'], svcYaml(2));
        expect(r.code, r.stderr).to.equal(0);
        r = await k(['apply', '-f', '-'], svcYaml(3));
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.contain('configured');
        r = await k(['get', 'svc', 'web', '-n', 'prod', '-o', 'yaml']);
        expect(r.stdout).to.match(/desiredCount: 3/);
        expect(r.stdout).to.match(/generation: 2/);
        r = await k(['get', 'svc', '-n', 'prod', '-l', 'tier=front']);
        expect(r.stdout).to.match(/^NAME\s+/);
        expect(r.stdout).to.match(/\nweb\s+/);
        r = await k(['get', 'svc', '-n', 'prod', '-l', 'tier=back']);
        expect(r.stdout + r.stderr).to.contain('No resources found');
        r = await k(['get', 'svc', '-A', '--field-selector', 'metadata.namespace=prod', '-o', 'name']);
        expect(r.stdout.trim()).to.equal('service.berth.dev/web');
        r = await k(['describe', 'svc', 'web', '-n', 'prod']);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.match(/Desired Count:\s+3/);
        await until(() => /MODIFIED\s+web/.test(watch.output()));
        expect(watch.output()).to.match(/ADDED\s+web/);
        // services carry the controller's finalizer: delete marks them, the controller
        // (absent here) drains the tasks and lets go; do what it does last
        r = await k(['delete', 'svc', 'web', '-n', 'prod', '--wait=false']);
        expect(r.code, r.stderr).to.equal(0);
        r = await k(['get', 'svc', 'web', '-n', 'prod', '-o', 'jsonpath={.metadata.deletionTimestamp}']);
        expect(r.stdout).to.match(/^\d{4}-/);
        r = await k(['patch', 'svc', 'web', '-n', 'prod', '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
        expect(r.code, r.stderr).to.equal(0);
        r = await k(['get', 'svc', 'web', '-n', 'prod']);
        expect(r.code).to.not.equal(0);
        expect(r.stderr).to.contain('NotFound');
      } finally {
        watch.child.kill();
      }
    });

    it('deletes a task definition family by deregistering every revision', async () => {
      const r = await k(['delete', 'td', 'sleeper']);
      expect(r.code, r.stderr).to.equal(0);
      const all = JSON.parse((await k(['get', 'td', '-o', 'json'])).stdout).items;
      expect(all.map((i: any) => `${i.metadata.name}=${i.status.status}`).sort()).to.deep.equal(['sleeper:1=INACTIVE', 'sleeper:2=INACTIVE']);
    });
  });
}
