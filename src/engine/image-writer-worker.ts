import { readSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { UNSUPPORTED_ERRNOS, errnoName, loadLibc, type KoffiFunction } from '../util/ffi.js';
import type { WriteRequest, WriteReply } from './image-writer.js';

/**
 * The image writer's thread (see image-writer.ts): runs each request's writes in order with
 * plain blocking calls, which cost this thread microseconds each and the daemon's main thread
 * nothing.
 */
const ZEROS = new Uint8Array(1024 * 1024);
/** For copies where copy_file_range cannot work (another filesystem, an old kernel). */
const SCRATCH = Buffer.allocUnsafe(1024 * 1024);
/** What copy_file_range answers where it cannot copy these files at all; then read and write. */
const NO_KERNEL_COPY = new Set([constants.errno.EXDEV, ...UNSUPPORTED_ERRNOS]);

let copyFileRange: KoffiFunction | undefined;
let errno: () => number = () => 0;
let kernelCopy = true;
/** posix_fadvise, or null where koffi cannot load: the pages then stay until reclaimed. */
let fadvise: KoffiFunction | null | undefined;
/** The pages of a range will not be read again soon (linux/fadvise.h). */
const POSIX_FADV_DONTNEED = 4;

function loadCopyFileRange(): KoffiFunction | undefined {
  if (!kernelCopy) return undefined;
  if (copyFileRange) return copyFileRange;
  const ffi = loadLibc();
  if (ffi instanceof Error) {
    kernelCopy = false;
    return undefined;
  }
  copyFileRange = ffi.libc.func('intptr_t copy_file_range(int fd_in, _Inout_ int64_t *off_in, int fd_out, _Inout_ int64_t *off_out, size_t len, unsigned int flags)');
  errno = () => ffi.koffi.errno();
  return copyFileRange;
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

function journalEnded(position: number): Error {
  return Object.assign(new Error(`the journal ends at byte ${position}, before data a record says is there`), { code: 'EIO' });
}

/** Copies `length` bytes from `source` at `from` to `fd` at `to`; returns how many it copied in the kernel. */
function copyInKernel(source: number, from: number, fd: number, to: number, length: number): number {
  const call = loadCopyFileRange();
  if (!call) return 0;
  const fromAt = new BigInt64Array([BigInt(from)]);
  const toAt = new BigInt64Array([BigInt(to)]);
  let done = 0;
  while (done < length) {
    const n = call(source, fromAt, fd, toAt, length - done, 0);
    if (n > 0) {
      done += n;
      continue;
    }
    if (n === 0) throw journalEnded(from + done);
    const code = errno();
    if (NO_KERNEL_COPY.has(code)) {
      kernelCopy = false;
      return done;
    }
    const name = errnoName(code);
    throw Object.assign(new Error(`copying journaled data into the image: ${name}`), { code: name });
  }
  return done;
}

function copy(source: number, from: number, fd: number, to: number, length: number): void {
  let done = copyInKernel(source, from, fd, to, length);
  while (done < length) {
    const n = readSync(source, SCRATCH, 0, Math.min(SCRATCH.length, length - done), from + done);
    if (n === 0) throw journalEnded(from + done);
    writeAll(fd, SCRATCH.subarray(0, n), to + done);
    done += n;
  }
}

/**
 * Copies the small writes of rows [first, last] (consecutive in one segment) with one read of
 * the span they lie in and a write each. Measured: copy_file_range costs more than a read and
 * a write for a 4 KiB record, and the records of a batch of small writes lie side by side in
 * the journal, a header apart.
 */
function copySmall(table: Float64Array, first: number, last: number, fd: number): void {
  const start = table[first + 1]!;
  const span = table[last + 1]! + table[last + 2]! - start;
  const source = table[first]!;
  let filled = 0;
  while (filled < span) {
    const n = readSync(source, SCRATCH, filled, span - filled, start + filled);
    if (n === 0) throw journalEnded(start + filled);
    filled += n;
  }
  for (let i = first; i <= last; i += 4) {
    const at = table[i + 1]! - start;
    writeAll(fd, SCRATCH.subarray(at, at + table[i + 2]!), table[i + 3]!);
  }
}

/** Where the run of small copies starting at row `first` ends (its last row). */
function smallRun(table: Float64Array, first: number): number {
  const source = table[first]!;
  const start = table[first + 1]!;
  let last = first;
  let end = start + table[first + 2]!;
  for (let i = first + 4; i < table.length; i += 4) {
    const from = table[i + 1]!;
    const length = table[i + 2]!;
    if (table[i] !== source || length >= SMALL_COPY || from < end || from - end > MAX_GAP || from + length - start > SCRATCH.length) break;
    last = i;
    end = from + length;
  }
  return last;
}

/** Copies below this size are read and written; larger ones go through copy_file_range. */
const SMALL_COPY = 64 * 1024;
/** Bytes between two small copies that one read may span (a record header is 40). */
const MAX_GAP = 4096;

function loadFadvise(): KoffiFunction | null {
  if (fadvise !== undefined) return fadvise;
  const ffi = loadLibc();
  return (fadvise = ffi instanceof Error ? null : ffi.libc.func('int posix_fadvise(int fd, int64_t offset, int64_t len, int advice)'));
}

/**
 * Drops the journal bytes a batch copied from the page cache. Why: they are durable (the
 * applier copies nothing else) and now in the image, so only a restore or a replay reads them
 * again, and those can read the disk. Left cached, every journaled byte holds a page until
 * reclaim finds it, evicting image pages that reads want. On VMs that hand free memory back
 * to their host (virtio-balloon free page reporting) it costs more: there a write to a new
 * file slowed from 0.2 s to 1.6-1.9 s per 512 MiB once the cache had grown by about a
 * gigabyte (`dd ... conv=fdatasync` with and without `oflag=nocache`), all of it in the
 * kernel's copy into fresh pages. Pages freed here are the ones the next appends get.
 *
 * Each call covers its segment from the start to the last byte copied: everything before
 * that is older, so durable and applied too. The kernel keeps any page (or large folio) the
 * range covers only in part; starting from 0, the next batch's call takes it.
 */
function releaseSources(table: Float64Array): void {
  const call = loadFadvise();
  if (!call) return;
  const ends = new Map<number, number>();
  for (let i = 0; i < table.length; i += 4) {
    const source = table[i]!;
    if (source >= 0) ends.set(source, Math.max(ends.get(source) ?? 0, table[i + 1]! + table[i + 2]!));
  }
  // Advice only: a refusal changes nothing the volume relies on.
  for (const [source, end] of ends) call(source, 0, end, POSIX_FADV_DONTNEED);
}

function run(request: WriteRequest): void {
  const { fd, table, memory } = request;
  for (let i = 0; i < table.length; i += 4) {
    const source = table[i]!;
    const from = table[i + 1]!;
    const length = table[i + 2]!;
    const to = table[i + 3]!;
    if (source >= 0 && length < SMALL_COPY) {
      const last = smallRun(table, i);
      copySmall(table, i, last, fd);
      i = last;
    } else if (source >= 0) {
      copy(source, from, fd, to, length);
    } else if (source <= -2) {
      writeAll(fd, new Uint8Array(memory[-2 - source]!, from, length), to);
    } else {
      for (let at = 0; at < length; at += ZEROS.length) writeAll(fd, ZEROS.subarray(0, Math.min(ZEROS.length, length - at)), to + at);
    }
  }
}

parentPort!.on('message', (request: WriteRequest) => {
  let reply: WriteReply;
  try {
    run(request);
    releaseSources(request.table);
    reply = { id: request.id };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    reply = { id: request.id, error: { message: e.message, code: e.code } };
  }
  parentPort!.postMessage(reply);
});
