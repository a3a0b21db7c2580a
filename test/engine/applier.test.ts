import { imageRuns } from '../../src/engine/applier.js';
import { RecordType, type JournalRecord } from '../../src/engine/record.js';

let sequence = 0;
const write = (offset: number, length: number): JournalRecord => ({ type: RecordType.Write, offset, data: Buffer.alloc(length), sequence: ++sequence, time: 0 });
const zero = (offset: number, length: number): JournalRecord => ({ type: RecordType.Zero, offset, length, sequence: ++sequence, time: 0 });
const marker = (): JournalRecord => ({ type: RecordType.Marker, name: 'm', group: '', sequence: ++sequence, time: 0 });
const shape = (runs: JournalRecord[][]) => runs.map((run) => run.map((r) => r.sequence));

describe('image runs', () => {
  it('joins writes that follow each other in the image, in journal order, and nothing else', () => {
    sequence = 0;
    const records = [write(0, 4096), write(4096, 4096), write(8192, 100), write(0, 10), zero(10, 20), write(30, 5), marker(), write(35, 5), write(100, 1)];
    expect(shape(imageRuns(records))).toEqual([[1, 2, 3], [4], [5], [6], [8], [9]]);
  });

  it('keeps every record exactly once and in order, so applying the runs one after the other is applying the records', () => {
    sequence = 0;
    const records: JournalRecord[] = [];
    for (let i = 0; i < 1000; i++) records.push(i % 7 === 3 ? zero(i * 4096, 4096) : write((i % 5 === 0 ? i + 1 : i) * 4096, 4096));
    const flat = imageRuns(records).flat();
    expect(flat).toEqual(records);
    for (const run of imageRuns(records)) {
      const at = run as (JournalRecord & { offset: number; data: Buffer })[];
      for (let i = 1; i < at.length; i++) expect(at[i]!.offset).toBe(at[i - 1]!.offset + at[i - 1]!.data.length);
    }
  });
});
