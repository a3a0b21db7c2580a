import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { TidemarkError, classifyError } from '../util/errors.js';
import { PRIVATE_FILE_MODE, fsyncDir, makePrivateDir, readFully, writeFully, writevFully, writevFullySync } from '../util/files.js';
import { readCachedFirst } from '../util/cached-read.js';
import type { Logger } from '../util/log.js';
import { systemClock, type Clock } from '../util/time.js';
import {
  ALIGNED_PAD_OFFSET,
  ALIGN_BYTES,
  HEADER_SIZE,
  MAGIC_OFFSET,
  RECORD_MAGIC,
  RecordType,
  WRITE_PAYLOAD_OFFSET,
  decodeRecord,
  encodeHead,
  encodedSize,
  headSize,
  parseHeader,
  recordExtent,
  writeDataStart,
  type JournalRecord,
  type RecordHeader,
} from './record.js';
import { Stage, type HeldBytes } from './stage.js';

/** What the engine keeps about a closed segment so that start-up need not read it again. */
export interface SegmentSummary {
  firstSequence: number;
  lastSequence: number;
  firstTime: number;
  lastTime: number;
  size: number;
}

/** Where a Write record's data lies in the journal. */
export interface PayloadPlace {
  file: string;
  position: number;
  /**
   * The same bytes in shared memory, when a direct append wrote them from there: the page
   * cache does not hold them, so the applier writes the image from this copy rather than
   * read the segment back from the disk, and then releases it. Reads take the bytes from
   * the segment: once released, the memory may hold another batch.
   */
  memory?: HeldBytes;
}

interface Segment extends SegmentSummary {
  file: string;
  /** Damaged records below the checkpoint that start-up stepped over, in file order. */
  damage?: DamagedRun[];
}

/** Records [first, last] at byte `at` of a segment are damaged; intact ones go on at `resumeAt`. */
interface DamagedRun {
  at: number;
  resumeAt: number;
  first: number;
  last: number;
}

export interface RecoveryReport {
  /** Records found valid after the checkpoint and handed to the replay callback. */
  replayed: number;
  /** Bytes cut from the tail because they did not form valid records. */
  truncatedBytes: number;
  /** Why the tail was cut, when it was. */
  truncatedReason?: string;
  /** Whole segment files removed because they followed the cut. */
  droppedSegments: number;
  /**
   * Records at or below the checkpoint that are damaged: the image already holds them, so
   * they are stepped over and kept in place rather than cut with everything after them; a
   * restore that needs one fails, naming it.
   */
  damagedBelowCheckpoint?: number[];
  /** The largest read buffer the scan needed: its memory, whatever the journal's length. */
  readBufferBytes: number;
}

const SEGMENT_SUFFIX = '.log';
/** Pieces up to this size are written without the thread pool (see writePiece). */
const INLINE_WRITE_BYTES = 64 * 1024;
/**
 * Pieces of small writes (under SMALL_WRITE_BYTES each, on average) are written without the
 * thread pool up to this size. A client with 64 small writes in flight sends batches of
 * about 256 KiB: through the pool, each waited for a thread hop before its replies went out,
 * and fio's QD64 4 KiB random writes ran 20-30% slower (bench/nbd.ts). Sequential writes of
 * 256 KiB and more still go through the pool, so that this thread goes on reading the socket
 * and checksumming while the pool copies their bytes into the page cache.
 */
const INLINE_SMALL_WRITES_BYTES = 1024 * 1024;
const SMALL_WRITE_BYTES = 64 * 1024;
/** A batch is written in pieces of about this size, each as soon as its CRCs are computed. */
const WRITE_PIECE_BYTES = 2 * 1024 * 1024;
/** Writes from this size on are aligned, when alignLargeWrites is on: the padding is then at most 6%. */
const ALIGN_MIN_BYTES = 64 * 1024;
/**
 * Batches of large writes holding at least this much go to the segment with `O_DIRECT`
 * (see `writeDirect`).
 */
const DIRECT_MIN_BYTES = 1024 * 1024;
/** Where `O_DIRECT` writes start and end in the file, and where their memory starts. */
const DIRECT_ALIGN = 4096;
/** Segments whose handles `readPayload` keeps open. */
const PAYLOAD_READERS = 4;
/** Bytes read at once while start-up replays a segment. */
const REPLAY_READ_BYTES = 4 * 1024 * 1024;
/** Bytes searched at once for the next record after damage. */
const RESYNC_WINDOW_BYTES = 1024 * 1024;
const segmentName = (firstSequence: number) => `${firstSequence.toString(16).padStart(16, '0')}${SEGMENT_SUFFIX}`;

/**
 * The write journal of one volume: an append-only run of segment files, each named after the
 * sequence number of its first record. Only the volume's writer appends, one batch at a time.
 */
export class Journal {
  private segments: Segment[] = [];
  private active!: fs.FileHandle;
  private readHandles = new Map<string, fs.FileHandle>();
  /** Handles `readPayload` reads through, least recently used first. */
  private payloadReaders = new Map<string, fs.FileHandle>();
  private freedCount = 0;
  private nextSequence = 1;
  private lastTime = 0;
  /** Sequence of the newest record whose bytes are in the segment file (page cache or disk). */
  private appendedThrough = 0;
  /** Sequence of the newest record known to be on stable storage. */
  private durableThrough = 0;
  /** Segments rolled away from but not yet synced; closed by the sync that covers them. */
  private rolled: fs.FileHandle[] = [];
  /** An `O_DIRECT` handle on the active segment, opened by the first direct append to it. */
  private direct: { file: string; handle: fs.FileHandle } | undefined;
  /** Set once this filesystem refused `O_DIRECT` (tmpfs does): appends keep to the page cache. */
  private directRefused = false;
  private directWritten = 0;
  /** The fdatasync in progress, if any; syncs are serialised and coalesced. */
  private syncing: Promise<void> | undefined;
  /** A segment file was created since the directory was last synced. */
  private dirDirty = false;

