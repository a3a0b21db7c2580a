/**
 * Restores killed half way: a child process runs the restore and is SIGKILLed once part of
 * the data is written (see fixtures/restore-child.ts). A restore into a new volume must leave
 * no volume behind; one in place must leave a record that the volume reports until the
 * restore is run again to completion or cleared.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine, type RestoreRequest } from '../../src/engine/index.js';
import { captureLogger } from './fixtures/capture-logger.js';

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL('./fixtures/restore-child.js', import.meta.url));
/** More than two of the restore's 16 MiB batches, so that the kill falls between two of them. */
const DATA = 40 * MiB;

const pattern = (seed: number) => {
  const out = Buffer.allocUnsafe(DATA);
  for (let i = 0; i < DATA; i += 4) out.writeUInt32LE((Math.imul(i, 2654435761) + seed) >>> 0, i);
  return out;
};
const OLD = pattern(1);
const NEW = pattern(2);

/** Runs the restore in a child and kills it half way; fails if the child finished or failed first. */
function killMidRestore(store: string, request: RestoreRequest): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, store, JSON.stringify(request)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('mid\n')) child.kill('SIGKILL');
    });
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      if (signal === 'SIGKILL' && out.startsWith('mid')) resolve();
      else reject(new Error(`the restore was not killed half way: ${out}${err}`));
    });
  });
}

async function writeAll(engine: Engine, volume: string, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 4 * MiB) await engine.write(volume, at, data.subarray(at, at + 4 * MiB));
  await engine.flush(volume);
}

describe('restores killed half way', () => {
  let store: string;
  let engine: Engine;
  let markerSequence: number;

  beforeEach(async () => {
    store = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-interrupted-'));
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    await engine.createVolume('v', { size: 64 * MiB });
    await writeAll(engine, 'v', OLD);
    markerSequence = (await engine.createMarker('m', ['v']))[0]!.sequence;
    await writeAll(engine, 'v', NEW);
    await engine.close();
  });

  afterEach(async () => {
    await engine.close();
    await fs.rm(store, { recursive: true, force: true });
  });

  it('a restore into a new volume leaves no volume behind, and a retry makes it whole', async () => {
    await killMidRestore(store, { volume: 'v', source: { marker: 'm' }, target: 'copy' });
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    expect(engine.has('copy')).toBe(false);
    expect((await fs.readdir(path.join(store, 'volumes'))).sort()).toEqual(['v']);
    await engine.restore({ volume: 'v', source: { marker: 'm' }, target: 'copy' });
    expect((await engine.read('copy', 0, DATA)).equals(OLD)).toBe(true);
  });

  it('a rewind in place is reported interrupted after the restart, until it is run again', async () => {
    await killMidRestore(store, { volume: 'v', source: { marker: 'm' } });
    const { logger, entries } = captureLogger();
    engine = await Engine.open({ store, logger, upkeepIntervalMs: 0 });
    const interrupted = engine.volumeInfo('v').restoreInterrupted;
    expect(interrupted).toEqual({ source: 'marker "m"', pointSequence: markerSequence, startedAt: expect.any(Date) });
    expect(entries).toContainEqual(expect.objectContaining({ level: 'warn', volume: 'v', source: 'marker "m"', message: expect.stringMatching(/restore was interrupted/) }));

    // A clean restart keeps it; so does a restore of part of the volume to another point.
    await engine.close();
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    expect(engine.volumeInfo('v').restoreInterrupted).toEqual(interrupted);
    await engine.createMarker('later', ['v']);
    await engine.write('v', 0, Buffer.alloc(4096, 7));
    await engine.restore({ volume: 'v', source: { marker: 'later' }, ranges: [{ offset: 0, length: 4096 }] });
    expect(engine.volumeInfo('v').restoreInterrupted).toEqual(interrupted);

    // Running it again to the end puts the whole volume at the marker and clears the record.
    await engine.restore({ volume: 'v', source: { marker: 'm' } });
    expect(engine.volumeInfo('v').restoreInterrupted).toBeUndefined();
    expect((await engine.read('v', 0, DATA)).equals(OLD)).toBe(true);
    await engine.close();
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    expect(engine.volumeInfo('v').restoreInterrupted).toBeUndefined();
  });

  it('a snapshot restore in place is reported too, and clearing it leaves the data as it is', async () => {
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    await engine.restore({ volume: 'v', source: { marker: 'm' } });
    await engine.createSnapshot('v', 's');
    const snapshot = engine.listSnapshots('v')[0]!;
    await writeAll(engine, 'v', NEW);
    await engine.close();
    await killMidRestore(store, { volume: 'v', source: { snapshot: 's' } });
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    expect(engine.volumeInfo('v').restoreInterrupted).toMatchObject({ source: 'snapshot "s"', pointSequence: snapshot.sequence });
    const mixed = await engine.read('v', 0, DATA);
    expect(mixed.equals(OLD) || mixed.equals(NEW)).toBe(false);

    const info = await engine.clearInterruptedRestore('v');
    expect(info.restoreInterrupted).toBeUndefined();
    expect((await engine.read('v', 0, DATA)).equals(mixed)).toBe(true);
    await engine.close();
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    expect(engine.volumeInfo('v').restoreInterrupted).toBeUndefined();
    // Clearing what is not there is no error.
    expect((await engine.clearInterruptedRestore('v')).restoreInterrupted).toBeUndefined();
  });

  it('a restore in place that fails half way is reported; one that writes nothing records nothing', async () => {
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    await engine.restore({ volume: 'v', source: { marker: 'm' }, ranges: [{ offset: 0, length: MiB }] });
    expect(engine.volumeInfo('v').restoreInterrupted).toBeUndefined();
    await engine.createMarker('now', ['v']);
    await engine.restore({ volume: 'v', source: { marker: 'now' } });
    expect(engine.volumeInfo('v').restoreInterrupted).toBeUndefined();

    const failing = engine.restore({ volume: 'v', source: { marker: 'm' } }, (progress) => {
      if (progress.bytesRestored > 0) throw new Error('cut off');
    });
    await expect(failing).rejects.toThrow('cut off');
    expect(engine.volumeInfo('v').restoreInterrupted).toMatchObject({ source: 'marker "m"' });
  });
});
