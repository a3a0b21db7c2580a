import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { TidemarkError, alreadyExists, busy, classifyError, invalidArgument, notFound, outOfRange } from '../util/errors.js';
import { readCachedFirst } from '../util/cached-read.js';
import { wholeInCache } from '../util/send-file.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, cloneFile, fsyncDir, makePrivateDir } from '../util/files.js';
import type { Logger } from '../util/log.js';
import type { Clock } from '../util/time.js';
import { ImageApplier } from './applier.js';
import { WriteBatcher } from './batcher.js';
import { CheckpointWriter, noteDataChange, type CheckpointState, type MarkerMeta, type SnapshotMeta } from './checkpoint.js';
import type { Extent } from './extents.js';
import { DirtyTracker } from './generations.js';
import { IMAGE_FILE, blocksShareable, growImage } from './image.js';
import { Journal, type PayloadPlace, type SegmentSummary } from './journal.js';
import { VolumeLock, type Held } from './lock.js';
import { checkName } from './names.js';
import { overlay, type PendingExtent } from './pending.js';
import { RecordType, recordExtent, type JournalRecord, type RecordBody, type RecordHeader } from './record.js';
import { recoverVolume, type RecoveryOptions } from './recovery.js';
import { covers, removeRestoreRecord, toInterruptedRestore, toRestoreRecord, writeRestoreRecord, type RestoreRecord } from './restore-record.js';
import type { InterruptedRestore, RetentionPolicy, SnapshotInfo, VolumeInfo, WriteOptions } from './types.js';

export type { MarkerMeta, SnapshotMeta } from './checkpoint.js';
export type { Held } from './lock.js';

export const DEFAULT_BLOCK_SIZE = 4096;
export const DEFAULT_GRANULARITY = 64 * 1024;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024;

/**
 * Segments written between the checkpoints upkeep takes while writes flow. Each one makes the
 * applier catch up under the volume lock and then syncs the image, so fewer is faster; more
 * means a longer replay after a crash (at most this many segments).
 */
const SEGMENTS_PER_CHECKPOINT = 4;

/**
 * One volume: a raw sparse image, its journal, its differential bitmaps, snapshots and
 * markers. This class keeps the volume's metadata and runs the operations on it; the parts
 * it is made of each do one job:
 *
 * - `WriteBatcher` (batcher.ts) queues writes and journals them in batches;
 * - `ImageApplier` (applier.ts) writes journaled records into the image once they are durable,
 *   while reads see them from memory;
 * - `CheckpointWriter` and the file format (checkpoint.ts);
 * - `recoverVolume` (recovery.ts) replays the journal at start-up.
 *
 * Operations that need a still volume (snapshots, markers, restores, checkpoints) run
 * between batches, under the volume lock, and take its `Held` token; those that copy or sync
 * the image (snapshots, resizes, checkpoints) first let the applier catch up.
 */
export class Volume {
  private readonly lock: VolumeLock;
  private readonly applier: ImageApplier;
  private readonly batcher: WriteBatcher;
  private readonly checkpoints: CheckpointWriter;
  private holders = new Map<string, { count: number; onRevoke: (() => void)[] }>();
  private pins = 0;
  private interrupted: RestoreRecord | undefined;
  private closed = false;
  private segmentCountAtCheckpoint = 0;
  /** Metadata changed in memory that no checkpoint holds yet, and that no record will replay. */
  private unsaved = false;
  /** Called when enough segments have rolled since the last checkpoint; the engine then runs upkeep. */
  onUpkeepDue: (() => void) | undefined;

