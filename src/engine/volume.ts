import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { TidemarkError, alreadyExists, busy, classifyError, invalidArgument, notFound, outOfRange } from '../util/errors.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, cloneFile, exists, fsyncDir, makePrivateDir, punchHole, readFully, writeFileAtomic, writeFully } from '../util/files.js';
import type { Logger } from '../util/log.js';
import { Mutex } from '../util/mutex.js';
import { formatSize } from '../util/sizes.js';
import type { Extent } from './extents.js';
import { DirtyTracker } from './generations.js';
import { Journal, type SegmentSummary } from './journal.js';
import { checkName } from './names.js';
import { PendingWrites, overlay } from './pending.js';
import { MAX_RECORD_PAYLOAD, RecordType, recordExtent, type JournalRecord, type RecordBody } from './record.js';
import type { InterruptedRestore, RetentionPolicy, SnapshotInfo, VolumeInfo, WriteOptions } from './types.js';

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
interface CheckpointState {
  version: 1;
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

type QueuedOp =
  | { kind: 'write'; offset: number; data: Buffer; fua: boolean; resolve: (seq: number) => void; reject: (e: Error) => void }
  | { kind: 'zero'; offset: number; length: number; trim: boolean; fua: boolean; resolve: (seq: number) => void; reject: (e: Error) => void }
  | { kind: 'flush'; resolve: (seq: number) => void; reject: (e: Error) => void };

export const DEFAULT_BLOCK_SIZE = 4096;
export const DEFAULT_GRANULARITY = 64 * 1024;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024;
const BATCH_BYTES = 32 * 1024 * 1024;
/** Pending (not yet durable) bytes above which the applier syncs the journal itself. */
const SYNC_AFTER_BYTES = 4 * 1024 * 1024;
/** How long pending writes may wait for a client's FLUSH before the applier syncs anyway. */
const SYNC_AFTER_MS = 20;
/** Writers wait while this much is pending, so memory stays bounded under any load. */
const MAX_PENDING_BYTES = 128 * 1024 * 1024;
/** Payload the applier writes to the image per round. */
const APPLY_BYTES = 8 * 1024 * 1024;
/** Image writes the applier has in flight at once. */
const APPLY_PARALLEL = 8;
const PUNCH_THRESHOLD = 1024 * 1024;
const ZEROS = Buffer.alloc(PUNCH_THRESHOLD);

/**
 * Segments written between the checkpoints upkeep takes while writes flow. Each one makes the
 * applier catch up under the volume lock and then syncs the image, so fewer is faster; more
 * means a longer replay after a crash (at most this many segments).
 */
const SEGMENTS_PER_CHECKPOINT = 4;

const CHECKPOINT_FILE = 'checkpoint';
const IMAGE_FILE = 'image';
/** Present while an in-place restore is writing; what is left after a crash says so. */
const RESTORE_FILE = 'restore-in-progress';
/** First and longest wait before the applier tries the image again after a full disk. */
const STALL_RETRY_MIN_MS = 100;
const STALL_RETRY_MAX_MS = 5000;

/** An in-place restore as recorded in RESTORE_FILE. */
interface RestoreRecord {
  source: string;
  pointSequence: number;
  ranges?: Extent[];
  startedAt: number;
}

/**
 * One volume: a raw sparse image, its journal, its differential bitmaps, snapshots and
 * markers. Writes are batched: each batch is appended to the journal and acknowledged; a
 * background applier writes records to the image once the journal holds them durably (after
 * a client's FLUSH, or after a short delay or enough data), so the image never holds a write
 * the journal could lose, and journal appends and image writes overlap. Until a record is in
 * the image, reads see it from memory (PendingWrites). Operations that need a still volume
 * (snapshots, markers, restores, checkpoints) run between batches; those that copy or sync the
 * image (snapshots, resizes, checkpoints) first let the applier catch up.
 */
export class Volume {
  private queue: QueuedOp[] = [];
  private pumping = false;
  private readonly lock = new Mutex();
  private holders = new Map<string, { count: number; onRevoke: (() => void)[] }>();
  private pins = 0;
  private failure: TidemarkError | undefined;
  /**
   * Set while image writes fail for want of space. Unlike `failure` it stops nothing: reads
   * see the pending records, the journal takes writes while it has room, and the applier
   * tries again on a timer until the image takes them.
   */
  private stall: TidemarkError | undefined;
  private stallRetry: NodeJS.Timeout | undefined;
  private stallDelayMs = 0;
  private interrupted: RestoreRecord | undefined;
  private closed = false;
  private segmentCountAtCheckpoint = 0;
  private readonly pending = new PendingWrites();
  private applying: Promise<void> | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  /** Set by the timer and by drains: the applier syncs the journal rather than wait for a flush. */
  private syncWanted = false;
  private roomWaiters: (() => void)[] = [];
  private checkpointChain: Promise<void> = Promise.resolve();
  private checkpointsCaptured = 0;
  private checkpointsWritten = 0;
  /** Called when enough segments have rolled since the last checkpoint; the engine then runs upkeep. */
  onUpkeepDue: (() => void) | undefined;

