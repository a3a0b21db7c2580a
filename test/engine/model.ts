/**
 * An in-memory reference model of the engine's data semantics, deliberately naive: a volume
 * is a Buffer, its history a list of operations tagged with the engine sequence number after
 * them, and the data at any point is a replay of that list. Snapshots are Buffer copies and
 * markers are sequence numbers. The engine's restores write through its journaled path, so
 * the model records a restore as one more operation in the history (the whole resulting
 * image), which keeps later points recoverable across it exactly as the engine promises.
 */

export interface Range {
  offset: number;
  length: number;
}

export type ModelOp =
  | { kind: 'write'; offset: number; data: Buffer }
  | { kind: 'zero'; offset: number; length: number }
  /** The whole volume replaced: what a restore leaves behind. */
  | { kind: 'image'; data: Buffer };

export interface HistoryEntry {
  /** Engine sequence number once the operation is complete. */
  sequence: number;
  /** Wall-clock milliseconds once the operation is complete. */
  time: number;
  op: ModelOp;
}

export interface ModelSnapshot {
  name: string;
  sequence: number;
  data: Buffer;
}

export interface ModelMarker {
  name: string;
  sequence: number;
  createdAt: number;
  /** Records after the marker may share its millisecond, so its time names a later point. */
  sharesItsTime?: boolean;
}

/** A moment the test observed: every record at or before `time` is at or before `sequence`. */
export interface TimePoint {
  time: number;
  sequence: number;
}

export class ModelVolume {
  readonly snapshots = new Map<string, ModelSnapshot>();
  readonly markers = new Map<string, ModelMarker>();
  readonly timePoints: TimePoint[] = [];
  private readonly history: HistoryEntry[] = [];
  private current: Buffer;

  constructor(
    readonly name: string,
    readonly size: number,
    readonly blockSize: number,
    readonly granularity: number,
    /** Sequence number before which this volume's history is not the model's business. */
    readonly bornAt = 0,
  ) {
    this.current = Buffer.alloc(size);
  }

  get data(): Buffer {
    return this.current;
  }

  get entries(): readonly HistoryEntry[] {
    return this.history;
  }

  private apply(entry: HistoryEntry): void {
    const last = this.history[this.history.length - 1];
    if (last && entry.sequence < last.sequence) {
      throw new Error(`model: volume ${this.name} history went backwards (${entry.sequence} after ${last.sequence})`);
    }
    this.history.push(entry);
    applyOp(this.current, entry.op);
  }

  write(sequence: number, time: number, offset: number, data: Buffer): void {
    this.apply({ sequence, time, op: { kind: 'write', offset, data: Buffer.from(data) } });
  }

  zero(sequence: number, time: number, offset: number, length: number): void {
    this.apply({ sequence, time, op: { kind: 'zero', offset, length } });
  }

  /** The volume now holds `data`, written by a restore that ended at `sequence`. */
  replace(sequence: number, time: number, data: Buffer): void {
    this.apply({ sequence, time, op: { kind: 'image', data: Buffer.from(data) } });
  }

  /** The data as of `sequence`: every operation that ended at or before it, replayed on zeros. */
  dataAt(sequence: number): Buffer {
    if (sequence < this.bornAt) throw new Error(`model: volume ${this.name} has no history before sequence ${this.bornAt}`);
    const data = Buffer.alloc(this.size);
    for (const entry of this.history) {
      if (entry.sequence > sequence) break;
      applyOp(data, entry.op);
    }
    return data;
  }

  snapshot(name: string, sequence: number): ModelSnapshot {
    const snapshot = { name, sequence, data: Buffer.from(this.current) };
    this.snapshots.set(name, snapshot);
    return snapshot;
  }

  marker(name: string, sequence: number, createdAt: number): ModelMarker {
    const marker = { name, sequence, createdAt };
    this.markers.set(name, marker);
    return marker;
  }

  /** What the volume holds after `source` is copied back inside `ranges` (everywhere when absent). */
  restored(source: Buffer, ranges?: readonly Range[]): Buffer {
    if (!ranges) return Buffer.from(source);
    const out = Buffer.from(this.current);
    for (const r of ranges) source.copy(out, r.offset, r.offset, r.offset + r.length);
    return out;
  }

  /** The newest observed point at or before `time`, if the volume existed then. */
  pointAtTime(time: number): TimePoint | undefined {
    let found: TimePoint | undefined;
    for (const p of this.timePoints) if (p.time <= time) found = p;
    return found;
  }
}

function applyOp(data: Buffer, op: ModelOp): void {
  switch (op.kind) {
    case 'write':
      op.data.copy(data, op.offset);
      return;
    case 'zero':
      data.fill(0, op.offset, op.offset + op.length);
      return;
    case 'image':
      op.data.copy(data, 0);
      return;
  }
}

/** The first byte at which two buffers differ, for messages; -1 when equal. */
export function firstDifference(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (a.equals(b)) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Byte ranges where the two buffers differ, merged; for checking that a diff covers them. */
export function differingRanges(a: Buffer, b: Buffer, step: number): Range[] {
  const out: Range[] = [];
  for (let at = 0; at < a.length; at += step) {
    const end = Math.min(a.length, at + step);
    if (a.subarray(at, end).equals(b.subarray(at, end))) continue;
    for (let i = at; i < end; i++) {
      if (a[i] === b[i]) continue;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === i) last.length++;
      else out.push({ offset: i, length: 1 });
    }
  }
  return out;
}

/** True when every byte of `inner` lies inside some extent of `outer`. */
export function covers(outer: readonly Range[], inner: readonly Range[]): Range | undefined {
  const sorted = [...outer].sort((x, y) => x.offset - y.offset);
  for (const r of inner) {
    let at = r.offset;
    const end = r.offset + r.length;
    for (const o of sorted) {
      if (o.offset > at) break;
      if (o.offset + o.length > at) at = o.offset + o.length;
      if (at >= end) break;
    }
    if (at < end) return { offset: at, length: end - at };
  }
  return undefined;
}

/** A small deterministic generator, so a failing case's data can be rebuilt from its seed. */
export function patternBytes(seed: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  switch (seed % 5) {
    case 0:
      return out; // zeros: restores turn all-zero pieces into zero records
    case 1:
      return out.fill((seed >>> 3) & 0xff || 1);
    case 2:
      for (let i = 0; i < length; i++) out[i] = (i + seed) & 0xff;
      return out;
    default: {
      let state = seed >>> 0 || 1;
      for (let i = 0; i < length; i++) {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
      }
      return out;
    }
  }
}
