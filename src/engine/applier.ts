import * as fs from 'node:fs/promises';
import { TidemarkError, classifyError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { punchesHole, zeroImage } from './image.js';
import { WriteTable, imageWriter } from './image-writer.js';
import type { Held } from './lock.js';
import { PendingWrites, type PendingExtent } from './pending.js';

/**
 * Pending (not yet durable) bytes above which the applier syncs the journal itself. Measured
 * (bench/nbd.ts, 512 MiB sequential write + flush): each such sync slows the appends beside
 * it, and 4 MiB / 20 ms ran 118 syncs and 231 MiB/s where 48 MiB / 250 ms ran 14 and 261 MiB/s.
 */
const SYNC_AFTER_BYTES = 48 * 1024 * 1024;
/** How long pending writes may wait for a client's FLUSH before the applier syncs anyway. */
const SYNC_AFTER_MS = 250;
/**
 * Writers wait while the image lags the journal by this many bytes or changes. Pending
 * changes cost no payload memory (their bytes stay in the journal), so these bound the index
 * (about 10 MiB at the most), and how long a checkpoint or snapshot waits for the image.
 */
const MAX_LAG_BYTES = 256 * 1024 * 1024;
const MAX_LAG_CHANGES = 65536;
/**
 * Writers also wait while pending writes hold this many bytes in memory (direct appends'
 * stages). Letting the image fall further behind would make later ones keep only their
 * journal place, and the applier then reads them back from the disk: a 1 GiB sequential
 * write ran at 390 MB/s that way, against 700 MB/s through the page cache.
 */
const HELD_DATA_WAIT_BYTES = 96 * 1024 * 1024;
/** Payload the applier writes to the image per round. */
const APPLY_BYTES = 8 * 1024 * 1024;
/** First and longest wait before the applier tries the image again after a full disk. */
const STALL_RETRY_MIN_MS = 100;
const STALL_RETRY_MAX_MS = 5000;

/** What the applier needs of the journal: how far it is durable, and a way to make it more so. */
export interface DurableJournal {
  readonly durableSequence: number;
  sync(): Promise<void>;
}

/**
 * The background applier of one volume: writes journaled changes into the image, oldest
 * first, but only once the journal holds them durably, so the image never shows a write the
 * journal could lose. Until then the changes are pending, and reads lay them over the image.
 * Written bytes go from the journal's segment files to the image without passing through
 * this process's memory.
 */
export class ImageApplier {
  private readonly pending = new PendingWrites();
  private applying: Promise<void> | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  /** Set by the timer and by drains: the applier syncs the journal rather than wait for a flush. */
  private syncWanted = false;
  private roomWaiters: (() => void)[] = [];
  private stopped = false;
  /** A failed image write: the volume refuses I/O until the daemon restarts and replays. */
  private failure: TidemarkError | undefined;
  /**
   * Set while image writes fail for want of space. Unlike `failure` it stops nothing: reads
   * see the pending records, the journal takes writes while it has room, and the applier
   * tries again on a timer until the image takes them.
   */
  private stall: TidemarkError | undefined;
  private stallRetry: NodeJS.Timeout | undefined;
  private stallDelayMs = 0;
  /** Journal segments the applier copies from, by file. */
  private readonly sources = new Map<string, fs.FileHandle>();

  constructor(
    private readonly volume: string,
    private readonly journal: DurableJournal,
    private readonly image: fs.FileHandle,
    private readonly imagePath: string,
    private readonly logger: Logger,
  ) {}

  get failed(): TidemarkError | undefined {
    return this.failure;
  }

  /** Memory the index of pending changes takes. */
  get memoryBytes(): number {
    return this.pending.memoryBytes;
  }

  /** Hands journaled changes over; from now on reads see them. */
  add(extents: readonly PendingExtent[]): void {
    this.pending.add(extents);
    this.kick();
  }

  /** Pending changes that touch [offset, offset + length), oldest first. */
  overlapping(offset: number, length: number): PendingExtent[] {
    return this.pending.overlapping(offset, length);
  }

  /**
   * Starts the applier unless it runs or has nothing to do. While image writes are stalled
   * on a full disk only the retry timer and drains (`now`) start it, not every new write.
   */
  kick(now = false): void {
    if (this.applying || this.pending.count === 0 || this.failure || this.stopped) return;
    if (this.stallRetry) {
      if (!now) return;
      clearTimeout(this.stallRetry);
      this.stallRetry = undefined;
    }
    this.applying = this.applyPending()
      .catch((err: unknown) => {
        // The journal holds records the image lacks. Replaying them at the next start puts
        // the image right; until then the volume refuses I/O rather than serve stale data.
        this.failure = classifyError(err, `volume "${this.volume}" stopped after a failed image write; restart the daemon once the cause is fixed, journaled data is kept`);
        this.logger.error('image write failed; volume stopped', { volume: this.volume, error: this.failure.message });
      })
      .finally(() => {
        this.applying = undefined;
        for (const wake of this.roomWaiters.splice(0)) wake();
        if (!this.failure && !this.stall && this.syncWanted) this.kick();
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
      const extents = this.pending.peek(this.journal.durableSequence, APPLY_BYTES);
      const failed = await this.writeToImage(extents);
      if (failed) {
        const error = classifyError(failed, `writing the image of volume "${this.volume}"`);
        if (error.code !== 'RESOURCE_EXHAUSTED') throw error;
        // The records stay pending, so reads still see them and the next try writes them all
        // again (the same bytes at the same places: a partial write does no harm).
        this.stalled(error);
        return;
      }
      this.pending.drop(extents.length);
      if (this.stall) this.resumed();
      for (const wake of this.roomWaiters.splice(0)) wake();
    }
  }

  /**
   * Writes changes to the image, in order; returns the first error. Data (copied from the
   * journal) and short zero runs go to the image writer's thread in one batch; long zero runs
   * punch holes here.
   */
  private async writeToImage(extents: PendingExtent[]): Promise<unknown> {
    try {
      let table = new WriteTable();
      for (const extent of extents) {
        if (!extent.source && punchesHole(extent.length)) {
          await imageWriter.write(this.image.fd, table);
          table = new WriteTable();
          await zeroImage(this.image, this.imagePath, extent.offset, extent.length);
        } else if (!extent.source) {
          table.zeros(extent.length, extent.offset);
        } else if (extent.source.memory) {
          table.fromMemory(extent.source.memory.bytes, extent.offset);
        } else {
          const { file, position } = extent.source;
          table.copy(await this.source(file), position, extent.length, extent.offset);
        }
      }
      await imageWriter.write(this.image.fd, table);
      return undefined;
    } catch (err) {
      return err;
    } finally {
      // With more to come, the newest segment is likely needed again; with nothing left,
      // no handle stays open, or a segment freed later would keep its space.
      await this.closeSources(this.pending.count > extents.length ? extents.at(-1)?.source?.file : undefined);
    }
  }

  /**
   * A handle on a journal segment to copy from. No segment that holds a pending record is
   * freed, so it stays readable while the image writer uses it by number.
   */
  private async source(file: string): Promise<number> {
    let handle = this.sources.get(file);
    if (!handle) this.sources.set(file, (handle = await fs.open(file, 'r')));
    return handle.fd;
  }

  /** Closes the segment handles of a finished round but `keep`'s. */
  private async closeSources(keep: string | undefined): Promise<void> {
    for (const [file, handle] of this.sources) {
      if (file === keep) continue;
      this.sources.delete(file);
      await handle.close().catch(() => undefined);
    }
  }

  private stalled(error: TidemarkError): void {
    if (!this.stall) {
      this.logger.warn('image write failed: the disk is full; reads and journal appends go on, image writes are retried', { volume: this.volume, error: error.message });
    }
    this.stall = new TidemarkError(
      'RESOURCE_EXHAUSTED',
      `volume "${this.volume}": the store's disk is full; writes resume by themselves once space is freed, nothing acknowledged is lost (${error.message})`,
      { volume: this.volume },
    );
    this.stallDelayMs = Math.min(STALL_RETRY_MAX_MS, Math.max(STALL_RETRY_MIN_MS, this.stallDelayMs * 2));
    this.stallRetry = setTimeout(() => {
      this.stallRetry = undefined;
      this.kick(true);
    }, this.stallDelayMs);
    this.stallRetry.unref();
  }

  private resumed(): void {
    this.logger.info('image writes resumed after a full disk', { volume: this.volume, pending: this.pending.count });
    this.stall = undefined;
    this.stallDelayMs = 0;
  }

  private armSyncTimer(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.syncWanted = true;
      this.kick();
    }, SYNC_AFTER_MS);
    this.syncTimer.unref();
  }

  /**
   * Back-pressure: holds a writer while the applier is far behind. When the applier is
   * behind because the disk is full, waiting could last until someone frees space: the
   * writer is refused instead. `assertOpen` throws once the volume may take no more writes.
   */
  async waitForRoom(assertOpen: () => void): Promise<void> {
    while (this.pending.bytes > MAX_LAG_BYTES || this.pending.count > MAX_LAG_CHANGES || this.pending.heldDataBytes > HELD_DATA_WAIT_BYTES) {
      assertOpen();
      if (this.stall && !this.applying) throw this.stall;
      this.syncWanted = true;
      this.kick();
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
    assertOpen();
  }

  /**
   * Brings the image up to the newest record (syncing the journal first). Under the volume
   * lock, so nothing new arrives meanwhile; anything that reads or copies the image file
   * itself starts with this.
   */
  async catchUp(_held: Held): Promise<void> {
    while (this.pending.count > 0) {
      if (this.failure) throw this.failure;
      this.syncWanted = true;
      this.kick(true);
      await this.applying;
      if (this.stall && this.pending.count > 0) throw this.stall;
    }
    if (this.failure) throw this.failure;
  }

  /**
   * Applies what is pending now (syncing the journal as needed) while writes go on; what
   * arrives meanwhile may stay pending. A checkpoint drains first, so that the catch-up it
   * does under the volume lock is short.
   */
  async drain(): Promise<void> {
    const through = this.pending.lastSequence;
    while (through !== undefined && (this.pending.firstSequence ?? Number.POSITIVE_INFINITY) <= through) {
      if (this.failure || this.stall || this.stopped) return;
      this.syncWanted = true;
      this.kick(true);
      if (!this.applying) return;
      await this.applying;
    }
  }

  /** Lets a round under way finish and starts no other. */
  async stop(): Promise<void> {
    await this.applying?.catch(() => undefined);
    await this.closeSources(undefined);
    clearTimeout(this.syncTimer);
    clearTimeout(this.stallRetry);
    this.stopped = true;
  }
}
