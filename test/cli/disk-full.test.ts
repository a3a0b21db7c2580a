import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { DaemonProcess, pattern, tidemark } from './harness.js';

const MiB = 1024 * 1024;

/** Mounting a tmpfs needs root; outside CI the test says so and passes, under CI it fails. */
const isRoot = process.getuid?.() === 0;
const requireRoot = () => {
  if (isRoot) return true;
  if (process.env.CI === 'true') throw new Error('the disk-full test needs root to mount a tmpfs (run the suite as root in CI)');
  console.warn('skipping the disk-full test: it needs root to mount a small tmpfs (mount from util-linux)');
  return false;
};

describe('tidemark on a full disk', () => {
  it('exits 7 and says the disk is full', async () => {
    if (!requireRoot()) return;
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-full-'));
    const store = path.join(dir, 'store');
    await fs.mkdir(store);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', store]);
    let daemon: DaemonProcess | undefined;
    try {
      daemon = await DaemonProcess.start(store);
      const created = await tidemark(['--store', store, 'volume', 'create', 'big', '--size', '64Mi']);
      expect(created.code).toBe(0);
      const file = path.join(dir, 'data.bin');
      await fs.writeFile(file, pattern(16 * MiB, 7));
      const result = await tidemark(['--store', store, 'volume', 'write', 'big', '--file', file]);
      expect(result.code).toBe(7);
      expect(result.stderr).toMatch(/^tidemark: .*disk full/);
      // The daemon survives and still answers.
      expect((await tidemark(['--store', store, 'volume', 'info', 'big'])).code).toBe(0);
    } finally {
      await daemon?.stop();
      execFileSync('umount', [store]);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
