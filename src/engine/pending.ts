import type { PayloadPlace } from './journal.js';

/** Memory one pending extent costs: the object, its place and its index slots. */
const EXTENT_MEMORY = 160;
/**
 * Bytes of written data pending changes may keep in memory (PayloadPlace.memory) per volume.
 * Past it a change keeps only its place, and the applier reads it back from the journal. The
 * applier holds writers back well before (one batch is up to 32 MiB): this is the hard bound.
 */
const MAX_HELD_DATA_BYTES = 160 * 1024 * 1024;
/** The index's buckets span 2^20 bytes (1 MiB) of the volume. */
const BUCKET_SHIFT = 20;
/** An extent over more buckets than this goes to one list that every lookup scans. */
const MAX_BUCKETS_PER_EXTENT = 64;

/** One journaled change the image does not hold yet. */
export interface PendingExtent {
  sequence: number;
  offset: number;
  length: number;
  /** Where the written bytes lie in the journal; undefined when the change writes zeros. */
  source: PayloadPlace | undefined;
}

/** A list that drops from its front without moving the rest. */
interface Queue {
  items: (PendingExtent | undefined)[];
  head: number;
}

/**
 * Changes that are in the journal but not yet in the image, oldest first, indexed by where
 * they lie in the volume. Mostly only their places are held, not their bytes: reads of these
 * ranges and the applier both take the bytes from the journal, so how far the image may fall
 * behind is a matter of journal space, not memory. Writes the journal wrote past the page
 * cache keep their bytes here too, up to MAX_HELD_DATA_BYTES, since reading them back would
 * go to the disk. The image only takes a change once the journal
 * holds it durably, so that after a power cut the image never shows a write the journal lost
 * (the durability contract's prefix).
 */
export class PendingWrites {
  private readonly order: Queue = { items: [], head: 0 };
  private readonly buckets = new Map<number, Queue>();
  /** Extents too long for the buckets (a large trim, say); there are few of them. */
  private readonly wide: Queue = { items: [], head: 0 };
  private lag = 0;
  private held = 0;

  /** Bytes of written data the pending changes keep in memory. */
  get heldDataBytes(): number {
    return this.held;
  }

  /** Bytes of the volume the pending changes cover, counting overlaps again. */
  get bytes(): number {
    return this.lag;
  }

  /** Memory the index takes. */
  get memoryBytes(): number {
    return this.count * EXTENT_MEMORY;
  }

  get count(): number {
    return this.order.items.length - this.order.head;
  }

  /** The oldest pending change's sequence, or undefined when nothing is pending. */
  get firstSequence(): number | undefined {
    return this.order.items[this.order.head]?.sequence;
  }

  /** The newest pending change's sequence, or undefined when nothing is pending. */
  get lastSequence(): number | undefined {
    return this.count > 0 ? this.order.items[this.order.items.length - 1]!.sequence : undefined;
  }

  /** Adds changes, which must be newer than every one already pending. */
  add(extents: readonly PendingExtent[]): void {
    for (let extent of extents) {
      if (extent.length === 0) continue;
      const memory = extent.source?.memory;
      if (memory && this.held + extent.length > MAX_HELD_DATA_BYTES) {
        memory.release();
        extent = { ...extent, source: { file: extent.source!.file, position: extent.source!.position } };
      } else if (memory) {
        this.held += extent.length;
      }
      this.order.items.push(extent);
      this.lag += extent.length;
      const [first, last] = bucketsOf(extent.offset, extent.length);
      if (last - first >= MAX_BUCKETS_PER_EXTENT) {
        this.wide.items.push(extent);
        continue;
      }
      for (let b = first; b <= last; b++) {
        const bucket = this.buckets.get(b);
        if (bucket) bucket.items.push(extent);
        else this.buckets.set(b, { items: [extent], head: 0 });
      }
    }
  }

  /** The oldest changes with sequence ≤ `through`, up to about `maxBytes` of them. */
  peek(through: number, maxBytes: number): PendingExtent[] {
    const out: PendingExtent[] = [];
    let bytes = 0;
    const { items } = this.order;
    for (let i = this.order.head; i < items.length && bytes < maxBytes; i++) {
      const extent = items[i]!;
      if (extent.sequence > through) break;
      out.push(extent);
      bytes += extent.length;
    }
    return out;
  }

  /** Forgets the `n` oldest changes, once the image holds them, and releases their bytes in memory. */
  drop(n: number): void {
    for (let i = 0; i < n; i++) {
      const extent = shift(this.order)!;
      this.lag -= extent.length;
      if (extent.source?.memory) {
        this.held -= extent.length;
        extent.source.memory.release();
      }
      const [first, last] = bucketsOf(extent.offset, extent.length);
      if (last - first >= MAX_BUCKETS_PER_EXTENT) {
        shift(this.wide);
        continue;
      }
      // Changes leave oldest first, so in each of its buckets this one is at the front.
      for (let b = first; b <= last; b++) {
        const bucket = this.buckets.get(b)!;
        shift(bucket);
        if (bucket.head === bucket.items.length) this.buckets.delete(b);
      }
    }
  }

  /** Pending changes that touch [offset, offset + length), oldest first. */
  overlapping(offset: number, length: number): PendingExtent[] {
    if (this.count === 0 || length === 0) return [];
    const found = new Set<PendingExtent>();
    const touches = (e: PendingExtent) => e.offset < offset + length && offset < e.offset + e.length;
    const collect = (queue: Queue) => {
      for (let i = queue.head; i < queue.items.length; i++) {
        const extent = queue.items[i]!;
        if (touches(extent)) found.add(extent);
      }
    };
    const [first, last] = bucketsOf(offset, length);
    if (last - first + 1 <= this.buckets.size) {
      for (let b = first; b <= last; b++) {
        const bucket = this.buckets.get(b);
        if (bucket) collect(bucket);
      }
    } else {
      for (const bucket of this.buckets.values()) collect(bucket);
    }
    collect(this.wide);
    return [...found].sort((a, b) => a.sequence - b.sequence);
  }
}

function bucketsOf(offset: number, length: number): [number, number] {
  return [Math.floor(offset / 2 ** BUCKET_SHIFT), Math.floor((offset + Math.max(length, 1) - 1) / 2 ** BUCKET_SHIFT)];
}

function shift(queue: Queue): PendingExtent | undefined {
  const item = queue.items[queue.head];
  if (item === undefined) return undefined;
  queue.items[queue.head] = undefined;
  queue.head++;
  if (queue.head === queue.items.length) {
    queue.items = [];
    queue.head = 0;
  } else if (queue.head > 4096 && queue.head * 2 > queue.items.length) {
    queue.items = queue.items.slice(queue.head);
    queue.head = 0;
  }
  return item;
}

/** Reads `into.length` bytes of journaled write data, starting `skip` bytes into a change's data. */
export type PayloadReader = (source: PayloadPlace, skip: number, into: Buffer) => Promise<void>;

/**
 * Lays pending changes (oldest first, so the newest wins) over `target`, which holds the
 * image's bytes from `offset`; written bytes come from the journal through `read`.
 */
export async function overlay(extents: readonly PendingExtent[], offset: number, target: Buffer, read: PayloadReader): Promise<void> {
  const end = offset + target.length;
  for (const extent of extents) {
    const from = Math.max(offset, extent.offset);
    const to = Math.min(end, extent.offset + extent.length);
    if (from >= to) continue;
    const into = target.subarray(from - offset, to - offset);
    if (extent.source) await read(extent.source, from - extent.offset, into);
    else into.fill(0);
  }
}
