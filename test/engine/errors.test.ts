import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';
import { needing, root, tools } from '../support/requirements.js';
import { captureLogger } from './fixtures/capture-logger.js';

const KiB = 1024;
const MiB = 1024 * 1024;

/**
 * Calls `fn` and reports how it failed. A call that returns a promise must report errors by
 * rejecting it: callers that chain `.then(ok, fail)` (the NBD reply path does) never see a
 * synchronous throw.
 */
async function failure(fn: () => Promise<unknown>): Promise<string> {
  let promise: Promise<unknown>;
  try {
    promise = fn();
  } catch (err) {
    return `threw synchronously: ${err instanceof TidemarkError ? err.code : String(err)}`;
  }
  try {
    await promise;
  } catch (err) {
    return err instanceof TidemarkError ? err.code : `not a TidemarkError: ${String(err)}`;
  }
  return 'succeeded';
}

describe('engine errors', () => {
  let store: string;
  let engine: Engine;

  beforeEach(async () => {
    store = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-errors-'));
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    await engine.createVolume('v', { size: 64 * KiB });
  });

  afterEach(async () => {
    await engine.close();
    await fs.rm(store, { recursive: true, force: true });
  });

  it.each<[string, string, (e: Engine) => Promise<unknown>]>([
    ['read of a missing volume', 'NOT_FOUND', (e) => e.read('nope', 0, 1)],
    ['read past the end', 'OUT_OF_RANGE', (e) => e.read('v', 64 * KiB, 1)],
    ['write to a missing volume', 'NOT_FOUND', (e) => e.write('nope', 0, Buffer.alloc(1))],
    ['write past the end', 'OUT_OF_RANGE', (e) => e.write('v', 64 * KiB - 1, Buffer.alloc(2))],
    ['write at a negative offset', 'INVALID_ARGUMENT', (e) => e.write('v', -1, Buffer.alloc(1))],
    ['zero of a missing volume', 'NOT_FOUND', (e) => e.zero('nope', 0, 1)],
    ['zero past the end', 'OUT_OF_RANGE', (e) => e.zero('v', 0, 64 * KiB + 1)],
    ['flush of a missing volume', 'NOT_FOUND', (e) => e.flush('nope')],
    ['createVolume with a bad name', 'INVALID_ARGUMENT', (e) => e.createVolume('~x', { size: 4096 })],
    ['deleteVolume of a missing volume', 'NOT_FOUND', (e) => e.deleteVolume('nope')],
    ['createSnapshot of a missing volume', 'NOT_FOUND', (e) => e.createSnapshot('nope', 's')],
    ['createSnapshot with a bad name', 'INVALID_ARGUMENT', (e) => e.createSnapshot('v', '-s')],
    ['deleteSnapshot of a missing volume', 'NOT_FOUND', (e) => e.deleteSnapshot('nope', 's')],
    ['createMarker with no volume', 'INVALID_ARGUMENT', (e) => e.createMarker('m', [])],
    ['restore of a missing volume', 'NOT_FOUND', (e) => e.restore({ volume: 'nope', source: { sequence: 0 } })],
    ['restore with unaligned ranges', 'INVALID_ARGUMENT', (e) => e.restore({ volume: 'v', source: { sequence: 0 }, ranges: [{ offset: 1, length: 4096 }] })],
    ['setRetention of a missing volume', 'NOT_FOUND', (e) => e.setRetention('nope', { maxBytes: MiB })],
    ['setRetention with a bad policy', 'INVALID_ARGUMENT', (e) => e.setRetention('v', { maxBytes: -1 })],
    ['enforceRetention of a missing volume', 'NOT_FOUND', (e) => e.enforceRetention('nope')],
  ])('%s rejects with %s', async (_what, code, call) => {
    expect(await failure(() => call(engine))).toBe(code);
  });

  it('refuses I/O on a closed engine without crashing', async () => {
    await engine.close();
    expect(await failure(() => engine.write('v', 0, Buffer.alloc(1)))).toBe('NOT_FOUND');
    expect(await failure(() => engine.read('v', 0, 1))).toBe('NOT_FOUND');
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
  });
});

