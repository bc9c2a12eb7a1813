import { expect } from 'chai';
import { CustomObjectsApi, KubeConfig, makeInformer, type KubernetesObject, type KubernetesListObject } from '@kubernetes/client-node';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const G = 'berth.dev';
const V = 'v1';

async function until(f: () => boolean, ms = 15_000) {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const store of ['embedded', 'etcd'] as const) {
  describe(`@kubernetes/client-node against the apiserver (${store} store)`, function () {
    this.timeout(60_000);
    let s: TestApiServer;
    let kc: KubeConfig;
    let api: CustomObjectsApi;
    before(async () => {
      s = await startApiServer({ store });
      kc = new KubeConfig();
      kc.loadFromFile(s.kubeconfigPath);
      api = kc.makeApiClient(CustomObjectsApi);
    });
    after(async () => s?.stop());

    it('creates, reads and patches custom objects', async () => {
      await api.createClusterCustomObject({ group: G, version: V, plural: 'taskdefinitions', body: { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'cn' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32 }] } } });
      const got = (await api.getClusterCustomObject({ group: G, version: V, plural: 'taskdefinitions', name: 'cn' })) as { status: { revision: number } };
      expect(got.status.revision).to.equal(1);
      await api.createNamespacedCustomObject({ group: G, version: V, namespace: 'default', plural: 'containerinstances', body: { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'i1' }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 1024 }] } } });
      const err = await api.getNamespacedCustomObject({ group: G, version: V, namespace: 'default', plural: 'tasks', name: 'absent' }).catch((e) => e);
      expect(err.code).to.equal(404);
    });

    it('feeds an informer: initial list, then adds, updates and deletes from the watch', async () => {
      const listFn = () => api.listNamespacedCustomObject({ group: G, version: V, namespace: 'default', plural: 'tasks' }) as Promise<KubernetesListObject<KubernetesObject>>;
      const informer = makeInformer(kc, `/apis/${G}/${V}/namespaces/default/tasks`, listFn);
      const seen: string[] = [];
      informer.on('add', (o) => seen.push(`add ${o.metadata?.name}`));
      informer.on('update', (o) => seen.push(`update ${o.metadata?.name} ${(o as { spec?: { desiredStatus?: string } }).spec?.desiredStatus}`));
      informer.on('delete', (o) => seen.push(`delete ${o.metadata?.name}`));
      await api.createNamespacedCustomObject({ group: G, version: V, namespace: 'default', plural: 'tasks', body: { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'pre' }, spec: { taskDefinition: 'cn' } } });
      await informer.start();
      try {
        await until(() => seen.includes('add pre'));
        await api.createNamespacedCustomObject({ group: G, version: V, namespace: 'default', plural: 'tasks', body: { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'live' }, spec: { taskDefinition: 'cn' } } });
        await until(() => seen.includes('add live'));
        // client-node 2.x sends patches as application/json-patch+json
        await api.patchNamespacedCustomObject({ group: G, version: V, namespace: 'default', plural: 'tasks', name: 'live', body: [{ op: 'replace', path: '/spec/desiredStatus', value: 'STOPPED' }] });
        await until(() => seen.includes('update live STOPPED'));
        await api.deleteNamespacedCustomObject({ group: G, version: V, namespace: 'default', plural: 'tasks', name: 'pre' });
        await until(() => seen.includes('delete pre'));
        expect(informer.list().map((o) => o.metadata?.name).sort()).to.deep.equal(['live']);
      } finally {
        await informer.stop();
      }
    });
  });
}