  private constructor(
    readonly dir: string,
    private state: CheckpointState,
    private readonly journal: Journal,
    private readonly image: fs.FileHandle,
    private readonly tracker: DirtyTracker,
    private readonly logger: Logger,
  ) {
    this.lock = new VolumeLock(`volume "${state.name}"`);
    this.segmentCountAtCheckpoint = journal.segmentList().length;
    this.applier = new ImageApplier(state.name, journal, image, this.imagePath, logger);
    this.checkpoints = new CheckpointWriter(dir, () => image.datasync());
    this.batcher = new WriteBatcher(this.lock, {
      name: state.name,
      assertOpen: () => this.assertOpen(),
      applyLocked: (held, bodies) => this.applyLocked(held, bodies),
      makeDurable: async () => {
        await journal.sync();
        this.applier.kick();
      },
      get lastSequence() {
        return journal.lastSequence;
      },
      afterBatch: () => this.upkeepDueCheck(),
    });
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
      version: 2,
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
    journal.alignLargeWrites = await blocksShareable(dir);
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
    await volume.lock.run((held) => volume.writeCheckpoint(held));
    return volume;
  }

  /** Opens a volume after a clean stop or a crash: replays what the image lacks from the journal. */
  static async open(dir: string, logger: Logger, options: RecoveryOptions = {}): Promise<Volume> {
    const { state, tracker, journal, image, report, interrupted } = await recoverVolume(dir, logger, options);
    const volume = new Volume(dir, state, journal, image, tracker, logger);
    journal.alignLargeWrites = await blocksShareable(dir);
    volume.interrupted = interrupted;
    if (report.replayed > 0 || report.truncatedBytes > 0) {
      logger.info('volume recovered', { volume: state.name, checkpoint: state.checkpoint, ...report, sequence: journal.lastSequence });
    }
    await volume.lock.run((held) => volume.writeCheckpoint(held));
    return volume;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.lock.run(async (held) => {
      if (!this.applier.failed) await this.writeCheckpoint(held).catch((err) => this.logger.error('checkpoint at close failed', { volume: this.name, error: String(err) }));
      await this.applier.stop();
      this.closed = true;
      await this.journal.close();
      await this.image.close();
    });
  }

