import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';
import { TestClock } from '../support/clock.js';
import { ModelVolume, patternBytes } from './model.js';

const KiB = 1024;

async function codeOf(fn: () => unknown): Promise<string | undefined> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof TidemarkError) return err.code;
    throw err;
  }
  return undefined;
}

/** The engines' clock: moved on by hand, so records before and after a moment carry different times. */
let clock = new TestClock();

/** Moves the clock on a millisecond and returns the moment before, which later records are after. */
const nextMillisecond = () => clock.advance(1);

/** What the journal's segment files hold on disk, to hold the engine's accounting against. */
async function journalFileBytes(store: string, volume: string): Promise<number> {
  const dir = path.join(store, 'volumes', volume, 'journal');
  let sum = 0;
  for (const file of (await fs.readdir(dir)).filter((f) => f.endsWith('.log'))) sum += (await fs.stat(path.join(dir, file))).size;
  return sum;
}

describe('journal retention', () => {
  let store: string;
  let engine: Engine;
  const open = () => Engine.open({ store, segmentSize: 8 * KiB, upkeepIntervalMs: 0, clock: clock.now });

  beforeEach(async () => {
    clock = new TestClock();
    store = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-retention-'));
    engine = await open();
  });

  afterEach(async () => {
    await engine.close();
    await fs.rm(store, { recursive: true, force: true });
  });

  /** Writes 4 KiB blocks with a marker after every other one, a millisecond apart; returns the model. */
  async function history(name: string, writes: number, prefix = 'm'): Promise<ModelVolume> {
    const model = new ModelVolume(name, 256 * KiB, 4096, 4096);
    for (let i = 0; i < writes; i++) {
      nextMillisecond();
      const offset = ((i * 37) % 64) * 4096;
      const data = patternBytes(1000 + i * 5 + 3, 4096);
      model.write(await engine.write(name, offset, data), clock.now(), offset, data);
      if (i % 2 === 1) {
        const [marker] = await engine.createMarker(`${prefix}${i}`, [name]);
        model.marker(marker!.name, marker!.sequence, marker!.createdAt.getTime());
      }
    }
    return model;
  }

  /** Every marker either restores to exactly its data or, if older than the earliest point, is refused. */
  async function checkMarkers(model: ModelVolume): Promise<{ expired: number; live: number }> {
    const info = engine.volumeInfo(model.name);
    const listed = new Map(engine.listMarkers(model.name).map((m) => [m.name, m]));
    const current = await engine.read(model.name, 0, model.size);
    let expired = 0;
    let live = 0;
    const newest = [...model.markers.values()].sort((a, b) => b.sequence - a.sequence)[0];
    for (const marker of [...model.markers.values()].sort((a, b) => a.sequence - b.sequence)) {
      const isExpired = marker.sequence < info.earliestRecoverableSequence;
      expect([marker.name, listed.get(marker.name)?.expired]).toEqual([marker.name, isExpired]);
      if (isExpired) {
        expired++;
        expect(await codeOf(() => engine.restore({ volume: model.name, source: { marker: marker.name }, target: 'probe' }))).toBe('EXPIRED');
        expect(await codeOf(() => engine.restore({ volume: model.name, source: { marker: marker.name } }))).toBe('EXPIRED');
        expect(await codeOf(() => engine.restore({ volume: model.name, source: { sequence: marker.sequence } }))).toBe('EXPIRED');
        expect(engine.has('probe')).toBe(false);
      } else {
        // Rebuilding costs a volume each; the oldest two and the newest live markers suffice.
        if (live++ >= 2 && marker !== newest) continue;
        await engine.restore({ volume: model.name, source: { marker: marker.name }, target: 'probe' });
        expect((await engine.read('probe', 0, model.size)).equals(model.dataAt(marker.sequence))).toBe(true);
        await engine.deleteVolume('probe');
      }
    }
    expect((await engine.read(model.name, 0, model.size)).equals(current)).toBe(true);
    return { expired, live };
  }

  it('frees the journal down to a size, keeping newer markers recoverable and refusing older ones', async () => {
    await engine.createVolume('v', { size: 256 * KiB, retention: { maxBytes: 32 * KiB } });
    const model = await history('v', 40);
    await engine.enforceRetention('v');
    const info = engine.volumeInfo('v');
    // Whole segments go, so the journal may exceed the allowance by up to one segment.
    expect(info.journalBytes).toBeLessThanOrEqual(32 * KiB + 8 * KiB + 64);
    expect(info.earliestRecoverableSequence).toBeGreaterThan(0);
    expect(await journalFileBytes(store, 'v')).toBe(info.journalBytes);
    expect((await engine.read('v', 0, 256 * KiB)).equals(model.data)).toBe(true);
    const bases = engine.listSnapshots('v', { includeInternal: true });
    expect(bases.length).toBeGreaterThan(0);
    expect(bases.every((s) => s.internal && s.name.startsWith('~base-'))).toBe(true);
    expect(engine.listSnapshots('v')).toEqual([]);
    expect(info.snapshotCount).toBe(0);
    // Only bases that are still of use are kept.
    for (const s of bases) expect(s.sequence).toBeGreaterThanOrEqual(info.earliestRecoverableSequence);
    const { expired, live } = await checkMarkers(model);
    expect(expired).toBeGreaterThan(0);
    expect(live).toBeGreaterThan(0);

    // The same holds after a restart.
    await engine.close();
    engine = await open();
    expect(engine.volumeInfo('v').earliestRecoverableSequence).toBe(info.earliestRecoverableSequence);
    expect(await checkMarkers(model)).toEqual({ expired, live });
  });

  it('frees records older than an age, judged by the given clock, taking a base snapshot', async () => {
    await engine.createVolume('v', { size: 256 * KiB, retention: { maxAgeSeconds: 60 } });
    const model = await history('v', 6);
    // By the engine's clock nothing is old yet.
    expect(await engine.enforceRetention('v')).toEqual({ freedBytes: 0, basesTaken: [], basesDropped: [] });
    expect(engine.volumeInfo('v').earliestRecoverableSequence).toBe(0);

    const outcome = await engine.enforceRetention('v', clock.now() + 61_000);
    expect(outcome.freedBytes).toBeGreaterThan(6 * 4096);
    expect(outcome.basesTaken.length).toBeGreaterThan(0);
    const info = engine.volumeInfo('v');
    expect(info.journalBytes).toBeLessThan(4096);
    // The base holds the volume from the last write on, so the marker after it stays usable.
    expect(info.earliestRecoverableSequence).toBe(model.entries[model.entries.length - 1]!.sequence);
    const { expired, live } = await checkMarkers(model);
    expect([expired, live]).toEqual([2, 1]);
    const oldest = [...model.markers.values()][0]!;
    expect(await codeOf(() => engine.restore({ volume: 'v', source: { time: new Date(oldest.createdAt) }, target: 'probe' }))).toBe('EXPIRED');

    // Now, and anything recorded from now on, is recoverable.
    const now = nextMillisecond();
    await engine.restore({ volume: 'v', source: { time: new Date(now) }, target: 'now' });
    expect((await engine.read('now', 0, 256 * KiB)).equals(model.data)).toBe(true);
    const data = patternBytes(77, 8192);
    model.write(await engine.write('v', 4096, data), clock.now(), 4096, data);
    const [after] = await engine.createMarker('after', ['v']);
    model.marker('after', after!.sequence, after!.createdAt.getTime());
    await engine.write('v', 0, patternBytes(78, 4096));
    await engine.restore({ volume: 'v', source: { marker: 'after' } });
    expect((await engine.read('v', 0, 256 * KiB)).equals(model.dataAt(after!.sequence))).toBe(true);
  });

  it('uses a newer user snapshot as the base instead of taking one, and keeps history when it is deleted', async () => {
    await engine.createVolume('v', { size: 256 * KiB, retention: { maxAgeSeconds: 60 } });
    const model = new ModelVolume('v', 256 * KiB, 4096, 4096);
    const first = patternBytes(3, 4096);
    model.write(await engine.write('v', 0, first), clock.now(), 0, first);
    const [old] = await engine.createMarker('old', ['v']);
    model.marker('old', old!.sequence, old!.createdAt.getTime());
    // A change between the marker and the snapshot, or the snapshot would still hold the marker.
    const between = patternBytes(6, 4096);
    const changed = await engine.write('v', 12288, between);
    model.write(changed, clock.now(), 12288, between);
    const snapshot = await engine.createSnapshot('v', 'keep');
    const cut = nextMillisecond();
    const second = patternBytes(4, 4096);
    model.write(await engine.write('v', 4096, second), clock.now(), 4096, second);
    const [recent] = await engine.createMarker('recent', ['v']);
    model.marker('recent', recent!.sequence, recent!.createdAt.getTime());
    await engine.write('v', 8192, patternBytes(5, 4096));

    // Everything up to the snapshot is older than the cutoff; the later records are not.
    const outcome = await engine.enforceRetention('v', cut + 1 + 60_000);
    expect(outcome.freedBytes).toBeGreaterThan(0);
    expect(outcome.basesTaken).toEqual([]);
    // The snapshot holds every point from the last change before it.
    expect(engine.volumeInfo('v').earliestRecoverableSequence).toBe(changed);
    expect(snapshot.sequence).toBe(changed + 1);
    expect(await checkMarkers(model)).toEqual({ expired: 1, live: 1 });

    // The user deletes the snapshot the remaining journal starts from: the engine must keep
    // what it needs, or every later marker would silently expire.
    await engine.deleteSnapshot('v', 'keep');
    expect(engine.listSnapshots('v')).toEqual([]);
    expect(engine.volumeInfo('v').snapshotCount).toBe(0);
    expect(await checkMarkers(model)).toEqual({ expired: 1, live: 1 });
    // The name is free again.
    await engine.createSnapshot('v', 'keep');
    await engine.close();
    engine = await open();
    expect(await checkMarkers(model)).toEqual({ expired: 1, live: 1 });
  });

  it('drops internal bases once they are older than the earliest recoverable point', async () => {
    await engine.createVolume('v', { size: 256 * KiB });
    await history('v', 4);
    await engine.setRetention('v', { maxAgeSeconds: 60 });
    const first = await engine.enforceRetention('v', clock.now() + 61_000);
    expect(first.basesTaken.length).toBeGreaterThan(0);
    nextMillisecond();
    await history('v', 4, 'n');
    const second = await engine.enforceRetention('v', clock.now() + 61_000);
    expect(second.basesTaken.length).toBeGreaterThan(0);
    expect(second.basesDropped).toEqual(first.basesTaken.filter((b) => !second.basesTaken.includes(b)));
    const remaining = engine.listSnapshots('v', { includeInternal: true }).map((s) => s.name);
    for (const dropped of second.basesDropped) {
      expect(remaining).not.toContain(dropped);
      await expect(fs.access(path.join(store, 'volumes', 'v', 'snapshots', dropped))).rejects.toThrow();
    }
  });

  it('applies a new policy at once and keeps it across a restart', async () => {
    await engine.createVolume('v', { size: 256 * KiB });
    const model = await history('v', 30);
    expect(engine.volumeInfo('v').journalBytes).toBeGreaterThan(120 * KiB);
    const info = await engine.setRetention('v', { maxBytes: 24 * KiB });
    expect(info.retention).toEqual({ maxBytes: 24 * KiB });
    expect(info.journalBytes).toBeLessThanOrEqual(24 * KiB + 8 * KiB + 64);
    expect(await journalFileBytes(store, 'v')).toBe(info.journalBytes);
    // No snapshot lay inside the allowance, so the base had to be taken now: all of the older
    // history goes at once.
    // The newest marker follows the last write, so the base holds it.
    expect(await checkMarkers(model)).toEqual({ expired: 14, live: 1 });
    await engine.close();
    engine = await open();
    expect(engine.volumeInfo('v').retention).toEqual({ maxBytes: 24 * KiB });
    // From here on the policy keeps a window of recent markers.
    const later = await history('v', 30, 'n');
    for (const m of later.markers.values()) model.marker(m.name, m.sequence, m.createdAt);
    for (const e of later.entries) if (e.op.kind === 'write') model.write(e.sequence, e.time, e.op.offset, e.op.data);
    await engine.enforceRetention('v');
    const { expired, live } = await checkMarkers(model);
    expect(expired).toBeGreaterThan(15);
    expect(live).toBeGreaterThan(0);
  });

  it('never lets retention running in the background free what a restore is reading', async () => {
    await engine.close();
    engine = await Engine.open({ store, segmentSize: 4 * KiB, upkeepIntervalMs: 0, clock: clock.now });
    await engine.createVolume('v', { size: 256 * KiB, retention: { maxBytes: 12 * KiB } });
    const model = new ModelVolume('v', 256 * KiB, 4096, 4096);
    let restored = 0;
    for (let i = 0; i < 40; i++) {
      const data = patternBytes(500 + i * 5 + 3, 4096);
      const offset = ((i * 7) % 64) * 4096;
      // Each write rolls a segment, which starts retention in the background (a checkpoint,
      // a base snapshot, freeing); the restore starts at a different moment of it each time.
      const sequence = await engine.write('v', offset, data);
      model.write(sequence, clock.now(), offset, data);
      await new Promise((resolve) => setTimeout(resolve, i % 8));
      const point = i % 2 === 0 ? { sequence } : { time: new Date(clock.now()) };
      try {
        await engine.restore({ volume: 'v', source: point, target: 'probe' });
      } catch (err) {
        expect((err as TidemarkError).code).toBe('EXPIRED');
        expect(sequence).toBeLessThan(engine.volumeInfo('v').earliestRecoverableSequence);
        continue;
      }
      restored++;
      expect([i, (await engine.read('probe', 0, 256 * KiB)).equals(model.dataAt(sequence))]).toEqual([i, true]);
      await engine.deleteVolume('probe');
    }
    expect(restored).toBeGreaterThan(10);
  });

  it('keeps an in-place restore from a snapshot possible whatever was freed', async () => {
    await engine.createVolume('v', { size: 256 * KiB, retention: { maxBytes: 16 * KiB } });
    const model = await history('v', 4);
    await engine.createSnapshot('v', 's');
    const atSnapshot = Buffer.from(model.data);
    await history('v', 20, 'n');
    await engine.enforceRetention('v');
    expect(engine.volumeInfo('v').earliestRecoverableSequence).toBeGreaterThan(engine.listSnapshots('v')[0]!.sequence);
    await engine.restore({ volume: 'v', source: { snapshot: 's' } });
    expect((await engine.read('v', 0, 256 * KiB)).equals(atSnapshot)).toBe(true);
  });
});
