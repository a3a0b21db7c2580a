/**
 * The checkpoint file: version 2 carries a CRC32C and is refused, naming the file, when it is
 * damaged; version 1 (no CRC) still opens. A damaged checkpoint stops its own volume only.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { CheckpointDamagedError, decodeCheckpoint, encodeCheckpoint, type CheckpointState } from '../../src/engine/checkpoint.js';
import { Engine } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';
import { captureLogger } from './fixtures/capture-logger.js';
import { tempDirEach } from '../support/temp-dir.js';

const KiB = 1024;

function sampleState(): CheckpointState {
  return {
    version: 2,
    name: 'v',
    size: 1024 * KiB,
    blockSize: 4096,
    granularity: 64 * KiB,
    createdAt: 1_700_000_000_000,
    retention: {},
    segmentSize: 64 * 1024 * KiB,
    checkpoint: 7,
    segments: [],
    snapshots: [],
    markers: [{ name: 'm', sequence: 3, createdAt: 1_700_000_000_100, group: '' }],
  };
}

/** The same state as a version 1 file: `TDMC`, JSON length, JSON, bitmaps; no CRC. */
function versionOne(state: CheckpointState, bitmaps: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify({ ...state, version: 1 }));
  const head = Buffer.alloc(8);
  head.write('TDMC', 0, 'latin1');
  head.writeUInt32LE(json.length, 4);
  return Buffer.concat([head, json, bitmaps]);
}

function damagedMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointDamagedError);
    expect(err).toBeInstanceOf(TidemarkError);
    expect((err as TidemarkError).code).toBe('INTERNAL');
    expect((err as CheckpointDamagedError).file).toBe('/store/v/checkpoint');
    expect((err as Error).message).toContain('/store/v/checkpoint');
    return (err as Error).message;
  }
  throw new Error('the checkpoint was accepted');
}

describe('checkpoint file format', () => {
  const file = '/store/v/checkpoint';
  const bitmaps = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);

  it('reads back what it wrote, starting with TDM3 and a CRC32C', () => {
    const bytes = encodeCheckpoint(sampleState(), bitmaps);
    expect(bytes.toString('latin1', 0, 4)).toBe('TDM3');
    const { state, bitmaps: back } = decodeCheckpoint(bytes, file);
    expect(state).toEqual(sampleState());
    expect(back).toEqual(bitmaps);
    // Version 2, written before aligned journal records existed, has the same layout.
    bytes.write('TDM2', 0, 'latin1');
    expect(decodeCheckpoint(bytes, file).state).toEqual(sampleState());
  });

  it('reads a version 1 file, which has no CRC, as version 2', () => {
    const { state, bitmaps: back } = decodeCheckpoint(versionOne(sampleState(), bitmaps), file);
    expect(state).toEqual(sampleState());
    expect(back).toEqual(bitmaps);
  });

  it('refuses a flipped bit anywhere after the CRC field, in the JSON or in the bitmaps', () => {
    const good = encodeCheckpoint(sampleState(), bitmaps);
    for (const at of [8, 12, 20, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x10;
      expect(damagedMessage(() => decodeCheckpoint(bad, file))).toMatch(/CRC32C/);
    }
  });

  it('refuses a file cut short, an empty file and a file that is no checkpoint', () => {
    const good = encodeCheckpoint(sampleState(), bitmaps);
    expect(damagedMessage(() => decodeCheckpoint(good.subarray(0, good.length - 3), file))).toMatch(/CRC32C/);
    expect(damagedMessage(() => decodeCheckpoint(good.subarray(0, 6), file))).toMatch(/shorter than its header/);
    expect(damagedMessage(() => decodeCheckpoint(Buffer.alloc(0), file))).toMatch(/empty/);
    expect(damagedMessage(() => decodeCheckpoint(Buffer.from('{"version":2}'), file))).toMatch(/magic/);
  });

  it('refuses a version 1 file whose JSON does not parse, runs past the end, or lacks fields', () => {
    const v1 = versionOne(sampleState(), bitmaps);
    const garbled = Buffer.from(v1);
    garbled[8] = 0x78; // the JSON's opening brace
    expect(damagedMessage(() => decodeCheckpoint(garbled, file))).toMatch(/does not parse/);
    const long = Buffer.from(v1);
    long.writeUInt32LE(v1.length, 4);
    expect(damagedMessage(() => decodeCheckpoint(long, file))).toMatch(/past the end/);
    const partial: Partial<CheckpointState> = sampleState();
    delete partial.checkpoint;
    expect(damagedMessage(() => decodeCheckpoint(versionOne(partial as CheckpointState, bitmaps), file))).toMatch(/"checkpoint"/);
  });

  it('refuses a version that does not match the magic', () => {
    expect(damagedMessage(() => decodeCheckpoint(encodeCheckpoint({ ...sampleState(), version: 1 as 2 }, bitmaps), file))).toMatch(/version 1 under a version 2 header/);
  });
});

