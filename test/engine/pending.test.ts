import fc from 'fast-check';
import { PendingWrites, overlay, type PendingExtent } from '../../src/engine/pending.js';

const MiB = 1024 * 1024;

/** A change of `length` bytes at `offset`; written data lives at journal position `sequence * 1000`. */
const change = (sequence: number, offset: number, length: number, zeros = false): PendingExtent => ({
  sequence,
  offset,
  length,
  source: zeros ? undefined : { file: 'segment', position: sequence * 1000 },
});

describe('pending changes', () => {
  it('finds exactly the changes a range touches, oldest first, as changes come and go', () => {
    // Offsets and lengths around the index's 1 MiB buckets, and some too long for them.
    const extent = fc.record({
      offset: fc.oneof(fc.integer({ min: 0, max: 8 * MiB }), fc.integer({ min: 0, max: 8 }).map((n) => n * MiB - 1)),
      length: fc.oneof(fc.integer({ min: 1, max: 3 * MiB }), fc.constant(100 * MiB), fc.integer({ min: 1, max: 4096 })),
    });
    const step = fc.oneof(
      fc.record({ add: fc.array(extent, { maxLength: 6 }) }),
      fc.record({ drop: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ look: extent }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const pending = new PendingWrites();
        let model: PendingExtent[] = [];
        let sequence = 0;
        for (const s of steps) {
          if ('add' in s) {
            const added = s.add.map(({ offset, length }) => change(++sequence, offset, length));
            pending.add(added);
            model.push(...added);
          } else if ('drop' in s) {
            const n = Math.min(s.drop, model.length);
            expect(pending.peek(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER).slice(0, n)).toEqual(model.slice(0, n));
            pending.drop(n);
            model = model.slice(n);
          } else {
            const { offset, length } = s.look;
            const expected = model.filter((e) => e.offset < offset + length && offset < e.offset + e.length);
            expect(pending.overlapping(offset, length)).toEqual(expected);
          }
          expect(pending.count).toBe(model.length);
          expect(pending.bytes).toBe(model.reduce((sum, e) => sum + e.length, 0));
          expect(pending.firstSequence).toBe(model[0]?.sequence);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('skips empty changes and peeks only durable ones, up to a byte budget', () => {
    const pending = new PendingWrites();
    pending.add([change(1, 0, 4096), change(2, 0, 0), change(3, 8192, 4096), change(4, 0, 4096)]);
    expect(pending.count).toBe(3);
    expect(pending.peek(3, Number.MAX_SAFE_INTEGER).map((e) => e.sequence)).toEqual([1, 3]);
    expect(pending.peek(4, 4096).map((e) => e.sequence)).toEqual([1]);
    expect(pending.memoryBytes).toBeGreaterThan(0);
    pending.drop(3);
    expect(pending.memoryBytes).toBe(0);
    expect(pending.overlapping(0, 1 << 30)).toEqual([]);
  });
});

describe('overlay', () => {
  it('lays changes over the image bytes oldest first, reading written bytes from the journal', async () => {
    const journal = Buffer.alloc(10_000);
    journal.fill('a', 1000, 1100);
    journal.fill('b', 3000, 3100);
    const reads: [number, number][] = [];
    const target = Buffer.from('..........');
    await overlay([change(1, 100, 20), change(2, 108, 4, true), change(3, 112, 100)], 105, target, async (source, skip, into) => {
      reads.push([source.position + skip, into.length]);
      journal.copy(into, 0, source.position + skip, source.position + skip + into.length);
    });
    expect(target.toString('latin1')).toBe('aaa\0\0\0\0bbb');
    // Only the bytes inside the read are fetched from the journal.
    expect(reads).toEqual([
      [1005, 10],
      [3000, 3],
    ]);
  });
});
