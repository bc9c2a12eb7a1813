import { request } from 'node:http';

/**
 * Test support: the HAProxy configuration in front of the apiservers. deploy/haproxy/haproxy.cfg
 * is this function's output for the addresses of deploy/README.md (a test checks they are
 * the same), so the topology runs exactly what an operator installs. And one GET through a
 * load balancer, for the tests that put tasks behind berth-lb.
 */
export interface HaproxyConfig {
  /** address:port clients connect to */
  bind: string;
  servers: Array<{ name: string; address: string }>;
  /** the berth CA: health checks verify each apiserver's certificate */
  caFile: string;
  /** PROXY protocol v2 towards the apiservers (their --proxy-protocol-trusted must cover the load balancer) */
  sendProxy?: boolean;
}

export function haproxyConfig(c: HaproxyConfig): string {
  return `# HAProxy in front of the berth apiservers (Debian's haproxy: /etc/haproxy/haproxy.cfg).
# TCP mode: TLS passes through to the apiservers, which present the serving certificate of
# \`berth certs apiserver\`; the load balancer's address and name must be among its --names.
# Health checks GET /readyz over TLS, verified against the berth CA: an apiserver whose
# cache is not synced (or that cannot reach etcd) takes no new connections, and the
# sessions of a server marked down are cut so watches reconnect to another one.
global
    log stdout format raw local0 notice
    # each connection is two file descriptors (client and apiserver side)
    maxconn 8000

defaults
    mode tcp
    log global
    option tcplog
    option dontlognull
    timeout connect 3s
    # watches are long-lived: the apiservers end them themselves
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h

frontend berth-api
    bind ${c.bind}
    default_backend berth-apiservers

backend berth-apiservers
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server check check-ssl verify required ca-file ${c.caFile} inter 1s fall 2 rise 2 on-marked-down shutdown-sessions${c.sendProxy ? ' send-proxy-v2' : ''}
${c.servers.map((s) => `    server ${s.name} ${s.address}`).join('\n')}
`;
}

/** The values deploy/haproxy/haproxy.cfg is written for (deploy/README.md's example hosts). */
export const DEPLOY_HAPROXY: HaproxyConfig = {
  bind: '10.0.0.10:6443',
  servers: [
    { name: 'apiserver-1', address: '10.0.0.11:6443' },
    { name: 'apiserver-2', address: '10.0.0.12:6443' },
    { name: 'apiserver-3', address: '10.0.0.13:6443' },
  ],
  caFile: '/etc/berth/pki/ca.crt',
  sendProxy: true,
};

/** One GET on a new connection (through a load balancer, say): its status and body, or the error. */
export function httpGet(host: string, port: number, urlPath = '/', timeoutMs = 5_000): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: e.message }));
    req.end();
  });
}
