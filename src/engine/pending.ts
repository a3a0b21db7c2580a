import { RecordType, recordExtent, type JournalRecord } from './record.js';

/** Memory a pending record costs besides its payload, so that many zeroes count too. */
const RECORD_OVERHEAD = 128;

/**
 * Records that are in the journal but not yet in the image, oldest first. The image only
 * takes a record once the journal holds it durably, so that after a power cut the image never
 * shows a write the journal lost (the durability contract's prefix); until then reads see
 * these records laid over the image.
 */
export class PendingWrites {
  private records: JournalRecord[] = [];
  private head = 0;
  private memory = 0;
  /** Bounds of every pending extent, so that most reads skip the scan. */
  private low = Number.POSITIVE_INFINITY;
  private high = 0;

  get bytes(): number {
    return this.memory;
  }

  get count(): number {
    return this.records.length - this.head;
  }

  /** The oldest pending record's sequence, or undefined when nothing is pending. */
  get firstSequence(): number | undefined {
    return this.records[this.head]?.sequence;
  }

  add(records: readonly JournalRecord[]): void {
    for (const record of records) {
      const { offset, length } = recordExtent(record);
      if (length === 0) continue;
      this.records.push(record);
      this.memory += cost(record);
      this.low = Math.min(this.low, offset);
      this.high = Math.max(this.high, offset + length);
    }
  }

  /** The oldest records with sequence ≤ `through`, up to about `maxBytes` of payload. */
  peek(through: number, maxBytes: number): JournalRecord[] {
    const out: JournalRecord[] = [];
    let bytes = 0;
    for (let i = this.head; i < this.records.length && bytes < maxBytes; i++) {
      const record = this.records[i]!;
      if (record.sequence > through) break;
      out.push(record);
      bytes += cost(record);
    }
    return out;
  }

  /** Forgets the `n` oldest records, once the image holds them. */
  drop(n: number): void {
    for (let i = 0; i < n; i++) this.memory -= cost(this.records[this.head + i]!);
    this.head += n;
    if (this.head === this.records.length) {
      this.records = [];
      this.head = 0;
      this.low = Number.POSITIVE_INFINITY;
      this.high = 0;
    } else if (this.head > 4096 && this.head * 2 > this.records.length) {
      this.records = this.records.slice(this.head);
      this.head = 0;
    }
  }

  /** Pending records that touch [offset, offset + length), oldest first. */
  overlapping(offset: number, length: number): JournalRecord[] {
    if (this.count === 0 || offset >= this.high || offset + length <= this.low) return [];
    const out: JournalRecord[] = [];
    for (let i = this.head; i < this.records.length; i++) {
      const record = this.records[i]!;
      const extent = recordExtent(record);
      if (extent.offset < offset + length && offset < extent.offset + extent.length) out.push(record);
    }
    return out;
  }
}

function cost(record: JournalRecord): number {
  return RECORD_OVERHEAD + (record.type === RecordType.Write ? record.data.length : 0);
}

/** Lays records (oldest first) over `target`, which holds the image's bytes from `offset`. */
export function overlay(records: readonly JournalRecord[], offset: number, target: Buffer): void {
  const end = offset + target.length;
  for (const record of records) {
    const extent = recordExtent(record);
    const from = Math.max(offset, extent.offset);
    const to = Math.min(end, extent.offset + extent.length);
    if (from >= to) continue;
    if (record.type === RecordType.Write) {
      record.data.copy(target, from - offset, from - record.offset, to - record.offset);
    } else {
      target.fill(0, from - offset, to - offset);
    }
  }
}
