/**
 * Bytes received from a socket and not yet parsed, kept as the chunks they arrived in.
 * Appending never copies; taking a frame copies only when it straddles chunks, and then
 * exactly the frame's bytes once, so a long stream costs linear work however it is split.
 *
 * A chunk may be *borrowed*: its memory is the socket's read buffer, valid only until the
 * next read. Frames taken from it are always copies, and `keep` copies what is left of it
 * before the caller returns to the event loop.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** How many chunks from `head` on are borrowed (at most the last one, after `keep`). */
  private borrowed = 0;
  /** Index of the first chunk still holding unread bytes. */
  private head = 0;
  /** Bytes of chunks[head] already consumed. */
  private offset = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer, borrowed = false): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
    if (borrowed) this.borrowed++;
  }

  /** Copies the unread bytes of borrowed chunks, so that the queue owns everything it holds. */
  keep(): void {
    if (this.borrowed === 0) return;
    for (let i = this.chunks.length - this.borrowed; i < this.chunks.length; i++) {
      const from = i === this.head ? this.offset : 0;
      this.chunks[i] = Buffer.from(this.chunks[i]!.subarray(from));
      if (i === this.head) this.offset = 0;
    }
    this.borrowed = 0;
  }

  /** Moves up to `target.length - at` bytes into `target` from `at`; returns how many. */
  takeInto(target: Buffer, at: number): number {
    const count = Math.min(this.total, target.length - at);
    let filled = 0;
    while (filled < count) {
      const chunk = this.chunks[this.head]!;
      const step = Math.min(chunk.length - this.offset, count - filled);
      chunk.copy(target, at + filled, this.offset, this.offset + step);
      filled += step;
      this.advance(step);
    }
    return count;
  }

  /**
   * Removes and returns the next `n` bytes; the caller has checked `length >= n`. Bytes that
   * straddle chunks are copied into a buffer from `allocate`.
   */
  take(n: number, allocate: (n: number) => Buffer = Buffer.allocUnsafe): Buffer {
    if (n > this.total) throw new RangeError(`take(${n}) with ${this.total} bytes queued`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[this.head]!;
    const available = first.length - this.offset;
    if (available >= n && this.head < this.chunks.length - this.borrowed) {
      const view = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return view;
    }
    const out = allocate(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[this.head]!;
      const count = Math.min(chunk.length - this.offset, n - filled);
      chunk.copy(out, filled, this.offset, this.offset + count);
      filled += count;
      this.advance(count);
    }
    return out;
  }

  /** Discards up to `n` bytes; returns how many were discarded. */
  skip(n: number): number {
    const count = Math.min(n, this.total);
    let left = count;
    while (left > 0) {
      const chunk = this.chunks[this.head]!;
      const step = Math.min(chunk.length - this.offset, left);
      this.advance(step);
      left -= step;
    }
    return count;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.offset = 0;
    this.total = 0;
    this.borrowed = 0;
  }

  private advance(n: number): void {
    this.offset += n;
    this.total -= n;
    if (this.offset === this.chunks[this.head]!.length) {
      this.chunks[this.head] = EMPTY;
      if (this.head >= this.chunks.length - this.borrowed) this.borrowed--;
      this.head++;
      this.offset = 0;
      if (this.head === this.chunks.length) {
        this.chunks.length = 0;
        this.head = 0;
      } else if (this.head >= 64 && this.head * 2 >= this.chunks.length) {
        // Drop consumed slots now and then so the array does not grow without bound.
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
    }
  }
}

const EMPTY = Buffer.alloc(0);