  private constructor(
    readonly dir: string,
    private state: CheckpointState,
    readonly journal: Journal,
    private image: fs.FileHandle,
    readonly tracker: DirtyTracker,
    private readonly logger: Logger,
  ) {
    this.segmentCountAtCheckpoint = journal.segmentList().length;
  }

  // ---- lifecycle -------------------------------------------------------------------------

  static async create(
    dir: string,
    name: string,
    options: { size: number; blockSize: number; granularity: number; retention: RetentionPolicy; segmentSize?: number; createdAt: number },
    logger: Logger,
    initialImage?: string,
  ): Promise<Volume> {
    await makePrivateDir(path.join(dir, 'snapshots'));
    const imagePath = path.join(dir, IMAGE_FILE);
    let method: SnapshotInfo['method'] = 'empty';
    if (initialImage) {
      method = await cloneFile(initialImage, imagePath);
    }
    const image = await fs.open(imagePath, initialImage ? 'r+' : 'w+', PRIVATE_FILE_MODE);
    let journal: Journal;
    try {
      await growImage(image, options.size, options.blockSize, dir);
      await image.sync();
      journal = await Journal.create(path.join(dir, 'journal'), options.segmentSize ?? DEFAULT_SEGMENT_SIZE, logger);
    } catch (err) {
      await image.close();
      throw err;
    }
    const state: CheckpointState = {
      version: 1,
      name,
      size: options.size,
      blockSize: options.blockSize,
      granularity: options.granularity,
      createdAt: options.createdAt,
      retention: options.retention,
      segmentSize: options.segmentSize ?? DEFAULT_SEGMENT_SIZE,
      checkpoint: 0,
      segments: [],
      snapshots: [],
      markers: [],
    };
    const volume = new Volume(dir, state, journal, image, new DirtyTracker(options.granularity, options.size), logger);
    if (initialImage) {
      // A volume that starts with data keeps that data as its origin, so that it can be
      // rewound to the moment it was created like any other volume.
      const originDir = path.join(dir, 'snapshots', '~origin');
      await makePrivateDir(originDir);
      await cloneFile(imagePath, path.join(originDir, IMAGE_FILE));
      state.snapshots.push({ name: '~origin', sequence: 0, createdAt: state.createdAt, internal: true, method, size: options.size });
      // The inherited data was never written through this volume, yet a backup reading only
      // the allocated extents must see it: count all of it as written at creation.
      volume.tracker.mark(0, options.size);
    }
    await volume.writeCheckpoint();
    return volume;
  }

  /** Opens a volume after a clean stop or a crash: replays what the image lacks from the journal. */
  static async open(dir: string, logger: Logger): Promise<Volume> {
    const { state, bitmaps } = await readCheckpoint(dir);
    const tracker = bitmaps.length > 0 ? DirtyTracker.deserialize(bitmaps, state.granularity, state.size) : new DirtyTracker(state.granularity, state.size);
    const image = await fs.open(path.join(dir, IMAGE_FILE), 'r+');
    // Records after the checkpoint; bounded because a checkpoint follows every segment roll.
    const all: JournalRecord[] = [];
    const { journal, report } = await Journal.open(path.join(dir, 'journal'), state.segmentSize, logger, state.segments, state.checkpoint, (record) =>
      all.push(record),
    );
    const volume = new Volume(dir, state, journal, image, tracker, logger);
    for (const record of all) {
      noteDataChange(state, record);
      if (record.type === RecordType.Write || record.type === RecordType.Zero || record.type === RecordType.Trim) {
        await applyToImage(image, path.join(dir, IMAGE_FILE), record);
        const { offset, length } = recordExtent(record);
        tracker.mark(offset, length);
      } else if (record.type === RecordType.Resize) {
        if (record.size > state.size) {
          await image.truncate(record.size);
          state.size = record.size;
          tracker.resize(record.size);
        }
      } else if (record.type === RecordType.Marker) {
        if (!state.markers.some((m) => m.sequence === record.sequence)) {
          state.markers.push({ name: record.name, sequence: record.sequence, createdAt: record.time, group: record.group });
        }
      } else if (record.type === RecordType.Snapshot) {
        if (!state.snapshots.some((s) => s.sequence === record.sequence)) {
          const file = path.join(dir, 'snapshots', record.name, IMAGE_FILE);
          if (await exists(file)) {
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
          } else {
            logger.warn('snapshot record without its copy; ignored', { volume: state.name, snapshot: record.name });
          }
        }
      }
    }
    await volume.removeOrphanSnapshots();
    volume.interrupted = await readRestoreRecord(dir, logger, state.name);
    if (report.replayed > 0 || report.truncatedBytes > 0) {
      logger.info('volume recovered', { volume: state.name, checkpoint: state.checkpoint, ...report, sequence: journal.lastSequence });
    }
    await volume.lock.run(() => volume.writeCheckpoint());
    return volume;
  }

