import { Worker } from 'node:worker_threads';
import { RecordType, type JournalRecord } from './record.js';

/** One batch of image writes, as the worker receives it. */
export interface WriteRequest {
  id: number;
  fd: number;
  /** The shared memory the payloads live in. */
  buffers: SharedArrayBuffer[];
  /** Four numbers per write: index into `buffers` (-1: zeros), byte offset, length, file position. */
  table: Float64Array;
}

export interface WriteReply {
  id: number;
  error?: { message: string; code: string | undefined };
}

/**
 * Writes records into image files on one worker thread shared by every volume.
 *
 * Why a thread: measured, the daemon's main thread spent a third of its time issuing the
 * applier's asynchronous image writes, one promise and one thread-pool round trip per record,
 * while it also has to read sockets, encode journal records and answer clients. Here a batch
 * of thousands of records costs the main thread one message. Payloads are not copied: the
 * journal encodes into shared memory, and the worker writes straight from it.
 *
 * The worker writes each batch in order, so records that overlap land oldest first. The
 * caller keeps the file open until its batch is answered (the applier stops before the
 * volume closes the image), since the worker writes to the descriptor by number.
 */
export class ImageWriter {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private nextId = 1;

  async write(fd: number, records: readonly JournalRecord[]): Promise<void> {
    const buffers: SharedArrayBuffer[] = [];
    const indexOf = new Map<SharedArrayBuffer, number>();
    const table = new Float64Array(records.length * 4);
    let n = 0;
    for (const record of records) {
      if (record.type === RecordType.Write) {
        const data = shared(record.data);
        let index = indexOf.get(data.buffer as SharedArrayBuffer);
        if (index === undefined) {
          index = buffers.push(data.buffer as SharedArrayBuffer) - 1;
          indexOf.set(data.buffer as SharedArrayBuffer, index);
        }
        table.set([index, data.byteOffset, data.length, record.offset], n);
      } else if (record.type === RecordType.Zero || record.type === RecordType.Trim) {
        table.set([-1, 0, record.length, record.offset], n);
      } else {
        continue;
      }
      n += 4;
    }
    if (n === 0) return;
    const id = this.nextId++;
    const request: WriteRequest = { id, fd, buffers, table: table.subarray(0, n) };
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

/** `data` itself when it lives in shared memory, otherwise a copy that does. */
function shared(data: Buffer): Buffer {
  if (data.buffer instanceof SharedArrayBuffer) return data;
  const copy = Buffer.from(new SharedArrayBuffer(data.length));
  data.copy(copy);
  return copy;
}

/** The daemon's one image writer. */
export const imageWriter = new ImageWriter();
