import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { silentLogger } from '../../src/util/log.js';
import { needing, root, tool, tools } from '../support/requirements.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Mounting an XFS loop filesystem needs root: skipped without it, and failed under CI. */
const xfs = needing([
  root('mounts an XFS loop filesystem'),
  ...tools('losetup', 'mount', 'umount', 'mkfs.xfs'),
  tool('filefrag', 'apt-get install e2fsprogs'),
]);

const pattern = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed + (i >> 12)) & 0xff));

/** Bytes of `file` that filefrag reports in extents marked shared (reflinked). */
function sharedBytes(file: string): number {
  const out = execFileSync('filefrag', ['-v', '-b1024', file], { encoding: 'utf8' });
  let shared = 0;
  for (const line of out.split('\n')) {
    // "   0:        0..     255:      12345..     12600:    256:             shared"
    const match = /^\s*\d+:\s+\d+\.\.\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+):.*\bshared\b/.exec(line);
    if (match) shared += Number(match[1]) * KiB;
  }
  return shared;
}

xfs.describe('a store on XFS', () => {
  let dir: string;
  let loop: string | undefined;
  let mnt: string;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-reflink-'));
    const backing = path.join(dir, 'xfs.img');
    await fs.writeFile(backing, '');
    await fs.truncate(backing, 512 * MiB);
    loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
    execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', loop]);
    mnt = path.join(dir, 'mnt');
    await fs.mkdir(mnt);
    execFileSync('mount', [loop, mnt]);
  });

  afterEach(async () => {
    execFileSync('umount', [mnt]);
    if (loop) execFileSync('losetup', ['-d', loop]);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('journals large aligned writes so that the image shares their blocks, and reads them back after a reopen', async () => {
    const store = path.join(mnt, 'store');
    const writes = [
      { offset: 1 * MiB, data: pattern(4 * MiB, 1) }, // large and aligned: shared
      { offset: 8 * MiB, data: pattern(256 * KiB, 2) }, // aligned: shared
      { offset: 12 * MiB + 512, data: pattern(128 * KiB, 3) }, // not on a block: copied
      { offset: 14 * MiB, data: pattern(4 * KiB, 4) }, // small: copied
    ];
    let engine = await Engine.open({ store, logger: silentLogger(), upkeepIntervalMs: 0 });
    try {
      await engine.createVolume('v', { size: 16 * MiB });
      for (const { offset, data } of writes) {
        for (let at = 0; at < data.length; at += 256 * KiB) await engine.write('v', offset + at, data.subarray(at, at + 256 * KiB));
      }
      await engine.flush('v');
    } finally {
      // Closing checkpoints, which brings the image up to the newest record.
      await engine.close();
    }
    const image = path.join(store, 'volumes', 'v', 'image');
    const bytes = await fs.readFile(image);
    for (const { offset, data } of writes) expect(bytes.subarray(offset, offset + data.length).equals(data)).toBe(true);
    // The aligned 4 MiB + 256 KiB share the journal's blocks; the others were copied.
    const shared = sharedBytes(image);
    expect(shared).toBeGreaterThanOrEqual(4 * MiB + 256 * KiB);
    expect(shared).toBeLessThan(4 * MiB + 256 * KiB + 128 * KiB);

    engine = await Engine.open({ store, logger: silentLogger(), upkeepIntervalMs: 0 });
    try {
      for (const { offset, data } of writes) expect((await engine.read('v', offset, data.length)).equals(data)).toBe(true);
    } finally {
      await engine.close();
    }
  });
});
