import { UNSUPPORTED_ERRNOS, errnoName, loadLibc, type KoffiFunction } from './ffi.js';

/**
 * Sending file bytes to a socket without passing them through this process: sendfile(2),
 * guarded by cachestat(2) so that it never waits for the disk on the event loop.
 *
 * Why: a read reply through user space costs two copies on the main thread (page cache to a
 * buffer, buffer to the socket), and measured on 512 MiB sequential reads those two copies
 * were nearly half of the server's samples. sendfile to a unix socket hands the page cache's
 * pages to the socket (Linux 6.5 and later splice them), so the only copy left is the
 * client's own.
 *
 * sendfile reads the file where it is not cached, blocking: hence the cachestat check first,
 * and where cachestat is missing (kernels before 6.5) the whole path is off.
 */

/** cachestat(2)'s number on x86-64 and arm64 (include/uapi/asm-generic/unistd.h). */
const SYS_CACHESTAT = 451;
const PAGE = 4096;
const EAGAIN = 11;
const EBADF = 9;

let sendfile: KoffiFunction | undefined;
let syscall: KoffiFunction | undefined;
let errno: () => number = () => 0;
let available: boolean | undefined;
const range = new BigUint64Array(2);
/** nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted. */
const stat = new BigUint64Array(5);
const at = new BigInt64Array(1);

function load(): boolean {
  if (available !== undefined) return available;
  if (process.arch !== 'x64' && process.arch !== 'arm64') return (available = false);
  const ffi = loadLibc();
  if (ffi instanceof Error) return (available = false);
  sendfile = ffi.libc.func('intptr_t sendfile(int out_fd, int in_fd, _Inout_ int64_t *offset, size_t count)');
  syscall = ffi.libc.func('long syscall(long number, ...)');
  errno = () => ffi.koffi.errno();
  // On no descriptor, a kernel with cachestat answers EBADF; one without, ENOSYS.
  const probe = syscall(SYS_CACHESTAT, 'int', -1, 'uint64_t *', range, 'uint64_t *', stat, 'unsigned int', 0);
  return (available = probe === 0 || errno() === EBADF);
}

/** Whether every page of [offset, offset + length) of `fd` is in the page cache now. */
export function wholeInCache(fd: number, offset: number, length: number): boolean {
  if (!load()) return false;
  const first = Math.floor(offset / PAGE);
  const pages = Math.ceil((offset + length) / PAGE) - first;
  range[0] = BigInt(first * PAGE);
  range[1] = BigInt(pages * PAGE);
  const result = syscall!(SYS_CACHESTAT, 'int', fd, 'uint64_t *', range, 'uint64_t *', stat, 'unsigned int', 0);
  if (result < 0) {
    if (UNSUPPORTED_ERRNOS.has(errno())) available = false;
    return false;
  }
  return stat[0] === BigInt(pages);
}

/**
 * Sends up to `length` bytes of `fd` from `offset` to the non-blocking socket `socket`;
 * returns how many went: fewer when the socket is full, 0 as well where sendfile cannot
 * work on these descriptors (then it is not tried again). Throws on any other error, with
 * the errno's name as its code.
 */
export function sendFromFile(socket: number, fd: number, offset: number, length: number): number {
  if (!load()) return 0;
  let done = 0;
  while (done < length) {
    at[0] = BigInt(offset + done);
    const n = sendfile!(socket, fd, at, length - done);
    if (n > 0) {
      done += n;
      continue;
    }
    if (n === 0) break;
    const code = errno();
    if (code === EAGAIN) break;
    if (UNSUPPORTED_ERRNOS.has(code)) {
      available = false;
      break;
    }
    const name = errnoName(code);
    throw Object.assign(new Error(`sending file bytes to a socket: ${name}`), { code: name });
  }
  return done;
}

/** Whether the path can work here at all (koffi loads; an architecture with cachestat's number known). */
export function sendFileAvailable(): boolean {
  return load();
}

