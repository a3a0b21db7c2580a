import { Worker } from 'node:worker_threads';

/** One batch of image writes, as the worker receives it. */
export interface WriteRequest {
  id: number;
  /** The image file. */
  fd: number;
  /**
   * Four numbers per write: where the bytes come from, the position there, the length, and
   * the position in the image. The source is a descriptor to copy from, -1 to write zeros,
   * or -2 - k to write from `memory[k]`. What is copied from a descriptor must be durable:
   * once copied, the worker drops it from the page cache.
   */
  table: Float64Array;
  memory: SharedArrayBuffer[];
}

export interface WriteReply {
  id: number;
  error?: { message: string; code: string | undefined };
}

/** Builds an image writer's table, row by row. */
export class WriteTable {
  private rows = new Float64Array(4 * 64);
  private n = 0;
  private readonly memory: SharedArrayBuffer[] = [];
  private readonly memoryIndex = new Map<SharedArrayBuffer, number>();

  get length(): number {
    return this.n / 4;
  }

  copy(source: number, from: number, length: number, to: number): void {
    this.row(source, from, length, to);
  }

  zeros(length: number, to: number): void {
    this.row(-1, 0, length, to);
  }

  /** A write of bytes in shared memory, which the worker reads in place. */
  fromMemory(bytes: Uint8Array, to: number): void {
    const buffer = bytes.buffer as SharedArrayBuffer;
    let k = this.memoryIndex.get(buffer);
    if (k === undefined) {
      k = this.memory.push(buffer) - 1;
      this.memoryIndex.set(buffer, k);
    }
    this.row(-2 - k, bytes.byteOffset, bytes.length, to);
  }

  done(): { table: Float64Array; memory: SharedArrayBuffer[] } {
    return { table: this.rows.subarray(0, this.n), memory: this.memory };
  }

  private row(a: number, b: number, c: number, d: number): void {
    if (this.n + 4 > this.rows.length) {
      const grown = new Float64Array(this.rows.length * 2);
      grown.set(this.rows);
      this.rows = grown;
    }
    this.rows[this.n++] = a;
    this.rows[this.n++] = b;
    this.rows[this.n++] = c;
    this.rows[this.n++] = d;
  }
}

/**
 * Writes journaled data into image files on one worker thread shared by every volume.
 *
 * Why a thread: measured, the daemon's main thread spent a third of its time issuing the
 * applier's asynchronous image writes, one promise and one thread-pool round trip per record,
 * while it also has to read sockets, write the journal and answer clients. Here a batch of
 * thousands of records costs the main thread one message. The bytes are not handled in user
 * space at all where the kernel can help: the worker copies them from the journal's segment
 * file to the image with copy_file_range(2).
 *
 * The worker writes each batch in order, so records that overlap land oldest first. The
 * caller keeps every file open until its batch is answered (the applier stops before the
 * volume closes the image, and no segment with unapplied records is freed), since the worker
 * uses the descriptors by number.
 */
export class ImageWriter {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private nextId = 1;

  async write(fd: number, table: WriteTable): Promise<void> {
    if (table.length === 0) return;
    const id = this.nextId++;
    const request: WriteRequest = { id, fd, ...table.done() };
    const done = new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    const worker = this.started();
    // Held only while a batch is out, so an idle writer never keeps the process alive.
    if (this.waiting.size === 1) worker.ref();
    worker.postMessage(request);
    return done;
  }

  /** Ends the thread; batches still out fail. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    // execArgv: the parent's flags (an --input-type, a test runner's loader) are not the
    // worker's business and some of them refuse a file entry point.
    const worker = new Worker(new URL('./image-writer-worker.js', import.meta.url), { execArgv: [] });
    worker.on('message', (reply: WriteReply) => this.answered(reply));
    worker.on('error', (err) => this.failAll(err));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = undefined;
      this.failAll(new Error(`the image writer thread exited (code ${code})`));
    });
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private answered(reply: WriteReply): void {
    const waiter = this.waiting.get(reply.id);
    if (!waiter) return;
    this.waiting.delete(reply.id);
    if (this.waiting.size === 0) this.worker?.unref();
    if (!reply.error) return waiter.resolve();
    waiter.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
  }

  private failAll(err: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(err);
    this.waiting.clear();
  }
}

/** The daemon's one image writer. */
export const imageWriter = new ImageWriter();
