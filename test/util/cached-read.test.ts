import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { readCached } from '../../src/util/cached-read.js';
import { readFully } from '../../src/util/files.js';

const MiB = 1024 * 1024;

describe('readCached', () => {
  let dir: string;
  let file: string;
  let data: Buffer;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-cached-read-'));
    file = path.join(dir, 'data');
    data = randomBytes(4 * MiB);
    await fs.writeFile(file, data);
  });

  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('reads cached bytes in full, at any offset', async () => {
    const fd = fsSync.openSync(file, 'r');
    try {
      const target = Buffer.alloc(MiB + 123);
      expect(readCached(fd, target, 777)).toBe(target.length);
      expect(target.equals(data.subarray(777, 777 + target.length))).toBe(true);
    } finally {
      fsSync.closeSync(fd);
    }
  });

  it('stops at the end of the file and leaves the rest to the caller', async () => {
    const fd = fsSync.openSync(file, 'r');
    try {
      const target = Buffer.alloc(8192, 0xff);
      expect(readCached(fd, target, data.length - 4096)).toBe(4096);
      expect(target.subarray(0, 4096).equals(data.subarray(data.length - 4096))).toBe(true);
      expect(readCached(fd, target, data.length)).toBe(0);
    } finally {
      fsSync.closeSync(fd);
    }
  });

  it('does not wait for the disk: bytes dropped from the page cache are left to the normal read', async () => {
    const handle = await fs.open(file, 'r+');
    try {
      await handle.sync();
      // dd with iflag=nocache and no blocks to copy asks the kernel to drop the file's pages.
      const dropped = spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
      expect(dropped.status).toBe(0);
      const target = Buffer.alloc(data.length);
      const cached = readCached(handle.fd, target, 0);
      expect(cached).toBeLessThan(target.length);
      await readFully(handle, target.subarray(cached), cached);
      expect(target.equals(data)).toBe(true);
    } finally {
      await handle.close();
    }
  });
});
