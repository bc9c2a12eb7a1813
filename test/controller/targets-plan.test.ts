import { expect } from 'chai';
import { healthCheckOfTargetGroup, TargetGroupSpec, type Target } from '../../pkg/api/loadbalancing.ts';
import { planTargets } from '../../pkg/controller/targets/plan.ts';
import { healthFailure, isHealthy, type PlanTask } from '../../pkg/controller/service/plan.ts';
import { addServerCommand, dataPlaneOf, parseShowStat, renderConfig } from '../../pkg/lb/haproxy.ts';
import { targetHealth } from '../../pkg/lb/lb.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const tgt = (port: number, state: Target['state'], task = `c/t${port}`): Target => ({ id: '10.0.0.1', port, task, service: 'c/web', state, registeredAt: new Date(T0).toISOString() });
const want = (port: number, draining = false, task = `c/t${port}`) => ({ id: '10.0.0.1', port, task, service: 'c/web', draining });

describe('target registration plan (pure)', () => {
  it('registers RUNNING tasks as initial, keeps health, drains, deregisters', () => {
    const cases: Array<{ name: string; existing: Target[]; wanted: ReturnType<typeof want>[]; states: string[]; registered?: number; draining?: number; deregistered?: number }> = [
      { name: 'new task', existing: [], wanted: [want(1)], states: ['initial'], registered: 1 },
      { name: 'health kept', existing: [tgt(1, 'healthy')], wanted: [want(1)], states: ['healthy'] },
      { name: 'draining', existing: [tgt(1, 'healthy')], wanted: [want(1, true)], states: ['draining'], draining: 1 },
      { name: 'draining stays draining', existing: [tgt(1, 'draining')], wanted: [want(1, true)], states: ['draining'] },
      { name: 'a draining task never registered is not added', existing: [], wanted: [want(1, true)], states: [] },
      { name: 'stopped: removed', existing: [tgt(1, 'draining'), tgt(2, 'healthy')], wanted: [want(2)], states: ['healthy'], deregistered: 1 },
      { name: 'port reused by another task', existing: [tgt(1, 'healthy', 'c/old')], wanted: [want(1, false, 'c/new')], states: ['initial'], registered: 1, deregistered: 1 },
    ];
    for (const c of cases) {
      const p = planTargets(c.existing, c.wanted, T0 + 1000);
      expect(p.targets.map((t) => t.state), c.name).to.deep.equal(c.states);
      expect(p.registered.get('c/web') ?? 0, c.name).to.equal(c.registered ?? 0);
      expect(p.draining.get('c/web') ?? 0, c.name).to.equal(c.draining ?? 0);
      expect(p.deregistered.get('c/web') ?? 0, c.name).to.equal(c.deregistered ?? 0);
    }
  });

  it('maps HAProxy server states to ELB target states', () => {
    const check = healthCheckOfTargetGroup(TargetGroupSpec.parse({ protocol: 'HTTP', port: 80, healthCheckIntervalSeconds: 2, healthCheckTimeoutSeconds: 1, healthyThresholdCount: 2, unhealthyThresholdCount: 2 }));
    const stat = (status: string, checkStatus = 'L7OK', checkCode = '200') => ({ backend: 'tg_x', server: 's', status, checkStatus, checkCode, checkDesc: '', addr: '' });
    const cases: Array<[string, ReturnType<typeof stat> | undefined, Target['state'], number, Target['state'], string?]> = [
      ['up', stat('UP'), 'initial', 0, 'healthy'],
      ['going down is still healthy', stat('UP 1/2', 'L7STS', '404'), 'healthy', 0, 'healthy'],
      ['coming up', stat('DOWN 1/2'), 'initial', 0, 'initial'],
      ['down before any check ran', stat('DOWN', 'INI', ''), 'initial', 0, 'initial'],
      ['never came up, within the unhealthy threshold', stat('DOWN', 'L4CON', ''), 'initial', 1_000, 'initial'],
      ['never came up, past it', stat('DOWN', 'L4CON', ''), 'initial', 10_000, 'unhealthy', 'Target.FailedHealthChecks'],
      ['was healthy, now 404', stat('DOWN', 'L7STS', '404'), 'healthy', 0, 'unhealthy', 'Target.ResponseCodeMismatch'],
      ['timeouts', stat('DOWN', 'L4TOUT', ''), 'healthy', 0, 'unhealthy', 'Target.Timeout'],
      ['draining is ours', stat('DOWN', 'L4CON', ''), 'draining', 0, 'draining'],
      ['not added yet', undefined, 'initial', 0, 'initial'],
    ];
    for (const [name, s, prev, after, state, reason] of cases) {
      const h = targetHealth(s, tgt(1, prev), check, T0 + after);
      expect(h.state, name).to.equal(state);
      if (reason) expect(h.reason, name).to.equal(reason);
    }
  });

  it('renders a frontend per listener and a backend per target set, checked as the target group says', () => {
    const tg = TargetGroupSpec.parse({ protocol: 'HTTP', port: 80, healthCheckPath: '/health', matcher: { httpCode: '200-202' } });
    const dp = dataPlaneOf([{ name: 'web', spec: { listeners: [{ protocol: 'HTTP', loadBalancerPort: 8080, targetGroupArn: 'arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/web-tg/abc' }] } }], [{ name: 'web-tg', spec: tg }], '127.0.0.1');
    const cfg = renderConfig(dp, '/run/x.sock');
    expect(cfg).to.include('frontend lb_web_8080\n    mode http\n    bind 127.0.0.1:8080\n    default_backend tg_web-tg');
    expect(cfg).to.include('http-check send meth GET uri /health');
    expect(cfg).to.include('http-check expect rstatus ^(200|201|202)$');
    expect(addServerCommand(dp.backends[0], '10.0.0.1', 32768, false)).to.equal(
      'add server tg_web-tg/t_10_0_0_1_32768 10.0.0.1:32768 check inter 30000 rise 5 fall 2 weight 0; enable health tg_web-tg/t_10_0_0_1_32768; enable server tg_web-tg/t_10_0_0_1_32768; set server tg_web-tg/t_10_0_0_1_32768 health down; set server tg_web-tg/t_10_0_0_1_32768 weight 1',
    );
    const rows = parseShowStat('# pxname,svname,status,check_status,check_code,check_desc,addr\ntg_a,t_1,UP,L7OK,200,ok,1:2\ntg_a,BACKEND,UP,,,,\n');
    expect(rows).to.deep.equal([{ backend: 'tg_a', server: 't_1', status: 'UP', checkStatus: 'L7OK', checkCode: '200', checkDesc: 'ok', addr: '1:2' }]);
  });

  it('a load-balanced task is healthy only when its targets are, and is replaced when one fails', () => {
    const now = T0 + 100_000;
    const base: PlanTask = { name: 't', taskDefinition: 'web:1', desiredStatus: 'RUNNING', lastStatus: 'RUNNING', startedAt: T0, createdAt: T0 };
    expect(isHealthy({ ...base, lb: { healthy: false } }, now)).to.equal(false);
    expect(isHealthy({ ...base, lb: { healthy: true } }, T0 + 1)).to.equal(true); // no 40 s wait behind a load balancer
    expect(healthFailure({ ...base, lb: { healthy: false, failedIn: 'target-group arn:x' } }, now, 0)).to.equal('Task failed ELB health checks in (target-group arn:x)');
    expect(healthFailure({ ...base, lb: { healthy: false, failedIn: 'target-group arn:x' } }, now, 200)).to.equal(undefined); // within the grace period
  });
});
