import * as fs from 'node:fs/promises';
import { Journal } from '../../src/engine/journal.js';
import { RecordType, type JournalRecord } from '../../src/engine/record.js';
import { silentLogger } from '../../src/util/log.js';
import { tempDirEach } from '../support/temp-dir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const fill = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff));

describe('a journal that aligns large writes', () => {
  let dir: string;
  tempDirEach('aligned', (made) => (dir = made));

  it('starts their data on a 4 KiB block, and every reader finds it there, before and after a reopen', async () => {
    const journal = await alignedJournal(dir);
    const write = (offset: number, data: Buffer): JournalRecord => ({ type: RecordType.Write, offset, data, sequence: journal.allocate(), time: journal.stamp() });
    const records: JournalRecord[] = [
      write(0, fill(5, 1)), // small: plain form
      write(64 * KiB, fill(64 * KiB, 2)), // aligned
      write(4 * KiB + 512, fill(64 * KiB, 3)), // offset not on a block: plain
      write(128 * KiB, fill(64 * KiB + 512, 4)), // length not whole blocks: plain
      { type: RecordType.Zero, offset: 0, length: 8192, sequence: journal.allocate(), time: journal.stamp() },
      write(256 * KiB, fill(320 * KiB, 5)), // aligned
      write(1 * MiB, fill(512 * KiB, 6)), // aligned, and past the segment's size: rolls
      write(2 * MiB, fill(256 * KiB, 7)), // aligned, in the new segment
    ];
    const places = await journal.append(records);
    const aligned = [1, 5, 6, 7];
    for (const i of aligned) expect(places[i]!.position % (4 * KiB)).toBe(0);
    for (const i of [0, 2, 3]) expect(places[i]!.position % (4 * KiB)).not.toBe(0);
    expect(places[4]).toBeUndefined();
    for (const [i, record] of records.entries()) {
      if (record.type !== RecordType.Write) continue;
      const back = Buffer.alloc(record.data.length);
      await journal.readPayload(places[i]!.file, places[i]!.position, back);
      expect(back.equals(record.data)).toBe(true);
    }
    const headers: Awaited<ReturnType<typeof collectHeaders>> = await collectHeaders(journal, records.length);
    expect(headers.map((h) => h.dataPosition)).toEqual(records.map((r, i) => (r.type === RecordType.Write ? places[i]!.position : headers[i]!.dataPosition)));
    expect(headers.map((h) => h.length)).toEqual(records.map((r) => (r.type === RecordType.Write ? r.data.length : 8192)));
    for (const header of headers) if (header.type === RecordType.Write) await journal.verifyWrite(header.segment, header);
    await journal.sync();
    await journal.close();

    const replayed: JournalRecord[] = [];
    const { journal: reopened, report } = await Journal.open(dir, 1 * MiB, silentLogger(), [], 0, (r) => {
      replayed.push(r.type === RecordType.Write ? { ...r, data: Buffer.from(r.data) } : r);
    });
    try {
      expect(report.truncatedBytes).toBe(0);
      expect(replayed).toEqual(records);
      const all: JournalRecord[] = [];
      for await (const record of reopened.records(1, records.length)) all.push(record.type === RecordType.Write ? { ...record, data: Buffer.from(record.data) } : record);
      expect(all).toEqual(records);
    } finally {
      await reopened.close();
    }
  });

  it('fails a reader of headers where a damaged pad length runs past its record, naming the place', async () => {
    const journal = await alignedJournal(dir);
    const [place] = await journal.append([{ type: RecordType.Write, offset: 0, data: fill(64 * KiB, 9), sequence: journal.allocate(), time: journal.stamp() }]);
    await journal.sync();
    // An aligned record's pad length follows its header and offset, at byte 40.
    const file = await fs.open(place!.file, 'r+');
    const pad = Buffer.alloc(4);
    await file.read(pad, 0, 4, 40);
    pad.writeUInt32LE(pad.readUInt32LE(0) + 2 * 64 * KiB);
    await file.write(pad, 0, 4, 40);
    await file.close();
    await expect(collectHeaders(journal, 1)).rejects.toThrow(/journal damaged at .*:0: padding past payload/);
    await journal.close();
  });
});

async function collectHeaders(journal: Journal, to: number) {
  const out = [];
  for await (const header of journal.headers(1, to)) out.push(header);
  return out;
}

async function alignedJournal(dir: string): Promise<Journal> {
  const journal = await Journal.create(dir, 1 * MiB, silentLogger());
  journal.alignLargeWrites = true;
  return journal;
}