  private constructor(
    private readonly dir: string,
    private readonly segmentSize: number,
    private readonly logger: Logger,
  ) {}

  static async create(dir: string, segmentSize: number, logger: Logger): Promise<Journal> {
    await makePrivateDir(dir);
    const journal = new Journal(dir, segmentSize, logger);
    await journal.openNewSegment(1);
    return journal;
  }

  /**
   * Opens an existing journal, checks every record after `checkpoint` and hands it to
   * `replay` in order. The first record that is torn, fails its CRC or breaks the sequence
   * ends the journal: the file is cut there and later segments are removed.
   *
   * Segments are read `readBytes` at a time (more only for a larger record), and each record
   * is handed over, and its replay awaited, before the next is read: memory stays bounded
   * whatever the journal holds. A Write record's data is a view of the read buffer, valid
   * only until its replay settles.
   */
  static async open(
    dir: string,
    segmentSize: number,
    logger: Logger,
    known: SegmentSummary[],
    checkpoint: number,
    replay: (record: JournalRecord) => Promise<void> | void,
    options: { readBytes?: number } = {},
  ): Promise<{ journal: Journal; report: RecoveryReport }> {
    const journal = new Journal(dir, segmentSize, logger);
    const report: RecoveryReport = { replayed: 0, truncatedBytes: 0, droppedSegments: 0, readBufferBytes: 0 };
    const readBytes = options.readBytes ?? REPLAY_READ_BYTES;
    const names = (await fs.readdir(dir)).filter((n) => n.endsWith(SEGMENT_SUFFIX)).sort();
    const knownByFirst = new Map(known.map((s) => [s.firstSequence, s]));
    let expected: number | undefined;
    let cut = false;
    for (const name of names) {
      const file = path.join(dir, name);
      const firstSequence = parseInt(name, 16);
      // Records missing before this file are harmless when all of them are at or below the
      // checkpoint: the image holds them. History then has a hole (restores across it fail,
      // naming it), but the records after it still continue the volume.
      const gap = expected !== undefined && firstSequence !== expected;
      const covered = gap && firstSequence > expected! && firstSequence - 1 <= checkpoint;
      if (cut || (gap && !covered)) {
        if (!cut) report.truncatedReason ??= `segment ${name} does not follow sequence ${(expected ?? 1) - 1}`;
        cut = true;
        await fs.rm(file, { force: true });
        report.droppedSegments++;
        continue;
      }
      const stat = await fs.stat(file);
      const summary = knownByFirst.get(firstSequence);
      const isLast = name === names[names.length - 1];
      if (summary && summary.lastSequence <= checkpoint && summary.size === stat.size && !isLast) {
        journal.segments.push({ ...summary, file });
        expected = summary.lastSequence + 1;
        journal.lastTime = Math.max(journal.lastTime, summary.lastTime);
        continue;
      }
      const scanned = await journal.scanSegment(file, firstSequence, checkpoint, replay, report, readBytes);
      journal.segments.push(scanned.segment);
      expected = scanned.segment.lastSequence + 1;
      if (scanned.cutAt !== undefined) {
        // A cut above the checkpoint ends the journal. One at or below it loses only records
        // the image holds: a later file may still continue the volume (see `covered`).
        if (expected > checkpoint) cut = true;
        report.truncatedBytes += stat.size - scanned.cutAt;
        await truncate(file, scanned.cutAt);
      }
    }
    // Never below the checkpoint: the image, the bitmaps, markers and snapshots already count
    // every sequence up to it, so handing one out again would give two records one number.
    journal.nextSequence = Math.max(expected ?? 1, checkpoint + 1);
    journal.appendedThrough = journal.nextSequence - 1;
    // Records after the checkpoint may be a crashed process's unsynced writes, still only in
    // the page cache; the checkpoint that will count them must sync them first.
    journal.durableThrough = report.replayed > 0 ? Math.min(checkpoint, journal.appendedThrough) : journal.appendedThrough;
    const last = journal.segments[journal.segments.length - 1];
    if (last && last.lastSequence + 1 === journal.nextSequence) {
      journal.active = await fs.open(last.file, 'r+');
    } else {
      // No file, or the last one ends below the checkpoint: appends start a file of their own,
      // named after the next sequence, past the hole.
      await journal.openNewSegment(journal.nextSequence);
    }
    if (report.damagedBelowCheckpoint) {
      logger.error('journal records damaged below the checkpoint; kept in place, restores that need them will fail', {
        dir,
        sequences: report.damagedBelowCheckpoint,
      });
    }
    if (report.truncatedBytes > 0 || report.droppedSegments > 0) {
      await fsyncDir(dir);
      logger.warn('journal tail cut', { dir, ...report });
    }
    return { journal, report };
  }

