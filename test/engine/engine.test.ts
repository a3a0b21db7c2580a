import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';
import { needing, root, tool } from '../support/requirements.js';

const KiB = 1024;
const MiB = 1024 * 1024;

/** The error code of a call, whether it throws or rejects; undefined when it succeeds. */
async function codeOf(fn: () => unknown): Promise<string | undefined> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof TidemarkError) return err.code;
    throw err;
  }
  return undefined;
}

const fill = (length: number, byte: number) => Buffer.alloc(length, byte);

/** Waits until the wall clock has moved on, so records before and after carry different times. */
async function nextMillisecond(): Promise<void> {
  const now = Date.now();
  while (Date.now() <= now) await new Promise((resolve) => setImmediate(resolve));
}

describe('engine API', () => {
  let store: string;
  let engine: Engine;

  beforeEach(async () => {
    store = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-engine-'));
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
  });

  afterEach(async () => {
    await engine.close();
    await fs.rm(store, { recursive: true, force: true });
  });

  describe('names', () => {
    const valid = ['a', 'A', '0', '_x', 'pvc-0a1b2c3d.data_1', 'x'.repeat(253)];
    const invalid = ['', '-a', '.a', '~base', 'a/b', '../a', 'a b', 'a:b', 'ä', 'x'.repeat(254), 'a\n'];

    it.each(valid)('accepts the volume, snapshot and marker name %j', async (name) => {
      await engine.createVolume(name, { size: 64 * KiB });
      await engine.createSnapshot(name, name);
      await engine.createMarker(name, [name]);
      expect(engine.listSnapshots(name).map((s) => s.name)).toEqual([name]);
      expect(engine.listMarkers(name).map((m) => m.name)).toEqual([name]);
    });

    it.each(invalid)('refuses the name %j everywhere a name is given', async (name) => {
      expect(await codeOf(() => engine.createVolume(name, { size: 64 * KiB }))).toBe('INVALID_ARGUMENT');
      await engine.createVolume('v', { size: 64 * KiB });
      expect(await codeOf(() => engine.createSnapshot('v', name))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.createMarker(name, ['v']))).toBe('INVALID_ARGUMENT');
      await engine.createSnapshot('v', 's');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { snapshot: 's' }, target: name }))).toBe('INVALID_ARGUMENT');
      expect(engine.listVolumes().map((v) => v.name)).toEqual(['v']);
      expect(engine.listSnapshots('v').map((s) => s.name)).toEqual(['s']);
      expect(engine.listMarkers('v')).toEqual([]);
      // Nothing half-made may be left in the store either.
      expect(await fs.readdir(path.join(store, 'volumes'))).toEqual(['v']);
    });
  });

  describe('volume options', () => {
    it('fills in defaults and reports what it made', async () => {
      const info = await engine.createVolume('v', { size: MiB });
      expect(info).toMatchObject({ name: 'v', size: MiB, blockSize: 4096, granularity: 64 * KiB, sequence: 0, earliestRecoverableSequence: 0, snapshotCount: 0, markerCount: 0, holders: [] });
      expect(info.retention).toEqual({});
      expect(engine.volumeInfo('v')).toEqual(info);
      const small = await engine.createVolume('w', { size: 64 * KiB, blockSize: 512 });
      expect(small.granularity).toBe(64 * KiB);
      const big = await engine.createVolume('x', { size: 256 * KiB, blockSize: 65536 });
      expect(big.granularity).toBe(65536);
    });

    it.each([
      ['size zero', { size: 0 }],
      ['negative size', { size: -4096 }],
      ['fractional size', { size: 4096.5 }],
      ['NaN size', { size: NaN }],
      ['size beyond 2^53', { size: 2 ** 53 + 4096 }],
      ['size not a multiple of the block size', { size: 64 * KiB + 512, blockSize: 4096 }],
      ['block size below 512', { size: 64 * KiB, blockSize: 256 }],
      ['block size not a power of two', { size: 64 * KiB, blockSize: 3000 }],
      ['block size above 64 KiB', { size: 256 * KiB, blockSize: 128 * KiB }],
      ['granularity below the block size', { size: 64 * KiB, blockSize: 4096, granularity: 2048 }],
      ['granularity not a power of two', { size: 64 * KiB, granularity: 5000 }],
      ['granularity above 64 MiB', { size: 64 * KiB, granularity: 128 * MiB }],
      ['retention of zero bytes', { size: 64 * KiB, retention: { maxBytes: 0 } }],
      ['retention of a fractional byte count', { size: 64 * KiB, retention: { maxBytes: 1.5 } }],
      ['retention of negative age', { size: 64 * KiB, retention: { maxAgeSeconds: -1 } }],
      ['retention of infinite age', { size: 64 * KiB, retention: { maxAgeSeconds: Infinity } }],
    ])('refuses %s with INVALID_ARGUMENT', async (_what, options) => {
      expect(await codeOf(() => engine.createVolume('v', options))).toBe('INVALID_ARGUMENT');
      expect(engine.has('v')).toBe(false);
    });

    it('validates a retention change the same way and keeps the old one', async () => {
      await engine.createVolume('v', { size: 64 * KiB, retention: { maxBytes: MiB } });
      expect(await codeOf(() => engine.setRetention('v', { maxBytes: -1 }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.setRetention('v', { maxAgeSeconds: 0 }))).toBe('INVALID_ARGUMENT');
      expect(engine.volumeInfo('v').retention).toEqual({ maxBytes: MiB });
      expect((await engine.setRetention('v', { maxAgeSeconds: 3600 })).retention).toEqual({ maxAgeSeconds: 3600 });
    });
  });

  describe('duplicates and missing objects', () => {
    beforeEach(async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      await engine.createVolume('w', { size: 64 * KiB });
    });

    it('refuses a second volume, snapshot or marker of the same name with ALREADY_EXISTS', async () => {
      await engine.write('v', 0, fill(4096, 1));
      expect(await codeOf(() => engine.createVolume('v', { size: 128 * KiB }))).toBe('ALREADY_EXISTS');
      expect(engine.volumeInfo('v').size).toBe(64 * KiB);
      expect((await engine.read('v', 0, 4096)).equals(fill(4096, 1))).toBe(true);
      await engine.createSnapshot('v', 's');
      expect(await codeOf(() => engine.createSnapshot('v', 's'))).toBe('ALREADY_EXISTS');
      await engine.createMarker('m', ['v']);
      expect(await codeOf(() => engine.createMarker('m', ['v']))).toBe('ALREADY_EXISTS');
      // A snapshot or marker name is per volume.
      await engine.createSnapshot('w', 's');
      await engine.createMarker('m', ['w']);
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { snapshot: 's' }, target: 'w' }))).toBe('ALREADY_EXISTS');
    });

    it('lets exactly one of two concurrent creations of a name succeed', async () => {
      const results = await Promise.allSettled([engine.createVolume('x', { size: 64 * KiB }), engine.createVolume('x', { size: 128 * KiB })]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failure = results.find((r) => r.status === 'rejected');
      expect((failure?.reason as TidemarkError).code).toBe('ALREADY_EXISTS');
      const size = engine.volumeInfo('x').size;
      await engine.write('x', size - 4096, fill(4096, 1));
      expect((await engine.read('x', size - 4096, 4096)).equals(fill(4096, 1))).toBe(true);
      const restores = await Promise.allSettled([
        engine.restore({ volume: 'v', source: { sequence: 0 }, target: 'y' }),
        engine.restore({ volume: 'w', source: { sequence: 0 }, target: 'y' }),
      ]);
      expect(restores.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect((restores.find((r) => r.status === 'rejected')?.reason as TidemarkError).code).toBe('ALREADY_EXISTS');
      expect((await fs.readdir(path.join(store, 'volumes'))).sort()).toEqual(['v', 'w', 'x', 'y']);
    });

    it('records no part of a group marker when one volume already has the name', async () => {
      await engine.createMarker('m', ['w']);
      expect(await codeOf(() => engine.createMarker('m', ['v', 'w']))).toBe('ALREADY_EXISTS');
      expect(engine.listMarkers('v')).toEqual([]);
      expect(engine.listMarkers('w').map((m) => m.group)).toEqual(['']);
    });

    it('reports NOT_FOUND for every operation on a missing volume', async () => {
      const calls: [string, () => unknown][] = [
        ['read', () => engine.read('nope', 0, 1)],
        ['write', () => engine.write('nope', 0, fill(1, 1))],
        ['zero', () => engine.zero('nope', 0, 1)],
        ['flush', () => engine.flush('nope')],
        ['volumeInfo', () => engine.volumeInfo('nope')],
        ['deleteVolume', () => engine.deleteVolume('nope')],
        ['createSnapshot', () => engine.createSnapshot('nope', 's')],
        ['listSnapshots', () => engine.listSnapshots('nope')],
        ['deleteSnapshot', () => engine.deleteSnapshot('nope', 's')],
        ['snapshotImagePath', () => engine.snapshotImagePath('nope', 's')],
        ['createMarker', () => engine.createMarker('m', ['v', 'nope'])],
        ['listMarkers', () => engine.listMarkers('nope')],
        ['restore', () => engine.restore({ volume: 'nope', source: { sequence: 0 } })],
        ['diff', () => engine.diff('nope', 's')],
        ['allocated', () => engine.allocated('nope')],
        ['hold', () => engine.hold('nope', 'h')],
        ['setRetention', () => engine.setRetention('nope', { maxBytes: MiB })],
        ['enforceRetention', () => engine.enforceRetention('nope')],
      ];
      for (const [what, call] of calls) expect([what, await codeOf(call)]).toEqual([what, 'NOT_FOUND']);
      expect(engine.listMarkers('v')).toEqual([]);
      // Releasing what is not held is harmless.
      engine.release('nope', 'h');
    });

    it('reports NOT_FOUND for a missing snapshot or marker', async () => {
      await engine.createSnapshot('v', 's');
      expect(await codeOf(() => engine.deleteSnapshot('v', 'other'))).toBe('NOT_FOUND');
      expect(await codeOf(() => engine.diff('v', 'other'))).toBe('NOT_FOUND');
      expect(await codeOf(() => engine.diff('v', 's', 'other'))).toBe('NOT_FOUND');
      expect(await codeOf(() => engine.snapshotImagePath('v', 'other'))).toBe('NOT_FOUND');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { snapshot: 'other' } }))).toBe('NOT_FOUND');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { marker: 'other' } }))).toBe('NOT_FOUND');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { marker: 'other' }, target: 'n' }))).toBe('NOT_FOUND');
      expect(engine.has('n')).toBe(false);
      // Snapshots of another volume are not this volume's.
      expect(await codeOf(() => engine.restore({ volume: 'w', source: { snapshot: 's' } }))).toBe('NOT_FOUND');
    });
  });

  describe('data path', () => {
    it('reads back what was written, zeroed and trimmed, with increasing sequence numbers', async () => {
      await engine.createVolume('v', { size: 256 * KiB, blockSize: 512 });
      const a = await engine.write('v', 100, fill(5000, 7), { fua: true });
      const b = await engine.zero('v', 1000, 1000);
      const c = await engine.zero('v', 3000, 512, { trim: true, fua: true });
      const d = await engine.write('v', 256 * KiB - 1, fill(1, 9));
      expect([a, b, c, d]).toEqual([1, 2, 3, 4]);
      expect(await engine.flush('v')).toBe(4);
      const expected = Buffer.alloc(256 * KiB);
      expected.fill(7, 100, 5100).fill(0, 1000, 2000).fill(0, 3000, 3512);
      expected[256 * KiB - 1] = 9;
      expect((await engine.read('v', 0, 256 * KiB)).equals(expected)).toBe(true);
      expect((await engine.read('v', 256 * KiB, 0)).length).toBe(0);
      expect(engine.volumeInfo('v').sequence).toBe(4);
    });

    it('zeroes large ranges by freeing space, and rewinds across them', async () => {
      await engine.createVolume('v', { size: 4 * MiB });
      const data = Buffer.alloc(4 * MiB);
      for (let i = 0; i < data.length; i += 4096) data.fill((i / 4096) % 250 + 1, i, i + 4096);
      await engine.write('v', 0, data);
      await engine.createMarker('full', ['v']);
      await engine.zero('v', 512 * KiB, 2 * MiB, { trim: true });
      await engine.zero('v', 3 * MiB, MiB + 0);
      const expected = Buffer.from(data).fill(0, 512 * KiB, 512 * KiB + 2 * MiB).fill(0, 3 * MiB);
      expect((await engine.read('v', 0, 4 * MiB)).equals(expected)).toBe(true);
      // The image takes the zeroes once the journal holds them durably: after a flush, soon.
      await engine.flush('v');
      const allocated = async () => (await fs.stat(path.join(store, 'volumes', 'v', 'image'))).blocks * 512;
      for (let i = 0; i < 500 && (await allocated()) >= 4 * MiB; i++) await new Promise((r) => setTimeout(r, 10));
      expect(await allocated()).toBeLessThan(4 * MiB);
      const result = await engine.restore({ volume: 'v', source: { marker: 'full' } });
      expect(result.bytesTotal).toBe(3 * MiB);
      expect((await engine.read('v', 0, 4 * MiB)).equals(data)).toBe(true);
    });

    it('splits writes larger than a record, across restore windows, and rebuilds each part', async () => {
      await engine.createVolume('v', { size: 24 * MiB });
      await engine.createMarker('empty', ['v']);
      const big = Buffer.alloc(17 * MiB);
      for (let i = 0; i < big.length; i += 512) big.writeUInt32LE(i, i);
      const at = 3 * MiB + 100;
      const sequence = await engine.write('v', at, big);
      // 17 MiB make three records of at most 8 MiB; the call returns the last one.
      expect(sequence).toBe(4);
      await engine.createMarker('big', ['v']);
      await engine.write('v', 7 * MiB, fill(MiB, 0xee));
      await engine.restore({ volume: 'v', source: { marker: 'big' }, ranges: [{ offset: 6 * MiB, length: 2 * MiB }] });
      const expected = Buffer.alloc(24 * MiB);
      big.copy(expected, at);
      expect((await engine.read('v', 0, 24 * MiB)).equals(expected)).toBe(true);
      // The first record alone holds the first 8 MiB.
      await engine.restore({ volume: 'v', source: { sequence: 2 }, target: 'part' });
      const part = Buffer.alloc(24 * MiB);
      big.copy(part, at, 0, 8 * MiB);
      expect((await engine.read('part', 0, 24 * MiB)).equals(part)).toBe(true);
      await engine.restore({ volume: 'v', source: { marker: 'empty' } });
      expect((await engine.read('v', 0, 24 * MiB)).equals(Buffer.alloc(24 * MiB))).toBe(true);
    });

    it('refuses I/O outside the volume without changing it', async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      expect(await codeOf(() => engine.write('v', 64 * KiB - 10, fill(11, 1)))).toBe('OUT_OF_RANGE');
      expect(await codeOf(() => engine.write('v', 64 * KiB, fill(1, 1)))).toBe('OUT_OF_RANGE');
      expect(await codeOf(() => engine.zero('v', 0, 64 * KiB + 1))).toBe('OUT_OF_RANGE');
      expect(await codeOf(() => engine.read('v', 1, 64 * KiB))).toBe('OUT_OF_RANGE');
      expect(await codeOf(() => engine.read('v', -1, 1))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.write('v', 0.5, fill(1, 1)))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.zero('v', 0, -1))).toBe('INVALID_ARGUMENT');
      expect(engine.volumeInfo('v').sequence).toBe(0);
      expect((await engine.read('v', 0, 64 * KiB)).equals(Buffer.alloc(64 * KiB))).toBe(true);
    });

    it('applies overlapping writes issued together in issue order', async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      const writes = Array.from({ length: 50 }, (_, i) => engine.write('v', (i * 1000) % 8192, fill(4096, i + 1)));
      const sequences = await Promise.all(writes);
      expect(sequences).toEqual(sequences.slice().sort((x, y) => x - y));
      const expected = Buffer.alloc(64 * KiB);
      for (let i = 0; i < 50; i++) expected.fill(i + 1, (i * 1000) % 8192, ((i * 1000) % 8192) + 4096);
      expect((await engine.read('v', 0, 64 * KiB)).equals(expected)).toBe(true);
    });

    it('keeps volumes, data, snapshots, markers and settings across a restart', async () => {
      await engine.createVolume('v', { size: 128 * KiB, blockSize: 512, granularity: 8 * KiB, retention: { maxBytes: 10 * MiB } });
      await engine.write('v', 0, fill(8192, 1));
      await engine.createSnapshot('v', 's');
      await engine.write('v', 4096, fill(8192, 2));
      await engine.createMarker('m', ['v']);
      await engine.write('v', 0, fill(100, 3));
      const before = await engine.read('v', 0, 128 * KiB);
      const info = engine.volumeInfo('v');
      const snapshots = engine.listSnapshots('v');
      const markers = engine.listMarkers('v');
      const diff = engine.diff('v', 's');
      await engine.close();
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      expect(engine.volumeInfo('v')).toEqual(info);
      expect(engine.listSnapshots('v')).toEqual(snapshots);
      expect(engine.listMarkers('v')).toEqual(markers);
      expect(engine.diff('v', 's')).toEqual(diff);
      expect((await engine.read('v', 0, 128 * KiB)).equals(before)).toBe(true);
      await engine.restore({ volume: 'v', source: { marker: 'm' } });
      const atMarker = Buffer.alloc(128 * KiB).fill(1, 0, 4096).fill(2, 4096, 12288);
      expect((await engine.read('v', 0, 128 * KiB)).equals(atMarker)).toBe(true);
      // Sequence numbers continue where they were.
      expect(await engine.write('v', 0, fill(1, 4))).toBeGreaterThan(info.sequence + 1);
    });
  });

  describe('snapshots and differential information', () => {
    it('keeps the snapshot image as the volume was, and diffs at the tracking granularity', async () => {
      await engine.createVolume('v', { size: 256 * KiB, blockSize: 4096, granularity: 16 * KiB });
      await engine.write('v', 0, fill(64 * KiB, 1));
      const s1 = await engine.createSnapshot('v', 's1');
      expect(s1).toMatchObject({ volume: 'v', name: 's1', sequence: 2, internal: false, size: 256 * KiB });
      await engine.write('v', 20 * KiB, fill(100, 2)); // chunk 1
      await engine.zero('v', 100 * KiB, 40 * KiB); // chunks 6..8
      const s2 = await engine.createSnapshot('v', 's2');
      await engine.write('v', 255 * KiB, fill(1024, 3)); // chunk 15
      expect((await fs.readFile(engine.snapshotImagePath('v', 's1'))).equals(Buffer.alloc(256 * KiB).fill(1, 0, 64 * KiB))).toBe(true);
      expect(engine.diff('v', 's1', 's2')).toEqual([
        { offset: 16 * KiB, length: 16 * KiB },
        { offset: 96 * KiB, length: 48 * KiB },
      ]);
      expect(engine.diff('v', 's2')).toEqual([{ offset: 240 * KiB, length: 16 * KiB }]);
      expect(engine.diff('v', 's1')).toEqual([
        { offset: 16 * KiB, length: 16 * KiB },
        { offset: 96 * KiB, length: 48 * KiB },
        { offset: 240 * KiB, length: 16 * KiB },
      ]);
      expect(await codeOf(() => engine.diff('v', 's2', 's1'))).toBe('INVALID_ARGUMENT');
      expect(engine.diff('v', 's1', 's1')).toEqual([]);
      expect(engine.allocated('v')).toEqual([
        { offset: 0, length: 64 * KiB },
        { offset: 96 * KiB, length: 48 * KiB },
        { offset: 240 * KiB, length: 16 * KiB },
      ]);
      expect(engine.allocated('v', { offset: 8 * KiB, length: 100 * KiB })).toEqual([
        { offset: 8 * KiB, length: 56 * KiB },
        { offset: 96 * KiB, length: 12 * KiB },
      ]);
      // Deleting the middle snapshot folds its changes into the older one's.
      await engine.deleteSnapshot('v', 's2');
      expect(engine.listSnapshots('v').map((s) => s.name)).toEqual(['s1']);
      expect(engine.diff('v', 's1')).toEqual([
        { offset: 16 * KiB, length: 16 * KiB },
        { offset: 96 * KiB, length: 48 * KiB },
        { offset: 240 * KiB, length: 16 * KiB },
      ]);
      expect(s2.sequence).toBeGreaterThan(s1.sequence);
      await expect(fs.access(path.join(store, 'volumes', 'v', 'snapshots', 's2'))).rejects.toThrow();
    });

    it('reports a partial last chunk clipped to the volume size', async () => {
      await engine.createVolume('v', { size: 96 * KiB, granularity: 64 * KiB });
      await engine.createSnapshot('v', 's');
      await engine.write('v', 90 * KiB, fill(10, 1));
      expect(engine.diff('v', 's')).toEqual([{ offset: 64 * KiB, length: 32 * KiB }]);
      expect(engine.allocated('v')).toEqual([{ offset: 64 * KiB, length: 32 * KiB }]);
      await engine.restore({ volume: 'v', source: { snapshot: 's' } });
      expect((await engine.read('v', 0, 96 * KiB)).equals(Buffer.alloc(96 * KiB))).toBe(true);
    });

    it('restores only the changed chunks inside the requested areas', async () => {
      await engine.createVolume('v', { size: 1024 * KiB, blockSize: 4096, granularity: 4096 });
      const original = Buffer.alloc(1024 * KiB);
      for (let i = 0; i < original.length; i++) original[i] = (i * 7) & 0xff;
      await engine.write('v', 0, original);
      await engine.createSnapshot('v', 's');
      // 1% of the blocks change: 2 of 256, plus one outside the area.
      await engine.write('v', 40 * KiB, fill(4096, 0xaa));
      await engine.write('v', 200 * KiB + 100, fill(10, 0xbb));
      await engine.write('v', 900 * KiB, fill(4096, 0xcc));
      const progress: number[] = [];
      const result = await engine.restore({ volume: 'v', source: { snapshot: 's' }, ranges: [{ offset: 0, length: 512 * KiB }] }, (p) => progress.push(p.bytesRestored));
      expect(result).toMatchObject({ volume: 'v', method: 'snapshot-diff', baseSnapshot: 's', bytesTotal: 8192, bytesRestored: 8192 });
      expect(progress[progress.length - 1]).toBe(8192);
      const expected = Buffer.from(original).fill(0xcc, 900 * KiB, 904 * KiB);
      expect((await engine.read('v', 0, 1024 * KiB)).equals(expected)).toBe(true);
      // A whole-volume restore now has only the one remaining changed block left to copy back,
      // plus the two it rewrote itself (those are writes after the snapshot too).
      const whole = await engine.restore({ volume: 'v', source: { snapshot: 's' } });
      expect(whole.bytesTotal).toBe(3 * 4096);
      expect((await engine.read('v', 0, 1024 * KiB)).equals(original)).toBe(true);
    });

    it('rewinds by rewriting only what was written after the marker', async () => {
      await engine.createVolume('v', { size: 1024 * KiB });
      await engine.write('v', 0, fill(1024 * KiB, 5));
      await engine.createMarker('m', ['v']);
      await engine.write('v', 8192, fill(100, 6));
      await engine.write('v', 512 * KiB, fill(4096, 7));
      const result = await engine.restore({ volume: 'v', source: { marker: 'm' } });
      expect(result).toMatchObject({ method: 'rewind', pointSequence: 2, bytesTotal: 4196, bytesRestored: 4196 });
      expect((await engine.read('v', 0, 1024 * KiB)).equals(fill(1024 * KiB, 5))).toBe(true);
      // History stays a straight line: the state before the rewind is a point like any other.
      const partial = await engine.restore({ volume: 'v', source: { sequence: 4 }, ranges: [{ offset: 508 * KiB, length: 8 * KiB }] });
      expect(partial.method).toBe('rewind');
      expect((await engine.read('v', 512 * KiB, 4096)).equals(fill(4096, 7))).toBe(true);
      expect((await engine.read('v', 8192, 100)).equals(fill(100, 5))).toBe(true);
    });

    it('restores a snapshot, a marker and a time into new volumes with the source settings', async () => {
      await engine.createVolume('v', { size: 128 * KiB, blockSize: 512, granularity: 2048, retention: { maxAgeSeconds: 3600 } });
      await engine.write('v', 0, fill(4096, 1));
      await engine.createSnapshot('v', 's');
      await engine.write('v', 0, fill(2048, 2));
      const [marker] = await engine.createMarker('m', ['v']);
      // The next write must carry a later time, or "as of the marker's time" would include it.
      while (Date.now() <= marker!.createdAt.getTime()) await new Promise((r) => setImmediate(r));
      await engine.write('v', 0, fill(1024, 3));
      const fromSnapshot = await engine.restore({ volume: 'v', source: { snapshot: 's' }, target: 'a' });
      const fromMarker = await engine.restore({ volume: 'v', source: { marker: 'm' }, target: 'b' });
      const fromTime = await engine.restore({ volume: 'v', source: { time: marker!.createdAt }, target: 'c' });
      expect(fromSnapshot).toMatchObject({ volume: 'a', method: 'rebuild', pointSequence: 2, baseSnapshot: 's' });
      expect(fromMarker).toMatchObject({ volume: 'b', method: 'rebuild', pointSequence: marker!.sequence, baseSnapshot: 's' });
      expect(fromTime.pointSequence).toBeGreaterThanOrEqual(marker!.sequence);
      const atSnapshot = Buffer.alloc(128 * KiB).fill(1, 0, 4096);
      const atMarker = Buffer.from(atSnapshot).fill(2, 0, 2048);
      expect((await engine.read('a', 0, 128 * KiB)).equals(atSnapshot)).toBe(true);
      expect((await engine.read('b', 0, 128 * KiB)).equals(atMarker)).toBe(true);
      expect((await engine.read('c', 0, 128 * KiB)).equals(atMarker)).toBe(true);
      for (const name of ['a', 'b', 'c']) {
        expect(engine.volumeInfo(name)).toMatchObject({ size: 128 * KiB, blockSize: 512, granularity: 2048, retention: { maxAgeSeconds: 3600 }, snapshotCount: 0 });
        // A new volume is a volume like any other, and its inherited data counts as allocated.
        expect(engine.allocated(name)).toEqual([{ offset: 0, length: 128 * KiB }]);
      }
      expect((await engine.read('v', 0, 4096)).equals(Buffer.alloc(4096, 1).fill(2, 0, 2048).fill(3, 0, 1024))).toBe(true);
      // The new volume can be written and rewound to the moment it was made.
      const made = engine.volumeInfo('b').sequence;
      await engine.write('b', 0, fill(4096, 9));
      await engine.restore({ volume: 'b', source: { sequence: made } });
      expect((await engine.read('b', 0, 128 * KiB)).equals(atMarker)).toBe(true);
    });

    it('refuses to delete the engine’s own base snapshot', async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      await engine.createSnapshot('v', 's');
      await engine.restore({ volume: 'v', source: { snapshot: 's' }, target: 'n' });
      const internal = engine.listSnapshots('n', { includeInternal: true });
      expect(internal.map((s) => [s.name, s.internal])).toEqual([['~origin', true]]);
      expect(engine.listSnapshots('n')).toEqual([]);
      expect(await codeOf(() => engine.deleteSnapshot('n', '~origin'))).toBe('INVALID_ARGUMENT');
    });
  });

  describe('time and sequence points', () => {
    it('refuses a time before the volume existed, a sequence beyond its history and an invalid date', async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      await engine.write('v', 0, fill(10, 1));
      const created = engine.volumeInfo('v').createdAt.getTime();
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { time: new Date(created - 60_000) } }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { time: new Date(NaN) } }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { sequence: 2 } }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { sequence: -1 } }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { sequence: 0.5 } }))).toBe('INVALID_ARGUMENT');
      expect((await engine.read('v', 0, 10)).equals(fill(10, 1))).toBe(true);
    });

    it('recovers a time as the last record at or before it', async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      await nextMillisecond();
      const times: number[] = [];
      for (let i = 1; i <= 5; i++) {
        await engine.write('v', 0, fill(4096, i));
        times.push(Date.now());
        // A clock tick between writes, so each observed time names exactly one record.
        await nextMillisecond();
      }
      for (let i = 4; i >= 0; i--) {
        const result = await engine.restore({ volume: 'v', source: { time: new Date(times[i]!) }, target: `t${i}` });
        expect(result.pointSequence).toBe(i + 1);
        expect((await engine.read(`t${i}`, 0, 4096)).equals(fill(4096, i + 1))).toBe(true);
      }
      // A time after creation but before the first write is the empty volume.
      const created = engine.volumeInfo('v').createdAt;
      const empty = await engine.restore({ volume: 'v', source: { time: created } });
      expect(empty.pointSequence).toBe(0);
      expect((await engine.read('v', 0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    });
  });

  describe('busy volumes', () => {
    beforeEach(async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      await engine.write('v', 0, fill(4096, 1));
      await engine.createSnapshot('v', 's');
      await engine.createMarker('m', ['v']);
      await engine.write('v', 0, fill(4096, 2));
    });

    it('refuses in-place restores and deletion while held, and names the holder', async () => {
      engine.hold('v', 'nbd:conn-1');
      expect(engine.volumeInfo('v').holders).toEqual(['nbd:conn-1']);
      for (const source of [{ snapshot: 's' }, { marker: 'm' }, { sequence: 1 }]) {
        const err = await engine.restore({ volume: 'v', source }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(TidemarkError);
        expect((err as TidemarkError).code).toBe('BUSY');
        expect((err as TidemarkError).message).toMatch(/nbd:conn-1/);
      }
      expect(await codeOf(() => engine.deleteVolume('v'))).toBe('BUSY');
      expect((await engine.read('v', 0, 4096)).equals(fill(4096, 2))).toBe(true);
      // Reading the volume's history into a new one does not disturb the holder.
      await engine.restore({ volume: 'v', source: { marker: 'm' }, target: 'copy' });
      await engine.restore({ volume: 'v', source: { snapshot: 's' }, target: 'copy2' });
      expect((await engine.read('copy', 0, 4096)).equals(fill(4096, 1))).toBe(true);
      // Writes, snapshots and markers go on as usual.
      await engine.write('v', 0, fill(4096, 3));
      await engine.createSnapshot('v', 's2');
      await engine.createMarker('m2', ['v']);
    });

    it('lets force override, and counts holds per holder', async () => {
      engine.hold('v', 'a');
      engine.hold('v', 'a');
      engine.hold('v', 'b');
      await engine.restore({ volume: 'v', source: { snapshot: 's' }, force: true });
      expect((await engine.read('v', 0, 4096)).equals(fill(4096, 1))).toBe(true);
      engine.release('v', 'a');
      engine.release('v', 'b');
      expect(engine.volumeInfo('v').holders).toEqual(['a']);
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { marker: 'm' } }))).toBe('BUSY');
      engine.release('v', 'a');
      expect(engine.volumeInfo('v').holders).toEqual([]);
      // Sequence 4 is the last write before the forced restore.
      await engine.restore({ volume: 'v', source: { sequence: 4 } });
      expect((await engine.read('v', 0, 4096)).equals(fill(4096, 2))).toBe(true);
      engine.hold('v', 'c');
      await engine.deleteVolume('v', { force: true });
      expect(engine.has('v')).toBe(false);
    });

    it('tells holders when a forced delete takes the volume away; a new volume of that name starts free', async () => {
      const revoked: string[] = [];
      engine.hold('v', 'nbd:1', () => revoked.push('nbd:1'));
      engine.hold('v', 'csi', () => revoked.push('csi'));
      await engine.deleteVolume('v', { force: true });
      expect(revoked.sort()).toEqual(['csi', 'nbd:1']);
      await engine.createVolume('v', { size: 64 * KiB });
      expect(engine.volumeInfo('v').holders).toEqual([]);
      // A late release by an old holder does not touch the new volume.
      engine.hold('v', 'nbd:2');
      engine.release('v', 'nbd:1');
      expect(engine.volumeInfo('v').holders).toEqual(['nbd:2']);
    });
  });

  describe('deleting', () => {
    /** Root can bind-mount a directory onto itself, which makes renaming it fail with EBUSY. */
    const bindMounting = needing([root('the failed-deletion test bind-mounts a directory'), tool('mount')]);

    bindMounting.it('keeps serving a volume whose directory cannot be renamed away, and says why', async () => {
      await engine.createVolume('v', { size: 64 * KiB });
      await engine.write('v', 0, fill(4096, 5), { fua: true });
      const dir = path.join(store, 'volumes', 'v');
      expect(spawnSync('mount', ['--bind', dir, dir]).status).toBe(0);
      try {
        const err = await engine.deleteVolume('v').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(TidemarkError);
        expect((err as TidemarkError).code).toBe('INTERNAL');
        expect((err as TidemarkError).message).toMatch(/deleting volume "v"/);
        expect(engine.has('v')).toBe(true);
        expect((await engine.read('v', 0, 4096)).equals(fill(4096, 5))).toBe(true);
        await engine.write('v', 4096, fill(4096, 6), { fua: true });
      } finally {
        // Lazily: the volume, open again, holds files under the mount.
        spawnSync('umount', ['-l', dir]);
      }
      await engine.deleteVolume('v');
      expect(engine.has('v')).toBe(false);
      expect(await fs.readdir(path.join(store, 'volumes'))).toEqual([]);
    });
  });

  describe('group markers', () => {
    it('records one cut across volumes while writes keep coming', async () => {
      await engine.createVolume('a', { size: 64 * KiB });
      await engine.createVolume('b', { size: 64 * KiB });
      await engine.createVolume('c', { size: 64 * KiB });
      // An application that writes a, then b, each only after the previous write returned:
      // a consistent cut may hold b's write i only together with a's write i.
      let stop = false;
      let rounds = 0;
      const writer = (async () => {
        for (let i = 1; !stop && i < 4000; i++) {
          const block = Buffer.alloc(8);
          block.writeUInt32LE(i, 0);
          await engine.write('a', 0, block);
          await engine.write('b', 0, block);
          rounds = i;
        }
      })();
      while (rounds < 20) await new Promise((resolve) => setImmediate(resolve));
      const markers = await engine.createMarker('cut', ['b', 'a']);
      while (rounds < 40) await new Promise((resolve) => setImmediate(resolve));
      stop = true;
      await writer;
      expect(markers.map((m) => m.volume)).toEqual(['a', 'b']);
      const group = markers[0]!.group;
      expect(group).toMatch(/[0-9a-f-]{36}/);
      expect(markers[1]!.group).toBe(group);
      for (const name of ['a', 'b']) {
        expect(engine.listMarkers(name)).toEqual([expect.objectContaining({ name: 'cut', group, expired: false })]);
      }
      expect(engine.listMarkers('c')).toEqual([]);
      await engine.restore({ volume: 'a', source: { marker: 'cut' }, target: 'a-cut' });
      await engine.restore({ volume: 'b', source: { marker: 'cut' }, target: 'b-cut' });
      const atA = (await engine.read('a-cut', 0, 4)).readUInt32LE(0);
      const atB = (await engine.read('b-cut', 0, 4)).readUInt32LE(0);
      expect(atA).toBeGreaterThan(0);
      expect(atB).toBeLessThanOrEqual(atA);
      expect(atA).toBeLessThanOrEqual(atB + 1);
      // The markers survive a restart, still grouped.
      await engine.close();
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      expect(engine.listMarkers('b').map((m) => m.group)).toEqual([group]);
    });

    it('needs at least one volume, and counts a repeated volume once', async () => {
      await engine.createVolume('a', { size: 64 * KiB });
      expect(await codeOf(() => engine.createMarker('m', []))).toBe('INVALID_ARGUMENT');
      const markers = await engine.createMarker('m', ['a', 'a']);
      expect(markers).toHaveLength(1);
      expect(markers[0]!.group).toBe('');
    });
  });

  describe('group snapshots', () => {
    it('snapshots several volumes at one cut while writes keep coming', async () => {
      await engine.createVolume('a', { size: 64 * KiB });
      await engine.createVolume('b', { size: 64 * KiB });
      let stop = false;
      let rounds = 0;
      const writer = (async () => {
        // Until stopped: the cuts below wait for progress, so the writer must not run out.
        for (let i = 1; !stop; i++) {
          const block = Buffer.alloc(8);
          block.writeUInt32LE(i, 0);
          await engine.write('a', 0, block);
          await engine.write('b', 0, block);
          rounds = i;
        }
      })();
      const cuts: [number, number][] = [];
      for (let round = 0; round < 3; round++) {
        const before = rounds;
        while (rounds < before + 10) await new Promise((resolve) => setImmediate(resolve));
        const taken = await engine.createSnapshotGroup(['b', 'a'], `g${round}`);
        expect(taken.map((t) => [t.volume, t.name])).toEqual([
          ['a', `g${round}`],
          ['b', `g${round}`],
        ]);
        await engine.restore({ volume: 'a', source: { snapshot: `g${round}` }, target: `a${round}` });
        await engine.restore({ volume: 'b', source: { snapshot: `g${round}` }, target: `b${round}` });
        cuts.push([(await engine.read(`a${round}`, 0, 4)).readUInt32LE(0), (await engine.read(`b${round}`, 0, 4)).readUInt32LE(0)]);
      }
      stop = true;
      await writer;
      // a is written first: at one cut it holds b's count or one more, never less or two more.
      for (const [atA, atB] of cuts) {
        expect(atA).toBeGreaterThan(0);
        expect(atA === atB || atA === atB + 1).toBe(true);
      }
    });

    it('takes all or none: a name that exists on one volume leaves the others untouched', async () => {
      await engine.createVolume('a', { size: 64 * KiB });
      await engine.createVolume('b', { size: 64 * KiB });
      await engine.createSnapshot('b', 'same');
      expect(await codeOf(() => engine.createSnapshotGroup(['a', 'b'], 'same'))).toBe('ALREADY_EXISTS');
      expect(engine.listSnapshots('a')).toEqual([]);
      expect(engine.listSnapshots('b').map((s) => s.name)).toEqual(['same']);
      expect(await codeOf(() => engine.createSnapshotGroup([], 'x'))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => engine.createSnapshotGroup(['a', 'missing'], 'x'))).toBe('NOT_FOUND');
    });
  });

  describe('damaged history', () => {
    it('refuses a rewind that needs a damaged record in a closed segment, and writes nothing', async () => {
      await engine.close();
      // Small segments: the record the rewind needs ends up in a closed segment, which start-up
      // trusts by its summary and does not read again.
      engine = await Engine.open({ store, upkeepIntervalMs: 0, segmentSize: 4096 });
      await engine.createVolume('v', { size: 64 * KiB });
      const before = fill(3000, 0x11);
      await engine.write('v', 0, before);
      await engine.createMarker('m', ['v']);
      await engine.write('v', 0, fill(3000, 0x22));
      await engine.write('v', 8192, fill(3000, 0x33));
      await engine.close();
      const dir = path.join(store, 'volumes', 'v', 'journal');
      const first = path.join(dir, (await fs.readdir(dir)).filter((f) => f.endsWith('.log')).sort()[0]!);
      const bytes = await fs.readFile(first);
      // Record 1 starts the segment: 32-byte header, 8-byte offset, then the data.
      expect(bytes.readBigUInt64LE(16)).toBe(1n);
      bytes[40 + 100]! ^= 0x01;
      await fs.writeFile(first, bytes);
      engine = await Engine.open({ store, upkeepIntervalMs: 0, segmentSize: 4096 });
      const current = await engine.read('v', 0, 64 * KiB);
      const err = await engine.restore({ volume: 'v', source: { marker: 'm' } }).then(
        () => undefined,
        (e: unknown) => e as TidemarkError,
      );
      expect(err).toBeInstanceOf(TidemarkError);
      expect(err!.code).toBe('INTERNAL');
      expect(err!.message).toMatch(/journal record 1 .* is damaged \(crc mismatch\)/);
      expect((await engine.read('v', 0, 64 * KiB)).equals(current)).toBe(true);
      // Into a new volume, the journal is read whole and checked too.
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { marker: 'm' }, target: 'copy' }))).toBe('INTERNAL');
      expect(engine.has('copy')).toBe(false);
    });

    /**
     * Writes 0x11 then 0x22 over bytes 0..3000 of a new volume "v", with marker "m" between
     * them and "later" after, and whatever `more` adds; closes the engine and flips `mask` in
     * byte `at` of the volume's only journal segment. Returns the segment, its damaged bytes
     * and the volume's last sequence.
     */
    async function damagedJournal(at: number, mask: number, more = async () => {}) {
      await engine.createVolume('v', { size: 64 * KiB });
      await engine.write('v', 0, fill(3000, 0x11));
      await engine.createMarker('m', ['v']);
      await engine.write('v', 0, fill(3000, 0x22));
      await engine.createMarker('later', ['v']);
      await more();
      const sequence = engine.volumeInfo('v').sequence;
      await engine.close();
      const dir = path.join(store, 'volumes', 'v', 'journal');
      const [only] = (await fs.readdir(dir)).filter((f) => f.endsWith('.log'));
      const file = path.join(dir, only!);
      const bytes = await fs.readFile(file);
      bytes[at]! ^= mask;
      await fs.writeFile(file, bytes);
      return { dir, file, bytes, sequence };
    }

    it('keeps history whole when a record below the checkpoint in the last segment is damaged', async () => {
      // A bit of the first record's data.
      const { sequence } = await damagedJournal(40 + 100, 0x01);
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      // Nothing was cut: the markers stay, the data is the image's, numbering goes on.
      expect(engine.listMarkers('v').map((m) => m.name)).toEqual(['m', 'later']);
      expect((await engine.read('v', 0, 3000)).equals(fill(3000, 0x22))).toBe(true);
      expect(await engine.write('v', 4096, fill(512, 0x33))).toBe(sequence + 1);
      expect(await codeOf(() => engine.restore({ volume: 'v', source: { marker: 'm' } }))).toBe('INTERNAL');
      await engine.restore({ volume: 'v', source: { marker: 'later' } });
      expect((await engine.read('v', 4096, 512)).equals(Buffer.alloc(512))).toBe(true);
    });

    it('keeps the records after a damaged length below the checkpoint, and restores across it fail', async () => {
      const open = () => Engine.open({ store, upkeepIntervalMs: 0, segmentSize: 64 * KiB });
      await engine.close();
      engine = await open();
      // The first record's length, made 1 KiB longer: still a plausible length, so only the
      // CRC tells, and a scan that trusted it would land inside the next record and cut there.
      const { dir, file, bytes, sequence } = await damagedJournal(5, 0x04, async () => {
        await engine.write('v', 8192, fill(512, 0x44));
      });
      engine = await open();
      expect((await fs.stat(file)).size).toBe(bytes.length);
      expect(engine.listMarkers('v').map((m) => m.name)).toEqual(['m', 'later']);
      expect((await engine.read('v', 0, 3000)).equals(fill(3000, 0x22))).toBe(true);
      expect(await engine.write('v', 4096, fill(512, 0x33))).toBe(sequence + 1);
      // Where the damaged record wrote is not known any more: a rewind that reads history
      // through it fails, naming it, and changes nothing.
      const refused = await engine.restore({ volume: 'v', source: { marker: 'later' } }).catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('journal records 1 to 1') });
      expect((await engine.read('v', 4096, 512)).equals(fill(512, 0x33))).toBe(true);
      // Past a segment roll and a checkpoint, the next start finds the damage again (a
      // rewind reads history from the volume's start, so every one crosses it).
      for (let i = 0; i < 20; i++) await engine.write('v', 16 * KiB, fill(4 * KiB, i));
      expect((await fs.readdir(dir)).filter((f) => f.endsWith('.log')).length).toBeGreaterThan(1);
      await engine.createMarker('newest', ['v']);
      await engine.write('v', 16 * KiB, fill(4 * KiB, 0x55));
      await engine.close();
      const grown = (await fs.stat(file)).size;
      engine = await open();
      expect((await fs.stat(file)).size).toBe(grown);
      const again = await engine.restore({ volume: 'v', source: { marker: 'newest' } }).catch((e: unknown) => e);
      expect(again).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('journal records 1 to 1') });
      expect((await engine.read('v', 16 * KiB, 4 * KiB)).equals(fill(4 * KiB, 0x55))).toBe(true);
      expect((await engine.read('v', 8192, 512)).equals(fill(512, 0x44))).toBe(true);
    });
  });

  describe('store lock', () => {
    it('refuses a second engine on the same store while the first runs', async () => {
      expect(await codeOf(() => Engine.open({ store, upkeepIntervalMs: 0 }))).toBe('STORE_LOCKED');
      // The first one is unaffected.
      await engine.createVolume('v', { size: 64 * KiB });
      await engine.close();
      await expect(fs.access(path.join(store, 'store.lock'))).rejects.toThrow();
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
      expect(engine.has('v')).toBe(true);
    });

    it('takes over a lock left by a process that is gone, from another boot, or unreadable', async () => {
      await engine.close();
      const lock = path.join(store, 'store.lock');
      const bootId = (await fs.readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
      // A pid that existed and is gone now.
      const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
      const deadPid = Number(child.stdout);
      expect(deadPid).toBeGreaterThan(0);
      const leftovers = [
        JSON.stringify({ pid: deadPid, bootId, startTime: '12345' }),
        JSON.stringify({ pid: process.pid, bootId: 'another-boot', startTime: '1' }),
        // Our own pid with a different start time: the pid was reused.
        JSON.stringify({ pid: process.pid, bootId, startTime: 'not-the-start-time' }),
        'torn {',
        '',
      ];
      for (const content of leftovers) {
        await fs.writeFile(lock, content);
        engine = await Engine.open({ store, upkeepIntervalMs: 0 });
        const owner = JSON.parse(await fs.readFile(lock, 'utf8')) as { pid: number };
        expect(owner.pid).toBe(process.pid);
        await engine.close();
      }
      // A live owner is respected: pid 1 with its real start time.
      const stat = await fs.readFile('/proc/1/stat', 'utf8');
      const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      await fs.writeFile(lock, JSON.stringify({ pid: 1, bootId, startTime }));
      const err = await Engine.open({ store, upkeepIntervalMs: 0 }).catch((e: unknown) => e);
      expect((err as TidemarkError).code).toBe('STORE_LOCKED');
      expect((err as TidemarkError).message).toMatch(/pid 1/);
      await fs.rm(lock);
      engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    });
  });
});