  private async removeOrphanSnapshots(): Promise<void> {
    const known = new Set(this.state.snapshots.map((s) => s.name));
    const dir = path.join(this.dir, 'snapshots');
    for (const entry of await fs.readdir(dir)) {
      if (!known.has(entry)) {
        this.logger.warn('removing a snapshot copy left by an interrupted operation', { volume: this.name, snapshot: entry });
        await fs.rm(path.join(dir, entry), { recursive: true, force: true });
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.lock.run(async () => {
      if (!this.failure) await this.writeCheckpoint().catch((err) => this.logger.error('checkpoint at close failed', { volume: this.name, error: String(err) }));
      await this.applying?.catch(() => undefined);
      clearTimeout(this.syncTimer);
      clearTimeout(this.stallRetry);
      this.closed = true;
      await this.journal.close();
      await this.image.close();
    });
  }

  // ---- facts -----------------------------------------------------------------------------

  get name(): string {
    return this.state.name;
  }
  get size(): number {
    return this.state.size;
  }
  get blockSize(): number {
    return this.state.blockSize;
  }
  get granularity(): number {
    return this.state.granularity;
  }
  get retention(): RetentionPolicy {
    return this.state.retention;
  }
  get createdAt(): number {
    return this.state.createdAt;
  }
  get imagePath(): string {
    return path.join(this.dir, IMAGE_FILE);
  }

  snapshotMeta(): readonly SnapshotMeta[] {
    return this.state.snapshots;
  }

  markerMeta(): readonly MarkerMeta[] {
    return this.state.markers;
  }

  info(earliestRecoverable: number, earliestRecoverableTime?: number): VolumeInfo {
    return {
      name: this.name,
      size: this.size,
      blockSize: this.blockSize,
      granularity: this.granularity,
      createdAt: new Date(this.state.createdAt),
      retention: { ...this.state.retention },
      sequence: this.journal.lastSequence,
      earliestRecoverableSequence: earliestRecoverable,
      journalBytes: this.journal.totalBytes,
      journalSegments: this.journal.segmentList().length,
      ...(earliestRecoverableTime !== undefined ? { earliestRecoverableTime: new Date(earliestRecoverableTime) } : {}),
      snapshotCount: this.state.snapshots.filter((s) => !s.internal).length,
      markerCount: this.state.markers.length,
      holders: [...this.holders.keys()],
      ...(this.interrupted ? { restoreInterrupted: interruptedRestore(this.interrupted) } : {}),
    };
  }

  snapshotPath(name: string): string {
    return path.join(this.dir, 'snapshots', name, IMAGE_FILE);
  }

  // ---- holders and pins ------------------------------------------------------------------

  /**
   * Marks the volume in use by `holder` (an NBD connection, an attachment). `onRevoke` is
   * called if the volume is deleted by force while held: the holder must then stop using
   * the name, which a new volume may take.
   */
  hold(holder: string, onRevoke?: () => void): void {
    if (this.closed) throw new TidemarkError('UNAVAILABLE', `volume "${this.name}" is closed`, { volume: this.name });
    const entry = this.holders.get(holder) ?? { count: 0, onRevoke: [] };
    entry.count++;
    if (onRevoke) entry.onRevoke.push(onRevoke);
    this.holders.set(holder, entry);
  }

  release(holder: string): void {
    const entry = this.holders.get(holder);
    if (!entry) return;
    if (--entry.count <= 0) this.holders.delete(holder);
  }

  /** Forgets every holder and tells each that the volume is gone; returns who they were. */
  revokeHolders(): string[] {
    const revoked = [...this.holders];
    this.holders.clear();
    for (const [holder, entry] of revoked) {
      for (const onRevoke of entry.onRevoke) {
        try {
          onRevoke();
        } catch (err) {
          this.logger.error('a holder failed to let go of a deleted volume', { volume: this.name, holder, error: String(err) });
        }
      }
    }
    return revoked.map(([holder]) => holder);
  }

  holderList(): string[] {
    return [...this.holders.keys()];
  }

  assertNotInUse(what: string, force = false): void {
    if (force || this.holders.size === 0) return;
    throw busy(`cannot ${what} volume "${this.name}" while it is in use by ${this.holderList().join(', ')}; detach it first or force`, {
      volume: this.name,
    });
  }

  /** Keeps the journal from being freed while a restore reads it. */
  pin(): () => void {
    this.pins++;
    let released = false;
    return () => {
      if (!released) this.pins--;
      released = true;
    };
  }

  get pinned(): boolean {
    return this.pins > 0;
  }

  // ---- data path -------------------------------------------------------------------------

  checkRange(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw invalidArgument(`${what}: offset and length must be non-negative whole numbers`, { volume: this.name });
    }
    if (offset + length > this.size) {
      throw outOfRange(`${what}: bytes ${offset}..${offset + length} lie outside volume "${this.name}" of ${this.size} bytes`, {
        volume: this.name,
      });
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange(offset, length, 'read');
    const buffer = Buffer.allocUnsafe(length);
    await this.readInto(offset, buffer);
    return buffer;
  }

  /** Reads `target.length` bytes at `offset` into the caller's buffer, which may be reused. */
  async readInto(offset: number, target: Buffer): Promise<void> {
    this.checkRange(offset, target.length, 'read');
    this.assertOpen();
    // Taken before the image read: a record the applier writes meanwhile is laid over again,
    // which is harmless; one it dropped before we looked would otherwise be missed.
    const newer = this.pending.overlapping(offset, target.length);
    try {
      await readFully(this.image, target, offset);
    } catch (err) {
      throw classifyError(err, `reading volume "${this.name}"`);
    }
    overlay(newer, offset, target);
  }

  write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<number> {
    this.checkRange(offset, data.length, 'write');
    return this.enqueue((resolve, reject) => ({ kind: 'write', offset, data, fua: options.fua === true, resolve, reject }));
  }

  zero(offset: number, length: number, options: WriteOptions & { trim?: boolean } = {}): Promise<number> {
    this.checkRange(offset, length, options.trim ? 'trim' : 'zero');
    return this.enqueue((resolve, reject) => ({
      kind: 'zero',
      offset,
      length,
      trim: options.trim === true,
      fua: options.fua === true,
      resolve,
      reject,
    }));
  }

  /** Makes every write acknowledged so far durable. */
  flush(): Promise<number> {
    return this.enqueue((resolve, reject) => ({ kind: 'flush', resolve, reject }));
  }

  private enqueue(make: (resolve: (seq: number) => void, reject: (e: Error) => void) => QueuedOp): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      try {
        this.assertOpen();
      } catch (err) {
        reject(err as Error);
        return;
      }
      this.queue.push(make(resolve, reject));
      void this.pump();
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new TidemarkError('UNAVAILABLE', `volume "${this.name}" is closed`, { volume: this.name });
    if (this.failure) throw this.failure;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        let bytes = 0;
        let count = 0;
        while (count < this.queue.length && (count === 0 || bytes < BATCH_BYTES)) {
          const op = this.queue[count]!;
          bytes += op.kind === 'write' ? op.data.length : 0;
          count++;
        }
        const batch = this.queue.splice(0, count);
        await this.lock.run(() => this.runBatch(batch));
      }
    } finally {
      this.pumping = false;
    }
  }

