import { EtcdStore } from '../../pkg/store/etcd.ts';
import { openStore } from '../../pkg/store/open.ts';
import { startEtcd, type EtcdProcess } from '../support/etcd.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcpproxy.ts';
import { describeStoreConformance } from './conformance.ts';
import { expect } from 'chai';
import { isBerthError } from '../../pkg/errors/errors.ts';

let etcd: EtcdProcess;
let proxy: TcpProxy;
let store: EtcdStore;

describeStoreConformance(
  'etcd',
  async () => {
    etcd = await startEtcd();
    proxy = await startTcpProxy(etcd.port);
    // the store under test talks through the proxy, so its connections can be cut
    store = new EtcdStore({ hosts: [`http://127.0.0.1:${proxy.port}`] });
    return {
      store,
      other: async () => new EtcdStore({ hosts: [etcd.endpoint] }),
      cut: () => proxy.cut(),
    };
  },
  async () => {
    await store?.close();
    await proxy?.close();
    await etcd?.stop();
  },
  { networked: true },
);

describe('openStore', () => {
  it('refuses specs it cannot use, naming the value', async () => {
    for (const spec of ['', 'sqlite:/x', 'etcd://', 'etcd://nohostport', 'embedded:']) {
      try {
        await openStore(spec);
        expect.fail(`accepted ${spec}`);
      } catch (e) {
        expect(isBerthError(e, 'BadRequest'), String(e)).to.equal(true);
        expect((e as Error).message).to.include('--store');
      }
    }
  });
});
