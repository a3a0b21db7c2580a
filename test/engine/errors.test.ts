import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';

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

describe('disk full', () => {
  const isRoot = process.getuid?.() === 0;

  /** Mounts a 16 MiB tmpfs for the test, or returns undefined when the test has to skip. */
  async function smallDisk(): Promise<string | undefined> {
    if (!isRoot) {
      if (process.env.CI === 'true') throw new Error('this test mounts a tmpfs and needs root (mount, from util-linux)');
      console.warn('skipped: the disk-full test mounts a small tmpfs and needs root (mount, from util-linux)');
      return undefined;
    }
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
    if (!mountPoint) return;
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

  it('refuses writes with RESOURCE_EXHAUSTED and loses nothing acknowledged once space is back', async () => {
    const mountPoint = await smallDisk();
    if (!mountPoint) return;
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