  /** Runs `fn` while no batch is in flight and none can start; `fn` gets the lock's token. */
  exclusive<T>(fn: (held: Held) => Promise<T>): Promise<T> {
    // No drain here: only what reads or copies the image file needs the applier caught up
    // (snapshots, resizes, checkpoints drain themselves); markers and restores do not.
    return this.lock.run(async (held) => {
      this.assertOpen();
      return fn(held);
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
      journalDirectBytes: this.journal.directBytes,
      ...(earliestRecoverableTime !== undefined ? { earliestRecoverableTime: new Date(earliestRecoverableTime) } : {}),
      snapshotCount: this.state.snapshots.filter((s) => !s.internal).length,
      markerCount: this.state.markers.length,
      holders: [...this.holders.keys()],
      ...(this.interrupted ? { restoreInterrupted: toInterruptedRestore(this.interrupted) } : {}),
    };
  }

  snapshotPath(name: string): string {
    return path.join(this.dir, 'snapshots', name, IMAGE_FILE);
  }

  memoryBytes(): number {
    return this.tracker.memoryBytes() + this.applier.memoryBytes;
  }

  // ---- history: the journal and the bitmaps, as restores and retention see them ----------

  /** Sequence of the newest record, or 0 for an empty history. */
  get lastSequence(): number {
    return this.journal.lastSequence;
  }

  /** Sequence the next record will get. */
  get nextSequence(): number {
    return this.journal.next;
  }

  /** Sequence of the oldest record still in the journal. */
  get firstSequence(): number {
    return this.journal.firstSequence;
  }

  get journalBytes(): number {
    return this.journal.totalBytes;
  }

  /** The journal's segments, oldest first; the last one is the active one. */
  journalSegments(): readonly SegmentSummary[] {
    return this.journal.segmentList();
  }

  /** The oldest record's time, or undefined for an empty journal. */
  oldestRecordTime(): number | undefined {
    return this.journal.oldestTime();
  }

  /** The newest record at or before `time`, or undefined when every record is later. */
  lastSequenceAtOrBefore(time: number): Promise<number | undefined> {
    return this.journal.lastSequenceAtOrBefore(time);
  }

  /** Record headers with sequence in [from, to], oldest first; fails if any has been freed. */
  recordHeaders(from: number, to: number): AsyncGenerator<RecordHeader & { segment: number }> {
    return this.journal.headers(from, to);
  }

  /** Whole records with sequence in [from, to], oldest first; fails if any has been freed. */
  records(from: number, to: number): AsyncGenerator<JournalRecord> {
    return this.journal.records(from, to);
  }

  /** Reads part of a write record's data, located by `recordHeaders`. */
  readRecordData(segment: number, position: number, target: Buffer): Promise<void> {
    return this.journal.readData(segment, position, target);
  }

  /** Reads a write record whole and checks its CRC; throws, naming it, when it is damaged. */
  verifyRecord(header: RecordHeader & { segment: number }): Promise<void> {
    return this.journal.verifyWrite(header.segment, header);
  }

  /** Makes every record journaled so far durable. */
  syncJournal(): Promise<void> {
    return this.journal.sync();
  }

  /** Byte extents changed since the snapshot at sequence `from` (up to the one at `to`). */
  changedExtents(from: number, to?: number): Extent[] {
    return this.tracker.changedExtents(from, to);
  }

  /** Extents ever written. */
  allocatedExtents(): Extent[] {
    return this.tracker.allocatedExtents();
  }

  /** Starts a new journal segment, so that the current one can be freed. */
  async rollJournalLocked(held: Held): Promise<void> {
    this.lock.check(held);
    await this.journal.rollIfNotEmpty();
  }

  /** Frees whole closed segments whose records are all at or below `upTo`; returns the bytes. */
  async freeJournalLocked(held: Held, upTo: number): Promise<number> {
    this.lock.check(held);
    return this.journal.freeThrough(upTo);
  }

  /** Where record times come from. */
  useClock(clock: Clock): void {
    this.journal.clock = clock;
  }

  /** Told how long each journal sync took. */
  observeJournalSyncs(observer: ((seconds: number) => void) | undefined): void {
    this.journal.onSync = observer;
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
    for (;;) {
      const newer = this.applier.overlapping(offset, target.length);
      const freed = this.journal.freedSegments;
      try {
        const reading = readCachedFirst(this.image, target, offset);
        if (reading) await reading;
        if (newer.length > 0) await overlay(newer, offset, target, (source, skip, into) => this.journal.readPayload(source.file, source.position + skip, into));
        return;
      } catch (err) {
        // A change pending when this read began can be applied, and its segment freed, while
        // the read waits; the image then holds it, and reading again finds it there.
        if (this.journal.freedSegments !== freed) continue;
        throw classifyError(err, `reading volume "${this.name}"`);
      }
    }
  }

  /**
   * The image's descriptor when, at this moment, the image alone holds [offset, offset +
   * length) as reads see it (no pending change lies over it) and the page cache holds all of
   * it: a caller may then send those bytes from the file without waiting for the disk. Valid
   * only until the caller next yields to the event loop.
   */
  cachedImageRange(offset: number, length: number): number | undefined {
    this.checkRange(offset, length, 'read');
    this.assertOpen();
    if (this.applier.overlapping(offset, length).length > 0) return undefined;
    return wholeInCache(this.image.fd, offset, length) ? this.image.fd : undefined;
  }

  write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<number> {
    this.checkRange(offset, data.length, 'write');
    return this.batcher.write(offset, data, options.fua === true);
  }

  zero(offset: number, length: number, options: WriteOptions & { trim?: boolean } = {}): Promise<number> {
    this.checkRange(offset, length, options.trim ? 'trim' : 'zero');
    return this.batcher.zero(offset, length, options.trim === true, options.fua === true);
  }

  /** Makes every write acknowledged so far durable. */
  flush(): Promise<number> {
    return this.batcher.flush();
  }

  private assertOpen(): void {
    if (this.closed) throw new TidemarkError('UNAVAILABLE', `volume "${this.name}" is closed`, { volume: this.name });
    const failure = this.applier.failed;
    if (failure) throw failure;
  }

  /**
   * Journals records, marks them in the bitmaps and hands them to the applier; from the
   * moment this returns, reads see them. Under the lock, so records are numbered, journaled
   * and applied in one order.
   */
  async applyLocked(held: Held, bodies: RecordBody[]): Promise<JournalRecord[]> {
    this.lock.check(held);
    if (bodies.length === 0) return [];
    await this.applier.waitForRoom(() => this.assertOpen());
    const records = bodies.map((body) => ({ ...body, sequence: 0, time: 0 }) as JournalRecord);
    for (const record of records) {
      record.sequence = this.journal.allocate();
      record.time = this.journal.stamp();
    }
    // The applier copies written data from where the journal put it, so the caller may reuse
    // its buffers as soon as this returns.
    const places: (PayloadPlace | undefined)[] = [];
    try {
      await this.journal.append(records, places);
    } catch (err) {
      // A batch that spans segments can fail after its first part is in the journal; that
      // part must reach the image and the bitmaps too, or the volume would stop being a
      // prefix of its journal (the next checkpoint would count records the image lacks).
      this.track(records.filter((r) => r.sequence <= this.journal.lastSequence), places);
      throw err;
    }
    this.track(records, places);
    return records;
  }

  /** Marks records in the bitmaps and hands them to the applier; `places[i]` is where record i's data lies. */
  private track(records: JournalRecord[], places: readonly (PayloadPlace | undefined)[]): void {
    if (records.length === 0) return;
    const extents: PendingExtent[] = [];
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const { offset, length } = recordExtent(record);
      this.tracker.mark(offset, length);
      noteDataChange(this.state, record);
      if (length > 0) extents.push({ sequence: record.sequence, offset, length, source: places[i] });
    }
    this.applier.add(extents);
  }