  private async scanSegment(
    file: string,
    firstSequence: number,
    checkpoint: number,
    replay: (record: JournalRecord) => Promise<void> | void,
    report: RecoveryReport,
    readBytes: number,
  ): Promise<{ segment: Segment; cutAt?: number }> {
    const segment: Segment = { file, firstSequence, lastSequence: firstSequence - 1, firstTime: 0, lastTime: 0, size: 0 };
    const reader = await SegmentReader.open(file, readBytes);
    try {
      let at = 0;
      while (at < reader.size) {
        let bytes = await reader.view(at, HEADER_SIZE);
        const header = parseHeader(bytes);
        if (header.ok) bytes = await reader.view(at, HEADER_SIZE + header.payloadLength);
        const decoded = decodeRecord(bytes);
        const due = segment.lastSequence + 1;
        if (!decoded.ok && due <= checkpoint) {
          // Damage, not a torn tail: the image held this record when the checkpoint was
          // taken. Step over it to the next intact record, as long as every record stepped
          // over is below the checkpoint too; cutting here would drop the history after it.
          const intactHeader = header.ok && header.sequence === due ? header.payloadLength : undefined;
          const next = await recordAfterDamage(reader, at, intactHeader, due, checkpoint);
          if (next) {
            for (let sequence = due; sequence < next.sequence; sequence++) (report.damagedBelowCheckpoint ??= []).push(sequence);
            // A record whose header holds up (only its data is damaged) stays readable by
            // header, and a restore that needs its data fails on the CRC. Anything else is
            // stepped over by position, and a restore that reaches it fails there.
            if (!next.byHeader && next.sequence > due) (segment.damage ??= []).push({ at, resumeAt: next.at, first: due, last: next.sequence - 1 });
            if (next.byHeader && header.ok) {
              if (segment.firstTime === 0) segment.firstTime = header.time;
              segment.lastTime = header.time;
              this.lastTime = Math.max(this.lastTime, header.time);
            }
            segment.lastSequence = next.sequence - 1;
            at = next.at;
            continue;
          }
        }
        const reason = !decoded.ok
          ? decoded.reason
          : decoded.record.sequence !== segment.lastSequence + 1
            ? `sequence ${decoded.record.sequence} where ${segment.lastSequence + 1} was due`
            : undefined;
        if (reason !== undefined || !decoded.ok) {
          report.truncatedReason ??= `${path.basename(file)} at byte ${at}: ${reason}`;
          segment.size = at;
          return { segment, cutAt: at };
        }
        const record = decoded.record;
        if (segment.firstTime === 0) segment.firstTime = record.time;
        segment.lastSequence = record.sequence;
        segment.lastTime = record.time;
        this.lastTime = Math.max(this.lastTime, record.time);
        at += bytes.length;
        if (record.sequence > checkpoint) {
          await replay(record);
          report.replayed++;
        }
      }
      segment.size = at;
      return { segment };
    } finally {
      report.readBufferBytes = Math.max(report.readBufferBytes, reader.bufferBytes);
      await reader.close();
    }
  }

  /**
   * Opens the next segment and makes it the active one. The handle it replaces (when rolling)
   * goes to `rolled` in the same step: were it in `rolled` while still active, a sync ending
   * meanwhile would close it, and the next sync would find it closed as the active handle.
   */
  private async openNewSegment(firstSequence: number, rolling = false): Promise<void> {
    const file = path.join(this.dir, segmentName(firstSequence));
    // Positional writes (not O_APPEND), so that one batch's pieces can be written side by side.
    const handle = await fs.open(file, 'w+', PRIVATE_FILE_MODE);
    if (rolling) this.rolled.push(this.active);
    this.active = handle;
    // Held open, it would keep a freed segment's space. A FileHandle closes only once the
    // writes still out on it are done.
    const direct = this.direct;
    this.direct = undefined;
    await direct?.handle.close().catch(() => undefined);
    // The new name is made durable by the next sync, with the records that need it.
    this.dirDirty = true;
    this.segments.push({ file, firstSequence, lastSequence: firstSequence - 1, firstTime: 0, lastTime: 0, size: 0 });
  }

  get next(): number {
    return this.nextSequence;
  }

  /** Sequence number of the newest record, or 0 for an empty volume history. */
  get lastSequence(): number {
    return this.nextSequence - 1;
  }

  /**
   * The oldest sequence from which every record up to the newest is still here: the first
   * record, or the first after the newest hole that damage below a checkpoint left.
   */
  get firstSequence(): number {
    let i = this.segments.length - 1;
    while (i > 0 && this.segments[i - 1]!.lastSequence + 1 === this.segments[i]!.firstSequence) i--;
    const first = this.segments.slice(i).find((s) => s.lastSequence >= s.firstSequence);
    return first ? first.firstSequence : this.nextSequence;
  }

  get totalBytes(): number {
    return this.segments.reduce((sum, s) => sum + s.size, 0);
  }

  /**
   * Closed segments, for the checkpoint. One with damage is left out, so that every start
   * reads it again and learns where its intact records resume.
   */
  summaries(): SegmentSummary[] {
    return this.segments
      .slice(0, -1)
      .filter((segment) => !segment.damage)
      .map(({ file: _file, damage: _damage, ...summary }) => summary);
  }

  segmentList(): readonly SegmentSummary[] {
    return this.segments;
  }

  /** Where record times come from; the engine sets its own (EngineOptions.clock). */
  clock: Clock = systemClock;

