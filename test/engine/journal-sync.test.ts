/**
 * A journal sync runs beside appends: the applier syncs in the background while the writer
 * appends and rolls to new segments. A segment rolled away from while a sync runs can have
 * taken records after that sync's fdatasync; the sync must not treat it as done with.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Journal } from '../../src/engine/journal.js';
import { RecordType, type JournalRecord } from '../../src/engine/record.js';
import { silentLogger } from '../../src/util/log.js';
import { tempDirEach } from '../support/temp-dir.js';
import { SyncRecorder } from './fixtures/sync-recorder.js';

const KiB = 1024;

describe('a journal sync racing a roll', () => {
  let dir: string;
  let recorder: SyncRecorder;
  tempDirEach('journal-sync', (made) => (dir = path.join(made, 'journal')));
  beforeAll(async () => {
    recorder = await SyncRecorder.install();
  });
  afterAll(() => recorder.uninstall());

  const write = (journal: Journal, fill: number): JournalRecord => ({
    type: RecordType.Write,
    offset: 0,
    data: Buffer.alloc(4 * KiB, fill),
    sequence: journal.allocate(),
    time: journal.stamp(),
  });

  it('syncs what the rolled segment took after the running sync had synced it', async () => {
    const journal = await Journal.create(dir, 1024 * KiB, silentLogger());
    try {
      await journal.append([write(journal, 1), write(journal, 2)]);
      let appended: Promise<unknown> | undefined;
      let rolled: Promise<void> | undefined;
      journal.onSync = () => {
        if (appended) return;
        // This sync has synced the active segment and not yet ended: one more record goes
        // into that segment, then the journal rolls away from it.
        appended = journal.append([write(journal, 3)]);
        rolled = journal.rollIfNotEmpty();
      };
      await journal.sync();
      await appended;
      await rolled;
      await journal.sync();

      expect(journal.durableSequence).toBe(3);
      const segments = (await fs.readdir(dir)).filter((name) => name.endsWith('.log'));
      expect(segments).toHaveLength(2);
      // A power cut keeps of each segment what was synced: all of it, record 3 included.
      for (const name of segments) {
        const file = path.join(dir, name);
        expect({ name, durable: recorder.durableSize(file) }).toEqual({ name, durable: (await fs.stat(file)).size });
      }
    } finally {
      await journal.close();
    }
  });
});
