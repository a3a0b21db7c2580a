import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { cloneFile, loosePermissions, punchHole, writevFully, writevFullySync } from '../../src/util/files.js';

let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-files-'));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('store file modes', () => {
  it('finds every path that group or others may use, without following links or entering skipped mounts', async () => {
    const root = path.join(dir, 'store');
    await fs.mkdir(path.join(root, 'volumes', 'v'), { recursive: true });
    await fs.mkdir(path.join(root, 'mnt', 'inside'), { recursive: true });
    await fs.writeFile(path.join(root, 'volumes', 'v', 'image'), 'data');
    await fs.writeFile(path.join(root, 'volumes', 'v', 'private'), 'data');
    await fs.writeFile(path.join(root, 'mnt', 'inside', 'file'), 'data');
    await fs.symlink('/etc/passwd', path.join(root, 'link'));
    for (const d of [root, path.join(root, 'volumes'), path.join(root, 'volumes', 'v'), path.join(root, 'mnt')]) await fs.chmod(d, 0o700);
    await fs.chmod(path.join(root, 'volumes', 'v', 'private'), 0o600);
    await fs.chmod(path.join(root, 'volumes', 'v', 'image'), 0o640);
    await fs.chmod(path.join(root, 'mnt', 'inside'), 0o777);
    expect(await loosePermissions(root, new Set([path.join(root, 'mnt', 'inside')]))).toEqual([path.join(root, 'volumes', 'v', 'image')]);
    await fs.chmod(root, 0o711);
    expect((await loosePermissions(root)).sort()).toEqual([root, path.join(root, 'mnt', 'inside'), path.join(root, 'mnt', 'inside', 'file'), path.join(root, 'volumes', 'v', 'image')].sort());
    expect(await loosePermissions(path.join(dir, 'missing'))).toEqual([]);
  });

  it("gives a copy the daemon's private mode, not its source's", async () => {
    const source = path.join(dir, 'source');
    await fs.writeFile(source, Buffer.alloc(65536, 7));
    await fs.chmod(source, 0o644);
    const copy = path.join(dir, 'copy');
    await cloneFile(source, copy);
    expect((await fs.stat(copy)).mode & 0o777).toBe(0o600);
    expect((await fs.readFile(copy)).equals(Buffer.alloc(65536, 7))).toBe(true);
  });
});

describe('punchHole', () => {
  it('frees the range and keeps the size; the range then reads as zeros', async () => {
    const file = path.join(dir, 'image');
    const MiB = 1024 * 1024;
    await fs.writeFile(file, Buffer.alloc(4 * MiB, 0x5a));
    const handle = await fs.open(file, 'r+');
    try {
      await handle.sync();
      const before = await handle.stat();
      await punchHole(handle, file, MiB, 2 * MiB);
      const after = await handle.stat();
      expect(after.size).toBe(before.size);
      // st_blocks counts 512-byte units: 2 MiB fewer of them.
      expect(before.blocks - after.blocks).toBe((2 * MiB) / 512);
      const data = await fs.readFile(file);
      expect(data.subarray(MiB, 3 * MiB).equals(Buffer.alloc(2 * MiB))).toBe(true);
      expect(data.subarray(0, MiB).equals(Buffer.alloc(MiB, 0x5a))).toBe(true);
      expect(data.subarray(3 * MiB).equals(Buffer.alloc(MiB, 0x5a))).toBe(true);
    } finally {
      await handle.close();
    }
  });

  it('reports a refused punch with the reason fallocate gives', async () => {
    const file = path.join(dir, 'image');
    await fs.writeFile(file, Buffer.alloc(8192));
    const handle = await fs.open(file, 'r');
    try {
      // The call fails on a read-only descriptor; the tool it falls back to, given a path that
      // does not exist, fails too and says why.
      await expect(punchHole(handle, path.join(dir, 'missing'), 0, 4096)).rejects.toMatchObject({ message: expect.stringContaining('freeing space in') });
    } finally {
      await handle.close();
    }
  });
});

describe('writevFully', () => {
  // More buffers than one writev call takes (IOV_MAX is 1024), so the helpers must go on
  // from wherever a call stopped.
  const buffers = Array.from({ length: 3000 }, (_, i) => Buffer.alloc((i % 7) * 3 + 1, 0x41 + (i % 26)));
  const expected = Buffer.concat(buffers);

  it('writes every buffer in order, from the thread pool and from the calling thread', async () => {
    const file = path.join(dir, 'out');
    const handle = await fs.open(file, 'w+');
    try {
      await writevFully(handle, buffers, 5);
      writevFullySync(handle.fd, buffers, 5 + expected.length);
    } finally {
      await handle.close();
    }
    const bytes = await fs.readFile(file);
    expect(bytes.subarray(0, 5)).toEqual(Buffer.alloc(5));
    expect(bytes.subarray(5, 5 + expected.length).equals(expected)).toBe(true);
    expect(bytes.subarray(5 + expected.length).equals(expected)).toBe(true);
  });
});