  /** A timestamp for the next record: wall-clock milliseconds, never earlier than the last one. */
  stamp(): number {
    this.lastTime = Math.max(this.lastTime, this.clock());
    return this.lastTime;
  }

  /**
   * Appends records, numbering them; the caller awaits this before touching the image so
   * that the journal always holds at least what the image does. Returns, for each Write,
   * where its data now lies in the journal (undefined for other records): the applier
   * copies it to the image from there, and reads of not yet applied writes find it there.
   * `places` is filled as the batch goes, so that a caller whose append failed part way can
   * still place the records that did reach the journal. The caller's buffers are written as
   * they are and not kept.
   */
  async append(bodies: JournalRecord[], places: (PayloadPlace | undefined)[] = []): Promise<(PayloadPlace | undefined)[]> {
    let i = 0;
    while (i < bodies.length) {
      let segment = this.segments[this.segments.length - 1]!;
      if (segment.size > 0 && segment.size + encodedSize(bodies[i]!, this.padFor(bodies[i]!, segment.size)) > this.segmentSize) {
        // Sequences are allocated before append, so the new segment starts at this record's
        // sequence, not at nextSequence (which is already past the whole batch).
        await this.roll(bodies[i]!.sequence);
        segment = this.segments[this.segments.length - 1]!;
      }
      // Each record's padding (aligned Writes) depends on where it lands, so sizes are
      // worked out in order.
      const pads: (number | undefined)[] = [];
      const sizes: number[] = [];
      let bytes = 0;
      let heads = 0;
      let j = i;
      for (; j < bodies.length; j++) {
        const pad = this.padFor(bodies[j]!, segment.size + bytes);
        const size = encodedSize(bodies[j]!, pad);
        if (j > i && segment.size + bytes + size > this.segmentSize) break;
        pads.push(pad);
        sizes.push(size);
        bytes += size;
        heads += headSize(bodies[j]!, pad);
      }
      const placed = places.length;
      const chunk = bodies.slice(i, j);
      const direct = this.takesDirect(bytes, chunk.length);
      try {
        if (!direct || !(await this.writeDirect(chunk, bytes, segment, places))) await this.writeChunk(chunk, pads, sizes, heads, segment, places);
      } catch (err) {
        // A short or failed append leaves bytes that recovery would cut anyway; cutting them
        // now keeps later appends contiguous.
        await this.active.truncate(segment.size).catch(() => undefined);
        if (direct && (err as NodeJS.ErrnoException).code === 'EINVAL') {
          // The filesystem takes O_DIRECT but not at this alignment: the page cache it is.
          this.directRefused = true;
          this.logger.warn('journal: direct writes refused here, writing through the page cache', { dir: this.dir });
          places.length = placed;
          continue;
        }
        // Sequence numbers must stay dense or recovery would stop at the gap.
        this.nextSequence = bodies[i]!.sequence;
        throw classifyError(err, 'appending to the journal');
      }
      for (let k = i; k < j; k++) {
        const record = bodies[k]!;
        if (segment.firstTime === 0) segment.firstTime = record.time;
        segment.lastSequence = record.sequence;
        segment.lastTime = record.time;
      }
      segment.size += bytes;
      this.appendedThrough = bodies[j - 1]!.sequence;
      i = j;
    }
    return places;
  }

  /**
   * Writes records through the page cache: their heads (encoded into one buffer) and the
   * callers' data buffers side by side, in pieces of about WRITE_PIECE_BYTES, each written as
   * soon as its CRCs are computed, so that the thread pool writes one piece while this thread
   * checksums the next.
   */
  private async writeChunk(records: JournalRecord[], pads: (number | undefined)[], sizes: number[], heads: number, segment: Segment, places: (PayloadPlace | undefined)[]): Promise<void> {
    const headBytes = Buffer.allocUnsafe(heads);
    const writes: Promise<void>[] = [];
    let piece: Uint8Array[] = [];
    let pieceBytes = 0;
    let pieceRecords = 0;
    let at = 0;
    let headAt = 0;
    for (let k = 0; k < records.length; k++) {
      const record = records[k]!;
      const head = encodeHead(record, headBytes, headAt, pads[k]);
      piece.push(headBytes.subarray(headAt, headAt + head));
      pieceBytes += head;
      pieceRecords++;
      headAt += head;
      if (record.type === RecordType.Write) {
        places.push({ file: segment.file, position: segment.size + at + head });
        if (record.data.length > 0) piece.push(record.data);
        pieceBytes += record.data.length;
      } else {
        places.push(undefined);
      }
      at += sizes[k]!;
      if (pieceBytes >= WRITE_PIECE_BYTES || k === records.length - 1) {
        writes.push(this.writePiece(piece, pieceBytes, pieceRecords, segment.size + at - pieceBytes));
        piece = [];
        pieceBytes = 0;
        pieceRecords = 0;
      }
    }
    await allWritten(writes);
  }

  /**
   * Whether a batch of `records` records of `bytes` bytes in all goes to the disk directly:
   * large writes only (the small ones are cheaper inline, see writePiece), and not where the
   * image shares the journal's blocks (alignLargeWrites), which needs them laid out apart.
   */
  private takesDirect(bytes: number, records: number): boolean {
    return !this.directRefused && !this.alignLargeWrites && bytes >= DIRECT_MIN_BYTES && bytes >= records * SMALL_WRITE_BYTES;
  }

