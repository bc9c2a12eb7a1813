import { expect } from 'chai';
import { Kinds } from '../../pkg/api/kinds.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { patchScale, replicasPatch, scaleOf, scaleRequest } from '../../pkg/apiserver/scale.ts';
import type { Obj } from '../../pkg/apiserver/watchcache.ts';

const svc = { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'web', namespace: 'default', uid: 'u1', resourceVersion: '7' }, spec: { taskDefinition: 'web', desiredCount: 3 }, status: { runningCount: 2 } } as unknown as Obj;

describe('the scale subresource (autoscaling/v1 Scale) of a service', () => {
  it('reads the replica counts from the paths the CRD declares', () => {
    expect(scaleOf(Kinds.Service, svc)).to.deep.equal({
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: 'web', namespace: 'default', uid: 'u1', resourceVersion: '7' },
      spec: { replicas: 3 },
      status: { replicas: 2 },
    });
  });

  const cases: Array<[string, unknown, number | { status: number; field?: string }]> = [
    ['a Scale', { kind: 'Scale', spec: { replicas: 5 } }, 5],
    ['zero', { spec: { replicas: 0 } }, 0],
    ['negative', { spec: { replicas: -1 } }, { status: 422, field: 'spec.replicas' }],
    ['fractional', { spec: { replicas: 1.5 } }, { status: 422, field: 'spec.replicas' }],
    ['a string', { spec: { replicas: '3' } }, { status: 422, field: 'spec.replicas' }],
    ['missing', { spec: {} }, { status: 422, field: 'spec.replicas' }],
    ['another kind', { kind: 'Service', spec: { replicas: 1 } }, { status: 400 }],
    ['not an object', [1], { status: 400 }],
  ];
  for (const [what, body, want] of cases) {
    it(`a request with ${what} -> ${typeof want === 'number' ? want : want.status}`, () => {
      if (typeof want === 'number') return expect(scaleRequest(Kinds.Service, 'web', body).replicas).to.equal(want);
      try {
        scaleRequest(Kinds.Service, 'web', body);
        expect.fail('accepted');
      } catch (e) {
        expect(isBerthError(e) && [e.status, e.details.causes?.[0]?.field]).to.deep.equal([want.status, want.field]);
      }
    });
  }

  it('a PUT keeps its resourceVersion as a precondition; a patch applies to the Scale; the write lands at spec.desiredCount', () => {
    expect(scaleRequest(Kinds.Service, 'web', { metadata: { resourceVersion: '7' }, spec: { replicas: 1 } })).to.deep.equal({ replicas: 1, resourceVersion: '7' });
    const patched = patchScale(scaleOf(Kinds.Service, svc), 'merge', { spec: { replicas: 4 } });
    expect(scaleRequest(Kinds.Service, 'web', patched)).to.deep.equal({ replicas: 4 });
    expect(replicasPatch(Kinds.Service, 4, '7')).to.deep.equal({ metadata: { resourceVersion: '7' }, spec: { desiredCount: 4 } });
    expect(replicasPatch(Kinds.Service, 0)).to.deep.equal({ spec: { desiredCount: 0 } });
  });
});
