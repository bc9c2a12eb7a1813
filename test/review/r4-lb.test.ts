import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Listener, LoadBalancerSpec, TargetGroupSpec } from '../../pkg/api/loadbalancing.ts';
import { TaskStatus } from '../../pkg/api/resources.ts';
import { addServerCommand, dataPlaneOf, renderConfig, runtimeCommand } from '../../pkg/lb/haproxy.ts';
import { endpointOf } from '../../pkg/controller/targets/plan.ts';
import type { Task } from '../../pkg/api/kinds.ts';

/** What target groups, load balancers and tasks write can reach haproxy.cfg and HAProxy's Runtime API only as the words it means. */
describe('load balancing: what reaches HAProxy (R4-7, R4-8, R4-9)', function () {
  this.timeout(20_000);
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'berth-r4-lb-'))));
  after(async () => rm(dir, { recursive: true, force: true }));

  const haproxyCheck = async (name: string, cfg: string) => {
    const file = join(dir, name);
    await writeFile(file, cfg);
    const r = spawnSync('haproxy', ['-W', '-c', '-f', file], { encoding: 'utf8' });
    return { ok: r.status === 0, out: r.stdout + r.stderr };
  };
  /** a spec as an object stored before its schema refused the field (the schema is bypassed on purpose) */
  const stored = (path: string) => ({ ...TargetGroupSpec.parse({ protocol: 'HTTP', port: 80 }), healthCheckPath: path });

  // a health check path carrying a newline: the rest is HAProxy configuration
  const marker = join(tmpdir(), `berth-r4-7-ran-${process.pid}`);
  // (a backend of its own takes the lines berth writes after the path, so the file stays valid)
  const path = `/health\nprogram r4pwn\n    command /bin/sh -c "touch ${marker}"\nbackend r4tail\n    mode http\n    option httpchk\n    http-check send meth GET uri /x`;

  it('R4-7, R4-8: the schemas refuse a health check path, classic target or listener target group that haproxy.cfg cannot take, naming the field', () => {
    const refused: Array<[string, { success: boolean; error?: { issues: Array<{ path: PropertyKey[] }> } }, string]> = [
      ['newline', TargetGroupSpec.safeParse({ protocol: 'HTTP', port: 80, healthCheckPath: path }), 'healthCheckPath'],
      ['space', TargetGroupSpec.safeParse({ protocol: 'HTTP', port: 80, healthCheckPath: '/a b' }), 'healthCheckPath'],
      ['#', TargetGroupSpec.safeParse({ protocol: 'HTTP', port: 80, healthCheckPath: '/a#b' }), 'healthCheckPath'],
      ['quote', TargetGroupSpec.safeParse({ protocol: 'HTTP', port: 80, healthCheckPath: '/a"b' }), 'healthCheckPath'],
      ['backslash', TargetGroupSpec.safeParse({ protocol: 'HTTP', port: 80, healthCheckPath: '/a\\b' }), 'healthCheckPath'],
      ['classic #', LoadBalancerSpec.safeParse({ listeners: [{ protocol: 'HTTP', loadBalancerPort: 80 }], healthCheck: { target: 'HTTP:80/a#b' } }), 'healthCheck.target'],
      ['classic quote', LoadBalancerSpec.safeParse({ listeners: [{ protocol: 'HTTP', loadBalancerPort: 80 }], healthCheck: { target: "HTTP:80/a'b" } }), 'healthCheck.target'],
      ['listener newline', Listener.safeParse({ protocol: 'HTTP', loadBalancerPort: 80, targetGroupArn: 'web\nprogram x' }), 'targetGroupArn'],
    ];
    for (const [what, r, field] of refused) {
      expect(r.success, what).to.equal(false);
      expect(r.error!.issues.map((i) => i.path.join('.')), what).to.include(field);
    }
    // what ELB paths and names look like still passes
    expect(TargetGroupSpec.safeParse({ protocol: 'HTTP', port: 80, healthCheckPath: '/health/ready?x=1&y=%20;a=b' }).success).to.equal(true);
    expect(LoadBalancerSpec.safeParse({ listeners: [{ protocol: 'HTTP', loadBalancerPort: 80 }], healthCheck: { target: 'HTTP:80/index.html' } }).success).to.equal(true);
    expect(Listener.safeParse({ protocol: 'HTTP', loadBalancerPort: 80, targetGroupArn: 'arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/web-tg/abc' }).success).to.equal(true);
  });

  it('R4-7: a stored target group whose path carries configuration is left out of haproxy.cfg, which stays valid and serves the others', async () => {
    const dp = dataPlaneOf([], [{ name: 'bad', spec: stored(path) }, { name: 'good', spec: stored('/ok') }], '127.0.0.1');
    expect(dp.backends.map((b) => b.name)).to.deep.equal(['tg_good']);
    expect(dp.refused?.map((r) => r.name)).to.deep.equal(['bad']);
    const cfg = renderConfig(dp, join(dir, 'admin.sock'));
    const check = await haproxyCheck('haproxy.cfg', cfg);
    const injected = cfg.split('\n').some((l) => l.startsWith('program '));
    expect({ injected, valid: check.ok }, check.out).to.deep.equal({ injected: false, valid: true });
    // and rendering refuses such a word outright, whatever handed it over
    const raw = { ...dp.backends[0], check: { ...dp.backends[0].check, path } };
    expect(() => renderConfig({ frontends: [], backends: [raw] }, join(dir, 'admin.sock'))).to.throw(/refusing/);
  });

  it('R4-7: haproxy started as berth-lb starts it (master-worker) does not run a command a target group wrote', async () => {
    rmSync(marker, { force: true });
    const file = join(dir, 'run.cfg');
    await writeFile(file, renderConfig(dataPlaneOf([], [{ name: 'web', spec: stored(path) }], '127.0.0.1'), join(dir, 'run.sock')));
    const child = spawn('haproxy', ['-W', '-db', '-f', file, '-p', join(dir, 'run.pid')], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      for (let i = 0; i < 20 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      process.kill(child.pid!, 'SIGTERM');
      await exited;
    }
    const ran = existsSync(marker);
    rmSync(marker, { force: true });
    expect(ran, `the health check path ran /bin/sh (it touched ${marker})`).to.equal(false);
  });

  it('R4-8: a stored path with a space does not make haproxy.cfg invalid (one target group would stop every reload)', async () => {
    const lb = { name: 'front', spec: LoadBalancerSpec.parse({ listeners: [{ protocol: 'HTTP', loadBalancerPort: 18080, targetGroupArn: 'good' }] }) };
    const dp = dataPlaneOf([lb], [{ name: 'spaced', spec: stored('/a b c d e f') }, { name: 'good', spec: stored('/ok') }], '127.0.0.1');
    expect(dp.frontends.map((f) => f.backend)).to.deep.equal(['tg_good']);
    const check = await haproxyCheck('haproxy2.cfg', renderConfig(dp, join(dir, 'admin.sock')));
    expect(check.ok, check.out).to.equal(true);
  });

  it("R4-9: an awsvpc task's address (written by its node) is an IP, so it cannot add Runtime API commands that move another service's server", async () => {
    // what a hostile node writes into the status of a task of its own
    const evil = '10.9.9.9:80; set server tg_b/t_127_0_0_1_8080 addr 127.0.0.66 port 9999;';
    const attachments = [{ id: 'a', type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: evil }] }];
    const parsed = TaskStatus.safeParse({ lastStatus: 'RUNNING', attachments });
    expect(parsed.success, 'the task status schema takes a non-address').to.equal(false);
    expect(parsed.error!.issues.map((i) => i.path.join('.'))).to.deep.equal(['attachments.0.details.0.value']);
    expect(TaskStatus.safeParse({ lastStatus: 'RUNNING', attachments: [{ ...attachments[0], details: [{ name: 'privateIPv4Address', value: '10.0.0.7' }] }] }).success).to.equal(true);

    // a status stored before the schema refused it
    const task = { metadata: { name: 't', namespace: 'default' }, spec: {}, status: { attachments } } as unknown as Task;
    const ep = endpointOf(task, undefined, { networkMode: 'awsvpc', containerDefinitions: [] } as never, 'c', 80);
    expect(ep, 'the address is taken as written').to.equal(undefined);

    const tg = (name: string) => ({ name, spec: TargetGroupSpec.parse({ protocol: 'TCP', port: 80 }) });
    const dp = dataPlaneOf([], [tg('a'), tg('b')], '127.0.0.1');
    const [a, b] = dp.backends;
    // the commands refuse it too, whoever hands it over
    expect(() => addServerCommand(a, evil, 80, true)).to.throw(/not an IP address/);
    expect(() => addServerCommand(a, '10.0.0.1', 80.5, true)).to.throw(/not a port/);
    const sock = join(dir, 'r9.sock');
    const file = join(dir, 'r9.cfg');
    await writeFile(file, renderConfig(dp, sock));
    const child = spawn('haproxy', ['-W', '-db', '-f', file, '-p', join(dir, 'r9.pid')], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    let state = '';
    try {
      for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
      // service B's healthy target, added as berth-lb adds it
      await runtimeCommand(sock, addServerCommand(b, '127.0.0.1', 8080, true));
      // a line break would start commands of its own
      let refused = '';
      await runtimeCommand(sock, `show info\nset server tg_b/t_127_0_0_1_8080 addr 127.0.0.66 port 9999`).catch((e: Error) => (refused = e.message));
      expect(refused).to.match(/line break/);
      state = await runtimeCommand(sock, 'show servers state tg_b');
    } finally {
      process.kill(child.pid!, 'SIGTERM');
      await exited;
    }
    expect(state, "service B's server is there").to.contain('127.0.0.1');
    expect(state, "service B's server now points where the node said").not.to.contain('127.0.0.66');
  });
});
