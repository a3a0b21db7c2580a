import { readSync } from 'node:fs';
import type * as fs from 'node:fs/promises';
import { UNSUPPORTED_ERRNOS, loadLibc } from './ffi.js';
import { readFully } from './files.js';

/**
 * Reads that the page cache can serve, done on the calling thread.
 *
 * Why: a read through Node's thread pool costs a hand-off to a pool thread and a wake-up of
 * the event loop; measured on 256 KiB reads of a cached file that is 75–80 µs against 35–45 µs
 * for the same read done inline. Blocking the event loop on a disk read would stall every
 * other volume, so the inline read uses preadv2 with RWF_NOWAIT: the kernel copies what is
 * cached and returns EAGAIN rather than wait for the disk. Whatever it could not serve goes
 * through the thread pool as before.
 *
 * preadv2 is not in Node's fs, so it goes through koffi (ffi.ts). Where koffi or RWF_NOWAIT
 * is missing, every read takes the pool.
 */

/** Tells preadv2 not to wait for I/O (linux/fs.h). */
const RWF_NOWAIT = 0x8;

let preadv2: ((fd: number, iov: { base: Uint8Array; len: number }, count: number, offset: number, flags: number) => number) | undefined;
let errno: () => number = () => 0;
let available: boolean | undefined;

function load(): boolean {
  if (available !== undefined) return available;
  const ffi = loadLibc();
  if (ffi instanceof Error) return (available = false);
  const iovec = ffi.koffi.struct({ base: 'void *', len: 'size_t' });
  preadv2 = ffi.libc.func('preadv2', 'intptr_t', ['int', ffi.koffi.pointer(iovec), 'int', 'int64_t', 'int']);
  errno = () => ffi.koffi.errno();
  return (available = true);
}

/**
 * Reads into `target` from `position` as far as the page cache holds the bytes, without
 * waiting for the disk; returns how many bytes it read (0 when nothing was cached, the file
 * ended, or inline reads are not available here). The caller reads the rest the usual way.
 */
export function readCached(fd: number, target: Buffer, position: number): number {
  if (!load()) return 0;
  let done = 0;
  while (done < target.length) {
    const n = preadv2!(fd, { base: target.subarray(done), len: target.length - done }, 1, position + done, RWF_NOWAIT);
    if (n > 0) {
      done += n;
      continue;
    }
    // EAGAIN: the rest is not cached. Any other error is left for the normal read to report.
    if (n < 0 && UNSUPPORTED_ERRNOS.has(errno())) available = false;
    break;
  }
  return done;
}

/**
 * Reads up to this much inline: a larger read that is cached would hold the event loop for
 * long, and through the thread pool its hand-off costs little beside the copy.
 */
const INLINE_READ_BYTES = 1024 * 1024;

/**
 * Reads exactly `target.length` bytes at `position`: what is cached inline, the rest through
 * the pool. Returns undefined when the page cache held it all, so that the caller need not
 * wait a turn of the event loop for a read that is done.
 */
export function readCachedFirst(handle: fs.FileHandle, target: Buffer, position: number): Promise<void> | undefined {
  const cached = target.length <= INLINE_READ_BYTES ? readCached(handle.fd, target, position) : 0;
  if (cached < target.length) return readFully(handle, target.subarray(cached), position + cached);
  return undefined;
}

/**
 * Reads exactly `target.length` bytes at `position` on this thread, for a caller that has
 * just seen the range in the page cache: what is still cached without waiting, and the rest
 * (pages evicted since) with a blocking read.
 */
export function readNow(fd: number, target: Buffer, position: number): void {
  let done = readCached(fd, target, position);
  while (done < target.length) {
    const n = readSync(fd, target, done, target.length - done, position + done);
    if (n === 0) throw Object.assign(new Error(`the file ends at byte ${position + done}, before the bytes to send`), { code: 'EIO' });
    done += n;
  }
}
