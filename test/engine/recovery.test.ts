/**
 * Journal recovery on crafted damage. Each case builds a history of records through the
 * engine, puts back a copy of the volume's image and checkpoint saved before those records
 * (so start-up must rebuild the data by replaying the journal, as after a crash that came
 * before any checkpoint), damages the journal files, reopens, and checks that recovery:
 * cuts at the last valid record, says so in the log, keeps every earlier record (their data
 * is in the volume, their markers and snapshots are listed and restorable), and that new
 * writes then append cleanly and survive another reopen.
 *
 * Also here: replay after a SIGKILL that came before any checkpoint, journals that rolled
 * over many segments, a torn entry in the group-marker log, and power cuts simulated from
 * the syncs the engine made (which SIGKILL, leaving the page cache intact, cannot produce).
 *
 * TIDEMARK_RECOVERY_SEED overrides the seed the damage positions are drawn from.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeCheckpoint } from '../../src/engine/checkpoint.js';
import { Engine } from '../../src/engine/index.js';
import { RecordType, encodeRecord, encodedSize, type JournalRecord } from '../../src/engine/record.js';
import { captureLogger, type LogEntry } from './fixtures/capture-logger.js';
import { allRecords, journalDir, journalProblems, readSegments, type SegmentFile } from './fixtures/journal-files.js';
import { replayWrites } from './fixtures/recovery-plan.js';
import { SyncRecorder } from './fixtures/sync-recorder.js';
import { Rng, UNIT, decodeOwners, describeDifference, ownersEqual, renderWrite, stateAt, type DataOp } from './fixtures/units.js';

const SEED = Number(process.env.TIDEMARK_RECOVERY_SEED ?? 0x1dea5) >>> 0;
const KiB = 1024;
const SIZE = 1024 * KiB;
const TAG = 0x2ec0;
const REPLAY_WRITER = fileURLToPath(new URL('./fixtures/replay-writer.js', import.meta.url));

interface History {
  store: string;
  /** Copies of the image and checkpoint from before the records that recovery must replay. */
  baseDir: string;
  baseSequence: number;
  segmentSize: number;
  ops: DataOp[];
  /** Sequence number of each op in `ops`. */
  opSequences: number[];
  markers: { name: string; sequence: number }[];
  snapshots: { name: string; sequence: number }[];
  last: number;
  nextWriteId: number;
}

const volumeDir = (store: string) => path.join(store, 'volumes', 'v');
const stores: string[] = [];

afterAll(async () => {
  for (const store of stores) await fs.rm(store, { recursive: true, force: true });
});

async function newStore(): Promise<string> {
  const store = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-recovery-'));
  stores.push(store);
  return store;
}

async function saveBase(history: History, sequence: number): Promise<void> {
  await fs.mkdir(history.baseDir, { recursive: true });
  for (const file of ['checkpoint', 'image']) await fs.copyFile(path.join(volumeDir(history.store), file), path.join(history.baseDir, file));
  history.baseSequence = sequence;
}

/** Puts the saved image and checkpoint back: the state of a crash before any later checkpoint. */
async function restoreBase(history: History): Promise<void> {
  for (const file of ['checkpoint', 'image']) await fs.copyFile(path.join(history.baseDir, file), path.join(volumeDir(history.store), file));
}

/**
 * Writes `count` records (writes, zeros, markers, a few snapshots) through the engine and
 * closes it. The base is saved at creation, or after `baseAfter` records.
 */
