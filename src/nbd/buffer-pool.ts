/**
 * Reusable read buffers. A fresh buffer for every read reply costs page faults and page
 * zeroing in the kernel, and garbage collection in V8, on every request; a buffer returned
 * here once the socket has sent it is reused by the next read of a similar size.
 */
export class BufferPool {
  /** Free buffers by size class (powers of two). */
  private free = new Map<number, Buffer[]>();
  private pooledBytes = 0;

  constructor(
    private readonly maxPooledBytes: number,
    private readonly smallest = 4096,
    private readonly largest = 32 * 1024 * 1024,
  ) {}

  /** A buffer of exactly `length` bytes (a view of a pooled one); give it back with `release`. */
  acquire(length: number): Buffer {
    const size = this.classOf(length);
    if (size === undefined) return Buffer.allocUnsafe(length);
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.pooledBytes -= size;
      return reused.subarray(0, length);
    }
    return Buffer.allocUnsafeSlow(size).subarray(0, length);
  }

  /** Takes back a buffer from `acquire` once nothing uses it any more. */
  release(buffer: Buffer): void {
    const whole = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.buffer.byteLength - buffer.byteOffset);
    const size = whole.length;
    if (buffer.byteOffset !== 0 || this.classOf(size) !== size || this.pooledBytes + size > this.maxPooledBytes) return;
    let list = this.free.get(size);
    if (!list) {
      list = [];
      this.free.set(size, list);
    }
    list.push(whole);
    this.pooledBytes += size;
  }

  get bytes(): number {
    return this.pooledBytes;
  }

  private classOf(length: number): number | undefined {
    if (length > this.largest) return undefined;
    let size = this.smallest;
    while (size < length) size *= 2;
    return size;
  }
}

/**
 * The server's pools: one for read replies, one for write payloads. Kept apart so that a
 * stream of large writes cannot fill the pool with buffers of a size the reads after it do
 * not use (measured: 4 KiB random reads after a sequential write then allocated every reply
 * afresh and cost 1.2-1.4x the CPU).
 */
export interface BufferPools {
  replies: BufferPool;
  payloads: BufferPool;
  /**
   * The one buffer every client socket of a server reads into (Node's `onread`). Sockets
   * are read one at a time on the event loop, and each chunk is parsed or copied before the
   * loop goes on, so one buffer serves them all.
   */
  input?: Buffer;
}
