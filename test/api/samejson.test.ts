import { expect } from 'chai';
import { sameJson, stableJson } from '../../pkg/api/validate.ts';

describe('sameJson (the apiserver\'s no-op and spec-change test)', () => {
  it('says what comparing stableJson strings says, on a table and on random values', () => {
    const table: Array<[unknown, unknown, boolean]> = [
      [{ a: 1, b: 2 }, { b: 2, a: 1 }, true],
      [{ a: 1, b: undefined }, { a: 1 }, true],
      [{ a: 1 }, { a: 1, b: null }, false],
      [[1, 2], [2, 1], false],
      [{ a: [{ x: 1 }] }, { a: [{ x: 1 }] }, true],
      [{ a: [] }, { a: {} }, false],
      ['1', 1, false],
      [null, null, true],
      [{ a: { b: { c: 'd' } } }, { a: { b: { c: 'e' } } }, false],
    ];
    for (const [a, b, want] of table) {
      expect(sameJson(a, b), JSON.stringify([a, b])).to.equal(want);
      expect(stableJson(a) === stableJson(b)).to.equal(want);
    }
    let seed = 7;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const value = (depth: number): unknown => {
      const r = rnd();
      if (depth > 3 || r < 0.3) return [1, 'x', true, null, undefined, 2][Math.floor(rnd() * 6)];
      if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 3) }, () => value(depth + 1) ?? null);
      return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [['a', 'b', 'c', 'd'][Math.floor(rnd() * 4)], value(depth + 1)]));
    };
    for (let i = 0; i < 2000; i++) {
      const a = value(0);
      const b = rnd() < 0.5 ? structuredClone(a) : value(0);
      expect(sameJson(a, b), JSON.stringify([a, b])).to.equal(stableJson(a) === stableJson(b));
    }
  });
});