  /**
   * Writes records with `O_DIRECT`, from one block-aligned copy in shared memory, and hands
   * that copy to the applier (PayloadPlace.memory). Through the page cache every journaled
   * byte took a fresh page, was written back by the next sync, and was copied again into the
   * image's pages by the applier. Those writes and the applier's copy alone, 512 MiB in 2 MiB
   * pieces, took 0.75-1.8 s of kernel time that way against 0.15-0.35 s this way (a test
   * outside the repository; docs/limitations.md has what the NBD bench shows).
   *
   * The copy starts at the file block that holds the segment's end, so it first reads back
   * the bytes already there (the carry). Whole blocks go directly, in pieces the thread pool
   * writes side by side; the last part block goes through the page cache, so the file ends
   * exactly at the last record, as recovery expects. The next direct write over that block
   * makes the kernel write it back first. Returns false, having written nothing, where the
   * filesystem refuses `O_DIRECT` or koffi is missing.
   */
  private async writeDirect(records: JournalRecord[], bytes: number, segment: Segment, places: (PayloadPlace | undefined)[]): Promise<boolean> {
    const handle = await this.directHandle(segment.file);
    const base = segment.size - (segment.size % DIRECT_ALIGN);
    const carry = segment.size - base;
    const held = handle && Stage.take(Math.ceil((carry + bytes) / DIRECT_ALIGN) * DIRECT_ALIGN, DIRECT_ALIGN);
    if (!handle || !held) return false;
    const stage = held.buffer;
    if (carry > 0) await readFully(this.active, stage.subarray(0, carry), base);
    const writes: Promise<void>[] = [];
    let at = carry;
    let sent = 0;
    for (const record of records) {
      at += encodeHead(record, stage, at);
      if (record.type === RecordType.Write) {
        // Buffer.copy, not set: for shared memory V8's set copies with relaxed atomics, slowly.
        record.data.copy(stage, at);
        places.push({ file: segment.file, position: base + at, memory: held.hold(at, record.data.length) });
        at += record.data.length;
      } else {
        places.push(undefined);
      }
      for (; at - sent >= WRITE_PIECE_BYTES; sent += WRITE_PIECE_BYTES) {
        writes.push(writeFully(handle, stage.subarray(sent, sent + WRITE_PIECE_BYTES), base + sent));
      }
    }
    const whole = at - (at % DIRECT_ALIGN);
    if (whole > sent) writes.push(writeFully(handle, stage.subarray(sent, whole), base + sent));
    if (at > whole) writes.push(writeFully(this.active, stage.subarray(whole, at), base + whole));
    await allWritten(writes);
    this.directWritten += bytes;
    return true;
  }

  /** Bytes of records written past the page cache since the journal was opened. */
  get directBytes(): number {
    return this.directWritten;
  }