describe('a damaged checkpoint in a store', () => {
  let store: string;
  tempDirEach('checkpoint', (made) => (store = made));

  const checkpointOf = (volume: string) => path.join(store, 'volumes', volume, 'checkpoint');

  async function twoVolumes(): Promise<void> {
    const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    for (const name of ['good', 'hurt']) {
      await engine.createVolume(name, { size: 256 * KiB });
      await engine.write(name, 0, Buffer.alloc(8 * KiB, name === 'good' ? 0x11 : 0x22));
      await engine.createSnapshot(name, 's');
      await engine.write(name, 64 * KiB, Buffer.alloc(4 * KiB, 0x33));
    }
    await engine.close();
  }

  it('stops that volume with an error naming the file, changes nothing in it, and opens the others', async () => {
    await twoVolumes();
    const file = checkpointOf('hurt');
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 10]! ^= 0x01; // a bit of the bitmaps
    await fs.writeFile(file, bytes);
    const { logger, entries } = captureLogger();
    const engine = await Engine.open({ store, upkeepIntervalMs: 0, logger });
    try {
      expect(engine.listVolumes().map((v) => v.name)).toEqual(['good']);
      expect((await engine.read('good', 0, 4)).toString('hex')).toBe('11111111');
      expect(engine.diff('good', 's')).toEqual([{ offset: 64 * KiB, length: 64 * KiB }]);
      expect(engine.has('hurt')).toBe(true);
      const calls: (() => Promise<unknown>)[] = [
        () => engine.read('hurt', 0, 4),
        () => engine.write('hurt', 0, Buffer.alloc(4)),
        async () => engine.volumeInfo('hurt'),
        () => engine.createVolume('hurt', { size: 64 * KiB }),
        () => engine.deleteVolume('hurt'),
      ];
      for (const call of calls) {
        const error = await Promise.resolve()
          .then(call)
          .then(
            () => undefined,
            (err: unknown) => err,
          );
        expect(error).toBeInstanceOf(TidemarkError);
        expect((error as Error).message).toContain(file);
      }
      // The name is still taken: a restore cannot build a new volume over it.
      await expect(engine.restore({ volume: 'good', source: { snapshot: 's' }, target: 'hurt' })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
      expect(entries.some((e) => e.level === 'error' && e.file === file)).toBe(true);
      expect(await fs.readFile(file)).toEqual(bytes);
      expect(await fs.readdir(path.join(store, 'volumes', 'hurt', 'snapshots'))).toEqual(['s']);
    } finally {
      await engine.close();
    }
  });

  it('opens a volume whose checkpoint is version 1, with its data, bitmaps and metadata, and rewrites it as version 3', async () => {
    await twoVolumes();
    const file = checkpointOf('hurt');
    const { state, bitmaps } = decodeCheckpoint(await fs.readFile(file), file);
    await fs.writeFile(file, versionOne(state, bitmaps));
    const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    try {
      expect((await engine.read('hurt', 0, 4)).toString('hex')).toBe('22222222');
      expect((await engine.read('hurt', 64 * KiB, 4)).toString('hex')).toBe('33333333');
      expect(engine.listSnapshots('hurt').map((s) => s.name)).toEqual(['s']);
      expect(engine.diff('hurt', 's')).toEqual([{ offset: 64 * KiB, length: 64 * KiB }]);
      const rewritten = await fs.readFile(file);
      expect(rewritten.toString('latin1', 0, 4)).toBe('TDM3');
      expect(decodeCheckpoint(rewritten, file).state).toEqual(state);
    } finally {
      await engine.close();
    }
  });
});

describe('checkpoints from upkeep', () => {
  let store: string;
  tempDirEach('upkeep', (made) => (store = made));

  it('leaves the checkpoint of an idle volume alone, and rewrites it once something happened', async () => {
    const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    try {
      const file = path.join(store, 'volumes', 'v', 'checkpoint');
      // A rewrite is a new file renamed over the old one: a new change time, whatever inode it gets.
      const written = async () => {
        const stat = await fs.stat(file, { bigint: true });
        return `${stat.ino}/${stat.ctimeNs}`;
      };
      await engine.createVolume('v', { size: 256 * KiB });
      await engine.write('v', 0, Buffer.alloc(4 * KiB, 1));
      await engine.upkeep();
      const first = await written();
      await engine.upkeep();
      await engine.upkeep();
      expect(await written()).toBe(first);
      await engine.write('v', 4 * KiB, Buffer.alloc(4 * KiB, 2));
      await engine.upkeep();
      const second = await written();
      expect(second).not.toBe(first);
      await engine.upkeep();
      expect(await written()).toBe(second);
    } finally {
      await engine.close();
    }
  });
});
