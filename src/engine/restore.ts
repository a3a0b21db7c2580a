import * as fs from 'node:fs/promises';
import { TidemarkError } from '../util/errors.js';
import { readFully } from '../util/files.js';
import { intersect, normalize, totalLength, type Extent } from './extents.js';
import { RecordType, type RecordBody } from './record.js';
import type { RestoreProgress } from './types.js';
import type { Held, SnapshotMeta, Volume } from './volume.js';

/** Bytes handed to the journaled write path at once while restoring. */
const APPLY_BYTES = 16 * 1024 * 1024;
/** Restores read and rebuild data in windows of this size. */
const WINDOW = 4 * 1024 * 1024;
/** Snapshot chunks a restore reads at once. */
const PARALLEL_READS = 8;

/** Where a point's data starts from: a snapshot copy, or the all-zero volume at creation. */
export type Base = { kind: 'snapshot'; snapshot: SnapshotMeta } | { kind: 'zero' };

export const baseSequence = (base: Base) => (base.kind === 'snapshot' ? base.snapshot.sequence : 0);

/**
 * The newest base from which the point "every record up to `point`" can be rebuilt: a
 * snapshot at or before it whose following records are all still in the journal.
 */
export function findBase(volume: Volume, point: number): Base | undefined {
  const first = volume.firstSequence;
  // A snapshot taken after the point still holds it when no data changed in between (a
  // retention base taken right after a marker, say); such a snapshot needs no replay at all.
  const candidates = [...volume.snapshotMeta()].filter((s) => validFrom(s) <= point).sort((a, b) => b.sequence - a.sequence);
  for (const snapshot of candidates) {
    if (first <= snapshot.sequence + 1) return { kind: 'snapshot', snapshot };
  }
  const hasOrigin = volume.snapshotMeta().some((s) => s.sequence === 0);
  if (!hasOrigin && first <= 1) return { kind: 'zero' };
  return undefined;
}

/** The oldest point a snapshot holds: its last data change before it, when known. */
export function validFrom(snapshot: SnapshotMeta): number {
  return Math.min(snapshot.dataSequence ?? snapshot.sequence, snapshot.sequence);
}

/** The oldest point still recoverable: the oldest point a usable base holds. */
export function earliestRecoverable(volume: Volume): number {
  const first = volume.firstSequence;
  const usable = volume
    .snapshotMeta()
    .filter((s) => first <= s.sequence + 1)
    .map(validFrom);
  if (!volume.snapshotMeta().some((s) => s.sequence === 0) && first <= 1) usable.push(0);
  return usable.length > 0 ? Math.min(...usable) : volume.lastSequence;
}

export type Progress = (progress: RestoreProgress) => void;

/** Called once before an in-place restore's first write reaches the journal. */
export type BeforeFirstWrite = () => Promise<void>;

/** Collects restore writes and hands them to the journaled path in bounded batches. */
class Applier {
  private bodies: RecordBody[] = [];
  private pending = 0;
  done = 0;

  constructor(
    private readonly volume: Volume,
    private readonly held: Held,
    private readonly total: number,
    private readonly progress: Progress | undefined,
    private beforeFirstWrite?: BeforeFirstWrite,
  ) {}

  async put(offset: number, data: Buffer): Promise<void> {
    this.bodies.push(isZero(data) ? { type: RecordType.Zero, offset, length: data.length } : { type: RecordType.Write, offset, data });
    this.pending += data.length;
    if (this.pending >= APPLY_BYTES) await this.drain();
  }

  async drain(): Promise<void> {
    if (this.bodies.length === 0) return;
    const before = this.beforeFirstWrite;
    this.beforeFirstWrite = undefined;
    await before?.();
    await this.volume.applyLocked(this.held, this.bodies);
    this.bodies = [];
    this.done += this.pending;
    this.pending = 0;
    this.progress?.({ bytesTotal: this.total, bytesRestored: this.done });
  }