  private async runBatch(batch: QueuedOp[]): Promise<void> {
    try {
      this.assertOpen();
      const bodies: RecordBody[] = [];
      const lastBodyOf: number[] = [];
      let durable = false;
      for (const op of batch) {
        if (op.kind === 'write') {
          for (let at = 0; at < op.data.length || (at === 0 && op.data.length === 0); at += MAX_RECORD_PAYLOAD) {
            bodies.push({ type: RecordType.Write, offset: op.offset + at, data: op.data.subarray(at, at + MAX_RECORD_PAYLOAD) });
            if (op.data.length === 0) break;
          }
          durable ||= op.fua;
        } else if (op.kind === 'zero') {
          bodies.push({ type: op.trim ? RecordType.Trim : RecordType.Zero, offset: op.offset, length: op.length });
          durable ||= op.fua;
        } else {
          durable = true;
        }
        lastBodyOf.push(bodies.length - 1);
      }
      const records = await this.applyLocked(bodies);
      if (durable) {
        await this.journal.sync();
        this.kickApplier();
      }
      const sequenceAt = (i: number) => (lastBodyOf[i]! >= 0 ? records[lastBodyOf[i]!]!.sequence : this.journal.lastSequence);
      batch.forEach((op, i) => op.resolve(op.kind === 'flush' ? this.journal.lastSequence : sequenceAt(i)));
    } catch (err) {
      const error = classifyError(err, `writing volume "${this.name}"`);
      for (const op of batch) op.reject(error);
    }
    // Retention decides at each roll whether to take a base, which keeps a window of recent
    // markers recoverable; without a policy only the replay length matters.
    const limited = this.state.retention.maxBytes !== undefined || this.state.retention.maxAgeSeconds !== undefined;
    const due = this.segmentCountAtCheckpoint + (limited ? 1 : SEGMENTS_PER_CHECKPOINT);
    if (this.journal.segmentList().length >= due) this.onUpkeepDue?.();
  }

  /**
   * Journals records, marks them in the bitmaps and hands them to the applier; from the
   * moment this returns, reads see them. The caller holds the volume lock, so records are
   * numbered, journaled and applied in one order.
   */
  async applyLocked(bodies: RecordBody[]): Promise<JournalRecord[]> {
    if (bodies.length === 0) return [];
    await this.waitForRoom();
    const records = bodies.map((body) => ({ ...body, sequence: 0, time: 0 }) as JournalRecord);
    for (const record of records) {
      record.sequence = this.journal.allocate();
      record.time = this.journal.stamp();
    }
    // The journal's copy of each payload (append re-points `data` at it) is what the applier
    // writes later, so the caller may reuse its buffers as soon as this returns.
    try {
      await this.journal.append(records);
    } catch (err) {
      // A batch that spans segments can fail after its first part is in the journal; that
      // part must reach the image and the bitmaps too, or the volume would stop being a
      // prefix of its journal (the next checkpoint would count records the image lacks).
      this.track(records.filter((r) => r.sequence <= this.journal.lastSequence));
      throw err;
    }
    this.track(records);
    return records;
  }