async function buildHistory(rng: Rng, options: { segmentSize: number; count: number; baseAfter?: number; maxUnits?: number }): Promise<History> {
  const store = await newStore();
  const history: History = {
    store,
    baseDir: `${store}-base`,
    baseSequence: 0,
    segmentSize: options.segmentSize,
    ops: [],
    opSequences: [],
    markers: [],
    snapshots: [],
    last: 0,
    nextWriteId: 1,
  };
  stores.push(history.baseDir);
  const open = () => Engine.open({ store, segmentSize: options.segmentSize, upkeepIntervalMs: 0 });
  let engine = await open();
  await engine.createVolume('v', { size: SIZE });
  await engine.close();
  if (options.baseAfter === undefined) await saveBase(history, 0);
  engine = await open();
  const units = SIZE / UNIT;
  for (let i = 0; i < options.count; i++) {
    if (i === options.baseAfter) {
      await engine.close();
      await saveBase(history, history.last);
      engine = await open();
    }
    const roll = rng.float();
    if (roll < 0.72) {
      const length = rng.int(1, options.maxUnits ?? 24);
      const firstUnit = rng.int(0, units - length);
      const writeId = history.nextWriteId++;
      const sequence = await engine.write('v', firstUnit * UNIT, renderWrite({ tag: TAG, volume: 0, writeId }, firstUnit, length), { fua: rng.chance(0.1) });
      history.ops.push({ writeId, firstUnit, units: length });
      history.opSequences.push(sequence);
      history.last = sequence;
    } else if (roll < 0.84) {
      const length = rng.int(1, 64);
      const firstUnit = rng.int(0, units - length);
      const sequence = await engine.zero('v', firstUnit * UNIT, length * UNIT, { trim: rng.chance(0.3) });
      history.ops.push({ writeId: 0, firstUnit, units: length });
      history.opSequences.push(sequence);
      history.last = sequence;
    } else if (roll < 0.96 || history.snapshots.length >= 2) {
      const name = `m${history.markers.length}`;
      const [marker] = await engine.createMarker(name, ['v']);
      history.markers.push({ name, sequence: marker!.sequence });
      history.last = marker!.sequence;
    } else {
      const name = `s${history.snapshots.length}`;
      const snapshot = await engine.createSnapshot('v', name);
      history.snapshots.push({ name, sequence: snapshot.sequence });
      history.last = snapshot.sequence;
    }
  }
  await engine.close();
  return history;
}

/** The volume's owners after every record up to and including `sequence`. */
function ownersAt(history: History, sequence: number): Int32Array {
  const count = history.opSequences.filter((s) => s <= sequence).length;
  return stateAt(new Int32Array(SIZE / UNIT), history.ops, count);
}

async function readOwners(engine: Engine, volume = 'v', tag = TAG): Promise<Int32Array> {
  return decodeOwners(await engine.read(volume, 0, SIZE), tag, 0);
}

function expectOwners(expected: Int32Array, actual: Int32Array, what: string): void {
  if (!ownersEqual(expected, actual)) throw new Error(`${what}: ${describeDifference(expected, actual)}`);
}

interface Expectation {
  /** The sequence recovery must end at. */
  last: number;
  /** What the log must say about the cut; undefined when nothing may be cut. */
  cut?: { reason: RegExp; truncatedBytes?: number; droppedSegments?: number };
}

/**
 * Reopens a damaged store and checks everything recovery promises, then appends, reopens
 * once more and checks that the new records stuck.
 */
