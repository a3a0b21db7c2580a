import { PagedBitmap, runsToExtents } from './bitmap.js';
import type { Extent } from './extents.js';

/**
 * Differential information as one bitmap per snapshot generation. Generation `s` holds the
 * chunks written after the snapshot recorded at sequence `s` and before the next one;
 * generation 0 starts when the volume was created. A write sets one bit in the newest
 * generation only, so its cost does not grow with the number of snapshots; "changed since
 * snapshot s" is the union of generations from s on.
 */
export class DirtyTracker {
  private generations = new Map<number, PagedBitmap>();
  private starts: number[] = [];

  constructor(
    readonly granularity: number,
    private size: number,
  ) {
    this.startGeneration(0);
  }

  private get bits(): number {
    return Math.ceil(this.size / this.granularity);
  }

  mark(offset: number, length: number): void {
    if (length <= 0) return;
    const current = this.generations.get(this.starts[this.starts.length - 1]!)!;
    current.setRange(Math.floor(offset / this.granularity), Math.floor((offset + length - 1) / this.granularity));
  }

  startGeneration(sequence: number): void {
    if (this.generations.has(sequence)) return;
    this.generations.set(sequence, new PagedBitmap(this.bits));
    this.starts.push(sequence);
    this.starts.sort((a, b) => a - b);
  }

  /** Folds a deleted snapshot's generation into the one before it, which now spans both. */
  dropGeneration(sequence: number): void {
    const index = this.starts.indexOf(sequence);
    if (index <= 0) return;
    const previous = this.generations.get(this.starts[index - 1]!)!;
    previous.merge(this.generations.get(sequence)!);
    this.generations.delete(sequence);
    this.starts.splice(index, 1);
  }

  /** Chunks written after sequence `from` and up to sequence `to` (exclusive generation bound). */
  changedBetween(from: number, to = Infinity): PagedBitmap {
    const union = new PagedBitmap(this.bits);
    for (const start of this.starts) {
      if (start >= from && start < to) union.merge(this.generations.get(start)!);
    }
    return union;
  }

  changedExtents(from: number, to = Infinity): Extent[] {
    return runsToExtents(this.changedBetween(from, to).runs(), this.granularity, this.size);
  }

  /** Every chunk written since the volume was created: what a backup must read at least once. */
  allocatedExtents(): Extent[] {
    return this.changedExtents(0);
  }

  generationStarts(): readonly number[] {
    return this.starts;
  }

  resize(size: number): void {
    this.size = size;
    for (const start of this.starts) this.generations.set(start, this.generations.get(start)!.resized(this.bits));
  }

  serialize(): Buffer {
    const parts: Buffer[] = [];
    for (const start of this.starts) {
      const body = this.generations.get(start)!.serialize();
      const head = Buffer.alloc(12);
      head.writeBigUInt64LE(BigInt(start), 0);
      head.writeUInt32LE(body.length, 8);
      parts.push(head, body);
    }
    return Buffer.concat(parts);
  }

  static deserialize(bytes: Buffer, granularity: number, size: number): DirtyTracker {
    const tracker = new DirtyTracker(granularity, size);
    tracker.generations.clear();
    tracker.starts = [];
    let at = 0;
    while (at + 12 <= bytes.length) {
      const start = Number(bytes.readBigUInt64LE(at));
      const length = bytes.readUInt32LE(at + 8);
      tracker.generations.set(start, PagedBitmap.deserialize(bytes.subarray(at + 12, at + 12 + length)).resized(tracker.bits));
      tracker.starts.push(start);
      at += 12 + length;
    }
    if (!tracker.generations.has(0)) tracker.startGeneration(0);
    tracker.starts.sort((a, b) => a - b);
    return tracker;
  }

  memoryBytes(): number {
    let sum = 0;
    for (const bitmap of this.generations.values()) sum += bitmap.memoryBytes();
    return sum;
  }
}
