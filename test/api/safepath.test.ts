import { expect } from 'chai';
import { parseClientJson, findUnsafeKey, UnsafeKeyError } from '../../pkg/api/safepath.ts';
import { validateObject } from '../../pkg/api/validate.ts';
import { Kinds } from '../../pkg/api/kinds.ts';
import { jsonPatch, mergePatch } from '../../pkg/apiserver/patch.ts';
import { fieldValue, matchesLabels, parseFieldSelector, parseLabelSelector } from '../../pkg/apiserver/selectors.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';

/** what a polluted Object.prototype would show on a fresh object */
const pollution = () => {
  const o = {} as Record<string, unknown>;
  return ['x', 'polluted', 'deletionTimestamp', 'mp'].filter((k) => o[k] !== undefined);
};

const caught = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
};

describe('S1: client paths and keys never reach a prototype (unit tables)', () => {
  afterEach(() => {
    // a failing case must not poison the rest of the run
    for (const k of ['x', 'polluted', 'deletionTimestamp', 'mp']) delete (Object.prototype as Record<string, unknown>)[k];
  });

  const doc = () => ({ metadata: { name: 't1', labels: { a: 'b' } }, status: { lastStatus: 'RUNNING', containers: [{ name: 'c' }] } });

  describe('JSON patch pointers', () => {
    const refused: Array<[string, unknown[]]> = [
      ['add /__proto__/x', [{ op: 'add', path: '/__proto__/x', value: 'polluted' }]],
      ['add /__proto__/deletionTimestamp (the probe)', [{ op: 'add', path: '/__proto__/deletionTimestamp', value: 'x' }]],
      ['add /constructor/prototype/x', [{ op: 'add', path: '/constructor/prototype/x', value: 'polluted' }]],
      ['add under a member: /status/__proto__/x', [{ op: 'add', path: '/status/__proto__/x', value: 1 }]],
      ['add inside an array element: /status/containers/0/__proto__/x', [{ op: 'add', path: '/status/containers/0/__proto__/x', value: 1 }]],
      ['replace /status/constructor', [{ op: 'replace', path: '/status/constructor', value: 1 }]],
      ['remove /prototype', [{ op: 'remove', path: '/prototype' }]],
      ['test /__proto__', [{ op: 'test', path: '/__proto__', value: {} }]],
      ['move from /__proto__', [{ op: 'move', from: '/__proto__/x', path: '/a' }]],
      ['copy from /constructor', [{ op: 'copy', from: '/constructor', path: '/a' }]],
      ['the second op of two', [{ op: 'add', path: '/a', value: 1 }, { op: 'add', path: '/__proto__/x', value: 1 }]],
      ['a value holding __proto__', [{ op: 'add', path: '/status/x', value: JSON.parse('{"__proto__":{"x":"polluted"}}') }]],
    ];
    for (const [name, ops] of refused) {
      it(`refuses ${name} with a 400 naming the op and the path, and pollutes nothing`, () => {
        const before = doc();
        const e = caught(() => jsonPatch(before, ops));
        expect(isBerthError(e, 'BadRequest'), String(e)).to.equal(true);
        const i = ops.length - 1;
        expect((e as Error).message).to.match(new RegExp(`^patch\\[${i}\\]\\.(path|from|value)`));
        expect((e as Error).message).to.match(/__proto__|constructor|prototype/);
        expect(pollution()).to.deep.equal([]);
        expect(before).to.deep.equal(doc());
      });
    }

    it('walks own members only: an inherited name is a path that does not exist', () => {
      for (const path of ['/toString', '/status/hasOwnProperty', '/status/containers/length', '/status/containers/0/valueOf']) {
        const e = caught(() => jsonPatch(doc(), [{ op: 'test', path, value: 1 }]));
        expect(isBerthError(e, 'Invalid'), `${path}: ${String(e)}`).to.equal(true);
        expect((e as Error).message).to.contain('does not exist');
      }
      expect(isBerthError(caught(() => jsonPatch(doc(), [{ op: 'remove', path: '/status/toString' }])), 'Invalid')).to.equal(true);
    });

    it('still applies ordinary patches (a key that merely contains the words is fine)', () => {
      const out = jsonPatch(doc(), [
        { op: 'add', path: '/status/stoppedReason', value: 'done' },
        { op: 'add', path: '/metadata/labels/my~1constructor', value: 'v' },
        { op: 'replace', path: '/status/containers/0/name', value: 'd' },
      ]) as ReturnType<typeof doc> & { status: { stoppedReason: string } };
      expect(out.status.stoppedReason).to.equal('done');
      expect(out.metadata.labels).to.deep.equal({ a: 'b', 'my/constructor': 'v' });
      expect(out.status.containers[0].name).to.equal('d');
    });
  });

  describe('JSON merge patch', () => {
    const refused = ['{"__proto__":{"x":"polluted"}}', '{"status":{"__proto__":{"x":1}}}', '{"status":{"constructor":{"prototype":{"x":"polluted"}}}}', '{"metadata":{"labels":{"prototype":"x"}}}'];
    for (const text of refused) {
      it(`refuses ${text} at any depth`, () => {
        const e = caught(() => mergePatch(doc(), JSON.parse(text)));
        expect(isBerthError(e, 'BadRequest'), String(e)).to.equal(true);
        expect((e as Error).message).to.match(/the merge patch holds the key "(__proto__|constructor|prototype)"/);
        expect(pollution()).to.deep.equal([]);
      });
    }
    it('reads the target by own keys: a patch of "toString" does not start from Object.prototype.toString', () => {
      const out = mergePatch({ a: 1 }, { toString: { x: 1 } }) as Record<string, unknown>;
      expect(Object.hasOwn(out, 'toString')).to.equal(true);
      expect(out.toString).to.deep.equal({ x: 1 });
    });
  });

  describe('field selector paths', () => {
    it('S2: parses like Kubernetes: every comma separates, parentheses are not grouping', () => {
      expect(() => parseFieldSelector('metadata.name!=(,spec.containerInstance=na,)', ['spec.containerInstance'])).to.throw(/cannot parse/);
      expect(parseFieldSelector('spec.containerInstance=na,metadata.name!=x', ['spec.containerInstance'])).to.deep.equal([
        { field: 'spec.containerInstance', op: 'eq', value: 'na' },
        { field: 'metadata.name', op: 'neq', value: 'x' },
      ]);
      expect(parseFieldSelector('metadata.name=a\\,b', [])).to.deep.equal([{ field: 'metadata.name', op: 'eq', value: 'a,b' }]);
      expect(() => parseFieldSelector('metadata.name=a=b', [])).to.throw(/unescaped/);
    });
    it('reads own keys only', () => {
      const o = { metadata: { name: 'n' }, spec: {} };
      expect(fieldValue(o, 'metadata.name')).to.equal('n');
      for (const p of ['metadata.constructor', 'spec.toString', 'metadata.__proto__', 'constructor.name', 'spec.hasOwnProperty']) expect(fieldValue(o, p), p).to.equal('');
    });
  });

  describe('label keys', () => {
    for (const sel of ['constructor', '!prototype', 'constructor=x', 'prototype in (a)', 'constructor!=x']) {
      it(`refuses the selector "${sel}"`, () => {
        expect(() => parseLabelSelector(sel)).to.throw(/not allowed as a label key/);
      });
    }
    it('matches own labels only', () => {
      expect(matchesLabels(parseLabelSelector('a'), { a: '1' })).to.equal(true);
      expect(matchesLabels(parseLabelSelector('toString'), {})).to.equal(false);
    });
    for (const where of ['labels', 'annotations']) {
      for (const key of ['constructor', 'prototype']) {
        it(`refuses metadata.${where} key "${key}" naming the field`, () => {
          const e = caught(() => validateObject({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'c', [where]: { [key]: 'x' } } }, { kind: Kinds.Cluster }));
          expect(isBerthError(e, 'Invalid'), String(e)).to.equal(true);
          expect((e as { details: { causes: Array<{ field: string }> } }).details.causes.map((c) => c.field)).to.deep.equal([`metadata.${where}.${key}`]);
        });
      }
    }
  });

  describe('client JSON', () => {
    it('refuses __proto__ anywhere in a parsed body, naming where', () => {
      for (const [text, at] of [
        ['{"__proto__":{"x":1}}', '__proto__'],
        ['{"spec":{"containerDefinitions":[{"name":"c","__proto__":{"x":1}}]}}', 'spec.containerDefinitions[0].__proto__'],
        ['{"metadata":{"annotations":{"constructor":"x"}}}', 'metadata.annotations.constructor'],
      ]) {
        const e = caught(() => parseClientJson(text));
        expect(e, text).to.be.instanceOf(UnsafeKeyError);
        expect((e as Error).message).to.contain(` at ${at};`);
      }
      expect(parseClientJson('{"a":[1,{"b":"__proto__"}]}')).to.deep.equal({ a: [1, { b: '__proto__' }] }); // a value is fine
    });
    it('walks deep nesting without overflowing the stack', () => {
      const deep = '['.repeat(5000) + ']'.repeat(5000);
      const found = findUnsafeKey(JSON.parse(deep));
      expect(found?.tooDeep).to.equal(true);
    });
  });
});
