import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { classifyError } from './errors.js';

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
  const handle = await fs.open(tmp, 'w', 0o600);
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
    await handle.sync();
  } finally {
    await handle.close();
  }
  return method;
}

/** Deallocates a byte range of a file, keeping its size; reads of the range then return zeros. */
export async function punchHole(file: string, offset: number, length: number): Promise<void> {
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