  /** After each batch: asks for upkeep once enough segments have rolled since the checkpoint. */
  private upkeepDueCheck(): void {
    // Retention decides at each roll whether to take a base, which keeps a window of recent
    // markers recoverable; without a policy only the replay length matters.
    const limited = this.state.retention.maxBytes !== undefined || this.state.retention.maxAgeSeconds !== undefined;
    const due = this.segmentCountAtCheckpoint + (limited ? 1 : SEGMENTS_PER_CHECKPOINT);
    if (this.journal.segmentList().length >= due) this.onUpkeepDue?.();
  }

  /** Appends one record outside the write path and makes it durable. */
  private async journalDurably(held: Held, body: RecordBody): Promise<JournalRecord> {
    this.lock.check(held);
    const record = { ...body, sequence: this.journal.allocate(), time: this.journal.stamp() } as JournalRecord;
    await this.journal.append([record]);
    await this.journal.sync();
    return record;
  }

  // ---- snapshots and markers -------------------------------------------------------------

  /** Creates a snapshot. */
  async snapshotLocked(held: Held, name: string, internal: boolean): Promise<SnapshotMeta> {
    this.lock.check(held);
    if (!internal) checkName('snapshot', name);
    if (this.state.snapshots.some((s) => s.name === name)) {
      throw alreadyExists(`snapshot "${name}" of volume "${this.name}" already exists`, { volume: this.name, snapshot: name });
    }
    const dir = path.join(this.dir, 'snapshots', name);
    await this.applier.catchUp(held);
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
    const { sequence, time } = await this.journalDurably(held, { type: RecordType.Snapshot, name });
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
    await this.writeCheckpoint(held);
    this.logger.info('snapshot created', { volume: this.name, snapshot: name, sequence: meta.sequence, method, internal });
    return meta;
  }

