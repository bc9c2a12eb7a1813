import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { expect } from 'chai';
import { runCli, type CliDeps } from '../../pkg/cli/commands.ts';
import { certificateNames, certificateSubject } from '../../pkg/tls/ca.ts';

/** `berth certs`, through the CLI entry point, checked with openssl and real TLS handshakes. */
describe('berth certs (CLI): a CA, apiserver, etcd member and client certificates', function () {
  this.timeout(60_000);
  let dir: string;
  const run = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const deps: CliDeps = {
      io: { out: (s) => void (out += s), err: (s) => void (err += s), stdin: async () => '' },
      version: 'test',
      connect: async () => {
        throw new Error('berth certs needs no apiserver');
      },
    };
    const code = await runCli(argv, deps);
    return { code, out, err };
  };
  const mode = (f: string) => statSync(f).mode & 0o777;
  const eku = (f: string) => execFileSync('openssl', ['x509', '-in', f, '-noout', '-ext', 'extendedKeyUsage']).toString();
  const verify = (ca: string, f: string) => execFileSync('openssl', ['verify', '-CAfile', ca, f]).toString().trim();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-certs-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('ca: ca.crt and ca.key (0600) in a 0700 dir; a second run keeps them, --force replaces them', async () => {
    const pki = join(dir, 'pki');
    let r = await run('certs', 'ca', '--dir', pki);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/^created the CA/);
    expect(mode(pki)).to.equal(0o700);
    expect(mode(join(pki, 'ca.key'))).to.equal(0o600);
    expect(execFileSync('openssl', ['x509', '-in', join(pki, 'ca.crt'), '-noout', '-ext', 'basicConstraints']).toString()).to.match(/CA:TRUE/);
    const first = readFileSync(join(pki, 'ca.key'), 'utf8');
    r = await run('certs', 'ca', '--dir', pki);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/^kept the CA/);
    expect(readFileSync(join(pki, 'ca.key'), 'utf8')).to.equal(first);
    r = await run('certs', 'ca', '--dir', pki, '--force');
    expect(r.code, r.err).to.equal(0);
    expect(readFileSync(join(pki, 'ca.key'), 'utf8')).to.not.equal(first);
    expect(mode(join(pki, 'ca.key'))).to.equal(0o600);
  });

  it('apiserver: a serving certificate for every name, verified by a real TLS client with the CA; other names need --force', async () => {
    expect((await run('certs', 'ca', '--dir', dir)).code).to.equal(0);
    let r = await run('certs', 'apiserver', '--dir', dir, '--names', '127.0.0.1,berth.example.internal,::1');
    expect(r.code, r.err).to.equal(0);
    const crt = join(dir, 'apiserver.crt');
    expect(await certificateNames(crt)).to.deep.equal(['DNS:berth.example.internal', 'IP:127.0.0.1', 'IP:::1']);
    expect(eku(crt)).to.match(/TLS Web Server Authentication/).and.not.match(/Client/);
    expect(verify(join(dir, 'ca.crt'), crt)).to.match(/OK$/);
    expect(mode(join(dir, 'apiserver.key'))).to.equal(0o600);

    // a real handshake: Node verifies the address against the SANs and the chain against the CA
    const srv = createServer({ cert: readFileSync(crt), key: readFileSync(join(dir, 'apiserver.key')) }, (_q, s) => s.end('ok'));
    await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
    const port = (srv.address() as { port: number }).port;
    const handshake = (servername: string | undefined, ca: Buffer) =>
      new Promise<string>((res) => {
        const s = connect({ host: '127.0.0.1', port, ca, ...(servername ? { servername } : {}) }, () => {
          res(s.authorized ? 'authorized' : String(s.authorizationError));
          s.end();
        });
        s.on('error', (e) => res(e.message));
      });
    try {
      expect(await handshake(undefined, readFileSync(join(dir, 'ca.crt')))).to.equal('authorized');
      expect(await handshake('berth.example.internal', readFileSync(join(dir, 'ca.crt')))).to.equal('authorized');
      expect(await handshake('other.example.internal', readFileSync(join(dir, 'ca.crt')))).to.match(/altnames|Hostname/);
    } finally {
      srv.close();
    }

    // the same names in another order (and ::1 spelled differently) keep the files
    r = await run('certs', 'apiserver', '--dir', dir, '--names', 'berth.example.internal,0::1,127.0.0.1');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/^kept/);
    r = await run('certs', 'apiserver', '--dir', dir, '--names', '198.18.0.10');
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('apiserver.crt exists for other names').and.contain('--force');
    r = await run('certs', 'apiserver', '--dir', dir, '--names', '198.18.0.10', '--force');
    expect(r.code, r.err).to.equal(0);
    expect(await certificateNames(crt)).to.deep.equal(['IP:198.18.0.10']);
  });

  it('etcd and client: a member certificate for server and peer use, a client certificate with CN and groups', async () => {
    expect((await run('certs', 'ca', '--dir', join(dir, 'ca'))).code).to.equal(0);
    let r = await run('certs', 'etcd', '--dir', join(dir, 'etcd'), '--ca', join(dir, 'ca'), '--member', 'etcd-1', '--names', '10.0.0.11,etcd-1.internal');
    expect(r.code, r.err).to.equal(0);
    const m = join(dir, 'etcd', 'etcd-1.crt');
    expect(eku(m)).to.match(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(await certificateNames(m)).to.deep.equal(['DNS:etcd-1.internal', 'IP:10.0.0.11']);
    expect(verify(join(dir, 'ca', 'ca.crt'), m)).to.match(/OK$/);
    r = await run('certs', 'client', '--dir', join(dir, 'etcd'), '--ca', join(dir, 'ca'), '--name', 'berth-apiserver', '--groups', 'berth:admins,ops');
    expect(r.code, r.err).to.equal(0);
    const c = join(dir, 'etcd', 'berth-apiserver.crt');
    expect(await certificateSubject(c)).to.equal('CN=berth-apiserver, O=berth:admins, O=ops');
    expect(eku(c)).to.match(/TLS Web Client Authentication/).and.not.match(/Server/);
    expect(mode(join(dir, 'etcd', 'berth-apiserver.key'))).to.equal(0o600);
  });

  it('bad input: a message a person understands, exit 1, nothing written', async () => {
    let r = await run('certs', 'apiserver', '--dir', dir, '--names', 'a.example');
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('no ').and.contain('ca.crt').and.contain('berth certs ca --dir');
    expect((await run('certs', 'ca', '--dir', dir)).code).to.equal(0);
    for (const [args, msg] of [
      [['apiserver', '--names', 'bad name'], '"bad name" is neither an IP address nor a DNS name'],
      [['apiserver', '--names', '300.1.1.1'], '"300.1.1.1" is not an IPv4 address'],
      [['apiserver', '--names', ','], 'needs at least one IP address or DNS name'],
      [['apiserver', '--names', 'a.example', '--days', 'soon'], '--days'],
      [['etcd', '--member', '../x', '--names', 'a.example'], 'a file name must be'],
      [['client', '--name', 'a/b'], 'a file name must be'],
      [['client', '--name', 'ok', '--groups', 'a=b'], 'a certificate name must be'],
    ] as Array<[string[], string]>) {
      r = await run('certs', ...args, '--dir', dir);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.err, args.join(' ')).to.contain(msg);
    }
    expect(readdir(dir)).to.deep.equal(['ca.crt', 'ca.key']);
    r = await run('certs', 'apiserver', '--dir', dir);
    expect(r.code).to.not.equal(0);
    expect(r.err).to.contain('--names');
  });
});

function readdir(d: string): string[] {
  return execFileSync('ls', ['-A', d]).toString().split('\n').filter(Boolean).sort();
}