  /** The active segment's `O_DIRECT` handle, or undefined where the filesystem refuses one. */
  private async directHandle(file: string): Promise<fs.FileHandle | undefined> {
    if (this.direct?.file === file) return this.direct.handle;
    await this.direct?.handle.close().catch(() => undefined);
    this.direct = undefined;
    try {
      this.direct = { file, handle: await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_DIRECT) };
      return this.direct.handle;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      this.directRefused = true;
      this.logger.info('journal: the filesystem refuses O_DIRECT; appends go through the page cache', { dir: this.dir });
      return undefined;
    }
  }

  /**
   * Writes one piece of a batch of `records` records. A small one, or one of up to a few
   * hundred small writes, is written on this thread: copying it into the page cache takes
   * tens of microseconds, while a trip through the thread pool costs a tenth of a
   * millisecond, and the batch's replies wait for it.
   */
  private writePiece(piece: Uint8Array[], bytes: number, records: number, position: number): Promise<void> {
    const inline = bytes <= INLINE_WRITE_BYTES || (bytes <= INLINE_SMALL_WRITES_BYTES && bytes < records * SMALL_WRITE_BYTES);
    if (!inline) return writevFully(this.active, piece, position);
    try {
      writevFullySync(this.active.fd, piece, position);
      // Completion still goes through the event loop, so that a caller writing in a tight
      // loop cannot run on microtasks alone and starve timers, sockets and other volumes.
      return new Promise((resolve) => setImmediate(resolve));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * Whether large block-aligned writes are laid out so that their data starts on a
   * filesystem block in the segment (see ALIGNED_WRITE_TYPE). Worth it where the image can
   * then share the journal's blocks: XFS with reflink, btrfs. Elsewhere the padding (less
   * than 4 KiB per write of 64 KiB or more) only costs space.
   */
  alignLargeWrites = false;

  /** The padding that aligns this record's data when it starts at `position`, or undefined for the plain form. */
  private padFor(record: JournalRecord, position: number): number | undefined {
    if (!this.alignLargeWrites || record.type !== RecordType.Write) return undefined;
    const { offset, data } = record;
    if (data.length < ALIGN_MIN_BYTES || offset % ALIGN_BYTES !== 0 || data.length % ALIGN_BYTES !== 0) return undefined;
    return (ALIGN_BYTES - ((position + ALIGNED_PAD_OFFSET) % ALIGN_BYTES)) % ALIGN_BYTES;
  }

  /** Hands out sequence numbers; records must then be appended in exactly this order. */
  allocate(): number {
    return this.nextSequence++;
  }

  /** Newest sequence known durable: what a power cut cannot take back. */
  get durableSequence(): number {
    return this.durableThrough;
  }

  /**
   * Makes every record appended before the call durable (fdatasync), including those in
   * segments rolled since the last sync. Safe to call while appends continue: a sync covers
   * what was appended when its fdatasync began, and concurrent callers share one fdatasync
   * where it covers them.
   */
  /** Told how long each completed sync took, for the daemon's latency histogram. */
  onSync: ((seconds: number) => void) | undefined;

  async sync(): Promise<void> {
    const target = this.appendedThrough;
    while (this.durableThrough < target) {
      if (this.syncing) {
        await this.syncing.catch(() => undefined);
        continue;
      }
      const upTo = this.appendedThrough;
      // Only segments already rolled take no more appends: this run may close those once
      // synced. The active one may be rolled while the run goes on, with records appended
      // after its fdatasync; it stays in `rolled` for the next run to sync and close.
      const rolled = [...this.rolled];
      const handles = [...rolled, this.active];
      const syncDir = this.dirDirty;
      this.dirDirty = false;
      const run = (async () => {
        const started = process.hrtime.bigint();
        try {
          for (const handle of handles) await handle.datasync();
          if (syncDir) await fsyncDir(this.dir);
        } catch (err) {
          if (syncDir) this.dirDirty = true;
          throw classifyError(err, 'syncing the journal');
        }
        this.durableThrough = Math.max(this.durableThrough, upTo);
        this.onSync?.(Number(process.hrtime.bigint() - started) / 1e9);
        this.rolled = this.rolled.filter((h) => !rolled.includes(h));
        for (const handle of rolled) await handle.close().catch(() => undefined);
      })();
      this.syncing = run;
      try {
        await run;
      } finally {
        if (this.syncing === run) this.syncing = undefined;
      }
    }
  }

  /** Moves appends to a new segment. The old one is synced by the next sync, not here. */
  private async roll(firstSequence = this.nextSequence): Promise<void> {
    await this.openNewSegment(firstSequence, true);
    this.logger.debug('journal segment rolled', { dir: this.dir, firstSequence });
  }

  /** Starts a new segment now, so the current one becomes closed and can later be freed. */
  async rollIfNotEmpty(): Promise<void> {
    const segment = this.segments[this.segments.length - 1]!;
    if (segment.size > 0) await this.roll();
  }

  /**
   * Reads record headers with sequence in [from, to], oldest first, without their data.
   * Segments wholly outside the range are skipped.
   */
  async *headers(from: number, to: number): AsyncGenerator<RecordHeader & { segment: number }> {
    const run = new DenseRun(from, to);
    for (let index = 0; index < this.segments.length; index++) {
      const segment = this.segments[index]!;
      if (segment.lastSequence < from || segment.firstSequence > to) continue;
      const handle = await this.readHandle(segment.file);
      const header = Buffer.alloc(HEADER_SIZE + 16);
      let at = 0;
      const end = segment.size;
      while (at < end) {
        const resume = pastDamage(segment, at, from, to);
        if (resume !== undefined) {
          at = resume;
          continue;
        }
        await readFully(handle, header, at);
        const parsed = parseHeader(header);
        if (!parsed.ok) throw classifyError(new Error(`journal damaged at ${segment.file}:${at}: ${parsed.reason}`), 'reading the journal');
        const size = HEADER_SIZE + parsed.payloadLength;
        if (parsed.sequence > to) return run.end();
        if (parsed.sequence >= from) {
          run.next(parsed.sequence);
          let offset = 0;
          let length = 0;
          let dataPosition = at + WRITE_PAYLOAD_OFFSET;
          if (parsed.type === RecordType.Write) {
            offset = Number(header.readBigUInt64LE(HEADER_SIZE));
            dataPosition = at + writeDataStart(parsed, header);
            length = at + size - dataPosition;
            if (length < 0) throw classifyError(new Error(`journal damaged at ${segment.file}:${at}: padding past payload`), 'reading the journal');
          } else if (parsed.type === RecordType.Zero || parsed.type === RecordType.Trim) {
            offset = Number(header.readBigUInt64LE(HEADER_SIZE));
            length = Number(header.readBigUInt64LE(HEADER_SIZE + 8));
          }
          yield {
            type: parsed.type,
            sequence: parsed.sequence,
            time: parsed.time,
            offset,
            length,
            dataPosition,
            size,
            segment: index,
          };
        }
        at += size;
      }
    }
    run.end();
  }

  /** Reads whole records with sequence in [from, to], oldest first. */
  async *records(from: number, to: number): AsyncGenerator<JournalRecord> {
    const run = new DenseRun(from, to);
    for (const segment of this.segments) {
      if (segment.lastSequence < from || segment.firstSequence > to) continue;
      const handle = await this.readHandle(segment.file);
      const bytes = Buffer.alloc(segment.size);
      await readFully(handle, bytes, 0);
      let at = 0;
      while (at < bytes.length) {
        const resume = pastDamage(segment, at, from, to);
        if (resume !== undefined) {
          at = resume;
          continue;
        }
        const decoded = decodeRecord(bytes.subarray(at));
        if (!decoded.ok) throw classifyError(new Error(`journal damaged at ${segment.file}:${at}: ${decoded.reason}`), 'reading the journal');
        at += HEADER_SIZE + bytes.readUInt32LE(at + 4);
        if (decoded.record.sequence > to) return run.end();
        if (decoded.record.sequence >= from) {
          run.next(decoded.record.sequence);
          yield decoded.record;
        }
      }
    }
    run.end();
  }

  /** Reads part of a write record's data, located by `headers`. */
  async readData(segmentIndex: number, position: number, target: Buffer): Promise<void> {
    await readFully(await this.readHandle(this.segmentAt(segmentIndex).file), target, position);
  }

  private segmentAt(index: number): Segment {
    const segment = this.segments[index];
    if (!segment) throw classifyError(new Error(`segment ${index} is gone`), 'reading the journal');
    return segment;
  }

  /**
   * Reads a Write record whole and checks its CRC. Closed segments are not re-read at start,
   * so a rewind checks every record it will use before it writes anything: damage stops it
   * instead of being restored into the volume.
   */
  async verifyWrite(segmentIndex: number, header: Pick<RecordHeader, 'dataPosition' | 'length' | 'size' | 'sequence'>): Promise<void> {
    const { sequence } = header;
    const segment = this.segmentAt(segmentIndex);
    const bytes = Buffer.allocUnsafe(header.size);
    // A Write's data ends its record, whichever form the record has.
    await readFully(await this.readHandle(segment.file), bytes, header.dataPosition + header.length - header.size);
    const decoded = decodeRecord(bytes);
    const reason = !decoded.ok ? decoded.reason : decoded.record.sequence !== sequence ? `holds sequence ${decoded.record.sequence}` : undefined;
    if (reason !== undefined) {
      throw new TidemarkError('INTERNAL', `journal record ${sequence} in ${path.basename(segment.file)} is damaged (${reason}); nothing was restored from it`, {
        sequence,
        segment: path.basename(segment.file),
      });
    }
  }

  /** The newest record at or before `time`, or undefined when every record is later. */
  async lastSequenceAtOrBefore(time: number): Promise<number | undefined> {
    let found: number | undefined;
    for (const segment of this.segments) {
      if (segment.lastSequence < segment.firstSequence) continue;
      if (segment.firstTime > time) break;
      if (segment.lastTime <= time) {
        found = segment.lastSequence;
        continue;
      }
      for await (const header of this.headers(segment.firstSequence, segment.lastSequence)) {
        if (header.time > time) return found;
        found = header.sequence;
      }
    }
    return found;
  }

  /**
   * Removes whole closed segments whose records all have sequence numbers at or below
   * `upTo`. Returns the bytes freed.
   */
  async freeThrough(upTo: number): Promise<number> {
    let freed = 0;
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!;
      if (oldest.lastSequence > upTo) break;
      this.segments.shift();
      this.freedCount++;
      for (const handles of [this.readHandles, this.payloadReaders]) {
        const handle = handles.get(oldest.file);
        handles.delete(oldest.file);
        await handle?.close();
      }
      await fs.rm(oldest.file, { force: true });
      freed += oldest.size;
    }
    if (freed > 0) await fsyncDir(this.dir);
    return freed;
  }

  /** The oldest record's time, or undefined for an empty journal. */
  oldestTime(): number | undefined {
    const first = this.segments.find((s) => s.lastSequence >= s.firstSequence);
    return first?.firstTime;
  }

  /** Segments freed so far: a reader of journal data can tell whether one went while it read. */
  get freedSegments(): number {
    return this.freedCount;
  }

  /**
   * Reads `target.length` bytes of journaled write data at `position` of segment `file` (see
   * PayloadPlace). These reads go through a few handles of their own, the most recently used,
   * so that a long history does not keep a descriptor open per segment.
   */
  async readPayload(file: string, position: number, target: Buffer): Promise<void> {
    for (;;) {
      const handle = await this.payloadReader(file);
      try {
        await readCachedFirst(handle, target, position);
        return;
      } catch (err) {
        // Closed to make room for another segment's handle while this read waited: open again.
        if (this.payloadReaders.get(file) === handle) throw err;
      }
    }
  }

  private async payloadReader(file: string): Promise<fs.FileHandle> {
    const cached = this.payloadReaders.get(file);
    if (cached) {
      // Most recently used last, so the first entry is the one to close.
      this.payloadReaders.delete(file);
      this.payloadReaders.set(file, cached);
      return cached;
    }
    const handle = await openOnce(this.payloadReaders, file);
    while (this.payloadReaders.size > PAYLOAD_READERS) {
      const [oldest, old] = this.payloadReaders.entries().next().value!;
      this.payloadReaders.delete(oldest);
      // Waits for reads under way on it; they then find it gone and open it again.
      await old.close().catch(() => undefined);
    }
    return handle;
  }

  private readHandle(file: string): Promise<fs.FileHandle> {
    return openOnce(this.readHandles, file);
  }

  async close(): Promise<void> {
    await this.sync().catch(() => undefined);
    for (const handle of this.rolled) await handle.close().catch(() => undefined);
    this.rolled = [];
    await this.direct?.handle.close().catch(() => undefined);
    this.direct = undefined;
    await this.active.close().catch(() => undefined);
    for (const handles of [this.readHandles, this.payloadReaders]) {
      for (const handle of handles.values()) await handle.close().catch(() => undefined);
      handles.clear();
    }
  }
}

