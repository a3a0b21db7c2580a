import type { Extent } from './extents.js';

const PAGE_BITS = 32768; // one 4 KiB page of bits
const PAGE_BYTES = PAGE_BITS / 8;

/**
 * One bit per tracking chunk of a volume, stored in 4 KiB pages that exist only once a bit
 * in them is set: an idle 10 GiB volume costs a few bytes, not its whole bitmap.
 */
export class PagedBitmap {
  private pages = new Map<number, Uint8Array>();

  constructor(readonly bits: number) {}

  set(bit: number): void {
    const pageIndex = Math.floor(bit / PAGE_BITS);
    let page = this.pages.get(pageIndex);
    if (!page) {
      page = new Uint8Array(PAGE_BYTES);
      this.pages.set(pageIndex, page);
    }
    const within = bit % PAGE_BITS;
    page[within >> 3]! |= 1 << (within & 7);
  }

  get(bit: number): boolean {
    const page = this.pages.get(Math.floor(bit / PAGE_BITS));
    if (!page) return false;
    const within = bit % PAGE_BITS;
    return (page[within >> 3]! & (1 << (within & 7))) !== 0;
  }

  setRange(firstBit: number, lastBit: number): void {
    for (let bit = firstBit; bit <= lastBit; bit++) this.set(bit);
  }

  /** ORs `other` into this bitmap. */
  merge(other: PagedBitmap): void {
    for (const [index, page] of other.pages) {
      const mine = this.pages.get(index);
      if (!mine) {
        this.pages.set(index, Uint8Array.from(page));
      } else {
        for (let i = 0; i < PAGE_BYTES; i++) mine[i]! |= page[i]!;
      }
    }
  }

  isEmpty(): boolean {
    return this.pages.size === 0;
  }

  /** Set bits as sorted runs [first, first + count). */
  *runs(): Generator<{ first: number; count: number }> {
    const indexes = [...this.pages.keys()].sort((a, b) => a - b);
    let runStart = -1;
    let runEnd = -1;
    for (const index of indexes) {
      const page = this.pages.get(index)!;
      for (let byte = 0; byte < PAGE_BYTES; byte++) {
        const value = page[byte]!;
        if (value === 0) continue;
        for (let b = 0; b < 8; b++) {
          if ((value & (1 << b)) === 0) continue;
          const bit = index * PAGE_BITS + byte * 8 + b;
          if (bit >= this.bits) continue;
          if (bit === runEnd) {
            runEnd++;
          } else {
            if (runStart >= 0) yield { first: runStart, count: runEnd - runStart };
            runStart = bit;
            runEnd = bit + 1;
          }
        }
      }
    }
    if (runStart >= 0) yield { first: runStart, count: runEnd - runStart };
  }

  /** Serialised as (page index u32, page bytes) pairs: only pages with a bit set. */
  serialize(): Buffer {
    const indexes = [...this.pages.keys()].sort((a, b) => a - b);
    const out = Buffer.alloc(8 + indexes.length * (4 + PAGE_BYTES));
    out.writeUInt32LE(this.bits >>> 0, 0);
    out.writeUInt32LE(Math.floor(this.bits / 2 ** 32), 4);
    let at = 8;
    for (const index of indexes) {
      out.writeUInt32LE(index, at);
      out.set(this.pages.get(index)!, at + 4);
      at += 4 + PAGE_BYTES;
    }
    return out;
  }

  static deserialize(bytes: Buffer): PagedBitmap {
    const bits = bytes.readUInt32LE(0) + bytes.readUInt32LE(4) * 2 ** 32;
    const bitmap = new PagedBitmap(bits);
    for (let at = 8; at + 4 + PAGE_BYTES <= bytes.length; at += 4 + PAGE_BYTES) {
      bitmap.pages.set(bytes.readUInt32LE(at), Uint8Array.from(bytes.subarray(at + 4, at + 4 + PAGE_BYTES)));
    }
    return bitmap;
  }

  /** A copy sized for `bits` (after a volume grows). */
  resized(bits: number): PagedBitmap {
    const copy = new PagedBitmap(bits);
    copy.merge(this);
    return copy;
  }

  memoryBytes(): number {
    return this.pages.size * PAGE_BYTES;
  }
}

/** Converts bit runs to byte extents of a volume of `size` bytes. */
export function runsToExtents(runs: Iterable<{ first: number; count: number }>, granularity: number, size: number): Extent[] {
  const out: Extent[] = [];
  for (const run of runs) {
    const offset = run.first * granularity;
    const end = Math.min(size, (run.first + run.count) * granularity);
    if (end > offset) out.push({ offset, length: end - offset });
  }
  return out;
}