  private track(records: JournalRecord[]): void {
    if (records.length === 0) return;
    for (const record of records) {
      const { offset, length } = recordExtent(record);
      this.tracker.mark(offset, length);
      noteDataChange(this.state, record);
    }
    this.pending.add(records);
    this.kickApplier();
  }

  // ---- the applier -----------------------------------------------------------------------

  /**
   * Starts the applier unless it runs or has nothing to do. While image writes are stalled
   * on a full disk only the retry timer and drains (`now`) start it, not every new write.
   */
  private kickApplier(now = false): void {
    if (this.applying || this.pending.count === 0 || this.failure || this.closed) return;
    if (this.stallRetry) {
      if (!now) return;
      clearTimeout(this.stallRetry);
      this.stallRetry = undefined;
    }
    this.applying = this.applyPending()
      .catch((err: unknown) => {
        // The journal holds records the image lacks. Replaying them at the next start puts
        // the image right; until then the volume refuses I/O rather than serve stale data.
        this.failure = classifyError(err, `volume "${this.name}" stopped after a failed image write; restart the daemon once the cause is fixed, journaled data is kept`);
        this.logger.error('image write failed; volume stopped', { volume: this.name, error: this.failure.message });
      })
      .finally(() => {
        this.applying = undefined;
        for (const wake of this.roomWaiters.splice(0)) wake();
        if (!this.failure && !this.stall && this.syncWanted) this.kickApplier();
      });
  }

  /** Writes durable pending records to the image, oldest first, until none is left. */
  private async applyPending(): Promise<void> {
    while (this.pending.count > 0 && !this.failure) {
      const first = this.pending.firstSequence!;
      if (this.journal.durableSequence < first) {
        if (!this.syncWanted && this.pending.bytes < SYNC_AFTER_BYTES) {
          this.armSyncTimer();
          return;
        }
        this.syncWanted = false;
        await this.journal.sync();
        continue;
      }
      const records = this.pending.peek(this.journal.durableSequence, APPLY_BYTES);
      const failed = await this.writeToImage(records);
      if (failed) {
        const error = classifyError(failed, `writing the image of volume "${this.name}"`);
        if (error.code !== 'RESOURCE_EXHAUSTED') throw error;
        // The records stay pending, so reads still see them and the next try writes them all
        // again (the same bytes at the same places: a partial write does no harm).
        this.stalled(error);
        return;
      }
      this.pending.drop(records.length);
      if (this.stall) this.resumed();
      for (const wake of this.roomWaiters.splice(0)) wake();
    }
  }

  /** Writes records to the image; returns the first error, once no write is in flight any more. */
  private async writeToImage(records: JournalRecord[]): Promise<unknown> {
    try {
      if (overlapping(records)) {
        for (const record of records) await applyToImage(this.image, this.imagePath, record);
        return undefined;
      }
      // A few at a time: the thread pool is shared, and a journal append queued behind
      // thousands of image writes would hold every writer's acknowledgement back.
      let next = 0;
      const worker = async () => {
        while (next < records.length) await applyToImage(this.image, this.imagePath, records[next++]!);
      };
      // Every worker is waited for: one still writing after a retry had begun could put an
      // older record's bytes over a newer one's.
      const outcomes = await Promise.allSettled(Array.from({ length: Math.min(APPLY_PARALLEL, records.length) }, worker));
      return outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')?.reason;
    } catch (err) {
      return err;
    }
  }

  private stalled(error: TidemarkError): void {
    if (!this.stall) {
      this.logger.warn('image write failed: the disk is full; reads and journal appends go on, image writes are retried', { volume: this.name, error: error.message });
    }
    this.stall = new TidemarkError(
      'RESOURCE_EXHAUSTED',
      `volume "${this.name}": the store's disk is full; writes resume by themselves once space is freed, nothing acknowledged is lost (${error.message})`,
      { volume: this.name },
    );
    this.stallDelayMs = Math.min(STALL_RETRY_MAX_MS, Math.max(STALL_RETRY_MIN_MS, this.stallDelayMs * 2));
    this.stallRetry = setTimeout(() => {
      this.stallRetry = undefined;
      this.kickApplier(true);
    }, this.stallDelayMs);
    this.stallRetry.unref();
  }

  private resumed(): void {
    this.logger.info('image writes resumed after a full disk', { volume: this.name, pending: this.pending.count });
    this.stall = undefined;
    this.stallDelayMs = 0;
  }

