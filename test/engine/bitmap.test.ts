import fc from 'fast-check';
import { PagedBitmap, runsToExtents } from '../../src/engine/bitmap.js';

/** Bits spread over several 32768-bit pages, with clusters near page edges. */
const BITS = 5 * 32768 + 100;
const bitArb = fc.oneof(fc.integer({ min: 0, max: BITS - 1 }), fc.integer({ min: 32760, max: 32780 }), fc.integer({ min: BITS - 20, max: BITS - 1 }));
const rangeArb = fc.tuple(bitArb, fc.integer({ min: 0, max: 70 })).map(([first, n]) => [first, Math.min(BITS - 1, first + n)] as const);

function fromModel(model: Set<number>): PagedBitmap {
  const bitmap = new PagedBitmap(BITS);
  for (const bit of model) bitmap.set(bit);
  return bitmap;
}

function runsOf(model: Set<number>): { first: number; count: number }[] {
  const sorted = [...model].sort((a, b) => a - b);
  const runs: { first: number; count: number }[] = [];
  for (const bit of sorted) {
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === bit) last.count++;
    else runs.push({ first: bit, count: 1 });
  }
  return runs;
}

describe('PagedBitmap', () => {
  it('set, setRange, get and runs agree with a set of bits', () => {
    fc.assert(
      fc.property(fc.array(bitArb, { maxLength: 60 }), fc.array(rangeArb, { maxLength: 6 }), fc.array(bitArb, { maxLength: 30 }), (bits, ranges, probes) => {
        const model = new Set<number>(bits);
        const bitmap = fromModel(model);
        for (const [first, last] of ranges) {
          bitmap.setRange(first, last);
          for (let b = first; b <= last; b++) model.add(b);
        }
        for (const probe of [...probes, ...bits]) expect(bitmap.get(probe)).toBe(model.has(probe));
        expect([...bitmap.runs()]).toEqual(runsOf(model));
        expect(bitmap.isEmpty()).toBe(model.size === 0);
      }),
    );
  });

  it('merge is the union and leaves the other bitmap alone', () => {
    fc.assert(
      fc.property(fc.array(bitArb, { maxLength: 40 }), fc.array(bitArb, { maxLength: 40 }), (a, b) => {
        const left = fromModel(new Set(a));
        const right = fromModel(new Set(b));
        left.merge(right);
        expect([...left.runs()]).toEqual(runsOf(new Set([...a, ...b])));
        expect([...right.runs()]).toEqual(runsOf(new Set(b)));
        // The merged pages are copies: setting a bit in one must not show up in the other.
        right.set(0);
        left.set(1);
        expect(right.get(1)).toBe(new Set(b).has(1));
      }),
    );
  });

  it('survives serialize and deserialize, storing only pages with bits set', () => {
    fc.assert(
      fc.property(fc.array(bitArb, { maxLength: 60 }), (bits) => {
        const model = new Set(bits);
        const bitmap = fromModel(model);
        const bytes = bitmap.serialize();
        const pages = new Set([...model].map((b) => Math.floor(b / 32768))).size;
        expect(bytes.length).toBe(8 + pages * (4 + 4096));
        expect(bitmap.memoryBytes()).toBe(pages * 4096);
        const back = PagedBitmap.deserialize(bytes);
        expect(back.bits).toBe(BITS);
        expect([...back.runs()]).toEqual(runsOf(model));
      }),
    );
  });

  it('keeps a bit count above 32 bits through serialisation', () => {
    const bitmap = new PagedBitmap(2 ** 33 + 5);
    bitmap.set(2 ** 33 + 4);
    const back = PagedBitmap.deserialize(bitmap.serialize());
    expect(back.bits).toBe(2 ** 33 + 5);
    expect(back.get(2 ** 33 + 4)).toBe(true);
    expect([...back.runs()]).toEqual([{ first: 2 ** 33 + 4, count: 1 }]);
  });

  it('an idle bitmap costs no pages', () => {
    const bitmap = new PagedBitmap(10 * 2 ** 30 / 4096);
    expect(bitmap.memoryBytes()).toBe(0);
    expect(bitmap.isEmpty()).toBe(true);
    expect([...bitmap.runs()]).toEqual([]);
  });

  it('runs ignore bits at or past the bit count, and resized copies keep the set bits', () => {
    const bitmap = new PagedBitmap(10);
    bitmap.setRange(8, 12);
    expect([...bitmap.runs()]).toEqual([{ first: 8, count: 2 }]);
    const bigger = bitmap.resized(20);
    expect([...bigger.runs()]).toEqual([{ first: 8, count: 5 }]);
  });
});

describe('runsToExtents', () => {
  it('converts runs to byte extents, clipping the last chunk to the volume size', () => {
    expect(
      runsToExtents(
        [
          { first: 0, count: 2 },
          { first: 5, count: 1 },
          { first: 9, count: 1 },
        ],
        4096,
        9 * 4096 + 100,
      ),
    ).toEqual([
      { offset: 0, length: 8192 },
      { offset: 5 * 4096, length: 4096 },
      { offset: 9 * 4096, length: 100 },
    ]);
    expect(runsToExtents([{ first: 3, count: 1 }], 512, 3 * 512)).toEqual([]);
  });
});
