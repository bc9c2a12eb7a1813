import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startControlPlane, type Running } from '../support/fleet.ts';
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

describe('real kubectl against a running control plane (controllers, a hollow fleet)', function () {
  this.timeout(120_000);
  let s: TestApiServer;
  let cp: Running;
  let example: string;
  let k: (args: string[], input?: string) => ReturnType<typeof kubectl>;
  const json = async (args: string[]) => {
    const r = await k([...args, '-o', 'json']);
    expect(r.code, r.stderr).to.equal(0);
    return JSON.parse(r.stdout);
  };
  const svc = () => json(['get', 'services.berth.dev/web']);
  const tasksOfWeb = async () => (await json(['get', 'tasks', '--field-selector', 'spec.group=service:web'])).items as any[];
  before(async () => {
    s = await startApiServer({ store: 'embedded' });
    cp = await startControlPlane(s, 2, { fleet: { memoryMiB: 1024, cpus: 2 } });
    k = (args, input) => kubectl(s.kubeconfigPath, args, input);
    example = await readFile(new URL('../../deploy/examples/web-service.yaml', import.meta.url), 'utf8');
  });
  after(async () => {
    await cp?.stop();
    await s?.stop();
  });

  it('re-applying the unchanged example reports the service unchanged: the spec keeps `web`, the resolved revision is in status; a new revision of the family rolls out', async () => {
    let r = await k(['apply', '-f', '-'], example);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('service.berth.dev/web created');
    r = await k(['apply', '-f', '-'], example);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('service.berth.dev/web unchanged');
    const o = await svc();
    expect([o.spec.taskDefinition, o.status.taskDefinition]).to.deep.equal(['web', 'web:1']);
    r = await k(['get', 'services.berth.dev/web', '--no-headers']);
    expect(r.stdout).to.match(/^web\s+web:1\s+3\s+/);
    await eventually(async () => (await svc()).status.runningCount === 3, 30_000, '3 running');
    // the edit the example's header describes: a new revision, and the service (naming the family) rolls to it
    r = await k(['apply', '-f', '-'], example.replace('-h, /etc]', '-h, /]'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('service.berth.dev/web unchanged');
    const rolled = await eventually(async () => {
      const x = await svc();
      const primary = x.status.deployments?.find((d: any) => d.status === 'PRIMARY');
      return x.status.taskDefinition === 'web:2' && primary?.taskDefinition === 'web:2' && x;
    }, 30_000, 'rolled to web:2');
    expect(rolled.spec.taskDefinition).to.equal('web');
    expect(rolled.metadata.generation).to.equal(1);
  });

  it('a DAEMON-strategy service naming a bare family follows it too: one copy per instance rolls to the new revision', async () => {
    const td = (arg: string) => `apiVersion: berth.dev/v1\nkind: TaskDefinition\nmetadata: {name: node}\nspec:\n  containerDefinitions:\n  - {name: app, image: busybox, memory: 16, command: [sleep, "${arg}"]}\n`;
    const daemonSvc = `apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: node}\nspec: {taskDefinition: node, schedulingStrategy: DAEMON}\n`;
    let r = await k(['apply', '-f', '-'], td('3600') + '---\n' + daemonSvc);
    expect(r.code, r.stderr).to.equal(0);
    const runningOn = async (rev: string) => (await json(['get', 'tasks', '--field-selector', 'spec.group=service:node,status.lastStatus=RUNNING'])).items.filter((t: any) => t.spec.desiredStatus === 'RUNNING' && t.spec.taskDefinition === rev).length;
    await eventually(async () => (await runningOn('node:1')) === 2, 30_000, 'a copy on each instance');
    r = await k(['apply', '-f', '-'], td('3601') + '---\n' + daemonSvc);
    expect(r.stdout).to.contain('service.berth.dev/node unchanged');
    await eventually(async () => (await runningOn('node:2')) === 2 && (await json(['get', 'services.berth.dev/node'])).status.taskDefinition === 'node:2', 30_000, 'rolled to node:2');
    r = await k(['delete', 'services.berth.dev/node', '--wait=true', '--timeout=60s']);
    expect(r.code, r.stderr).to.equal(0);
  });

  it('kubectl scale writes spec.desiredCount through the scale subresource (autoscaling/v1 Scale); daemons have none', async () => {
    let r = await k(['scale', 'services.berth.dev/web', '--replicas=2']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('service.berth.dev/web scaled');
    expect((await svc()).spec.desiredCount).to.equal(2);
    const scale = await eventually(async () => {
      const x = JSON.parse((await k(['get', '--raw', '/apis/berth.dev/v1/namespaces/default/services/web/scale'])).stdout);
      return x.status.replicas === 2 && x;
    }, 30_000, 'the scale reports 2 running');
    expect(scale).to.deep.include({ apiVersion: 'autoscaling/v1', kind: 'Scale', spec: { replicas: 2 } });
    // a precondition on a stale version conflicts; a bad count names its field
    const path = '/apis/berth.dev/v1/namespaces/default/services/web/scale';
    let w = await s.call('PUT', path, { ...scale, metadata: { ...scale.metadata, resourceVersion: '1' }, spec: { replicas: 3 } });
    expect([w.status, w.body.reason]).to.deep.equal([409, 'Conflict']);
    w = await s.call('PUT', path, { ...scale, spec: { replicas: -1 } });
    expect([w.status, w.body.details?.causes?.[0]?.field]).to.deep.equal([422, 'spec.replicas']);
    expect((await svc()).spec.desiredCount).to.equal(2);
    const disc = JSON.parse((await k(['get', '--raw', '/apis/berth.dev/v1'])).stdout).resources.map((x: any) => x.name);
    expect(disc).to.include('services/scale');
    expect(disc).to.not.include('daemons/scale');
    r = await k(['scale', 'daemons.berth.dev/x', '--replicas=1']);
    expect(r.code).to.not.equal(0);
  });

  it('kubectl describe and kubectl events show what the controllers report (service events, task stops), selected by involvedObject', async () => {
    const d = await eventually(async () => {
      const r = await k(['describe', 'services.berth.dev/web']);
      return /Events:[\s\S]*SteadyState[\s\S]*has reached a steady state/.test(r.stdout) && r.stdout;
    }, 30_000, 'describe shows the steady state event');
    expect(d).to.match(/Normal\s+SteadyState\s+\S+\s+service-controller/);
    let r = await k(['events', '--for', 'services.berth.dev/web']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE/);
    expect(r.stdout).to.match(/Service\/web\s+\(service web\) has stopped 1 running tasks/);
    r = await k(['get', 'events', '--field-selector', 'involvedObject.kind=Task']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/task\/\w+\s+Task stopped: Service scaled down/);
    const list = await json(['get', 'events', '--field-selector', 'involvedObject.kind=Service,involvedObject.name=web']);
    expect(list.items.length).to.be.greaterThan(0);
    for (const e of list.items) expect(e.involvedObject).to.include({ apiVersion: 'berth.dev/v1', kind: 'Service', name: 'web', namespace: 'default' });
    const one = await json(['get', 'events', list.items[0].metadata.name]);
    expect(one.message).to.equal(list.items[0].message);
    r = await k(['get', 'events', '--field-selector', 'spec.colour=red']);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.contain('spec.colour');
  });

  it('a placement failure is a Warning event (FailedPlacement) on its service', async () => {
    const big = `apiVersion: berth.dev/v1\nkind: TaskDefinition\nmetadata: {name: big}\nspec:\n  containerDefinitions:\n  - {name: app, image: busybox, memory: 4096}\n---\napiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: big}\nspec: {taskDefinition: big, desiredCount: 1}\n`;
    let r = await k(['apply', '-f', '-'], big);
    expect(r.code, r.stderr).to.equal(0);
    const out = await eventually(async () => {
      const x = await k(['events', '--for', 'services.berth.dev/big', '--types=Warning']);
      return /Warning\s+FailedPlacement\s+Service\/big\s+\(service big\) was unable to place a task/.test(x.stdout) && x.stdout;
    }, 30_000, 'a FailedPlacement event');
    expect(out).to.not.match(/Normal/);
    r = await k(['delete', 'services.berth.dev/big', '--wait=true', '--timeout=60s']);
    expect(r.code, r.stderr).to.equal(0);
  });

  it('errors name the qualified resource (services.berth.dev), with the group in details; server-side apply is refused with what to use instead', async () => {
    let r = await k(['get', 'services.berth.dev/nope']);
    expect(r.stderr).to.contain('services.berth.dev "nope" not found');
    const nf = await s.call('GET', '/apis/berth.dev/v1/namespaces/default/services/nope');
    expect(nf.body.details).to.deep.equal({ name: 'nope', kind: 'services', group: 'berth.dev' });
    r = await k(['create', '-f', '-'], example.split('---')[1]);
    expect(r.stderr).to.contain('services.berth.dev "web" already exists');
    const cur = await svc();
    r = await k(['replace', '-f', '-'], JSON.stringify({ ...cur, metadata: { ...cur.metadata, resourceVersion: '1' } }));
    expect(r.stderr).to.contain('Operation cannot be fulfilled on services.berth.dev "web": the object has been modified');
    r = await k(['apply', '--server-side', '-f', '-'], example);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.contain('server-side apply is not supported; use client-side apply');
  });

  it('discovery lists the verbs the server implements: every listed list and watch answers, kubectl get -w on events streams', async () => {
    const calls: Array<Promise<[string, number]>> = [];
    for (const base of ['/api/v1', '/apis/berth.dev/v1']) {
      const doc = (await s.call('GET', base)).body;
      for (const r of doc.resources.filter((x: any) => !x.name.includes('/'))) {
        const path = `${base}${r.namespaced ? '/namespaces/default' : ''}/${r.name}`;
        if (r.verbs.includes('list')) calls.push(s.call('GET', path).then((x) => [`list ${path}`, x.status]));
        if (r.verbs.includes('watch')) calls.push(s.call('GET', `${path}?watch=1&timeoutSeconds=1`).then((x) => [`watch ${path}`, x.status]));
      }
    }
    const answers = await Promise.all(calls);
    expect(answers.length).to.be.greaterThan(10);
    expect(answers.filter(([, status]) => status !== 200)).to.deep.equal([]);
    const watch = kubectlSpawn(s.kubeconfigPath, ['get', 'events', '-w', '--field-selector', 'involvedObject.kind=Task']);
    try {
      await until(() => /^LAST SEEN/m.test(watch.output()));
      const r = await k(['scale', 'services.berth.dev/web', '--replicas=1']);
      expect(r.code, r.stderr).to.equal(0);
      await until(() => (watch.output().match(/Task stopped: Service scaled down/g)?.length ?? 0) >= 2, 30_000);
    } finally {
      watch.child.kill();
    }
  });

  it('the everyday commands: explain, edit (an EDITOR script), label, annotate, -o wide, --show-labels, -o jsonpath, api-versions', async () => {
    let r = await k(['explain', 'services.berth.dev.spec.desiredCount']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/FIELD:\s+desiredCount <integer>/);
    r = await kubectl(s.kubeconfigPath, ['edit', 'services.berth.dev/web'], undefined, { EDITOR: `sed -i -e 's/^  desiredCount: .*/  desiredCount: 2/'` });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('service.berth.dev/web edited');
    r = await k(['label', 'services.berth.dev/web', 'tier=front']);
    expect(r.stdout).to.contain('service.berth.dev/web labeled');
    r = await k(['annotate', 'services.berth.dev/web', 'owner=ops']);
    expect(r.stdout).to.contain('service.berth.dev/web annotated');
    r = await k(['get', 'services.berth.dev', '-o', 'wide', '--show-labels', '-l', 'tier=front']);
    expect(r.stdout).to.match(/^NAME\s+TASK-DEFINITION\s+DESIRED\s+RUNNING\s+PENDING\s+STATUS\s+STRATEGY\s+AGE\s+LABELS\n/);
    expect(r.stdout, r.stdout).to.match(/\nweb\s+web:2\s+2\s+\d+\s+\d+\s+ACTIVE\s+REPLICA\s+\S+\s+tier=front\n/);
    r = await k(['get', 'services.berth.dev/web', '-o', 'jsonpath={.spec.desiredCount} {.metadata.annotations.owner} {.status.taskDefinition}']);
    expect(r.stdout).to.equal('2 ops web:2');
    r = await k(['api-versions']);
    expect(r.stdout.split('\n')).to.include.members(['berth.dev/v1', 'v1', 'authorization.k8s.io/v1']);
  });

  it('kubectl replace (without the finalizer) then kubectl delete leaves no task running', async () => {
    const cur = await svc();
    delete cur.metadata.finalizers;
    let r = await k(['replace', '-f', '-'], JSON.stringify(cur));
    expect(r.code, r.stderr).to.equal(0);
    expect((await svc()).metadata.finalizers).to.deep.equal(['berth.dev/controller']);
    r = await k(['delete', '-f', '-', '--wait=true', '--timeout=60s'], example.split('---')[1]);
    expect(r.code, r.stderr).to.equal(0);
    r = await k(['get', 'services.berth.dev/web']);
    expect(r.code).to.not.equal(0);
    const left = (await tasksOfWeb()).filter((t) => t.status?.lastStatus !== 'STOPPED');
    expect(left.map((t) => t.metadata.name)).to.deep.equal([]);
  });
});