  private armSyncTimer(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.syncWanted = true;
      this.kickApplier();
    }, SYNC_AFTER_MS);
    this.syncTimer.unref();
  }

  /**
   * Back-pressure: holds a writer while the applier is far behind. When the applier is
   * behind because the disk is full, waiting could last until someone frees space: the
   * writer is refused instead.
   */
  private async waitForRoom(): Promise<void> {
    while (this.pending.bytes > MAX_PENDING_BYTES) {
      this.assertOpen();
      if (this.stall && !this.applying) throw this.stall;
      this.syncWanted = true;
      this.kickApplier();
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
    this.assertOpen();
  }

  /**
   * Brings the image up to the newest record (syncing the journal first). The caller holds
   * the lock, so nothing new arrives meanwhile; anything that reads or copies the image
   * file itself starts with this.
   */
  private async drainLocked(): Promise<void> {
    while (this.pending.count > 0) {
      if (this.failure) throw this.failure;
      this.syncWanted = true;
      this.kickApplier(true);
      await this.applying;
      if (this.stall && this.pending.count > 0) throw this.stall;
    }
    if (this.failure) throw this.failure;
  }

  /** Runs `fn` while no batch is in flight and none can start. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    // No drain here: only what reads or copies the image file needs the applier caught up
    // (snapshots, resizes, checkpoints drain themselves); markers and restores do not.
    return this.lock.run(async () => {
      this.assertOpen();
      return fn();
    });
  }

  // ---- snapshots and markers -------------------------------------------------------------

  /** Creates a snapshot; the caller holds the lock (see `exclusive`). */
  async snapshotLocked(name: string, internal: boolean): Promise<SnapshotMeta> {
    if (!internal) checkName('snapshot', name);
    if (this.state.snapshots.some((s) => s.name === name)) {
      throw alreadyExists(`snapshot "${name}" of volume "${this.name}" already exists`, { volume: this.name, snapshot: name });
    }
    const dir = path.join(this.dir, 'snapshots', name);
    await this.drainLocked();
    await fs.rm(dir, { recursive: true, force: true });
    await makePrivateDir(dir);
    let method: SnapshotMeta['method'];
    try {
      method = await cloneFile(this.imagePath, path.join(dir, IMAGE_FILE));
      await fsyncDir(dir);
    } catch (err) {
      await fs.rm(dir, { recursive: true, force: true });
      throw classifyError(err, `copying volume "${this.name}" for snapshot "${name}"`);
    }
    const sequence = this.journal.allocate();
    const time = this.journal.stamp();
    await this.journal.append([{ type: RecordType.Snapshot, name, sequence, time }]);
    await this.journal.sync();
    const meta: SnapshotMeta = {
      name,
      sequence,
      dataSequence: this.state.lastDataSequence ?? sequence,
      dataTime: this.state.lastDataTime ?? time,
      createdAt: time,
      internal,
      method,
      size: this.size,
    };
    this.state.snapshots.push(meta);
    this.tracker.startGeneration(meta.sequence);
    await this.writeCheckpoint();
    this.logger.info('snapshot created', { volume: this.name, snapshot: name, sequence: meta.sequence, method, internal });
    return meta;
  }

  async deleteSnapshotLocked(name: string): Promise<void> {
    const index = this.state.snapshots.findIndex((s) => s.name === name);
    if (index < 0) throw notFound(`snapshot "${name}" of volume "${this.name}" does not exist`, { volume: this.name, snapshot: name });
    const [meta] = this.state.snapshots.splice(index, 1);
    this.tracker.dropGeneration(meta!.sequence);
    await this.writeCheckpoint();
    await fs.rm(path.join(this.dir, 'snapshots', name), { recursive: true, force: true });
    this.logger.info('snapshot deleted', { volume: this.name, snapshot: name, sequence: meta!.sequence });
  }

  /**
   * Hands a user snapshot over to the engine as an internal base: its name is free again and
   * the copy stays only while retention needs it. The image is linked under the new name
   * before the checkpoint and the old name removed after it, so a crash at any moment leaves
   * a whole copy under the name the checkpoint knows. The caller holds the lock.
   */
  async retireSnapshotLocked(name: string): Promise<SnapshotMeta> {
    const index = this.state.snapshots.findIndex((s) => s.name === name);
    if (index < 0) throw notFound(`snapshot "${name}" of volume "${this.name}" does not exist`, { volume: this.name, snapshot: name });
    const retired: SnapshotMeta = { ...this.state.snapshots[index]!, name: `~base-${this.state.snapshots[index]!.sequence}`, internal: true };
    const dir = path.join(this.dir, 'snapshots', retired.name);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { mode: PRIVATE_DIR_MODE });
    await fs.link(this.snapshotPath(name), path.join(dir, IMAGE_FILE)).catch(() => cloneFile(this.snapshotPath(name), path.join(dir, IMAGE_FILE)));
    await fsyncDir(dir);
    this.state.snapshots[index] = retired;
    await this.writeCheckpoint();
    await fs.rm(path.join(this.dir, 'snapshots', name), { recursive: true, force: true });
    this.logger.info('snapshot deleted; kept as the base of the remaining journal', { volume: this.name, snapshot: name, base: retired.name, sequence: retired.sequence });
    return retired;
  }

  /** Appends a marker record and makes it durable; the caller holds the lock. */
  async markerLocked(name: string, group: string): Promise<MarkerMeta> {
    checkName('marker', name);
    if (this.state.markers.some((m) => m.name === name)) {
      throw alreadyExists(`marker "${name}" already exists on volume "${this.name}"`, { volume: this.name, marker: name });
    }
    const sequence = this.journal.allocate();
    const time = this.journal.stamp();
    await this.journal.append([{ type: RecordType.Marker, name, group, sequence, time }]);
    await this.journal.sync();
    const meta: MarkerMeta = { name, sequence, createdAt: time, group };
    this.state.markers.push(meta);
    return meta;
  }

  /** Forgets markers of a group marker that did not complete before a crash. */
  dropMarkers(predicate: (m: MarkerMeta) => boolean): MarkerMeta[] {
    const dropped = this.state.markers.filter(predicate);
    this.state.markers = this.state.markers.filter((m) => !predicate(m));
    return dropped;
  }

  /** Grows the volume; the new bytes read as zeros. The caller holds the lock. */
  async resizeLocked(size: number): Promise<void> {
    if (!Number.isSafeInteger(size) || size % this.blockSize !== 0) {
      throw invalidArgument(`new size ${size} of volume "${this.name}" must be a multiple of the block size ${this.blockSize}`, { volume: this.name });
    }
    if (size < this.size) {
      throw outOfRange(`volume "${this.name}" cannot shrink from ${this.size} to ${size} bytes`, { volume: this.name });
    }
    if (size === this.size) return;
    await this.drainLocked();
    // The image grows before the record is journaled: a size the filesystem refuses must
    // fail here, not in every replay of that record at start-up.
    await growImage(this.image, size, this.blockSize, this.dir, this.size);
    const sequence = this.journal.allocate();
    const record: JournalRecord = { type: RecordType.Resize, size, sequence, time: this.journal.stamp() };
    try {
      await this.journal.append([record]);
      await this.journal.sync();
    } catch (err) {
      await this.image.truncate(this.size).catch(() => undefined);
      throw err;
    }
    noteDataChange(this.state, record);
    this.state.size = size;
    this.tracker.resize(size);
    await this.writeCheckpoint();
    this.logger.info('volume resized', { volume: this.name, size, sequence });
  }

  setRetention(retention: RetentionPolicy): void {
    this.state.retention = { ...retention };
  }

  // ---- in-place restores -----------------------------------------------------------------

  /**
   * Records durably, before an in-place restore writes its first byte, that it is under way;
   * the caller holds the lock. An older record stays unless this restore covers it (see
   * `covers`): a small restore must not hide that a larger one was cut short.
   */
  async beginRestoreLocked(restore: InterruptedRestore): Promise<void> {
    const record = restoreRecord(restore);
    if (this.interrupted && !covers(record, this.interrupted)) return;
    await writeFileAtomic(path.join(this.dir, RESTORE_FILE), JSON.stringify(record));
    this.interrupted = record;
    this.logger.debug('in-place restore recorded', { volume: this.name, source: record.source, pointSequence: record.pointSequence });
  }

  /** After an in-place restore completed: forgets a record it covers. The caller holds the lock. */
  async endRestoreLocked(restore: InterruptedRestore): Promise<void> {
    if (!this.interrupted || !covers(restoreRecord(restore), this.interrupted)) return;
    await this.forgetRestore();
  }

  /** Forgets an interrupted restore without running it, leaving the data as it is; returns what it was. */
  async clearRestoreLocked(): Promise<InterruptedRestore | undefined> {
    const record = this.interrupted;
    if (!record) return undefined;
    await this.forgetRestore();
    return interruptedRestore(record);
  }

  private async forgetRestore(): Promise<void> {
    await fs.rm(path.join(this.dir, RESTORE_FILE), { force: true });
    await fsyncDir(this.dir);
    this.interrupted = undefined;
  }

  // ---- checkpoints -----------------------------------------------------------------------

  /**
   * Makes the image, bitmaps and metadata durable up to the newest record, in one atomic
   * file, so that start-up replays only what came after. The caller holds the lock.
   */
  async writeCheckpoint(): Promise<void> {
    await this.persistCheckpoint(await this.captureCheckpointLocked());
  }

  /**
   * The same, holding the lock only to capture the state: the image fdatasync, the slow part,
   * runs while writes go on (it covers everything applied before it began, which includes
   * all the captured state says). For upkeep while writes flow.
   */
  async checkpointInBackground(): Promise<void> {
    const captured = await this.exclusive(() => this.captureCheckpointLocked());
    await this.persistCheckpoint(captured);
  }

  /** Brings the image up to date and serialises what the checkpoint will say; under the lock. */
  private async captureCheckpointLocked(): Promise<{ generation: number; bytes: Buffer }> {
    // The checkpoint says the image holds every record up to here; the journal must hold them
    // durably first, or a power cut could leave image data that no journal record explains.
    await this.drainLocked();
    await this.journal.sync();
    this.state.checkpoint = this.journal.lastSequence;
    this.state.segments = this.journal.summaries();
    const json = Buffer.from(JSON.stringify(this.state));
    const head = Buffer.alloc(8);
    head.write('TDMC', 0, 'latin1');
    head.writeUInt32LE(json.length, 4);
    this.segmentCountAtCheckpoint = this.journal.segmentList().length;
    return { generation: ++this.checkpointsCaptured, bytes: Buffer.concat([head, json, this.tracker.serialize()]) };
  }

  /**
   * Syncs the image and writes a captured checkpoint. Writes are chained, and one older than
   * a checkpoint already written is skipped, so the file never goes back in time.
   */
  private persistCheckpoint(captured: { generation: number; bytes: Buffer }): Promise<void> {
    const run = this.checkpointChain.then(async () => {
      if (captured.generation <= this.checkpointsWritten) return;
      await this.image.datasync();
      await writeFileAtomic(path.join(this.dir, CHECKPOINT_FILE), captured.bytes);
      this.checkpointsWritten = captured.generation;
    });
    this.checkpointChain = run.catch(() => undefined);
    return run;
  }

  memoryBytes(): number {
    return this.tracker.memoryBytes() + this.pending.bytes;
  }
}

