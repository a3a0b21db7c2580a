import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { exists } from '../util/files.js';
import type { Logger } from '../util/log.js';
import { noteDataChange, readCheckpoint, type CheckpointState } from './checkpoint.js';
import type { DirtyTracker } from './generations.js';
import { IMAGE_FILE, applyToImage } from './image.js';
import { Journal, type RecoveryReport } from './journal.js';
import { RecordType, recordExtent, type JournalRecord } from './record.js';
import { readRestoreRecord, type RestoreRecord } from './restore-record.js';

/** A volume as start-up found it: the image holds every valid record of the journal. */
export interface Recovered {
  state: CheckpointState;
  tracker: DirtyTracker;
  journal: Journal;
  image: fs.FileHandle;
  report: RecoveryReport;
  interrupted: RestoreRecord | undefined;
}

export interface RecoveryOptions {
  /** Journal bytes read at once while replaying (see Journal.open); for tests. */
  readBytes?: number;
}

/**
 * Brings a volume back after a clean stop or a crash: reads its checkpoint, then replays every
 * valid journal record after it into the image, the bitmaps and the metadata. Records are
 * applied one by one as the journal is read, so memory stays bounded however much the
 * checkpoint lags. The caller writes a new checkpoint once it holds the volume.
 */
export async function recoverVolume(dir: string, logger: Logger, options: RecoveryOptions = {}): Promise<Recovered> {
  const { state, tracker } = await readCheckpoint(dir);
  const imagePath = path.join(dir, IMAGE_FILE);
  const image = await fs.open(imagePath, 'r+');
  try {
    const replay = (record: JournalRecord) => replayRecord({ dir, state, tracker, image, imagePath, logger }, record);
    const { journal, report } = await Journal.open(path.join(dir, 'journal'), state.segmentSize, logger, state.segments, state.checkpoint, replay, options);
    await removeOrphanSnapshots(dir, state, logger);
    const interrupted = await readRestoreRecord(dir, logger, state.name);
    return { state, tracker, journal, image, report, interrupted };
  } catch (err) {
    await image.close().catch(() => undefined);
    throw err;
  }
}

interface ReplayTarget {
  dir: string;
  state: CheckpointState;
  tracker: DirtyTracker;
  image: fs.FileHandle;
  imagePath: string;
  logger: Logger;
}

/**
 * Applies one record after the checkpoint. A Write's data may be a view of the journal's read
 * buffer, valid only until this returns: it goes to the image and is not kept.
 */
async function replayRecord(target: ReplayTarget, record: JournalRecord): Promise<void> {
  const { state, tracker } = target;
  noteDataChange(state, record);
  switch (record.type) {
    case RecordType.Write:
    case RecordType.Zero:
    case RecordType.Trim: {
      await applyToImage(target.image, target.imagePath, record);
      const { offset, length } = recordExtent(record);
      tracker.mark(offset, length);
      return;
    }
    case RecordType.Resize:
      if (record.size > state.size) {
        await target.image.truncate(record.size);
        state.size = record.size;
        tracker.resize(record.size);
      }
      return;
    case RecordType.Marker:
      if (!state.markers.some((m) => m.sequence === record.sequence)) {
        state.markers.push({ name: record.name, sequence: record.sequence, createdAt: record.time, group: record.group });
      }
      return;
    case RecordType.Snapshot: {
      if (state.snapshots.some((s) => s.sequence === record.sequence)) return;
      if (!(await exists(path.join(target.dir, 'snapshots', record.name, IMAGE_FILE)))) {
        target.logger.warn('snapshot record without its copy; ignored', { volume: state.name, snapshot: record.name });
        return;
      }
      state.snapshots.push({
        name: record.name,
        sequence: record.sequence,
        ...(state.lastDataSequence !== undefined ? { dataSequence: state.lastDataSequence, dataTime: state.lastDataTime ?? record.time } : {}),
        createdAt: record.time,
        internal: record.name.startsWith('~'),
        method: 'sparse-copy',
        size: state.size,
      });
      tracker.startGeneration(record.sequence);
      return;
    }
  }
}

/** Removes snapshot copies that neither the checkpoint nor a replayed record names. */
async function removeOrphanSnapshots(dir: string, state: CheckpointState, logger: Logger): Promise<void> {
  const known = new Set(state.snapshots.map((s) => s.name));
  const snapshots = path.join(dir, 'snapshots');
  for (const entry of await fs.readdir(snapshots)) {
    if (!known.has(entry)) {
      logger.warn('removing a snapshot copy left by an interrupted operation', { volume: state.name, snapshot: entry });
      await fs.rm(path.join(snapshots, entry), { recursive: true, force: true });
    }
  }
}