  async finish(): Promise<void> {
    await this.drain();
    await this.volume.syncJournal();
  }
}

function isZero(data: Buffer): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

/** Splits extents at window boundaries so each piece lies inside one window. */
function* windowed(extents: readonly Extent[]): Generator<Extent & { window: number }> {
  for (const e of extents) {
    let at = e.offset;
    const end = e.offset + e.length;
    while (at < end) {
      const window = Math.floor(at / WINDOW);
      const stop = Math.min(end, (window + 1) * WINDOW);
      yield { offset: at, length: stop - at, window };
      at = stop;
    }
  }
}

/**
 * Restore (a) and (b): copies back from a snapshot only the chunks written since it, inside
 * `areas`, under the volume lock.
 */
export async function restoreFromSnapshot(volume: Volume, held: Held, snapshot: SnapshotMeta, areas: Extent[] | undefined, progress?: Progress, beforeFirstWrite?: BeforeFirstWrite) {
  let changed = volume.changedExtents(snapshot.sequence);
  if (areas) changed = intersect(changed, areas);
  changed = intersect(changed, [{ offset: 0, length: volume.size }]);
  const total = totalLength(changed);
  progress?.({ bytesTotal: total, bytesRestored: 0 });
  const applier = new Applier(volume, held, total, progress, beforeFirstWrite);
  const source = await fs.open(volume.snapshotPath(snapshot.name), 'r');
  try {
    // Changed chunks lie scattered: reading several at once keeps the disk busy; they are
    // still journaled in order.
    const pieces = [...windowed(changed)];
    for (let i = 0; i < pieces.length; i += PARALLEL_READS) {
      const group = pieces.slice(i, i + PARALLEL_READS);
      const datas = await Promise.all(
        group.map(async (piece) => {
          const data = Buffer.allocUnsafe(piece.length);
          await readFully(source, data, piece.offset);
          return data;
        }),
      );
      for (let k = 0; k < group.length; k++) await applier.put(group[k]!.offset, datas[k]!);
    }
  } finally {
    await source.close();
  }
  await applier.finish();
  return { bytesTotal: total, bytesRestored: applier.done };
}

interface DataHeader {
  type: RecordType;
  sequence: number;
  offset: number;
  length: number;
  segment: number;
  dataPosition: number;
}

/**
 * Reconstructs the data of `pieces` as of point `point` from `base` plus the journal: the
 * base copy first, then every record after the base up to the point, in journal order.
 * Only records that touch the pieces are read.
 */
class PointReader {
  private byWindow = new Map<number, DataHeader[]>();
  private baseHandle: fs.FileHandle | undefined;

  private constructor(private readonly volume: Volume) {}

  static async prepare(volume: Volume, base: Base, point: number, wanted: Extent[]): Promise<PointReader> {
    const reader = new PointReader(volume);
    if (base.kind === 'snapshot') reader.baseHandle = await fs.open(volume.snapshotPath(base.snapshot.name), 'r');
    try {
      await reader.index(base, point, wanted);
    } catch (err) {
      await reader.close();
      throw err;
    }
    return reader;
  }

  /** Files the records that touch `wanted` by window, checking each Write record's CRC. */
  private async index(base: Base, point: number, wanted: Extent[]): Promise<void> {
    for await (const header of this.volume.recordHeaders(baseSequence(base) + 1, point)) {
      if (header.type !== RecordType.Write && header.type !== RecordType.Zero && header.type !== RecordType.Trim) continue;
      if (header.length === 0) continue;
      if (intersect([{ offset: header.offset, length: header.length }], wanted).length === 0) continue;
      const first = Math.floor(header.offset / WINDOW);
      const last = Math.floor((header.offset + header.length - 1) / WINDOW);
      for (let window = first; window <= last; window++) {
        let list = this.byWindow.get(window);
        if (!list) this.byWindow.set(window, (list = []));
        list.push(header);
      }
      if (header.type === RecordType.Write) await this.volume.verifyRecord(header);
    }
  }

