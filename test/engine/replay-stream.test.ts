/**
 * Start-up replay streams: it reads the journal through one bounded buffer and applies each
 * record before it reads the next, so a long replay costs no more memory than a short one,
 * and gives the same volume as before.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { Journal } from '../../src/engine/journal.js';
import { RecordType, type JournalRecord } from '../../src/engine/record.js';
import { Volume } from '../../src/engine/volume.js';
import { silentLogger } from '../../src/util/log.js';
import { tempDirEach } from '../support/temp-dir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** 1 MiB of data whose every 4 bytes hold `n` and the position: each record's bytes are its own. */
function pattern(n: number, length = MiB): Buffer {
  const data = Buffer.allocUnsafe(length);
  for (let at = 0; at < length; at += 8) {
    data.writeUInt32LE(n, at);
    data.writeUInt32LE(at, at + 4);
  }
  return data;
}

describe('streaming replay', () => {
  let dir: string;
  tempDirEach('stream', (made) => (dir = made));

  it('hands 48 MiB of records over one at a time through a buffer of about one record', async () => {
    const logger = silentLogger();
    const journalDir = path.join(dir, 'journal');
    const journal = await Journal.create(journalDir, 8 * MiB, logger);
    const count = 48;
    for (let i = 1; i <= count; i++) {
      const record: JournalRecord = { type: RecordType.Write, offset: i * MiB, data: pattern(i), sequence: journal.allocate(), time: journal.stamp() };
      await journal.append([record]);
    }
    await journal.close();

    let inFlight = 0;
    let seen = 0;
    let bytes = 0;
    const replay = async (record: JournalRecord) => {
      // Applied as read: the next record is not read until this one's replay has settled.
      expect(inFlight).toBe(0);
      inFlight++;
      seen++;
      expect(record.sequence).toBe(seen);
      if (record.type !== RecordType.Write) throw new Error('not a write');
      expect(record.data.equals(pattern(seen))).toBe(true);
      bytes += record.data.length;
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
    };
    const { journal: reopened, report } = await Journal.open(journalDir, 8 * MiB, logger, [], 0, replay, { readBytes: 64 * KiB });
    await reopened.close();
    expect(seen).toBe(count);
    expect(bytes).toBe(count * MiB);
    expect(report.replayed).toBe(count);
    expect(report.truncatedBytes).toBe(0);
    // One record (1 MiB + 40 bytes of header and offset) is the most it ever held at once.
    expect(report.readBufferBytes).toBeGreaterThan(MiB);
    expect(report.readBufferBytes).toBeLessThan(MiB + 64);
  });

  it('gives the same volume, bitmaps and markers whatever the read size', async () => {
    const store = path.join(dir, 'store');
    const volumeDir = path.join(store, 'volumes', 'v');
    const engine = await Engine.open({ store, upkeepIntervalMs: 0, segmentSize: 4 * MiB });
    await engine.createVolume('v', { size: 32 * MiB });
    await engine.createSnapshot('v', 's');
    // The state a crash right after this checkpoint leaves: everything below is replayed.
    const saved = path.join(dir, 'saved');
    await fs.mkdir(saved);
    for (const file of ['checkpoint', 'image']) await fs.copyFile(path.join(volumeDir, file), path.join(saved, file));
    const expected = Buffer.alloc(32 * MiB);
    for (let i = 0; i < 24; i++) {
      const offset = ((i * 7) % 31) * MiB + (i % 3) * 4 * KiB;
      const data = pattern(i + 1, MiB - 8 * KiB);
      await engine.write('v', offset, data);
      data.copy(expected, offset);
      if (i % 5 === 4) {
        await engine.zero('v', offset + 64 * KiB, 128 * KiB);
        expected.fill(0, offset + 64 * KiB, offset + 192 * KiB);
      }
      if (i === 12) await engine.createMarker('half', ['v']);
    }
    await engine.flush('v');
    const diff = engine.diff('v', 's');
    await engine.close();

    for (const readBytes of [32 * KiB, 4 * MiB]) {
      for (const file of ['checkpoint', 'image']) await fs.copyFile(path.join(saved, file), path.join(volumeDir, file));
      const volume = await Volume.open(volumeDir, silentLogger(), { readBytes });
      try {
        expect((await volume.read(0, 32 * MiB)).equals(expected)).toBe(true);
        expect(volume.changedExtents(volume.snapshotMeta()[0]!.sequence)).toEqual(diff);
        expect(volume.markerMeta().map((m) => m.name)).toEqual(['half']);
      } finally {
        await volume.close();
      }
    }
  });
});
