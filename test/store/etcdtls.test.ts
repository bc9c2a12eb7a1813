import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { openStore, type EtcdTlsFiles } from '../../pkg/store/open.ts';
import { caIn, createCa, issueCertificate } from '../../pkg/tls/ca.ts';
import { startEtcdCluster, type EtcdCluster } from '../support/etcdcluster.ts';

/** C15: the store spec reaches an etcd that serves TLS and requires client certificates. */
describe('openStore over TLS to etcd with a CA and a client certificate (C15)', function () {
  this.timeout(90_000);
  let dir: string;
  let etcd: EtcdCluster;
  const f = (n: string) => join(dir, n);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-etcdtls-'));
    await createCa({ dir });
    const ca = caIn(dir);
    await issueCertificate({ ca, dir, base: 'etcd-1', role: 'peer', commonName: 'etcd-1', names: ['127.0.0.1'] });
    await issueCertificate({ ca, dir, base: 'berth-apiserver', role: 'client', commonName: 'berth-apiserver' });
    etcd = await startEtcdCluster({ members: 1, tls: { caFile: ca.certFile, certFile: f('etcd-1.crt'), keyFile: f('etcd-1.key'), clientCertFile: f('berth-apiserver.crt'), clientKeyFile: f('berth-apiserver.key') } });
  });
  after(async () => {
    await etcd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('C15: with --etcd-cafile/--etcd-certfile/--etcd-keyfile it writes and reads', async () => {
    expect(etcd.storeUrl).to.match(/^etcd\+https:\/\//);
    const store = await openStore(etcd.storeUrl, { tls: { caFile: f('ca.crt'), certFile: f('berth-apiserver.crt'), keyFile: f('berth-apiserver.key') } });
    try {
      const rev = await store.currentRevision();
      expect(rev).to.be.a('number');
    } finally {
      await store.close();
    }
  });

  it('C15: without the client certificate, or trusting another CA, it refuses with the spec named', async () => {
    const other = join(dir, 'other');
    await createCa({ dir: other });
    for (const tls of [{ caFile: f('ca.crt') }, { caFile: join(other, 'ca.crt'), certFile: f('berth-apiserver.crt'), keyFile: f('berth-apiserver.key') }]) {
      const err = await openStore(etcd.storeUrl, { tls }).then(
        async (s) => {
          await s.close();
          return undefined;
        },
        (e: Error) => e,
      );
      expect(err, JSON.stringify(tls)).to.be.instanceOf(Error);
      expect(err!.message).to.contain('cannot reach etcd');
    }
  });

  it('C15: bad TLS flags are 400s naming the flag', async () => {
    await writeFile(f('junk.pem'), 'not a certificate');
    const cases: Array<[EtcdTlsFiles, string, string?]> = [
      [{ caFile: f('missing.crt') }, '--etcd-cafile'],
      [{ caFile: f('junk.pem') }, 'not a PEM certificate'],
      [{ certFile: f('berth-apiserver.crt') }, '--etcd-certfile and --etcd-keyfile go together'],
      [{ certFile: f('berth-apiserver.crt'), keyFile: f('berth-apiserver.crt') }, '--etcd-keyfile'],
      [{ caFile: f('ca.crt') }, 'write etcd+https', etcd.storeUrl.replace('etcd+https', 'etcd')],
    ];
    for (const [tls, msg, spec] of cases) {
      const err = await openStore(spec ?? etcd.storeUrl, { tls }).then(() => undefined, (e: Error) => e);
      expect(err && isBerthError(err, 'BadRequest'), `${JSON.stringify(tls)}: ${err?.message}`).to.equal(true);
      expect(err!.message).to.contain(msg);
    }
  });
});