needing([root('the disk-full tests mount a small tmpfs'), ...tools('mount', 'umount')]).describe('disk full', () => {
  /** Mounts a 16 MiB tmpfs for the test. */
  async function smallDisk(): Promise<string> {
    const mountPoint = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-full-'));
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mountPoint], { encoding: 'utf8' });
    if (mount.status !== 0) {
      await fs.rm(mountPoint, { recursive: true, force: true });
      throw new Error(`mount -t tmpfs failed: ${mount.stderr}`);
    }
    return mountPoint;
  }

  async function unmount(mountPoint: string): Promise<void> {
    spawnSync('umount', [mountPoint]);
    await fs.rm(mountPoint, { recursive: true, force: true });
  }

  it('a journal append that does not fit fails alone, and the volume carries on', async () => {
    const mountPoint = await smallDisk();
    let engine: Engine | undefined;
    try {
      const store = path.join(mountPoint, 'store');
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      await engine.createVolume('v', { size: 8 * MiB });
      const first = randomBytes(64 * KiB);
      const s1 = await engine.write('v', 0, first, { fua: true });
      // Leave 128 KiB free: too little for a 256 KiB journal record.
      const { bavail, bsize } = await fs.statfs(mountPoint);
      await fs.writeFile(path.join(mountPoint, 'filler'), Buffer.alloc(bavail * bsize - 128 * KiB));
      expect(await failure(() => engine!.write('v', MiB, randomBytes(256 * KiB), { fua: true }))).toBe('RESOURCE_EXHAUSTED');
      const small = randomBytes(4096);
      const s2 = await engine.write('v', 2 * MiB, small, { fua: true });
      // Sequence numbers stay dense across the failure, or recovery would stop at the gap.
      expect(s2).toBe(s1 + 1);
      expect((await engine.read('v', MiB, 256 * KiB)).equals(Buffer.alloc(256 * KiB))).toBe(true);
      expect((await engine.read('v', 2 * MiB, 4096)).equals(small)).toBe(true);
      await fs.rm(path.join(mountPoint, 'filler'));
      await engine.close();
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      expect((await engine.read('v', 0, 64 * KiB)).equals(first)).toBe(true);
      expect((await engine.read('v', MiB, 256 * KiB)).equals(Buffer.alloc(256 * KiB))).toBe(true);
      expect((await engine.read('v', 2 * MiB, 4096)).equals(small)).toBe(true);
      expect(engine.volumeInfo('v').sequence).toBe(s2);
    } finally {
      await engine?.close().catch(() => undefined);
      await unmount(mountPoint);
    }
  });

  it('an image write that does not fit stops nothing: reads go on, and writes resume once space is back', async () => {
    const mountPoint = await smallDisk();
    let engine: Engine | undefined;
    try {
      const store = path.join(mountPoint, 'store');
      const { logger, entries } = captureLogger();
      engine = await Engine.open({ store, logger, upkeepIntervalMs: 0 });
      await engine.createVolume('v', { size: 8 * MiB });
      const first = randomBytes(64 * KiB);
      await engine.write('v', 0, first, { fua: true });
      // A snapshot waits for the image to take every write, so none takes space after the count.
      await engine.createSnapshot('v', 'settled');
      // Room for the journal record of a 256 KiB write, and not for its image write too.
      const { bavail, bsize } = await fs.statfs(mountPoint);
      await fs.writeFile(path.join(mountPoint, 'filler'), Buffer.alloc(bavail * bsize - 384 * KiB));
      const acknowledged = randomBytes(256 * KiB);
      await engine.write('v', MiB, acknowledged, { fua: true });
      // A snapshot needs the image caught up, which it cannot be: it fails, saying why.
      expect(await failure(() => engine!.createSnapshot('v', 'full'))).toBe('RESOURCE_EXHAUSTED');
      expect(entries.map((e) => e.message)).toContain('image write failed: the disk is full; reads and journal appends go on, image writes are retried');
      // Reads are served from the journaled records the image still lacks.
      expect((await engine.read('v', MiB, 256 * KiB)).equals(acknowledged)).toBe(true);
      expect((await engine.read('v', 0, 64 * KiB)).equals(first)).toBe(true);
      // The journal is full too now: new writes are refused as a full disk.
      expect(await failure(() => engine!.write('v', 2 * MiB, randomBytes(64 * KiB), { fua: true }))).toBe('RESOURCE_EXHAUSTED');

      // Space comes back: writes work again at once, without a restart.
      await fs.rm(path.join(mountPoint, 'filler'));
      const later = randomBytes(64 * KiB);
      await engine.write('v', 2 * MiB, later, { fua: true });
      await engine.createSnapshot('v', 's');
      expect((await engine.read('v', MiB, 256 * KiB)).equals(acknowledged)).toBe(true);
      expect((await engine.read('v', 2 * MiB, 64 * KiB)).equals(later)).toBe(true);
      expect((await fs.readFile(engine.snapshotImagePath('v', 's'))).subarray(MiB, MiB + 256 * KiB).equals(acknowledged)).toBe(true);
      expect(entries.map((e) => e.message)).toContain('image writes resumed after a full disk');
      await engine.close();
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      expect((await engine.read('v', 0, 64 * KiB)).equals(first)).toBe(true);
      expect((await engine.read('v', MiB, 256 * KiB)).equals(acknowledged)).toBe(true);
      expect((await engine.read('v', 2 * MiB, 64 * KiB)).equals(later)).toBe(true);
    } finally {
      await engine?.close().catch(() => undefined);
      await unmount(mountPoint);
    }
  });

  it('a batch whose journal append fails half way keeps the part that was journaled, as the journal does', async () => {
    const mountPoint = await smallDisk();
    let engine: Engine | undefined;
    try {
      const store = path.join(mountPoint, 'store');
      engine = await Engine.open({ store, upkeepIntervalMs: 0, segmentSize: MiB });
      await engine.createVolume('v', { size: 8 * MiB });
      await engine.write('v', 0, randomBytes(600 * KiB), { fua: true });
      // A snapshot waits for the image to take every write, so none takes space after the count.
      await engine.createSnapshot('v', 'settled');
      const { bavail, bsize } = await fs.statfs(mountPoint);
      await fs.writeFile(path.join(mountPoint, 'filler'), Buffer.alloc(bavail * bsize - 400 * KiB));
      // Queued in one synchronous run, the two go out as one batch: the first fits in the
      // current segment, the second needs a new one and finds no room.
      const journaled = randomBytes(300 * KiB);
      const b = engine.write('v', 2 * MiB, journaled);
      const c = engine.write('v', 4 * MiB, randomBytes(300 * KiB));
      expect([await failure(() => b), await failure(() => c)]).toEqual(['RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED']);
      await fs.rm(path.join(mountPoint, 'filler'));
      // The volume and a rebuild from its journal agree on what the failed batch left.
      await engine.createMarker('after', ['v']);
      await engine.restore({ volume: 'v', source: { marker: 'after' }, target: 'rebuilt' });
      const live = await engine.read('v', 0, 8 * MiB);
      expect(live.subarray(2 * MiB, 2 * MiB + 300 * KiB).equals(journaled)).toBe(true);
      expect((await engine.read('rebuilt', 0, 8 * MiB)).equals(live)).toBe(true);
      await engine.close();
      engine = await Engine.open({ store, upkeepIntervalMs: 0, segmentSize: MiB });
      expect((await engine.read('v', 0, 8 * MiB)).equals(live)).toBe(true);
    } finally {
      await engine?.close().catch(() => undefined);
      await unmount(mountPoint);
    }
  });

  it('refuses writes with RESOURCE_EXHAUSTED and loses nothing acknowledged once space is back', async () => {
    const mountPoint = await smallDisk();
    let engine: Engine | undefined;
    try {
      const store = path.join(mountPoint, 'store');
      engine = await Engine.open({ store, upkeepIntervalMs: 0, segmentSize: 4 * MiB });
      await engine.createVolume('v', { size: 64 * MiB });
      const chunk = 256 * KiB;
      const acknowledged = new Map<number, Buffer>();
      let refused = 0;
      let firstRefusal: TidemarkError | undefined;
      // Distinct offsets, so a write that failed never overlaps one that was acknowledged.
      for (let i = 0; i < 256 && refused < 5; i++) {
        const data = randomBytes(chunk);
        try {
          await engine.write('v', i * chunk, data, { fua: i % 2 === 0 });
          acknowledged.set(i * chunk, data);
        } catch (err) {
          expect(err).toBeInstanceOf(TidemarkError);
          expect((err as TidemarkError).code).toBe('RESOURCE_EXHAUSTED');
          firstRefusal ??= err as TidemarkError;
          refused++;
        }
        if (i % 4 === 3) await engine.flush('v').catch(() => undefined);
      }
      expect(firstRefusal?.message).toMatch(/disk full/);
      expect(acknowledged.size).toBeGreaterThan(8);
      expect(acknowledged.size).toBeLessThan(64);
      // A snapshot cannot be copied either, and says why.
      const snapshot = await failure(() => engine!.createSnapshot('v', 's'));
      expect(['RESOURCE_EXHAUSTED', 'succeeded']).toContain(snapshot);

      // Space comes back; after a restart every acknowledged write is there.
      expect(spawnSync('mount', ['-o', 'remount,size=128m', mountPoint]).status).toBe(0);
      await engine.close();
      engine = await Engine.open({ store, upkeepIntervalMs: 0, segmentSize: 4 * MiB });
      for (const [offset, data] of acknowledged) {
        expect([offset, (await engine.read('v', offset, chunk)).equals(data)]).toEqual([offset, true]);
      }
      // And the volume works again, history included.
      await engine.createMarker('after', ['v']);
      await engine.write('v', 0, Buffer.alloc(4096, 1));
      await engine.restore({ volume: 'v', source: { marker: 'after' } });
      const first = acknowledged.get(0);
      if (first) expect((await engine.read('v', 0, 4096)).equals(first.subarray(0, 4096))).toBe(true);
    } finally {
      await engine?.close().catch(() => undefined);
      await unmount(mountPoint);
    }
  });
});