  async read(piece: Extent & { window: number }): Promise<Buffer> {
    const data = Buffer.alloc(piece.length);
    if (this.baseHandle) await readFully(this.baseHandle, data, piece.offset);
    const end = piece.offset + piece.length;
    for (const header of this.byWindow.get(piece.window) ?? []) {
      const start = Math.max(piece.offset, header.offset);
      const stop = Math.min(end, header.offset + header.length);
      if (start >= stop) continue;
      const slice = data.subarray(start - piece.offset, stop - piece.offset);
      if (header.type === RecordType.Write) {
        await this.volume.readRecordData(header.segment, header.dataPosition + (start - header.offset), slice);
      } else {
        slice.fill(0);
      }
    }
    return data;
  }

  async close(): Promise<void> {
    await this.baseHandle?.close();
  }
}

/**
 * Restore (d): rewinds a volume in place to `point` by rewriting only the bytes written after
 * it, under the volume lock.
 */
export async function rewindInPlace(volume: Volume, held: Held, base: Base, point: number, areas: Extent[] | undefined, progress?: Progress, beforeFirstWrite?: BeforeFirstWrite) {
  const touched: Extent[] = [];
  // A base taken after the point (nothing changed data in between) already holds the point,
  // and the records between them may be freed: only what came after the base counts.
  const after = Math.max(point, baseSequence(base));
  for await (const header of volume.recordHeaders(after + 1, volume.lastSequence)) {
    if (header.length > 0 && header.type !== RecordType.Marker && header.type !== RecordType.Snapshot) {
      touched.push({ offset: header.offset, length: header.length });
    }
  }
  let wanted = normalize(touched);
  if (areas) wanted = intersect(wanted, areas);
  const total = totalLength(wanted);
  progress?.({ bytesTotal: total, bytesRestored: 0 });
  const reader = await PointReader.prepare(volume, base, point, wanted);
  const applier = new Applier(volume, held, total, progress, beforeFirstWrite);
  try {
    for (const piece of windowed(wanted)) await applier.put(piece.offset, await reader.read(piece));
  } finally {
    await reader.close();
  }
  await applier.finish();
  return { bytesTotal: total, bytesRestored: applier.done };
}

/**
 * Restore (c) and (e) into a new volume: the target starts as a copy of the base; this
 * replays the source's journal from the base up to `point` onto it, under the target's
 * lock (`held`); the source is pinned so its journal stays.
 */
export async function replayInto(source: Volume, target: Volume, held: Held, base: Base, point: number, progress?: Progress) {
  let total = 0;
  for await (const header of source.recordHeaders(baseSequence(base) + 1, point)) total += header.length;
  progress?.({ bytesTotal: total, bytesRestored: 0 });
  let done = 0;
  let batch: RecordBody[] = [];
  let pending = 0;
  const drain = async () => {
    if (batch.length > 0) await target.applyLocked(held, batch);
    done += pending;
    batch = [];
    pending = 0;
    progress?.({ bytesTotal: total, bytesRestored: done });
  };
  for await (const record of source.records(baseSequence(base) + 1, point)) {
    if (record.type === RecordType.Write) {
      batch.push({ type: RecordType.Write, offset: record.offset, data: Buffer.from(record.data) });
      pending += record.data.length;
    } else if (record.type === RecordType.Zero || record.type === RecordType.Trim) {
      batch.push({ type: record.type, offset: record.offset, length: record.length });
      pending += record.length;
    }
    if (pending >= APPLY_BYTES) await drain();
  }
  await drain();
  await target.syncJournal();
  return { bytesTotal: total, bytesRestored: done };
}

export function expiredError(volume: Volume, what: string, point: number): TidemarkError {
  return new TidemarkError(
    'EXPIRED',
    `${what} of volume "${volume.name}" has expired: the journal before it was freed (earliest recoverable sequence is ${earliestRecoverable(volume)}, the point is ${point})`,
    { volume: volume.name },
  );
}