/** Waits for every write of a batch, even after one failed, then throws the first failure. */
async function allWritten(writes: Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(writes)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * Where reading goes on when damage starts at byte `at` of the segment (undefined when none
 * does); throws when the damaged records are among those wanted, [from, to].
 */
function pastDamage(segment: Segment, at: number, from: number, to: number): number | undefined {
  const damaged = segment.damage?.find((d) => d.at === at);
  if (!damaged) return undefined;
  if (damaged.last >= from && damaged.first <= to) {
    throw new TidemarkError(
      'INTERNAL',
      `journal records ${damaged.first} to ${damaged.last} in ${path.basename(segment.file)} are damaged (found at start-up, below the checkpoint)`,
    );
  }
  return damaged.resumeAt;
}

/**
 * Checks that a read of [from, to] sees every sequence number once, in order: a record freed
 * while a restore was reading must fail the restore, never silently drop out of the data.
 */
class DenseRun {
  private expected: number;

  constructor(
    from: number,
    private readonly to: number,
  ) {
    this.expected = from;
  }

  next(sequence: number): void {
    if (sequence !== this.expected) throw this.gone();
    this.expected++;
  }

  end(): void {
    if (this.expected <= this.to) throw this.gone();
  }

  private gone(): TidemarkError {
    return new TidemarkError('INTERNAL', `journal records from sequence ${this.expected} to ${this.to} are no longer in the journal`);
  }
}

/**
 * Reads a segment file front to back through one buffer, which holds a window of the file and
 * grows only when a single record is larger than it.
 */
class SegmentReader {
  private buffer: Buffer;
  /** File position of buffer[0], and how many bytes of the buffer hold file data. */
  private start = 0;
  private filled = 0;

  private constructor(
    private readonly handle: fs.FileHandle,
    readonly size: number,
    readBytes: number,
  ) {
    this.buffer = Buffer.allocUnsafe(Math.max(HEADER_SIZE, Math.min(readBytes, size)));
  }

  static async open(file: string, readBytes: number): Promise<SegmentReader> {
    const handle = await fs.open(file, 'r');
    try {
      return new SegmentReader(handle, (await handle.stat()).size, readBytes);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  get bufferBytes(): number {
    return this.buffer.length;
  }

  /**
   * The file's bytes [at, at + length), or fewer where the file ends first. The view is
   * valid until the next call.
   */
  async view(at: number, length: number): Promise<Buffer> {
    const end = Math.min(at + length, this.size);
    if (at < this.start || end > this.start + this.filled) {
      if (end - at > this.buffer.length) this.buffer = Buffer.allocUnsafe(end - at);
      this.start = at;
      this.filled = Math.min(this.buffer.length, this.size - at);
      await readFully(this.handle, this.buffer.subarray(0, this.filled), at);
    }
    return this.buffer.subarray(at - this.start, end - this.start);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Where the intact records go on after damage at `at`: the end of the segment or a record
 * with a valid CRC whose sequence lies in [due, checkpoint + 1], so that every record skipped
 * is one the image already holds. The length in a header that looks intact (`payloadLength`)
 * is tried first (`byHeader`); only when it leads nowhere is the rest of the segment searched
 * for a record's magic. Undefined when neither finds one.
 */
async function recordAfterDamage(
  reader: SegmentReader,
  at: number,
  payloadLength: number | undefined,
  due: number,
  checkpoint: number,
): Promise<{ at: number; sequence: number; byHeader: boolean } | undefined> {
  const fits = (sequence: number) => sequence >= due && sequence <= checkpoint + 1;
  if (payloadLength !== undefined && fits(due + 1)) {
    const end = at + HEADER_SIZE + payloadLength;
    if (end === reader.size || (await intactRecordAt(reader, end)) === due + 1) return { at: end, sequence: due + 1, byHeader: true };
  }
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(RECORD_MAGIC);
  let from = at + 1;
  while (from + HEADER_SIZE <= reader.size) {
    const window = await reader.view(from + MAGIC_OFFSET, RESYNC_WINDOW_BYTES);
    const hit = window.indexOf(magic);
    if (hit < 0) {
      from += Math.max(1, window.length - magic.length + 1);
      continue;
    }
    const candidate = from + hit;
    const sequence = await intactRecordAt(reader, candidate);
    if (sequence !== undefined && fits(sequence)) return { at: candidate, sequence, byHeader: false };
    from = candidate + 1;
  }
  return undefined;
}

/** The sequence of the record at `at` when it is whole and its CRC holds. */
async function intactRecordAt(reader: SegmentReader, at: number): Promise<number | undefined> {
  if (at + HEADER_SIZE > reader.size) return undefined;
  const header = parseHeader(await reader.view(at, HEADER_SIZE));
  if (!header.ok || at + HEADER_SIZE + header.payloadLength > reader.size) return undefined;
  const decoded = decodeRecord(await reader.view(at, HEADER_SIZE + header.payloadLength));
  return decoded.ok ? decoded.record.sequence : undefined;
}

async function truncate(file: string, size: number): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.truncate(size);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The handle `handles` keeps for `file`, opened for reading if there is none. Two readers may
 * open the same segment at once: one handle is kept, the other closed.
 */
async function openOnce(handles: Map<string, fs.FileHandle>, file: string): Promise<fs.FileHandle> {
  const cached = handles.get(file);
  if (cached) return cached;
  const handle = await fs.open(file, 'r');
  const raced = handles.get(file);
  if (raced) {
    await handle.close();
    return raced;
  }
  handles.set(file, handle);
  return handle;
}

export { recordExtent };
