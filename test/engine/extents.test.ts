import fc from 'fast-check';
import { chunked, intersect, normalize, subtract, totalLength, type Extent } from '../../src/engine/extents.js';

/** Extents over a small universe, so a byte array can serve as the reference. */
const UNIVERSE = 256;
const extentArb = fc
  .tuple(fc.integer({ min: 0, max: UNIVERSE }), fc.integer({ min: 0, max: 64 }))
  .map(([offset, length]) => ({ offset, length: Math.min(length, UNIVERSE - offset) }));
const extentsArb = fc.array(extentArb, { maxLength: 12 });

function bytesOf(extents: readonly Extent[]): boolean[] {
  const bytes: boolean[] = new Array<boolean>(UNIVERSE).fill(false);
  for (const e of extents) for (let i = e.offset; i < e.offset + e.length; i++) bytes[i] = true;
  return bytes;
}

/** Sorted, non-empty, and separated by at least one byte: the normal form the engine relies on. */
function expectNormal(extents: readonly Extent[]): void {
  for (let i = 0; i < extents.length; i++) {
    expect(extents[i]!.length).toBeGreaterThan(0);
    if (i > 0) expect(extents[i]!.offset).toBeGreaterThan(extents[i - 1]!.offset + extents[i - 1]!.length);
  }
}

/** Sorted and non-overlapping; pieces may touch. */
function expectDisjoint(extents: readonly Extent[]): void {
  for (let i = 0; i < extents.length; i++) {
    expect(extents[i]!.length).toBeGreaterThan(0);
    if (i > 0) expect(extents[i]!.offset).toBeGreaterThanOrEqual(extents[i - 1]!.offset + extents[i - 1]!.length);
  }
}

describe('extents', () => {
  it('normalize covers the same bytes in normal form and does not change its input', () => {
    fc.assert(
      fc.property(extentsArb, (input) => {
        const copy = input.map((e) => ({ ...e }));
        const out = normalize(input);
        expect(input).toEqual(copy);
        expectNormal(out);
        expect(bytesOf(out)).toEqual(bytesOf(input));
        expect(normalize(out)).toEqual(out);
      }),
    );
  });

  it('intersect covers exactly the bytes in both', () => {
    fc.assert(
      fc.property(extentsArb, extentsArb, (a, b) => {
        const out = intersect(normalize(a), normalize(b));
        expectDisjoint(out);
        const [x, y] = [bytesOf(a), bytesOf(b)];
        expect(bytesOf(out)).toEqual(x.map((v, i) => v && y[i]!));
        expect(totalLength(out)).toBe(x.filter((v, i) => v && y[i]!).length);
      }),
    );
  });

  it('subtract covers exactly the bytes in the first and not the second', () => {
    fc.assert(
      fc.property(extentsArb, extentsArb, (a, b) => {
        const out = subtract(normalize(a), normalize(b));
        expectDisjoint(out);
        const [x, y] = [bytesOf(a), bytesOf(b)];
        expect(bytesOf(out)).toEqual(x.map((v, i) => v && !y[i]!));
        expect(totalLength(out)).toBe(x.filter((v, i) => v && !y[i]!).length);
      }),
    );
  });

  it('chunked splits into pieces no larger than asked, covering the same bytes in order', () => {
    fc.assert(
      fc.property(extentsArb, fc.integer({ min: 1, max: 40 }), (a, max) => {
        const input = normalize(a);
        const pieces = [...chunked(input, max)];
        for (const p of pieces) expect(p.length).toBeLessThanOrEqual(max);
        expectDisjoint(pieces);
        expect(normalize(pieces)).toEqual(input);
      }),
    );
  });

  it('handles the edge cases by hand', () => {
    expect(normalize([])).toEqual([]);
    expect(normalize([{ offset: 5, length: 0 }])).toEqual([]);
    expect(normalize([{ offset: 10, length: 5 }, { offset: 0, length: 10 }])).toEqual([{ offset: 0, length: 15 }]);
    expect(normalize([{ offset: 0, length: 100 }, { offset: 10, length: 5 }])).toEqual([{ offset: 0, length: 100 }]);
    expect(intersect([{ offset: 0, length: 10 }], [{ offset: 10, length: 10 }])).toEqual([]);
    expect(intersect([{ offset: 0, length: 100 }], [{ offset: 10, length: 5 }, { offset: 50, length: 60 }])).toEqual([
      { offset: 10, length: 5 },
      { offset: 50, length: 50 },
    ]);
    expect(subtract([{ offset: 0, length: 100 }], [{ offset: 10, length: 5 }, { offset: 90, length: 20 }])).toEqual([
      { offset: 0, length: 10 },
      { offset: 15, length: 75 },
    ]);
    expect(subtract([{ offset: 0, length: 10 }], [])).toEqual([{ offset: 0, length: 10 }]);
    expect(totalLength([])).toBe(0);
    expect([...chunked([{ offset: 3, length: 10 }], 4)]).toEqual([
      { offset: 3, length: 4 },
      { offset: 7, length: 4 },
      { offset: 11, length: 2 },
    ]);
  });
});
