/**
 * Damage below the checkpoint: start-up steps over damaged records the image already holds and
 * keeps the records after them, but never steps over a record above the checkpoint (that one
 * ends the journal, as a torn tail does).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Journal } from '../../src/engine/journal.js';
import { MAGIC_OFFSET, RecordType, encodedSize, type JournalRecord } from '../../src/engine/record.js';
import { silentLogger } from '../../src/util/log.js';

const MiB = 1024 * 1024;
const COUNT = 6;

function write(sequence: number): JournalRecord {
  return { type: RecordType.Write, offset: sequence * 4096, data: Buffer.alloc(100 + sequence, sequence), sequence, time: 1000 + sequence };
}

describe('journal damage below the checkpoint', () => {
  let dir: string;
  let file: string;
  /** Byte position of each record, by sequence. */
  const at = new Map<number, number>();
  /** The journal a test reopened, closed after it. */
  let reopened: Journal | undefined;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-damage-'));
    const journal = await Journal.create(dir, 8 * MiB, silentLogger());
    let position = 0;
    for (let i = 1; i <= COUNT; i++) {
      const record = write(journal.allocate());
      at.set(record.sequence, position);
      position += encodedSize(record);
      await journal.append([record]);
    }
    await journal.close();
    const [only] = (await fs.readdir(dir)).filter((f) => f.endsWith('.log'));
    file = path.join(dir, only!);
  });

  afterEach(async () => {
    await reopened?.close();
    reopened = undefined;
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Breaks the magic of each record named, so that its header no longer parses. */
  async function breakHeaders(...sequences: number[]): Promise<void> {
    const bytes = await fs.readFile(file);
    for (const sequence of sequences) bytes[at.get(sequence)! + MAGIC_OFFSET]! ^= 0xff;
    await fs.writeFile(file, bytes);
  }

  async function reopen(checkpoint: number) {
    const replayed: number[] = [];
    const opened = await Journal.open(dir, 8 * MiB, silentLogger(), [], checkpoint, (r) => void replayed.push(r.sequence));
    reopened = opened.journal;
    return { ...opened, replayed };
  }

  async function sequencesOf(journal: Journal, from: number, to: number): Promise<number[]> {
    const seen: number[] = [];
    for await (const header of journal.headers(from, to)) seen.push(header.sequence);
    return seen;
  }

  it('steps over a record whose header is damaged and replays the records after it', async () => {
    const size = (await fs.stat(file)).size;
    await breakHeaders(3);
    const { journal, report, replayed } = await reopen(4);
    expect(report.damagedBelowCheckpoint).toEqual([3]);
    expect(report.truncatedBytes).toBe(0);
    expect(replayed).toEqual([5, 6]);
    expect((await fs.stat(file)).size).toBe(size);
    expect(await sequencesOf(journal, 4, 6)).toEqual([4, 5, 6]);
    await expect(sequencesOf(journal, 1, 6)).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('journal records 3 to 3') });
    // Numbering goes on after the last record.
    expect(journal.allocate()).toBe(COUNT + 1);
  });

  it('steps over a run of damaged records when all of them are below the checkpoint', async () => {
    await breakHeaders(3, 4);
    const { journal, report, replayed } = await reopen(4);
    expect(report.damagedBelowCheckpoint).toEqual([3, 4]);
    expect(replayed).toEqual([5, 6]);
    await expect(sequencesOf(journal, 4, 5)).rejects.toMatchObject({ message: expect.stringContaining('journal records 3 to 4') });
    expect(await sequencesOf(journal, 5, 6)).toEqual([5, 6]);
  });

  it('cuts at the damage when a record it would step over lies above the checkpoint', async () => {
    await breakHeaders(3, 4);
    const { report, replayed } = await reopen(3);
    expect(report.damagedBelowCheckpoint).toBeUndefined();
    expect(report.truncatedBytes).toBeGreaterThan(0);
    expect(replayed).toEqual([]);
    expect((await fs.stat(file)).size).toBe(at.get(3));
  });

  it('cuts at damage above the checkpoint, as at a torn tail', async () => {
    await breakHeaders(5);
    const { report, replayed } = await reopen(4);
    expect(report.damagedBelowCheckpoint).toBeUndefined();
    expect((await fs.stat(file)).size).toBe(at.get(5));
    expect(replayed).toEqual([]);
  });
});
