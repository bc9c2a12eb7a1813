import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { AGENT_VARIABLES, loadAgentConfig, parseEnvFile } from '../../pkg/agent/config.ts';
import { DEPLOY_HAPROXY, haproxyConfig } from '../support/haproxy.ts';
import { apiserverArgv, controllerManagerArgv } from '../support/topology.ts';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');

/** The flags of a unit's ExecStart (continuation lines joined), as name -> value. */
function unitFlags(unit: string): Map<string, string> {
  const lines = unit.split('\n');
  let i = lines.findIndex((l) => l.startsWith('ExecStart='));
  let exec = lines[i].slice('ExecStart='.length);
  while (exec.endsWith('\\')) exec = exec.slice(0, -1) + ' ' + lines[++i];
  const out = new Map<string, string>();
  const words = exec.replace(/'/g, ' ').split(/\s+/).filter(Boolean);
  words.forEach((w, i) => {
    if (w.startsWith('--')) out.set(w, words[i + 1]?.startsWith('--') ? '' : (words[i + 1] ?? ''));
  });
  return out;
}

const flagNames = (argv: string[]) => argv.filter((a) => a.startsWith('--')).sort();
const help = (binName: string) => execFileSync(process.execPath, [path.join(ROOT, 'cmd', binName, 'bin.mjs'), '--help'], { cwd: ROOT }).toString();

/** C15: deploy/ is what the code accepts and what the topology (test/support/topology.ts) runs. */
describe('deploy/ agrees with the code and with the topology the multi-host tests run (C15)', function () {
  this.timeout(60_000);

  it('C15: berth-apiserver.service passes exactly the topology\'s flags, every one known to berth-apiserver, ECS keys and TLS to etcd included', () => {
    const unit = unitFlags(read('deploy/systemd/berth-apiserver.service'));
    const topo = flagNames(apiserverArgv({ store: 's', ca: 'c', etcdCert: 'e', etcdKey: 'k', listen: 'l', cert: 'c', key: 'k', tokens: 't', accessKeys: 'a', proxyTrusted: 'p' }));
    expect([...unit.keys()].sort()).to.deep.equal(topo);
    const known = help('berth-apiserver');
    for (const f of unit.keys()) expect(known, f).to.contain(f);
    expect(unit.get('--store')).to.match(/^etcd\+https:\/\//);
    expect(unit.get('--access-key-file')).to.be.a('string').and.not.equal('');
  });

  it('C15: berth-controller-manager.service passes the topology\'s flags (and only known ones), verifying the apiserver against the berth CA', () => {
    const unit = unitFlags(read('deploy/systemd/berth-controller-manager.service'));
    const topo = flagNames(controllerManagerArgv({ server: 's', ca: 'c', token: 't', extra: ['--instance-heartbeat-timeout', '60', '--instance-lost-grace', '120'] }));
    for (const f of topo) expect([...unit.keys()], f).to.include(f);
    const known = help('berth-controller-manager');
    for (const f of unit.keys()) expect(known, f).to.contain(f);
    expect(unit.get('--server')).to.match(/^https:\/\//);
    expect(unit.get('--certificate-authority')).to.equal('/etc/berth/pki/ca.crt');
  });

  it('C15: the etcd members serve TLS with client certificates, on the endpoints the apiserver unit names', () => {
    const env = parseEnvFile(read('deploy/etcd/etcd-cluster.env'));
    expect(env.ETCD_CLIENT_CERT_AUTH).to.equal('true');
    expect(env.ETCD_PEER_CLIENT_CERT_AUTH).to.equal('true');
    for (const k of ['ETCD_LISTEN_CLIENT_URLS', 'ETCD_ADVERTISE_CLIENT_URLS', 'ETCD_LISTEN_PEER_URLS', 'ETCD_INITIAL_ADVERTISE_PEER_URLS']) {
      for (const u of env[k].split(',')) expect(u, k).to.match(/^https:\/\//);
    }
    expect(env.ETCD_AUTO_COMPACTION_MODE, 'something compacts').to.be.oneOf(['periodic', 'revision']);
    const store = unitFlags(read('deploy/systemd/berth-apiserver.service')).get('--store')!.replace(/^etcd\+https:\/\//, '').split(',');
    const members = env.ETCD_INITIAL_CLUSTER.split(',').map((m) => new URL(m.split('=')[1]).hostname);
    expect(store.map((h) => h.split(':')[0])).to.deep.equal(members);
    expect(store.map((h) => h.split(':')[1])).to.deep.equal(members.map(() => new URL(env.ETCD_ADVERTISE_CLIENT_URLS).port));
    // every variable is one etcd knows (ETCD_X is the flag --x)
    const etcdHelp = execFileSync('etcd', ['--help']).toString();
    for (const k of Object.keys(env)) expect(etcdHelp, k).to.contain(`--${k.slice(5).toLowerCase().replace(/_/g, '-')}`);
  });

  it('C15: ecs.config holds only agent variables, parses, and points at the load balancer with the CA', () => {
    const env = parseEnvFile(read('deploy/ecs.config'));
    for (const k of Object.keys(env)) expect(AGENT_VARIABLES as readonly string[], k).to.include(k);
    const cfg = loadAgentConfig({ env: {}, file: path.join(ROOT, 'deploy/ecs.config') });
    expect(cfg.backendHost).to.equal(unitFlags(read('deploy/systemd/berth-controller-manager.service')).get('--server'));
    expect(cfg.caFile).to.equal('/etc/berth/pki/ca.crt');
    const logsPort = Number(cfg.logsListen.split(':')[1]);
    expect(cfg.reservedPorts, 'the logs port is reserved').to.include(logsPort);
  });

  it('deploy/haproxy/haproxy.cfg is the configuration the topology runs (same generator), valid for haproxy', () => {
    expect(read('deploy/haproxy/haproxy.cfg')).to.equal(haproxyConfig(DEPLOY_HAPROXY));
    // haproxy -c: only the CA file (absent on this machine) may be missing
    let out = '';
    try {
      out = execFileSync('haproxy', ['-c', '-f', path.join(ROOT, 'deploy/haproxy/haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    } catch (e) {
      out = String((e as { stderr?: Buffer }).stderr ?? '');
    }
    const alerts = out.split('\n').filter((l) => l.includes('[ALERT]') && !/ca-file|Error\(s\) found|Fatal errors/.test(l));
    expect(alerts).to.deep.equal([]);
  });
});
