import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { crc32c } from '../util/crc32c.js';
import { TidemarkError, classifyError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { DirtyTracker } from './generations.js';
import type { SegmentSummary } from './journal.js';
import { RecordType, type JournalRecord } from './record.js';
import type { RetentionPolicy, SnapshotInfo } from './types.js';

/**
 * The checkpoint file: a volume's configuration, metadata and differential bitmaps, replaced
 * atomically, with the sequence up to which the image holds the journal. Versions 2 and 3
 * carry a CRC32C over everything after it; versions 1 (no CRC) and 2 are still read, and
 * rewritten as 3 by the next checkpoint. See docs/format.md.
 */
export const CHECKPOINT_FILE = 'checkpoint';

const MAGIC_V1 = 'TDMC';
const MAGIC_V2 = 'TDM2';
/**
 * Version 3 has version 2's layout. Its magic says that the journal may hold aligned Write
 * records (record.ts, ALIGNED_WRITE_TYPE): a tidemark that predates them would take one for
 * a torn tail and cut the journal there, so it must refuse the volume instead, which an
 * unknown magic makes it do, changing nothing.
 */
const MAGIC_V3 = 'TDM3';
/** Version 1: magic, JSON length. */
const HEAD_V1 = 8;
/** Versions 2 and 3: magic, CRC32C of bytes 8 to the end, JSON length. */
const HEAD_V2 = 12;

export interface SnapshotMeta {
  name: string;
  sequence: number;
  /**
   * The newest record that changed data when the snapshot was taken: every point from here
   * to `sequence` has the snapshot's content, so it can be restored from it. Absent in
   * checkpoints written before it was kept; then only `sequence` itself is known.
   */
  dataSequence?: number;
  /** When that record was written. */
  dataTime?: number;
  createdAt: number;
  internal: boolean;
  method: SnapshotInfo['method'];
  size: number;
}

export interface MarkerMeta {
  name: string;
  sequence: number;
  createdAt: number;
  group: string;
}

/** What a checkpoint stores besides the bitmaps; also the volume's configuration. */
export interface CheckpointState {
  version: 2;
  name: string;
  size: number;
  blockSize: number;
  granularity: number;
  createdAt: number;
  retention: RetentionPolicy;
  segmentSize: number;
  /** Every record up to this sequence is in the image and the bitmaps below. */
  checkpoint: number;
  /** The newest record that changed data (write, zero, trim, resize), and its time; absent in old checkpoints. */
  lastDataSequence?: number;
  lastDataTime?: number;
  segments: SegmentSummary[];
  snapshots: SnapshotMeta[];
  markers: MarkerMeta[];
}

/**
 * A checkpoint that cannot be trusted: unreadable, cut short, failing its CRC, or not a
 * checkpoint at all. The volume does not open. No journal replay can stand in for it: the
 * checkpoint alone holds the volume's size and layout, its retention, and which snapshots
 * were deleted, so the store's owner has to repair or remove the volume.
 */
export class CheckpointDamagedError extends TidemarkError {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super('INTERNAL', `checkpoint file ${file} is damaged (${reason}); the volume was not opened and nothing in it was changed`, { file });
  }
}

export function encodeCheckpoint(state: CheckpointState, bitmaps: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(state));
  const bytes = Buffer.allocUnsafe(HEAD_V2 + json.length + bitmaps.length);
  bytes.write(MAGIC_V3, 0, 'latin1');
  bytes.writeUInt32LE(json.length, 8);
  json.copy(bytes, HEAD_V2);
  bitmaps.copy(bytes, HEAD_V2 + json.length);
  bytes.writeUInt32LE(crc32c(bytes.subarray(8)), 4);
  return bytes;
}