async function readCheckpoint(dir: string): Promise<{ state: CheckpointState; bitmaps: Buffer }> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(path.join(dir, CHECKPOINT_FILE));
  } catch (err) {
    throw classifyError(err, `opening volume at ${dir}`);
  }
  if (bytes.toString('latin1', 0, 4) !== 'TDMC') throw new TidemarkError('INTERNAL', `checkpoint of ${dir} is damaged`);
  const length = bytes.readUInt32LE(4);
  const state = JSON.parse(bytes.toString('utf8', 8, 8 + length)) as CheckpointState;
  if (state.version !== 1) throw new TidemarkError('INTERNAL', `checkpoint of ${dir} has unknown version ${String(state.version)}`);
  return { state, bitmaps: bytes.subarray(8 + length) };
}

/**
 * Sets the image's size, turning a size the filesystem cannot hold in one file (EFBIG, or
 * EINVAL from some filesystems) into an error that names the largest size it can. `from`
 * is the image's size now, which is known to fit and is kept on failure.
 */
async function growImage(image: fs.FileHandle, size: number, blockSize: number, dir: string, from = 0): Promise<void> {
  try {
    await image.truncate(size);
    return;
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno !== 'EFBIG' && errno !== 'EINVAL') throw err;
  }
  // The limit depends on the filesystem and its block size; probing with sparse truncates
  // (some forty of them, never below `from`, so no data goes) finds it exactly.
  let fits = from;
  let refused = size;
  while (refused - fits > blockSize) {
    const middle = Math.floor((fits + refused) / 2 / blockSize) * blockSize;
    if (middle <= fits) break;
    if (await image.truncate(middle).then(() => true, () => false)) fits = middle;
    else refused = middle;
  }
  await image.truncate(from).catch(() => undefined);
  const stats = await fs.statfs(dir).catch(() => undefined);
  const filesystem = stats ? (FILESYSTEMS[stats.type] ?? `type 0x${stats.type.toString(16)}`) : 'unknown type';
  throw outOfRange(`volume size ${formatSize(size)} (${size} bytes) is more than the store's filesystem (${filesystem}) allows for one file: at most ${formatSize(fits)} (${fits} bytes)`, {
    size,
    limit: fits,
  });
}