  async deleteSnapshotLocked(held: Held, name: string): Promise<void> {
    this.lock.check(held);
    const index = this.state.snapshots.findIndex((s) => s.name === name);
    if (index < 0) throw notFound(`snapshot "${name}" of volume "${this.name}" does not exist`, { volume: this.name, snapshot: name });
    const [meta] = this.state.snapshots.splice(index, 1);
    this.tracker.dropGeneration(meta!.sequence);
    await this.writeCheckpoint(held);
    await fs.rm(path.join(this.dir, 'snapshots', name), { recursive: true, force: true });
    this.logger.info('snapshot deleted', { volume: this.name, snapshot: name, sequence: meta!.sequence });
  }

  /**
   * Hands a user snapshot over to the engine as an internal base: its name is free again and
   * the copy stays only while retention needs it. The image is linked under the new name
   * before the checkpoint and the old name removed after it, so a crash at any moment leaves
   * a whole copy under the name the checkpoint knows.
   */
  async retireSnapshotLocked(held: Held, name: string): Promise<SnapshotMeta> {
    this.lock.check(held);
    const index = this.state.snapshots.findIndex((s) => s.name === name);
    if (index < 0) throw notFound(`snapshot "${name}" of volume "${this.name}" does not exist`, { volume: this.name, snapshot: name });
    const retired: SnapshotMeta = { ...this.state.snapshots[index]!, name: `~base-${this.state.snapshots[index]!.sequence}`, internal: true };
    const dir = path.join(this.dir, 'snapshots', retired.name);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { mode: PRIVATE_DIR_MODE });
    await fs.link(this.snapshotPath(name), path.join(dir, IMAGE_FILE)).catch(() => cloneFile(this.snapshotPath(name), path.join(dir, IMAGE_FILE)));
    await fsyncDir(dir);
    this.state.snapshots[index] = retired;
    await this.writeCheckpoint(held);
    await fs.rm(path.join(this.dir, 'snapshots', name), { recursive: true, force: true });
    this.logger.info('snapshot deleted; kept as the base of the remaining journal', { volume: this.name, snapshot: name, base: retired.name, sequence: retired.sequence });
    return retired;
  }

  /** Appends a marker record and makes it durable. */
  async markerLocked(held: Held, name: string, group: string): Promise<MarkerMeta> {
    this.lock.check(held);
    checkName('marker', name);
    if (this.state.markers.some((m) => m.name === name)) {
      throw alreadyExists(`marker "${name}" already exists on volume "${this.name}"`, { volume: this.name, marker: name });
    }
    const { sequence, time } = await this.journalDurably(held, { type: RecordType.Marker, name, group });
    const meta: MarkerMeta = { name, sequence, createdAt: time, group };
    this.state.markers.push(meta);
    return meta;
  }

  /** Forgets markers of a group marker that did not complete (before a crash, or just now). */
  dropMarkersLocked(held: Held, predicate: (m: MarkerMeta) => boolean): MarkerMeta[] {
    this.lock.check(held);
    const dropped = this.state.markers.filter(predicate);
    this.state.markers = this.state.markers.filter((m) => !predicate(m));
    if (dropped.length > 0) this.unsaved = true;
    return dropped;
  }

  /** Grows the volume; the new bytes read as zeros. */
  async resizeLocked(held: Held, size: number): Promise<void> {
    this.lock.check(held);
    if (!Number.isSafeInteger(size) || size % this.blockSize !== 0) {
      throw invalidArgument(`new size ${size} of volume "${this.name}" must be a multiple of the block size ${this.blockSize}`, { volume: this.name });
    }
    if (size < this.size) {
      throw outOfRange(`volume "${this.name}" cannot shrink from ${this.size} to ${size} bytes`, { volume: this.name });
    }
    if (size === this.size) return;
    await this.applier.catchUp(held);
    // The image grows before the record is journaled: a size the filesystem refuses must
    // fail here, not in every replay of that record at start-up.
    await growImage(this.image, size, this.blockSize, this.dir, this.size);
    let record: JournalRecord;
    try {
      record = await this.journalDurably(held, { type: RecordType.Resize, size });
    } catch (err) {
      await this.image.truncate(this.size).catch(() => undefined);
      throw err;
    }
    noteDataChange(this.state, record);
    this.state.size = size;
    this.tracker.resize(size);
    await this.writeCheckpoint(held);
    this.logger.info('volume resized', { volume: this.name, size, sequence: record.sequence });
  }

  setRetentionLocked(held: Held, retention: RetentionPolicy): void {
    this.lock.check(held);
    this.state.retention = { ...retention };
    this.unsaved = true;
  }

  // ---- in-place restores -----------------------------------------------------------------

  /**
   * Records durably, before an in-place restore writes its first byte, that it is under way.
   * An older record stays unless this restore covers it (see `covers`): a small restore must
   * not hide that a larger one was cut short.
   */
  async beginRestoreLocked(held: Held, restore: InterruptedRestore): Promise<void> {
    this.lock.check(held);
    const record = toRestoreRecord(restore);
    if (this.interrupted && !covers(record, this.interrupted)) return;
    await writeRestoreRecord(this.dir, record);
    this.interrupted = record;
    this.logger.debug('in-place restore recorded', { volume: this.name, source: record.source, pointSequence: record.pointSequence });
  }

  /** After an in-place restore completed: forgets a record it covers. */
  async endRestoreLocked(held: Held, restore: InterruptedRestore): Promise<void> {
    this.lock.check(held);
    if (!this.interrupted || !covers(toRestoreRecord(restore), this.interrupted)) return;
    await removeRestoreRecord(this.dir);
    this.interrupted = undefined;
  }

  /** Forgets an interrupted restore without running it, leaving the data as it is; returns what it was. */
  async clearRestoreLocked(held: Held): Promise<InterruptedRestore | undefined> {
    this.lock.check(held);
    const record = this.interrupted;
    if (!record) return undefined;
    await removeRestoreRecord(this.dir);
    this.interrupted = undefined;
    return toInterruptedRestore(record);
  }

  // ---- checkpoints -----------------------------------------------------------------------

  /**
   * Makes the image, bitmaps and metadata durable up to the newest record, in one atomic
   * file, so that start-up replays only what came after.
   */
  async writeCheckpoint(held: Held): Promise<void> {
    await this.checkpoints.persist(await this.captureCheckpoint(held));
  }

  /**
   * The same, holding the lock only to capture the state. The applier first catches up with
   * what is pending while writes go on, and the image fdatasync, the slow part, runs after the
   * lock is released (it covers everything applied before it began, which includes all the
   * captured state says). For upkeep while writes flow.
   */
  async checkpointInBackground(): Promise<void> {
    await this.applier.drain();
    const captured = await this.exclusive(async (held) => (this.changedSinceCheckpoint() ? this.captureCheckpoint(held) : undefined));
    if (captured) await this.checkpoints.persist(captured);
  }

  /**
   * Whether a checkpoint now would say anything the last one did not: a record since, a
   * segment rolled or freed, or metadata changed in memory. An idle volume's upkeep is then
   * free: no image sync, no file rewritten.
   */
  private changedSinceCheckpoint(): boolean {
    if (this.unsaved || this.journal.lastSequence !== this.state.checkpoint) return true;
    const now = this.journal.summaries();
    const saved = this.state.segments;
    return now.length !== saved.length || now.some((s, i) => s.firstSequence !== saved[i]!.firstSequence || s.size !== saved[i]!.size);
  }

  /** Brings the image up to date and serialises what the checkpoint will say. */
  private async captureCheckpoint(held: Held) {
    this.lock.check(held);
    // The checkpoint says the image holds every record up to here; the journal must hold them
    // durably first, or a power cut could leave image data that no journal record explains.
    await this.applier.catchUp(held);
    await this.journal.sync();
    this.state.checkpoint = this.journal.lastSequence;
    this.state.segments = this.journal.summaries();
    this.segmentCountAtCheckpoint = this.journal.segmentList().length;
    this.unsaved = false;
    return this.checkpoints.capture(this.state, this.tracker.serialize());
  }
}