async function recoverAndCheck(history: History, expectation: Expectation): Promise<LogEntry[]> {
  const { logger, entries } = captureLogger();
  let engine = await Engine.open({ store: history.store, logger, segmentSize: history.segmentSize, upkeepIntervalMs: 0 });
  try {
    const { last } = expectation;
    const cut = entries.find((e) => e.message === 'journal tail cut');
    if (expectation.cut) {
      expect(cut).toBeDefined();
      expect(cut!.level).toBe('warn');
      expect(String(cut!.truncatedReason)).toMatch(expectation.cut.reason);
      if (expectation.cut.truncatedBytes !== undefined) expect(cut!.truncatedBytes).toBe(expectation.cut.truncatedBytes);
      if (expectation.cut.droppedSegments !== undefined) expect(cut!.droppedSegments).toBe(expectation.cut.droppedSegments);
    } else {
      expect(cut).toBeUndefined();
    }
    const recovered = entries.find((e) => e.message === 'volume recovered');
    expect(recovered?.replayed).toBe(last - history.baseSequence);

    // Every record up to the cut is kept, in the journal and in the data.
    expect(engine.volumeInfo('v').sequence).toBe(last);
    const segments = await readSegments(journalDir(history.store, 'v'));
    expect(journalProblems(segments)).toEqual([]);
    expect(allRecords(segments).at(-1)?.sequence ?? 0).toBe(last);
    expectOwners(ownersAt(history, last), await readOwners(engine), `data after recovery to sequence ${last}`);

    // Markers and snapshots up to the cut are listed and usable; later ones are gone.
    const markers = history.markers.filter((m) => m.sequence <= last);
    expect(engine.listMarkers('v').map((m) => [m.name, m.sequence])).toEqual(markers.map((m) => [m.name, m.sequence]));
    const snapshots = history.snapshots.filter((s) => s.sequence <= last);
    expect(engine.listSnapshots('v').map((s) => [s.name, s.sequence])).toEqual(snapshots.map((s) => [s.name, s.sequence]));
    expect((await fs.readdir(path.join(volumeDir(history.store), 'snapshots'))).sort()).toEqual(snapshots.map((s) => s.name).sort());
    for (const snapshot of snapshots) {
      const copy = decodeOwners(await fs.readFile(engine.snapshotImagePath('v', snapshot.name)), TAG, 0);
      expectOwners(ownersAt(history, snapshot.sequence), copy, `snapshot ${snapshot.name}`);
    }
    const marker = markers.at(-1);
    if (marker) {
      await engine.restore({ volume: 'v', source: { marker: marker.name }, target: 'rebuilt' });
      expectOwners(ownersAt(history, marker.sequence), await readOwners(engine, 'rebuilt'), `restore to marker ${marker.name}`);
      await engine.deleteVolume('rebuilt');
    }

    // New writes go after the cut and survive a reopen.
    const after = Int32Array.from(ownersAt(history, last));
    for (let i = 0; i < 3; i++) {
      const writeId = 100_000 + i;
      const firstUnit = i * 40;
      const sequence = await engine.write('v', firstUnit * UNIT, renderWrite({ tag: TAG, volume: 0, writeId }, firstUnit, 24));
      expect(sequence).toBe(last + 1 + i);
      after.fill(writeId, firstUnit, firstUnit + 24);
    }
    await engine.flush('v');
    await engine.close();

    const second = captureLogger();
    engine = await Engine.open({ store: history.store, logger: second.logger, segmentSize: history.segmentSize, upkeepIntervalMs: 0 });
    expect(second.entries.find((e) => e.message === 'journal tail cut')).toBeUndefined();
    expect(engine.volumeInfo('v').sequence).toBe(last + 3);
    expectOwners(after, await readOwners(engine), 'data after new writes and a reopen');
    expect(journalProblems(await readSegments(journalDir(history.store, 'v')))).toEqual([]);
    return entries;
  } finally {
    await engine.close();
  }
}

/** Segments that hold records, oldest first. */
async function nonEmptySegments(history: History): Promise<SegmentFile[]> {
  return (await readSegments(journalDir(history.store, 'v'))).filter((s) => s.records.length > 0);
}

/** One of the last `among` records of the journal, with its segment. */
async function oneOfTheLast(history: History, rng: Rng, among: number) {
  const segments = await nonEmptySegments(history);
  const flat = segments.flatMap((segment) => segment.records.map((r) => ({ segment, ...r })));
  return flat[flat.length - 1 - rng.int(0, Math.min(among, flat.length) - 1)]!;
}

async function flipBit(file: string, position: number, bit: number): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, position);
    byte[0]! ^= 1 << bit;
    await handle.write(byte, 0, 1, position);
  } finally {
    await handle.close();
  }
}

/** Runs the replay writer child until it has written, then kills it with SIGKILL. */
async function runReplayWriter(store: string, seed: number, count: number, ending: 'marker' | 'unsynced'): Promise<void> {
  const child = spawn(process.execPath, [REPLAY_WRITER, store, String(seed), String(count), ending], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
  const written = await new Promise<boolean>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('written')) resolve(true);
    });
    child.on('close', () => resolve(false));
  });
  expect({ written, stderr }).toEqual({ written: true, stderr: '' });
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
}

async function checkpointSequence(store: string): Promise<number> {
  const file = path.join(volumeDir(store), 'checkpoint');
  return decodeCheckpoint(await fs.readFile(file), file).state.checkpoint;
}

async function laterSegmentFiles(history: History, afterFile: string): Promise<number> {
  return (await readSegments(journalDir(history.store, 'v'))).filter((s) => s.file > afterFile).length;
}

