import type * as fs from 'node:fs/promises';
import { TidemarkError, classifyError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { applyToImage, punches } from './image.js';
import { imageWriter } from './image-writer.js';
import type { Held } from './lock.js';
import { PendingWrites } from './pending.js';
import type { JournalRecord } from './record.js';

/**
 * Pending (not yet durable) bytes above which the applier syncs the journal itself. Measured
 * (bench/nbd.ts, 512 MiB sequential write + flush): each such sync slows the appends beside
 * it, and 4 MiB / 20 ms ran 118 syncs and 231 MiB/s where 48 MiB / 250 ms ran 14 and 261 MiB/s.
 */
const SYNC_AFTER_BYTES = 48 * 1024 * 1024;
/** How long pending writes may wait for a client's FLUSH before the applier syncs anyway. */
const SYNC_AFTER_MS = 250;
/** Writers wait while this much is pending, so memory stays bounded under any load. */
const MAX_PENDING_BYTES = 128 * 1024 * 1024;
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
 * The background applier of one volume: writes journaled records into the image, oldest
 * first, but only once the journal holds them durably, so the image never shows a write the
 * journal could lose. Until then the records are pending, and reads lay them over the image.
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

  /** Memory the pending records hold. */
  get bytes(): number {
    return this.pending.bytes;
  }

  /** Hands journaled records over; from now on reads see them. */
  add(records: readonly JournalRecord[]): void {
    this.pending.add(records);
    this.kick();
  }

  /** Pending records that touch [offset, offset + length), oldest first. */
  overlapping(offset: number, length: number): JournalRecord[] {
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
      const records = this.pending.peek(this.journal.durableSequence, APPLY_BYTES);
      const failed = await this.writeToImage(records);
      if (failed) {
        const error = classifyError(failed, `writing the image of volume "${this.volume}"`);
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

  /**
   * Writes records to the image, in order; returns the first error. Data and short zero
   * runs go to the image writer's thread in one batch; long zero runs punch holes here.
   */
  private async writeToImage(records: JournalRecord[]): Promise<unknown> {
    try {
      let from = 0;
      for (let i = 0; i <= records.length; i++) {
        if (i < records.length && !punches(records[i]!)) continue;
        if (i > from) await imageWriter.write(this.image.fd, records.slice(from, i));
        if (i < records.length) await applyToImage(this.image, this.imagePath, records[i]!);
        from = i + 1;
      }
      return undefined;
    } catch (err) {
      return err;
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
    while (this.pending.bytes > MAX_PENDING_BYTES) {
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

  /** Lets a round under way finish and starts no other. */
  async stop(): Promise<void> {
    await this.applying?.catch(() => undefined);
    clearTimeout(this.syncTimer);
    clearTimeout(this.stallRetry);
    this.stopped = true;
  }
}
