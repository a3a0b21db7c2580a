import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestClient } from '../nbd/fixtures/nbd-client.js';
import { needing, root, tools } from '../support/requirements.js';
import { DaemonProcess, json, pattern, tidemark } from './harness.js';

const MiB = 1024 * 1024;

/** Mounting a tmpfs or an ext4 loop device needs root: skipped without it, and failed under CI. */
const mounting = needing([root('mounts a small tmpfs and an ext4 loop device'), ...tools('mount', 'umount', 'mkfs.ext4')]);

mounting.describe('tidemark on a full disk', () => {
  it('exits 7 and says the disk is full; reads go on, and writes work again once space is back, without a restart', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-full-'));
    const store = path.join(dir, 'store');
    await fs.mkdir(store);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', store]);
    let daemon: DaemonProcess | undefined;
    try {
      daemon = await DaemonProcess.start(store);
      const created = await tidemark(['--store', store, 'volume', 'create', 'big', '--size', '64Mi']);
      expect(created.code).toBe(0);
      const { client } = await TestClient.open(path.join(store, 'nbd.sock'), 'big');
      const file = path.join(dir, 'data.bin');
      const data = pattern(16 * MiB, 7);
      await fs.writeFile(file, data);
      const result = await tidemark(['--store', store, 'volume', 'write', 'big', '--file', file]);
      expect(result.code).toBe(7);
      expect(result.stderr).toMatch(/^tidemark: .*disk full/);
      // The daemon survives and still answers.
      expect((await tidemark(['--store', store, 'volume', 'info', 'big'])).code).toBe(0);
      // Reads work, on the open connection and on new ones: what was written before the disk
      // filled up is there (a failed write leaves its own range undefined, so only the first
      // MiB, written and acknowledged before, is compared).
      const before = await tidemark(['--store', store, 'volume', 'read', 'big', '--length', '1Mi']);
      expect(before.code).toBe(0);
      expect(before.stdout.equals(data.subarray(0, MiB))).toBe(true);
      const nbdRead = await client.readAt(0, 64 * 1024);
      expect(nbdRead.error).toBe(0);
      expect(nbdRead.data!.equals(data.subarray(0, 64 * 1024))).toBe(true);

      // Space comes back: writes work again through both paths, on the same connection.
      execFileSync('mount', ['-o', 'remount,size=128m', store]);
      const small = path.join(dir, 'small.bin');
      await fs.writeFile(small, pattern(MiB, 8));
      expect((await tidemark(['--store', store, 'volume', 'write', 'big', '--offset', '32Mi', '--file', small])).code).toBe(0);
      expect((await client.write(48 * MiB, pattern(4096, 9), 1)).error).toBe(0);
      const after = await tidemark(['--store', store, 'volume', 'read', 'big', '--offset', '32Mi', '--length', '1Mi']);
      expect(after.stdout.equals(pattern(MiB, 8))).toBe(true);
      expect((await client.readAt(48 * MiB, 4096)).data!.equals(pattern(4096, 9))).toBe(true);
      expect(json(await tidemark(['--store', store, 'volume', 'info', 'big', '--json']))).toMatchObject({ holders: [expect.stringMatching(/^nbd:/)] });
      client.close();
    } finally {
      await daemon?.stop();
      execFileSync('umount', [store]);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

mounting.describe('tidemark on a filesystem with a file size limit', () => {
  it('refuses a volume larger than one file may be with exit 2, naming the limit, and leaves nothing behind', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-ext4-'));
    const image = path.join(dir, 'fs.img');
    const store = path.join(dir, 'store');
    await fs.writeFile(image, '');
    await fs.truncate(image, 64 * MiB);
    execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', image]);
    await fs.mkdir(store);
    execFileSync('mount', ['-o', 'loop', image, store]);
    let daemon: DaemonProcess | undefined;
    try {
      daemon = await DaemonProcess.start(store);
      const result = await tidemark(['--store', store, 'volume', 'create', 'huge', '--size', '17Ti']);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^tidemark: volume size 17\.0 TiB \(18691697672192 bytes\) is more than the store's filesystem \(ext4\) allows for one file: at most 16\.0 TiB \(\d+ bytes\)\n$/);
      expect(json(await tidemark(['--store', store, 'volume', 'list', '--json']))).toEqual([]);
      expect(await fs.readdir(path.join(store, 'volumes'))).toEqual([]);
    } finally {
      await daemon?.stop();
      execFileSync('umount', [store]);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
