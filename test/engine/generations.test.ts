import fc from 'fast-check';
import { DirtyTracker } from '../../src/engine/generations.js';

const GRANULARITY = 4096;
const SIZE = 70 * 4096 + 1000; // a partial last chunk

type Op =
  | { kind: 'mark'; offset: number; length: number }
  | { kind: 'snapshot' }
  | { kind: 'drop'; pick: number }
  | { kind: 'reload' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('mark' as const), offset: fc.integer({ min: 0, max: SIZE - 1 }), length: fc.integer({ min: 0, max: 20000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('snapshot' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reload' as const) }) },
);

/**
 * The reference: every mark remembers the generation it landed in; deleting a snapshot moves
 * its marks to the generation before it. "Changed between" is then a filter.
 */
class Reference {
  starts = [0];
  marks: { start: number; chunks: number[] }[] = [];

  mark(offset: number, length: number): void {
    if (length <= 0) return;
    const chunks: number[] = [];
    for (let c = Math.floor(offset / GRANULARITY); c <= Math.floor((offset + length - 1) / GRANULARITY); c++) chunks.push(c);
    this.marks.push({ start: this.starts[this.starts.length - 1]!, chunks });
  }

  drop(start: number): void {
    const index = this.starts.indexOf(start);
    if (index <= 0) return;
    const previous = this.starts[index - 1]!;
    for (const m of this.marks) if (m.start === start) m.start = previous;
    this.starts.splice(index, 1);
  }

  changed(from: number, to = Infinity): { offset: number; length: number }[] {
    const chunks = new Set<number>();
    for (const m of this.marks) if (m.start >= from && m.start < to) for (const c of m.chunks) chunks.add(c);
    const sorted = [...chunks].filter((c) => c * GRANULARITY < SIZE).sort((a, b) => a - b);
    const out: { offset: number; length: number }[] = [];
    for (const c of sorted) {
      const offset = c * GRANULARITY;
      const end = Math.min(SIZE, offset + GRANULARITY);
      const last = out[out.length - 1];
      if (last && last.offset + last.length === offset) last.length = end - last.offset;
      else out.push({ offset, length: end - offset });
    }
    return out;
  }
}

describe('DirtyTracker', () => {
  it('answers "changed between two snapshots" like the reference, across deletions and reloads', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        let tracker = new DirtyTracker(GRANULARITY, SIZE);
        const ref = new Reference();
        let sequence = 0;
        for (const op of ops) {
          sequence += 1 + (op.kind === 'mark' ? 1 : 0);
          if (op.kind === 'mark') {
            const length = Math.min(op.length, SIZE - op.offset);
            tracker.mark(op.offset, length);
            ref.mark(op.offset, length);
          } else if (op.kind === 'snapshot') {
            tracker.startGeneration(sequence);
            ref.starts.push(sequence);
          } else if (op.kind === 'drop') {
            const start = ref.starts[op.pick % ref.starts.length]!;
            tracker.dropGeneration(start);
            ref.drop(start);
          } else {
            tracker = DirtyTracker.deserialize(tracker.serialize(), GRANULARITY, SIZE);
          }
          expect([...tracker.generationStarts()]).toEqual(ref.starts);
        }
        const points = [...ref.starts, 0, sequence + 1];
        for (const from of points) {
          expect(tracker.changedExtents(from)).toEqual(ref.changed(from));
          for (const to of points) expect(tracker.changedExtents(from, to)).toEqual(ref.changed(from, to));
        }
        expect(tracker.allocatedExtents()).toEqual(ref.changed(0));
      }),
    );
  });

  it('counts a write in the generation of the newest snapshot only', () => {
    const tracker = new DirtyTracker(4096, 64 * 4096);
    tracker.mark(0, 1);
    tracker.startGeneration(5);
    tracker.mark(4096 * 3, 8192 + 1); // chunks 3, 4 and 5
    tracker.startGeneration(9);
    tracker.mark(4096 * 10, 4096);
    expect(tracker.changedExtents(0, 5)).toEqual([{ offset: 0, length: 4096 }]);
    expect(tracker.changedExtents(5)).toEqual([
      { offset: 3 * 4096, length: 3 * 4096 },
      { offset: 10 * 4096, length: 4096 },
    ]);
    expect(tracker.changedExtents(5, 9)).toEqual([{ offset: 3 * 4096, length: 3 * 4096 }]);
    expect(tracker.changedExtents(9)).toEqual([{ offset: 10 * 4096, length: 4096 }]);
    // Deleting the snapshot at 9 folds its changes into the one at 5.
    tracker.dropGeneration(9);
    expect(tracker.changedExtents(5)).toEqual(tracker.changedExtents(5, Infinity));
    expect(tracker.changedExtents(5, 10)).toEqual([
      { offset: 3 * 4096, length: 3 * 4096 },
      { offset: 10 * 4096, length: 4096 },
    ]);
    // Generation 0 (the volume's creation) is never dropped.
    tracker.dropGeneration(0);
    expect(tracker.generationStarts()).toEqual([0, 5]);
    // Marks of length zero change nothing; a generation started twice stays one.
    tracker.mark(4096 * 20, 0);
    tracker.startGeneration(5);
    expect(tracker.generationStarts()).toEqual([0, 5]);
    expect(tracker.allocatedExtents().some((e) => e.offset === 20 * 4096)).toBe(false);
  });

  it('costs memory only for pages with changes', () => {
    const tracker = new DirtyTracker(64 * 1024, 10 * 2 ** 30);
    for (let s = 1; s <= 50; s++) tracker.startGeneration(s);
    expect(tracker.memoryBytes()).toBe(0);
    tracker.mark(2 ** 30, 4096);
    expect(tracker.memoryBytes()).toBe(4096);
  });
});