/** statfs magic numbers of filesystems a store is likely to sit on, for messages. */
const FILESYSTEMS: Record<number, string> = {
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x2fc12fc1: 'zfs',
  0x6969: 'nfs',
  0x65735546: 'fuse',
};

function restoreRecord(restore: InterruptedRestore): RestoreRecord {
  return {
    source: restore.source,
    pointSequence: restore.pointSequence,
    ...(restore.ranges ? { ranges: restore.ranges.map(({ offset, length }) => ({ offset, length })) } : {}),
    startedAt: restore.startedAt.getTime(),
  };
}

function interruptedRestore(record: RestoreRecord): InterruptedRestore {
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
function covers(newer: RestoreRecord, older: RestoreRecord): boolean {
  if (!newer.ranges) return true;
  return newer.pointSequence === older.pointSequence && JSON.stringify(newer.ranges) === JSON.stringify(older.ranges ?? null);
}

/** The record an in-place restore left behind, if one was cut short. */
async function readRestoreRecord(dir: string, logger: Logger, volume: string): Promise<RestoreRecord | undefined> {
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

/** Keeps the newest data-changing record, which a snapshot records as the start of what it holds. */
function noteDataChange(state: CheckpointState, record: JournalRecord): void {
  const changes = record.type === RecordType.Write || record.type === RecordType.Zero || record.type === RecordType.Trim || record.type === RecordType.Resize;
  if (!changes) return;
  state.lastDataSequence = record.sequence;
  state.lastDataTime = record.time;
}

function overlapping(records: JournalRecord[]): boolean {
  const spans = records
    .map(recordExtent)
    .filter((e) => e.length > 0)
    .sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]!.offset < spans[i - 1]!.offset + spans[i - 1]!.length) return true;
  }
  return false;
}

export async function applyToImage(image: fs.FileHandle, imagePath: string, record: JournalRecord): Promise<void> {
  switch (record.type) {
    case RecordType.Write:
      await writeFully(image, record.data, record.offset);
      return;
    case RecordType.Zero:
    case RecordType.Trim:
      if (record.length >= PUNCH_THRESHOLD) {
        await punchHole(imagePath, record.offset, record.length);
      } else {
        await writeFully(image, ZEROS.subarray(0, record.length), record.offset);
      }
      return;
    default:
      return;
  }
}
