/**
 * Batches of large writes go to the journal with O_DIRECT from a block-aligned copy, which
 * the applier then writes the image from. The segment must hold exactly what the page-cache
 * path would write: every record where it was placed, nothing after the last one, whatever
 * mix of direct and page-cache appends, unaligned ends and restarts came before.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Journal, type PayloadPlace } from '../../src/engine/journal.js';
import { PendingWrites } from '../../src/engine/pending.js';
import { RecordType, type JournalRecord } from '../../src/engine/record.js';
import { Stage } from '../../src/engine/stage.js';
import { silentLogger } from '../../src/util/log.js';
import { takesDirectIo } from '../support/direct-io.js';
import { tempDirEach } from '../support/temp-dir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('direct journal appends', () => {
  let dir: string;
  let direct: boolean;
  tempDirEach('journal-direct', (made) => (dir = path.join(made, 'journal')));
  beforeEach(async () => {
    direct = await takesDirectIo(path.dirname(dir));
  });

  let fill = 0;
  const write = (journal: Journal, bytes: number, offset = 0): JournalRecord => {
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i += 512) data.writeUInt32LE(++fill, i);
    return { type: RecordType.Write, offset, data, sequence: journal.allocate(), time: journal.stamp() };
  };
  const zero = (journal: Journal): JournalRecord => ({ type: RecordType.Zero, offset: 0, length: 4 * KiB, sequence: journal.allocate(), time: journal.stamp() });

  async function readBack(journal: Journal, place: PayloadPlace, length: number): Promise<Buffer> {
    const into = Buffer.alloc(length);
    await journal.readPayload(place.file, place.position, into);
    return into;
  }

  it('lays records out as the page-cache path does, across unaligned ends, a roll and a restart', async () => {
    const journal = await Journal.create(dir, 8 * MiB, silentLogger());
    const written: JournalRecord[] = [];
    const places: (PayloadPlace | undefined)[] = [];
    const append = async (records: JournalRecord[]) => {
      written.push(...records);
      places.push(...(await journal.append(records)));
    };
    try {
      // A small page-cache append leaves the segment's end inside a block.
      await append([write(journal, 3000)]);
      // Large writes with a zero record among them, ending off a block boundary again.
      await append([write(journal, 256 * KiB), zero(journal), write(journal, 1 * MiB + 100), write(journal, 700 * KiB)]);
      await append([write(journal, 5)]);
      // Enough to roll to a second segment part way.
      await append(Array.from({ length: 24 }, () => write(journal, 256 * KiB + 12)));

      const held = places.filter((p) => p?.memory).length;
      // The batch that rolls leaves its last records, under DIRECT_MIN_BYTES, to the page cache.
      if (direct) expect(held).toBeGreaterThanOrEqual(3 + 20);
      else expect(held).toBe(0);
      for (const [i, record] of written.entries()) {
        if (record.type !== RecordType.Write) continue;
        const place = places[i]!;
        expect((await readBack(journal, place, record.data.length)).equals(record.data)).toBe(true);
        if (place.memory) expect(Buffer.from(place.memory.bytes).equals(record.data)).toBe(true);
      }
      // No padding after the last record: the file ends where the journal says it does.
      for (const segment of journal.segmentList()) {
        const name = path.join(dir, `${segment.firstSequence.toString(16).padStart(16, '0')}.log`);
        expect((await fs.stat(name)).size).toBe(segment.size);
      }
      await journal.sync();
    } finally {
      await journal.close();
    }

    const replayed: JournalRecord[] = [];
    const { journal: reopened, report } = await Journal.open(dir, 8 * MiB, silentLogger(), [], 0, (record) => {
      replayed.push(record.type === RecordType.Write ? { ...record, data: Buffer.from(record.data) } : record);
    });
    try {
      expect(report.truncatedBytes).toBe(0);
      expect(replayed.map((r) => r.sequence)).toEqual(written.map((r) => r.sequence));
      for (const [i, record] of replayed.entries()) {
        if (record.type === RecordType.Write) expect(record.data.equals((written[i] as typeof record).data)).toBe(true);
      }
      // Appends go on after the restart from the unaligned end the last segment has.
      const more = write(reopened, 2 * MiB + 7) as JournalRecord & { data: Buffer };
      const [place] = await reopened.append([more]);
      expect((await readBack(reopened, place!, more.data.length)).equals(more.data)).toBe(true);
    } finally {
      await reopened.close();
    }
  });

  it('keeps small writes in the page cache', async () => {
    const journal = await Journal.create(dir, 8 * MiB, silentLogger());
    try {
      const places = await journal.append(Array.from({ length: 512 }, () => write(journal, 4 * KiB)));
      expect(places.filter((p) => p?.memory)).toHaveLength(0);
    } finally {
      await journal.close();
    }
  });
});

describe('stages', () => {
  it('go back for reuse once every hold on them is released, and not before', () => {
    const stage = Stage.take(3 * MiB, 4096)!;
    expect(stage.buffer.length).toBe(4 * MiB);
    const a = stage.hold(0, 10);
    const b = stage.hold(10, 10);
    a.release();
    a.release();
    expect(Stage.take(3 * MiB, 4096)).not.toBe(stage);
    b.release();
    expect(Stage.take(3 * MiB, 4096)).toBe(stage);
  });
});

describe('pending writes holding data in memory', () => {
  it('release what they drop, and keep only a bounded amount', () => {
    const pending = new PendingWrites();
    const released: number[] = [];
    const extent = (sequence: number, length: number) => ({
      sequence,
      offset: 0,
      length,
      source: { file: 'f', position: 0, memory: { bytes: Buffer.alloc(0), release: () => released.push(sequence) } },
    });
    pending.add([extent(1, 128 * MiB), extent(2, 64 * MiB), extent(3, 16 * MiB)]);
    // The second would pass the bound: it keeps only its place in the journal.
    expect(released).toEqual([2]);
    expect(pending.heldDataBytes).toBe(144 * MiB);
    expect(pending.peek(3, Infinity)[1]!.source!.memory).toBeUndefined();
    pending.drop(2);
    expect(released).toEqual([2, 1]);
    expect(pending.heldDataBytes).toBe(16 * MiB);
  });
});