describe('journal recovery', () => {
  beforeAll(() => console.log(`recovery test: seed ${SEED} (TIDEMARK_RECOVERY_SEED)`));

  it('replays every record after the checkpoint into the image', async () => {
    const rng = new Rng(SEED);
    for (const segmentSize of [16 * KiB, 64 * KiB, 4096 * KiB]) {
      const history = await buildHistory(rng, { segmentSize, count: 60 });
      await restoreBase(history);
      const entries = await recoverAndCheck(history, { last: history.last });
      expect(entries.find((e) => e.message === 'volume recovered')?.replayed).toBe(history.last);
    }
  });

  it('replays from a checkpoint taken mid-history, over the segments it does not cover', async () => {
    const rng = new Rng(SEED + 1);
    for (const baseAfter of [5, 30, 55]) {
      const history = await buildHistory(rng, { segmentSize: 16 * KiB, count: 60, baseAfter });
      expect(history.baseSequence).toBeGreaterThan(0);
      await restoreBase(history);
      await recoverAndCheck(history, { last: history.last });
    }
  });

  it('replays what a killed process wrote but never checkpointed', async () => {
    const store = await newStore();
    const seed = SEED + 2;
    const count = 40;
    await runReplayWriter(store, seed, count, 'marker');

    // The checkpoint on disk predates every write: only the journal knows them.
    expect(await checkpointSequence(store)).toBe(0);

    const plan = replayWrites(seed, count);
    const { logger, entries } = captureLogger();
    const engine = await Engine.open({ store, logger, upkeepIntervalMs: 0 });
    try {
      expect(entries.find((e) => e.message === 'volume recovered')?.replayed).toBe(count + 1);
      expect(entries.find((e) => e.message === 'journal tail cut')).toBeUndefined();
      const expected = stateAt(new Int32Array(plan.size / UNIT), plan.ops, count);
      const owners = decodeOwners(await engine.read('v', 0, plan.size), plan.tag, 0);
      expectOwners(expected, owners, 'data after replay');
      expect(engine.listMarkers('v').map((m) => [m.name, m.sequence])).toEqual([['end', count + 1]]);
      await engine.restore({ volume: 'v', source: { marker: 'end' }, target: 'rebuilt' });
      expectOwners(expected, decodeOwners(await engine.read('rebuilt', 0, plan.size), plan.tag, 0), 'restore to the marker');
    } finally {
      await engine.close();
    }
  });

  it('recovers a journal that rolled over many segments', async () => {
    const rng = new Rng(SEED + 3);
    // Writes up to 12 KiB against 8 KiB segments: some records are larger than a segment.
    const history = await buildHistory(rng, { segmentSize: 8 * KiB, count: 150, maxUnits: 24 });
    const segments = await readSegments(journalDir(history.store, 'v'));
    expect(segments.length).toBeGreaterThan(20);
    expect(segments.some((s) => s.bytes > 8 * KiB)).toBe(true);
    await restoreBase(history);
    await recoverAndCheck(history, { last: history.last });
  });

  it('cuts a torn tail inside the last records', async () => {
    const rng = new Rng(SEED + 4);
    for (let trial = 0; trial < 12; trial++) {
      const history = await buildHistory(rng, { segmentSize: rng.pick([16 * KiB, 64 * KiB, 4096 * KiB]), count: 40 });
      const victim = await oneOfTheLast(history, rng, 3);
      const keep = victim.at + rng.int(1, victim.size - 1);
      await fs.truncate(victim.segment.file, keep);
      await restoreBase(history);
      await recoverAndCheck(history, {
        last: victim.record.sequence - 1,
        cut: { reason: /truncated|short header/, truncatedBytes: keep - victim.at, droppedSegments: await laterSegmentFiles(history, victim.segment.file) },
      });
    }
  });

  it('cuts a torn tail that the checkpoint of a clean stop already counted, and numbers on after the checkpoint', async () => {
    // Without putting the old checkpoint back: the image already holds the torn records, so
    // the data keeps them while the journal loses them. Only damage to synced bytes can make
    // this state (a crash cannot: the journal is written, and synced at each checkpoint,
    // before the image). The checkpoint, the markers and the bitmaps already count every
    // sequence up to it, so none may be handed out again: history gets a hole instead.
    const rng = new Rng(SEED + 10);
    for (let trial = 0; trial < 4; trial++) {
      const history = await buildHistory(rng, { segmentSize: rng.pick([16 * KiB, 4096 * KiB]), count: 30 });
      const victim = await oneOfTheLast(history, rng, 3);
      await fs.truncate(victim.segment.file, victim.at + rng.int(1, victim.size - 1));
      const cut = victim.record.sequence - 1;
      const last = history.last;
      const { logger, entries } = captureLogger();
      let engine = await Engine.open({ store: history.store, logger, segmentSize: history.segmentSize, upkeepIntervalMs: 0 });
      const after = ownersAt(history, history.last);
      try {
        expect(entries.find((e) => e.message === 'journal tail cut')?.truncatedReason).toMatch(/truncated|short header/);
        expect(engine.volumeInfo('v').sequence).toBe(last);
        const problems = journalProblems(await readSegments(journalDir(history.store, 'v')));
        expect(problems.length).toBeLessThanOrEqual(1);
        for (const problem of problems) expect(problem).toMatch(new RegExp(`, ${cut + 1} was due$`));
        expectOwners(after, await readOwners(engine), 'data after the cut');
        for (const marker of history.markers) {
          expect(engine.listMarkers('v').find((m) => m.name === marker.name)?.sequence).toBe(marker.sequence);
        }
        const sequence = await engine.write('v', 0, renderWrite({ tag: TAG, volume: 0, writeId: 200_000 }, 0, 16));
        expect(sequence).toBe(last + 1);
        after.fill(200_000, 0, 16);
        await engine.flush('v');
      } finally {
        await engine.close();
      }
      const second = captureLogger();
      engine = await Engine.open({ store: history.store, logger: second.logger, segmentSize: history.segmentSize, upkeepIntervalMs: 0 });
      try {
        expect(second.entries.find((e) => e.message === 'journal tail cut')).toBeUndefined();
        expect(engine.volumeInfo('v').sequence).toBe(last + 1);
        expectOwners(after, await readOwners(engine), 'data after new writes and a reopen');
      } finally {
        await engine.close();
      }
    }
  });

  it('cuts at a flipped bit in the last records', async () => {
    const rng = new Rng(SEED + 5);
    for (let trial = 0; trial < 12; trial++) {
      const history = await buildHistory(rng, { segmentSize: rng.pick([16 * KiB, 64 * KiB, 4096 * KiB]), count: 40 });
      const victim = await oneOfTheLast(history, rng, 3);
      await flipBit(victim.segment.file, victim.at + rng.int(0, victim.size - 1), rng.int(0, 7));
      await restoreBase(history);
      await recoverAndCheck(history, {
        last: victim.record.sequence - 1,
        cut: { reason: /crc mismatch|bad magic|unknown record type|implausible length|truncated|malformed/, truncatedBytes: victim.segment.bytes - victim.at },
      });
    }
  });

  it('cuts garbage appended after the last record', async () => {
    const rng = new Rng(SEED + 6);
    const garbage: [string, (last: JournalRecord) => Buffer, RegExp][] = [
      ['random bytes', () => Buffer.from(Array.from({ length: rng.int(1, 3000) }, () => rng.int(0, 255))), /bad magic|short header|truncated/],
      ['zeros', () => Buffer.alloc(rng.int(1, 4096)), /bad magic|short header/],
      ['a copy of the last record', (last) => encode(last), /sequence \d+ where \d+ was due/],
      ['a valid record from the future', (last) => encode({ type: RecordType.Zero, offset: 0, length: 4096, sequence: last.sequence + 2, time: last.time }), /sequence \d+ where \d+ was due/],
      ['a record with a bad checksum', (last) => corruptCrc(encode({ type: RecordType.Zero, offset: 0, length: 4096, sequence: last.sequence + 1, time: last.time })), /crc mismatch/],
    ];
    for (const [what, make, reason] of garbage) {
      for (const segmentSize of [16 * KiB, 4096 * KiB]) {
        const history = await buildHistory(rng, { segmentSize, count: 30 });
        const segments = await readSegments(journalDir(history.store, 'v'));
        const lastSegment = segments.at(-1)!;
        const lastRecord = allRecords(segments).at(-1)!;
        const bytes = make(lastRecord);
        await fs.appendFile(lastSegment.file, bytes);
        await restoreBase(history);
        try {
          await recoverAndCheck(history, { last: history.last, cut: { reason, truncatedBytes: bytes.length, droppedSegments: 0 } });
        } catch (err) {
          throw new Error(`after appending ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
      }
    }
  });

  it('drops segments that do not follow the sequence', async () => {
    const rng = new Rng(SEED + 7);
    const variants = ['a missing segment', 'a renamed last segment', 'a stray segment after the last'] as const;
    for (const variant of variants) {
      for (let trial = 0; trial < 2; trial++) {
        const history = await buildHistory(rng, { segmentSize: 16 * KiB, count: 50 });
        const segments = await readSegments(journalDir(history.store, 'v'));
        expect(segments.length).toBeGreaterThanOrEqual(4);
        let last: number;
        let dropped: number;
        if (variant === 'a missing segment') {
          const gone = rng.int(1, segments.length - 2);
          await fs.rm(segments[gone]!.file);
          last = segments[gone]!.firstSequence - 1;
          dropped = segments.length - 1 - gone;
        } else if (variant === 'a renamed last segment') {
          const lastSegment = segments.at(-1)!;
          // One lower only when that cannot collide with the name of the segment before.
          const previousHoldsOne = segments.at(-2)!.records.length <= 1;
          const renamed = lastSegment.firstSequence + rng.pick(previousHoldsOne ? [1, 7] : [-1, 1, 7]);
          await fs.rename(lastSegment.file, path.join(path.dirname(lastSegment.file), `${renamed.toString(16).padStart(16, '0')}.log`));
          last = lastSegment.firstSequence - 1;
          dropped = 1;
        } else {
          const stray = history.last + 1 + rng.int(1, 9);
          await fs.copyFile(segments[0]!.file, path.join(path.dirname(segments[0]!.file), `${stray.toString(16).padStart(16, '0')}.log`));
          last = history.last;
          dropped = 1;
        }
        await restoreBase(history);
        try {
          await recoverAndCheck(history, { last, cut: { reason: /does not follow sequence/, droppedSegments: dropped, truncatedBytes: 0 } });
        } catch (err) {
          throw new Error(`with ${variant}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
      }
    }
  });

  it('cuts at a damaged record in the middle of a non-final segment', async () => {
    const rng = new Rng(SEED + 8);
    for (let trial = 0; trial < 8; trial++) {
      const history = await buildHistory(rng, { segmentSize: rng.pick([16 * KiB, 32 * KiB]), count: 60 });
      const segments = await readSegments(journalDir(history.store, 'v'));
      const candidates = segments.slice(0, -1).filter((s) => s.records.length >= 3);
      expect(candidates.length).toBeGreaterThan(0);
      const segment = rng.pick(candidates);
      const victim = segment.records[rng.int(1, segment.records.length - 2)]!;
      await flipBit(segment.file, victim.at + rng.int(0, victim.size - 1), rng.int(0, 7));
      await restoreBase(history);
      await recoverAndCheck(history, {
        last: victim.record.sequence - 1,
        cut: { reason: /./, truncatedBytes: segment.bytes - victim.at, droppedSegments: segments.filter((s) => s.file > segment.file).length },
      });
    }
  });
});

describe('group marker commits', () => {
  it('survive a torn entry that an earlier interrupted commit left in the group log', async () => {
    const store = await newStore();
    let engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    await engine.createVolume('a', { size: SIZE });
    await engine.createVolume('b', { size: SIZE });
    await engine.close();
    // What a power cut or a full disk in the middle of appending an entry leaves.
    await fs.writeFile(path.join(store, 'groups.log'), '{"group":"0f1e2d3c","name":"ear');
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    const recorded = await engine.createMarker('together', ['a', 'b']);
    await engine.close();
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    try {
      for (const { volume, sequence } of recorded) {
        expect(engine.listMarkers(volume).map((m) => [m.name, m.sequence])).toEqual([['together', sequence]]);
      }
    } finally {
      await engine.close();
    }
  });
});

/**
 * Power cuts, which SIGKILL cannot produce: a killed process leaves its writes in the page
 * cache, a power cut loses whatever was not synced. The recorder notes how much of each file
 * the engine had synced; a "power cut" copies the store with every journal segment cut back
 * to that, and keeps the image and checkpoint as they are (the worst case the design allows:
 * unsynced image writes may or may not have reached the disk).
 */
describe('power cuts simulated from the syncs the engine made', () => {
  let recorder: SyncRecorder;
  beforeAll(async () => {
    recorder = await SyncRecorder.install();
  });
  afterAll(() => recorder.uninstall());

  async function powerCut(store: string): Promise<string> {
    const copy = await newStore();
    await fs.cp(store, copy, { recursive: true });
    // A power cut is a reboot, after which the daemon's lock is stale.
    await fs.rm(path.join(copy, 'store.lock'), { force: true });
    for (const volume of await fs.readdir(path.join(store, 'volumes'))) {
      for (const segment of await readSegments(journalDir(store, volume))) {
        await fs.truncate(path.join(journalDir(copy, volume), segment.name), recorder.durableSize(segment.file));
      }
    }
    return copy;
  }

  /** Checks the contract on a store after a power cut: data is the journal's prefix, rewinds work. */
  async function checkAfterCut(store: string, tag: number, model: (last: number) => Int32Array, rewindTo?: { marker: string; owners: Int32Array }): Promise<void> {
    const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    try {
      const last = engine.volumeInfo('v').sequence;
      expect(journalProblems(await readSegments(journalDir(store, 'v')))).toEqual([]);
      expectOwners(model(last), await readOwners(engine, 'v', tag), `data after a power cut, journal ending at ${last}`);
      if (rewindTo) {
        await engine.restore({ volume: 'v', source: { marker: rewindTo.marker } });
        expectOwners(rewindTo.owners, await readOwners(engine, 'v', tag), `rewind to marker ${rewindTo.marker} after a power cut`);
      }
    } finally {
      await engine.close();
    }
  }

  it('a checkpoint never counts journal records that are not durable yet', async () => {
    const store = await newStore();
    const ops: DataOp[] = [
      { writeId: 1, firstUnit: 0, units: 8 },
      { writeId: 2, firstUnit: 8, units: 8 },
    ];
    const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    let copy: string;
    try {
      await engine.createVolume('v', { size: SIZE });
      await engine.write('v', 0, renderWrite({ tag: TAG, volume: 0, writeId: 1 }, 0, 8));
      const [marker] = await engine.createMarker('before', ['v']);
      expect(marker!.sequence).toBe(2);
      // Acknowledged but not flushed: a power cut may lose it, but then it must lose it whole.
      await engine.write('v', 8 * UNIT, renderWrite({ tag: TAG, volume: 0, writeId: 2 }, 8, 8));
      // A checkpoint, as the upkeep timer or a segment roll takes them between flushes.
      await engine.setRetention('v', {});
      expect(await checkpointSequence(store)).toBe(3);
      copy = await powerCut(store);
    } finally {
      await engine.close();
    }
    const before = stateAt(new Int32Array(SIZE / UNIT), ops, 1);
    await checkAfterCut(copy, TAG, (last) => stateAt(new Int32Array(SIZE / UNIT), ops, last >= 3 ? 2 : 1), { marker: 'before', owners: before });
  });

  it('recovery makes the records it replays durable before it checkpoints them', async () => {
    const store = await newStore();
    const seed = SEED + 9;
    const count = 30;
    // The child never flushes: its journal lives in the page cache only.
    await runReplayWriter(store, seed, count, 'unsynced');
    const plan = replayWrites(seed, count);
    const model = (last: number) => stateAt(new Int32Array(plan.size / UNIT), plan.ops, last);
    // Recovery replays the records and checkpoints them; the power cut comes right after.
    const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    let copy: string;
    try {
      expect(await checkpointSequence(store)).toBe(count);
      copy = await powerCut(store);
    } finally {
      await engine.close();
    }
    await checkAfterCut(copy, plan.tag, model);
  });
});

function encode(record: JournalRecord): Buffer {
  const bytes = Buffer.alloc(encodedSize(record));
  encodeRecord(record, bytes);
  return bytes;
}

function corruptCrc(bytes: Buffer): Buffer {
  bytes.writeUInt32LE((bytes.readUInt32LE(0) ^ 0x10) >>> 0, 0);
  return bytes;
}