needing([root('the file size limit test mounts an ext4 loop device'), ...tools('mount', 'umount', 'mkfs.ext4')]).describe('volume sizes the filesystem cannot hold', () => {
  const TiB = 1024 * 1024 * MiB;

  /** Mounts a small ext4 filesystem with 4 KiB blocks (files of at most 16 TiB) from a loop device. */
  async function ext4(): Promise<string> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-ext4-'));
    const image = path.join(dir, 'fs.img');
    await fs.writeFile(image, '');
    await fs.truncate(image, 64 * MiB);
    const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', '-b', '4096', image], { encoding: 'utf8' });
    if (mkfs.status !== 0) throw new Error(`mkfs.ext4 failed: ${mkfs.stderr}`);
    await fs.mkdir(path.join(dir, 'mnt'));
    const mount = spawnSync('mount', ['-o', 'loop', image, path.join(dir, 'mnt')], { encoding: 'utf8' });
    if (mount.status !== 0) throw new Error(`mount -o loop failed: ${mount.stderr}`);
    return dir;
  }

  it('refuses a size past the limit with OUT_OF_RANGE naming the limit, and leaves nothing behind', async () => {
    const dir = await ext4();
    let engine: Engine | undefined;
    try {
      const store = path.join(dir, 'mnt', 'store');
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      const err = await engine.createVolume('huge', { size: 17 * TiB }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TidemarkError);
      expect((err as TidemarkError).code).toBe('OUT_OF_RANGE');
      expect((err as TidemarkError).message).toMatch(/^volume size 17\.0 TiB \(18691697672192 bytes\) is more than the store's filesystem \(ext4\) allows for one file: at most 16\.0 TiB \(\d+ bytes\)$/);
      const limit = Number((err as TidemarkError).details.limit);
      expect(limit).toBeGreaterThan(15 * TiB);
      expect(limit).toBeLessThanOrEqual(16 * TiB);
      expect(await fs.readdir(path.join(store, 'volumes'))).toEqual([]);
      expect(engine.listVolumes()).toEqual([]);

      // Growing past it fails the same way, before anything is journaled.
      await engine.createVolume('v', { size: MiB });
      const data = randomBytes(4 * KiB);
      await engine.write('v', 0, data, { fua: true });
      expect(await failure(() => engine!.resizeVolume('v', 17 * TiB))).toBe('OUT_OF_RANGE');
      expect(engine.volumeInfo('v').size).toBe(MiB);
      await engine.resizeVolume('v', TiB);
      await engine.close();
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      expect(engine.volumeInfo('v').size).toBe(TiB);
      expect((await engine.read('v', 0, 4 * KiB)).equals(data)).toBe(true);
    } finally {
      await engine?.close().catch(() => undefined);
      spawnSync('umount', ['-l', path.join(dir, 'mnt')]);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
