import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { classifyError } from '../util/errors.js';
import { fsyncDir, writeFileAtomic } from '../util/files.js';
import type { Logger } from '../util/log.js';
import type { Extent } from './extents.js';
import type { InterruptedRestore } from './types.js';

/**
 * The `restore-in-progress` file: present while an in-place restore is writing, so that what
 * a crash leaves says the volume holds a mix of two points. See docs/format.md.
 */
const RESTORE_FILE = 'restore-in-progress';

/** An in-place restore as recorded in the file. */
export interface RestoreRecord {
  source: string;
  pointSequence: number;
  ranges?: Extent[];
  startedAt: number;
}

export function toRestoreRecord(restore: InterruptedRestore): RestoreRecord {
  return {
    source: restore.source,
    pointSequence: restore.pointSequence,
    ...(restore.ranges ? { ranges: restore.ranges.map(({ offset, length }) => ({ offset, length })) } : {}),
    startedAt: restore.startedAt.getTime(),
  };
}

export function toInterruptedRestore(record: RestoreRecord): InterruptedRestore {
  return {
    source: record.source,
    pointSequence: record.pointSequence,
    ...(record.ranges ? { ranges: record.ranges.map(({ offset, length }) => ({ offset, length })) } : {}),
    startedAt: new Date(record.startedAt),
  };
}

/**
 * Whether a restore, run to completion, leaves no trace of `older` cut short: one of the
 * whole volume brings every byte to its point; otherwise only the same restore again does.
 */
export function covers(newer: RestoreRecord, older: RestoreRecord): boolean {
  if (!newer.ranges) return true;
  return newer.pointSequence === older.pointSequence && JSON.stringify(newer.ranges) === JSON.stringify(older.ranges ?? null);
}

export async function writeRestoreRecord(dir: string, record: RestoreRecord): Promise<void> {
  await writeFileAtomic(path.join(dir, RESTORE_FILE), JSON.stringify(record));
}

export async function removeRestoreRecord(dir: string): Promise<void> {
  await fs.rm(path.join(dir, RESTORE_FILE), { force: true });
  await fsyncDir(dir);
}

/** The record an in-place restore left behind, if one was cut short. */
export async function readRestoreRecord(dir: string, logger: Logger, volume: string): Promise<RestoreRecord | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, RESTORE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw classifyError(err, `reading the restore record of volume "${volume}"`);
  }
  let record: RestoreRecord;
  try {
    const parsed = JSON.parse(text) as Partial<RestoreRecord>;
    if (typeof parsed.source !== 'string' || typeof parsed.pointSequence !== 'number' || typeof parsed.startedAt !== 'number') throw new Error('fields missing');
    record = { source: parsed.source, pointSequence: parsed.pointSequence, startedAt: parsed.startedAt, ...(Array.isArray(parsed.ranges) ? { ranges: parsed.ranges } : {}) };
  } catch {
    // The file is replaced atomically, so this is damage, not a torn write; the restore was
    // still cut short, and saying so matters more than what it was.
    record = { source: 'an unknown point (its record is damaged)', pointSequence: 0, startedAt: 0 };
  }
  logger.warn('an in-place restore was interrupted: the volume holds a mix of its old data and the point\'s until the restore is run again or cleared', {
    volume,
    source: record.source,
    pointSequence: record.pointSequence,
    ranges: record.ranges?.length,
  });
  return record;
}