/** Checks and parses a checkpoint; `file` names it in errors. */
export function decodeCheckpoint(bytes: Buffer, file: string): { state: CheckpointState; bitmaps: Buffer } {
  const damaged = (reason: string) => new CheckpointDamagedError(file, reason);
  const magic = bytes.length >= 4 ? bytes.toString('latin1', 0, 4) : '';
  let head: number;
  let version: number;
  if (magic === MAGIC_V3 || magic === MAGIC_V2) {
    if (bytes.length < HEAD_V2) throw damaged(`${bytes.length} bytes, shorter than its header`);
    const stored = bytes.readUInt32LE(4);
    const actual = crc32c(bytes.subarray(8));
    if (stored !== actual) throw damaged(`CRC32C ${hex(actual)} where ${hex(stored)} was written`);
    head = HEAD_V2;
    version = 2;
  } else if (magic === MAGIC_V1) {
    if (bytes.length < HEAD_V1) throw damaged(`${bytes.length} bytes, shorter than its header`);
    head = HEAD_V1;
    version = 1;
  } else {
    throw damaged(bytes.length === 0 ? 'empty' : 'it does not start with a checkpoint magic');
  }
  const length = bytes.readUInt32LE(head - 4);
  if (head + length > bytes.length) throw damaged(`its JSON of ${length} bytes runs past the end of the file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8', head, head + length));
  } catch (err) {
    throw damaged(`its JSON does not parse: ${(err as Error).message}`);
  }
  const problem = checkState(parsed, version);
  if (problem) throw damaged(problem);
  const state = parsed as CheckpointState;
  state.version = 2;
  return { state, bitmaps: bytes.subarray(head + length) };
}

/** Why `value` is not a checkpoint state of `version`, or undefined when it is one. */
function checkState(value: unknown, version: number): string | undefined {
  if (typeof value !== 'object' || value === null) return 'its JSON is not an object';
  const state = value as Record<string, unknown>;
  if (state['version'] !== version) return `it says version ${String(state['version'])} under a version ${version} header`;
  if (typeof state['name'] !== 'string') return 'it has no volume name';
  for (const field of ['size', 'blockSize', 'granularity', 'createdAt', 'segmentSize', 'checkpoint']) {
    if (typeof state[field] !== 'number' || !Number.isSafeInteger(state[field])) return `its field "${field}" is not a whole number`;
  }
  for (const field of ['segments', 'snapshots', 'markers']) {
    if (!Array.isArray(state[field])) return `its field "${field}" is not a list`;
  }
  if (typeof state['retention'] !== 'object' || state['retention'] === null) return 'its field "retention" is not an object';
  return undefined;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/** Reads and checks a volume's checkpoint, bitmaps included. */
export async function readCheckpoint(dir: string): Promise<{ state: CheckpointState; tracker: DirtyTracker }> {
  const file = path.join(dir, CHECKPOINT_FILE);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw classifyError(err, `opening volume at ${dir}`);
  }
  const { state, bitmaps } = decodeCheckpoint(bytes, file);
  let tracker: DirtyTracker;
  try {
    tracker = bitmaps.length > 0 ? DirtyTracker.deserialize(bitmaps, state.granularity, state.size) : new DirtyTracker(state.granularity, state.size);
  } catch (err) {
    throw new CheckpointDamagedError(file, `its bitmaps do not parse: ${(err as Error).message}`);
  }
  return { state, tracker };
}

/** Keeps the newest data-changing record, which a snapshot records as the start of what it holds. */
export function noteDataChange(state: CheckpointState, record: JournalRecord): void {
  const changes = record.type === RecordType.Write || record.type === RecordType.Zero || record.type === RecordType.Trim || record.type === RecordType.Resize;
  if (!changes) return;
  state.lastDataSequence = record.sequence;
  state.lastDataTime = record.time;
}

/** A checkpoint captured under the volume lock, to be written after the image is synced. */
export interface CapturedCheckpoint {
  generation: number;
  bytes: Buffer;
}

/**
 * Writes captured checkpoints in order. Each waits for the image fdatasync that makes what
 * it says true; one older than a checkpoint already written is skipped, so the file never
 * goes back in time.
 */
export class CheckpointWriter {
  private chain: Promise<void> = Promise.resolve();
  private captured = 0;
  private written = 0;

  constructor(
    private readonly dir: string,
    private readonly syncImage: () => Promise<void>,
  ) {}

  capture(state: CheckpointState, bitmaps: Buffer): CapturedCheckpoint {
    return { generation: ++this.captured, bytes: encodeCheckpoint(state, bitmaps) };
  }

  persist(captured: CapturedCheckpoint): Promise<void> {
    const run = this.chain.then(async () => {
      if (captured.generation <= this.written) return;
      await this.syncImage();
      await writeFileAtomic(path.join(this.dir, CHECKPOINT_FILE), captured.bytes);
      this.written = captured.generation;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}
