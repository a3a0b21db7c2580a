import { spawn } from 'node:child_process';
import { constants as fsConstants, writevSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { classifyError } from './errors.js';
import { loadLibc, type KoffiFunction } from './ffi.js';

/**
 * Modes of everything the daemon creates in its store (and of its sockets): the daemon's user
 * only. Volume data, journals and the sockets that read and rewrite whole volumes must not be
 * open to other local users, so modes are given at creation rather than left to the umask.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Creates a directory, and any missing parents, for the daemon's user only. */
export async function makePrivateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

let privateDepth = 0;
let savedUmask = 0;

/**
 * Runs `fn` with the umask closed to group and others, for what cannot be given a mode when
 * it is made: a unix socket gets its mode from the umask at bind(2), and a chmod afterwards
 * leaves a moment in which anyone could connect. Nested and overlapping calls share one
 * saved umask, which the last of them restores.
 */
export async function withPrivateUmask<T>(fn: () => T | Promise<T>): Promise<T> {
  if (privateDepth++ === 0) savedUmask = process.umask(0o077);
  try {
    return await fn();
  } finally {
    if (--privateDepth === 0) process.umask(savedUmask);
  }
}

/**
 * Paths under `root` (itself included) that group or others may use, for a warning at start:
 * a store made by an older version or by hand may still hold world-readable volume data.
 * Symbolic links are not followed, and `skip` (mount points, such as FUSE mounts whose
 * server may hang a stat) is not entered or looked at.
 */
export async function loosePermissions(root: string, skip: ReadonlySet<string> = new Set()): Promise<string[]> {
  const found: string[] = [];
  const visit = async (file: string): Promise<void> => {
    if (skip.has(file)) return;
    const stat = await fs.lstat(file).catch(() => undefined);
    if (!stat || stat.isSymbolicLink()) return;
    if ((stat.mode & 0o077) !== 0) found.push(file);
    if (!stat.isDirectory()) return;
    const names = await fs.readdir(file).catch(() => [] as string[]);
    await Promise.all(names.map((name) => visit(path.join(file, name))));
  };
  await visit(path.resolve(root));
  return found;
}

/** Makes a directory entry (a create, rename or unlink inside it) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `file` with `data` so that a crash leaves either the old or the new content, never a mix. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const handle = await fs.open(tmp, 'w', PRIVATE_FILE_MODE);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, file);
  await fsyncDir(path.dirname(file));
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

export type CloneMethod = 'reflink' | 'sparse-copy';

/**
 * Copies a file the cheapest way the filesystem allows: a reflink shares every extent and
 * costs the same for any size; otherwise `cp --sparse=always` copies only allocated data,
 * because Node has no lseek(SEEK_DATA) to do that itself.
 */
export async function cloneFile(src: string, dst: string): Promise<CloneMethod> {
  let method: CloneMethod = 'reflink';
  try {
    await fs.copyFile(src, dst, fsConstants.COPYFILE_FICLONE_FORCE);
  } catch {
    method = 'sparse-copy';
    await fs.rm(dst, { force: true });
    await run('cp', ['--sparse=always', '--', src, dst], `copying ${src}`);
  }
  const handle = await fs.open(dst, 'r+');
  try {
    // Both ways of copying take the source's mode, which in a store from an older version
    // may be open to everyone.
    await handle.chmod(PRIVATE_FILE_MODE);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return method;
}

/** fallocate(2) modes (linux/falloc.h). */
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
let fallocate: KoffiFunction | undefined;

/**
 * Deallocates a byte range of an open file, keeping its size; reads of the range then return
 * zeros. fallocate(2) is called through koffi on the thread pool: a punch changes only
 * metadata, but it may wait for the filesystem's journal, and spawning the fallocate tool for
 * each one (the way where koffi cannot load) costs milliseconds of fork and exec. A failed call
 * is run again through the tool, whose message says why.
 */
export async function punchHole(handle: fs.FileHandle, file: string, offset: number, length: number): Promise<void> {
  const ffi = loadLibc();
  if (!(ffi instanceof Error)) {
    fallocate ??= ffi.libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
    const call = fallocate;
    const result = await new Promise<number>((resolve) =>
      call.async(handle.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, (err: unknown, value: number) => resolve(err ? -1 : value)),
    );
    if (result === 0) return;
  }
  await run('fallocate', ['--punch-hole', '--keep-size', '--offset', String(offset), '--length', String(length), file], `freeing space in ${file}`);
}

function run(command: string, args: string[], what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err) => reject(classifyError(err, `${what}: cannot run ${command}`)));
    child.on('close', (code) => {
      if (code === 0) return resolve();
      const err = Object.assign(new Error(`${command} exited ${code}: ${stderr.trim()}`), {
        code: /No space left/i.test(stderr) ? 'ENOSPC' : undefined,
      });
      reject(classifyError(err, what));
    });
  });
}

/** Reads exactly `length` bytes at `position`; bytes past the end of the file read as zeros. */
export async function readFully(handle: fs.FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) {
      buffer.fill(0, done);
      return;
    }
    done += bytesRead;
  }
}

/** Writes all of `buffer` at `position`, looping over short writes. */
export async function writeFully(handle: fs.FileHandle, buffer: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, done, buffer.length - done, position + done);
    done += bytesWritten;
  }
}

/** Writes every buffer of `buffers`, in order, from `position`, looping over short writes. */
export async function writevFully(handle: fs.FileHandle, buffers: Uint8Array[], position: number): Promise<void> {
  let left = buffers;
  let at = position;
  while (left.length > 0) {
    const { bytesWritten } = await handle.writev(left, at);
    at += bytesWritten;
    left = afterBytes(left, bytesWritten);
  }
}

/** The same on the calling thread, for writes small enough that the thread pool costs more. */
export function writevFullySync(fd: number, buffers: Uint8Array[], position: number): void {
  let left = buffers;
  let at = position;
  while (left.length > 0) {
    const written = writevSync(fd, left, at);
    at += written;
    left = afterBytes(left, written);
  }
}

/** What is left of `buffers` once its first `n` bytes are written. */
function afterBytes(buffers: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  let skip = n;
  while (i < buffers.length && skip >= buffers[i]!.length) skip -= buffers[i++]!.length;
  if (i === buffers.length) return [];
  if (n === 0 && i === 0) throw new Error('the write made no progress');
  return [buffers[i]!.subarray(skip), ...buffers.slice(i + 1)];
}
