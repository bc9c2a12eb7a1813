import { expect } from 'chai';
import { resolveKubeconfig, type KubeconfigTarget } from '../../pkg/client/kubeconfig.ts';

const files: Record<string, string> = { '/home/u/.kube/ca.crt': 'CA FROM FILE', '/etc/tok': 'tok-from-file\n' };
const readFile = (p: string) => {
  if (!(p in files)) throw new Error(`ENOENT ${p}`);
  return files[p];
};

const doc = (o: { current?: string; ctxNs?: string; cluster?: string; user?: string } = {}) => `apiVersion: v1
kind: Config
${o.current === undefined ? 'current-context: berth' : o.current}
contexts:
- name: berth
  context: {cluster: c1, user: u1${o.ctxNs ? `, namespace: ${o.ctxNs}` : ''}}
- name: other
  context: {cluster: c2, user: u2}
clusters:
- name: c1
  cluster: ${o.cluster ?? `{server: 'https://127.0.0.1:6443', certificate-authority-data: ${Buffer.from('CA PEM').toString('base64')}}`}
- name: c2
  cluster: {server: 'https://10.0.0.10:6443', certificate-authority: ca.crt, insecure-skip-tls-verify: true}
users:
- name: u1
  user: ${o.user ?? '{token: t1}'}
- name: u2
  user: {tokenFile: /etc/tok}
`;

describe('reading a kubeconfig without @kubernetes/client-node', () => {
  const ok: Array<{ name: string; text: string; context?: string; server?: string; want: KubeconfigTarget }> = [
    { name: 'the current context: server, inline CA, token, default namespace', text: doc(), want: { server: 'https://127.0.0.1:6443', ca: 'CA PEM', token: 't1', insecureSkipTlsVerify: undefined, namespace: 'default' } },
    { name: 'the context\'s namespace', text: doc({ ctxNs: 'prod' }), want: { server: 'https://127.0.0.1:6443', ca: 'CA PEM', token: 't1', insecureSkipTlsVerify: undefined, namespace: 'prod' } },
    { name: '--context: a CA file relative to the kubeconfig, a token file, insecure', text: doc(), context: 'other', want: { server: 'https://10.0.0.10:6443', ca: 'CA FROM FILE', token: 'tok-from-file', insecureSkipTlsVerify: true, namespace: 'default' } },
    { name: 'an auth-provider access token', text: doc({ user: "{auth-provider: {name: x, config: {access-token: at}}}" }), want: { server: 'https://127.0.0.1:6443', ca: 'CA PEM', token: 'at', insecureSkipTlsVerify: undefined, namespace: 'default' } },
    { name: '--server stands in for a cluster without one', text: doc({ cluster: '{}' }), server: 'http://127.0.0.1:1', want: { server: 'http://127.0.0.1:1', ca: undefined, token: 't1', insecureSkipTlsVerify: undefined, namespace: 'default' } },
  ];
  for (const c of ok) {
    it(c.name, () => {
      expect(resolveKubeconfig(c.text, '/home/u/.kube', { context: c.context, server: c.server, readFile })).to.deep.equal(c.want);
    });
  }

  const bad: Array<{ name: string; text: string; context?: string; error: RegExp }> = [
    { name: 'not YAML', text: 'a: [', error: /not YAML/ },
    { name: 'empty', text: '', error: /empty/ },
    { name: 'no current-context and no --context', text: doc({ current: '' }), error: /no current-context: pass --context/ },
    { name: 'an unknown --context', text: doc(), context: 'nope', error: /no context "nope"/ },
    { name: 'a cluster without a server', text: doc({ cluster: '{}' }), error: /no server for context "berth"/ },
  ];
  for (const c of bad) {
    it(`rejects ${c.name} with a BadRequest`, () => {
      expect(() => resolveKubeconfig(c.text, '/', { context: c.context, readFile })).to.throw(c.error).with.property('reason', 'BadRequest');
    });
  }
});
