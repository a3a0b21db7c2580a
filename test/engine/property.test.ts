import fc from 'fast-check';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine, type RestoreRequest, type RestoreResult } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';
import { ModelVolume, covers, differingRanges, firstDifference, patternBytes, type Range } from './model.js';

/**
 * Model-based property test: random command sequences run against the real engine on a
 * fresh store and against the reference model in model.ts; after every step each volume,
 * snapshot image, marker list and diff must agree with the model.
 *
 * TIDEMARK_PROPERTY_RUNS sets the number of runs; TIDEMARK_PROPERTY_SEED and
 * TIDEMARK_PROPERTY_PATH replay a failure; TIDEMARK_PROPERTY_NO_SHRINK=1 reports the first
 * failure as found, which is quicker to read than waiting for shrinking.
 */
const RUNS = Number(process.env.TIDEMARK_PROPERTY_RUNS ?? 100);
// Chosen here rather than by fast-check so that a run that hangs, or a search cut short by
// the time limit, can still name the seed that replays it.
const SEED = process.env.TIDEMARK_PROPERTY_SEED === undefined ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : Number(process.env.TIDEMARK_PROPERTY_SEED);
/** One command sequence takes well under a second; a run this long is hung, and says at which step. */
const RUN_DEADLINE_MS = Number(process.env.TIDEMARK_PROPERTY_RUN_DEADLINE_MS ?? 60_000);
/** Searching and shrinking stop here, leaving time for the report before jest's timeout. */
const TOTAL_MS = 780_000;
const MAX_VOLUMES = 4;
const MAX_WRITE = 16 * 1024;
/** What the runs exercised, printed with TIDEMARK_PROPERTY_STATS=1 to judge the generators. */
const stats = new Map<string, number>();
const count = (what: string) => stats.set(what, (stats.get(what) ?? 0) + 1);

type RangePick = { start: number; length: number };
type Ranges = RangePick[] | null;

type Cmd =
  | { k: 'create'; sizeKiB: 64 | 128 | 192 | 256; blockSize: 512 | 4096; granularityShift: number }
  | { k: 'write'; v: number; offset: number; length: number; seed: number; fua: boolean }
  | { k: 'parallel'; v: number; writes: { offset: number; length: number; seed: number }[] }
  | { k: 'mixed'; v: number; writes: { offset: number; length: number; seed: number }[]; at: number; what: 'snapshot' | 'marker' }
  | { k: 'zero'; v: number; offset: number; length: number; trim: boolean; fua: boolean }
  | { k: 'flush'; v: number }
  | { k: 'snapshot'; v: number }
  | { k: 'deleteSnapshot'; v: number; s: number }
  | { k: 'marker'; v: number }
  | { k: 'group'; vs: number[] }
  | { k: 'restoreSnapshot'; v: number; s: number; ranges: Ranges; force: boolean }
  | { k: 'rewind'; v: number; m: number; ranges: Ranges; force: boolean }
  | { k: 'restorePoint'; v: number; p: number; by: 'time' | 'sequence'; ranges: Ranges; force: boolean }
  | { k: 'restoreNew'; v: number; p: number; from: 'snapshot' | 'marker' | 'time' | 'sequence' }
  | { k: 'deleteVolume'; v: number; force: boolean }
  | { k: 'reopen' }
  | { k: 'upkeep' }
  | { k: 'retention'; v: number; maxKiB: number; maxAgeSeconds: number | null }
  | { k: 'enforce'; v: number; aheadSeconds: number }
  | { k: 'badRestore'; v: number; kind: number; pick: number }
  | { k: 'hold'; v: number };

const nat = fc.nat({ max: 1 << 20 });
const rangesArb: fc.Arbitrary<Ranges> = fc.option(fc.array(fc.record({ start: nat, length: nat }), { minLength: 1, maxLength: 3 }), { nil: null, freq: 2 });
const createArb = fc.record({
  k: fc.constant('create' as const),
  sizeKiB: fc.constantFrom(64 as const, 128 as const, 192 as const, 256 as const),
  blockSize: fc.constantFrom(512 as const, 4096 as const),
  granularityShift: fc.nat({ max: 7 }),
});

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 2, arbitrary: createArb },
  { weight: 10, arbitrary: fc.record({ k: fc.constant('write' as const), v: nat, offset: nat, length: nat, seed: fc.nat(), fua: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('parallel' as const),
      v: nat,
      writes: fc.array(fc.record({ offset: nat, length: nat, seed: fc.nat() }), { minLength: 2, maxLength: 5 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('mixed' as const),
      v: nat,
      writes: fc.array(fc.record({ offset: nat, length: nat, seed: fc.nat() }), { minLength: 1, maxLength: 4 }),
      at: nat,
      what: fc.constantFrom('snapshot' as const, 'marker' as const),
    }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('zero' as const), v: nat, offset: nat, length: nat, trim: fc.boolean(), fua: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('flush' as const), v: nat }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('snapshot' as const), v: nat }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('deleteSnapshot' as const), v: nat, s: nat }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('marker' as const), v: nat }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('group' as const), vs: fc.array(nat, { minLength: 2, maxLength: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('restoreSnapshot' as const), v: nat, s: nat, ranges: rangesArb, force: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('rewind' as const), v: nat, m: nat, ranges: rangesArb, force: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant('restorePoint' as const), v: nat, p: nat, by: fc.constantFrom('time' as const, 'sequence' as const), ranges: rangesArb, force: fc.boolean() }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant('restoreNew' as const), v: nat, p: nat, from: fc.constantFrom('snapshot' as const, 'marker' as const, 'time' as const, 'sequence' as const) }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('deleteVolume' as const), v: nat, force: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reopen' as const) }) },
  // Checkpoints and retention as the upkeep timer runs them, at a step the seed picks.
  { weight: 2, arbitrary: fc.record({ k: fc.constant('upkeep' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('retention' as const), v: nat, maxKiB: fc.integer({ min: 4, max: 128 }), maxAgeSeconds: fc.option(fc.integer({ min: 1, max: 5 }), { nil: null }) }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('enforce' as const), v: nat, aheadSeconds: fc.nat({ max: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('badRestore' as const), v: nat, kind: fc.nat({ max: 7 }), pick: nat }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('hold' as const), v: nat }) },
);

const configArb = fc.record({
  // Small segments make the journal roll and retention free it; the default never rolls here.
  segmentSize: fc.constantFrom(4096, 8192, 32 * 1024, 64 * 1024, undefined),
  // Volumes created with a small journal allowance free it in the background as segments roll.
  retentionKiB: fc.option(fc.integer({ min: 8, max: 96 }), { nil: undefined, freq: 2 }),
});

const HOLDER = 'property-test';

/** Runs an engine call and returns its error code, or undefined when it succeeded. */
async function codeOf(fn: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof TidemarkError) return err.code;
    throw err;
  }
  return undefined;
}

class Run {
  engine!: Engine;
  readonly volumes = new Map<string, ModelVolume>();
  readonly held = new Set<string>();
  readonly trace: string[] = [];
  private counter = 0;
  private lastObserved = 0;

  constructor(
    readonly store: string,
    readonly segmentSize: number | undefined,
    readonly retentionKiB: number | undefined,
  ) {}

  /**
   * No upkeep timer: a timer fires at moments no seed decides, so a failing run would not
   * replay. The `upkeep` command runs the same work at a step the seed picks.
   */
  async open(): Promise<void> {
    this.engine = await Engine.open({ store: this.store, segmentSize: this.segmentSize, upkeepIntervalMs: 0 });
  }

  private volume(pick: number): ModelVolume | undefined {
    const names = [...this.volumes.keys()].sort();
    return names.length === 0 ? undefined : this.volumes.get(names[pick % names.length]!);
  }

  private note(text: string): void {
    count(text.split(' ')[0]!);
    this.trace.push(text);
  }

  /** Block-aligned ranges inside the volume from the generated picks. */
  private ranges(v: ModelVolume, picks: Ranges): Range[] | undefined {
    if (!picks) return undefined;
    const blocks = v.size / v.blockSize;
    return picks.map((p) => {
      const start = p.start % blocks;
      const length = 1 + (p.length % Math.min(blocks - start, 16));
      return { offset: start * v.blockSize, length: length * v.blockSize };
    });
  }

  /** Records of the next step must carry a later millisecond than everything observed so far. */
  private async nextMillisecond(): Promise<void> {
    while (Date.now() <= this.lastObserved) {
      // Waiting out a clock stepped back by NTP could take hours; say so instead.
      if (Date.now() < this.lastObserved - 1000) throw new Error(`the system clock went back ${this.lastObserved - Date.now()} ms during the run; record times cannot be compared with the model's`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async step(cmd: Cmd): Promise<void> {
    await this.nextMillisecond();
    const started = performance.now();
    await this.exec(cmd);
    const executed = performance.now();
    this.observe();
    await this.check();
    if (process.env.TIDEMARK_PROPERTY_STATS) {
      stats.set(`ms ${cmd.k}`, (stats.get(`ms ${cmd.k}`) ?? 0) + Math.round(executed - started));
      stats.set('ms check', (stats.get('ms check') ?? 0) + Math.round(performance.now() - executed));
    }
  }

  /** Remembers, per volume, that everything recorded up to now is at or before its current sequence. */
  private observe(): void {
    const sequences = [...this.volumes.values()].map((v) => [v, this.engine.volumeInfo(v.name).sequence] as const);
    const now = Date.now();
    for (const [v, sequence] of sequences) v.timePoints.push({ time: now, sequence });
    this.lastObserved = now;
  }

  private sequenceOf(v: ModelVolume): number {
    return this.engine.volumeInfo(v.name).sequence;
  }

  private async exec(cmd: Cmd): Promise<void> {
    const e = this.engine;
    switch (cmd.k) {
      case 'create': {
        if (this.volumes.size >= MAX_VOLUMES) return;
        const name = `v${this.counter++}`;
        const size = cmd.sizeKiB * 1024;
        const granularity = Math.min(65536, cmd.blockSize << cmd.granularityShift);
        this.note(`create ${name} size=${size} bs=${cmd.blockSize} g=${granularity}`);
        const retention = this.retentionKiB === undefined ? undefined : { maxBytes: this.retentionKiB * 1024 };
        const info = await e.createVolume(name, { size, blockSize: cmd.blockSize, granularity, retention });
        expect(info).toMatchObject({ name, size, blockSize: cmd.blockSize, granularity, sequence: 0, snapshotCount: 0, markerCount: 0 });
        this.volumes.set(name, new ModelVolume(name, size, cmd.blockSize, granularity));
        return;
      }
      case 'write': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const offset = cmd.offset % v.size;
        const length = cmd.length % (Math.min(MAX_WRITE, v.size - offset) + 1);
        const data = patternBytes(cmd.seed, length);
        this.note(`write ${v.name} ${offset}+${length} seed=${cmd.seed} fua=${cmd.fua}`);
        const sequence = await e.write(v.name, offset, data, { fua: cmd.fua });
        v.write(sequence, Date.now(), offset, data);
        return;
      }
      case 'parallel': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const writes = cmd.writes.map((w) => {
          const offset = w.offset % v.size;
          const length = 1 + (w.length % Math.min(MAX_WRITE, v.size - offset));
          return { offset, data: patternBytes(w.seed, length), seed: w.seed };
        });
        this.note(`parallel ${v.name} ${writes.map((w) => `${w.offset}+${w.data.length}/${w.seed}`).join(' ')}`);
        // Issued together, acknowledged in any order; they must reach the image in issue order.
        const sequences = await Promise.all(writes.map((w) => e.write(v.name, w.offset, w.data)));
        for (let i = 1; i < sequences.length; i++) expect(sequences[i]!).toBeGreaterThan(sequences[i - 1]!);
        writes.forEach((w, i) => v.write(sequences[i]!, Date.now(), w.offset, w.data));
        return;
      }
      case 'mixed': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const writes = cmd.writes.map((w) => {
          const offset = w.offset % v.size;
          const length = 1 + (w.length % Math.min(MAX_WRITE, v.size - offset));
          return { offset, data: patternBytes(w.seed, length) };
        });
        const at = cmd.at % (writes.length + 1);
        const name = `${cmd.what === 'snapshot' ? 's' : 'm'}${this.counter++}`;
        this.note(`mixed ${v.name}: ${writes.map((w) => `${w.offset}+${w.data.length}`).join(' ')} with ${cmd.what} ${name} issued after ${at}`);
        // A snapshot or marker requested while writes are in flight lands between two of them;
        // its sequence number says which, and its contents must agree.
        const pending: Promise<number>[] = writes.slice(0, at).map((w) => e.write(v.name, w.offset, w.data));
        const cut =
          cmd.what === 'snapshot'
            ? e.createSnapshot(v.name, name).then((i) => ({ sequence: i.sequence, createdAt: i.createdAt.getTime() }))
            : e.createMarker(name, [v.name]).then(([m]) => ({ sequence: m!.sequence, createdAt: m!.createdAt.getTime() }));
        pending.push(...writes.slice(at).map((w) => e.write(v.name, w.offset, w.data)));
        const [sequences, { sequence: cutSequence, createdAt }] = await Promise.all([Promise.all(pending), cut]);
        for (let i = 1; i < sequences.length; i++) expect(sequences[i]!).toBeGreaterThan(sequences[i - 1]!);
        let recorded = false;
        const record = () => {
          if (recorded) return;
          recorded = true;
          if (cmd.what === 'snapshot') v.snapshot(name, cutSequence);
          else v.marker(name, cutSequence, createdAt).sharesItsTime = sequences.some((sequence) => sequence > cutSequence);
        };
        writes.forEach((w, i) => {
          if (sequences[i]! > cutSequence) record();
          v.write(sequences[i]!, Date.now(), w.offset, w.data);
        });
        record();
        return;
      }
      case 'zero': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const offset = cmd.offset % v.size;
        const length = cmd.length % (v.size - offset + 1);
        this.note(`${cmd.trim ? 'trim' : 'zero'} ${v.name} ${offset}+${length} fua=${cmd.fua}`);
        const sequence = await e.zero(v.name, offset, length, { trim: cmd.trim, fua: cmd.fua });
        v.zero(sequence, Date.now(), offset, length);
        return;
      }
      case 'flush': {
        const v = this.volume(cmd.v);
        if (!v) return;
        this.note(`flush ${v.name}`);
        const sequence = await e.flush(v.name);
        expect(sequence).toBe(this.sequenceOf(v));
        return;
      }
      case 'snapshot': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const name = `s${this.counter++}`;
        this.note(`snapshot ${v.name} ${name}`);
        const info = await e.createSnapshot(v.name, name);
        expect(info).toMatchObject({ volume: v.name, name, internal: false, size: v.size });
        v.snapshot(name, info.sequence);
        return;
      }
      case 'deleteSnapshot': {
        const v = this.volume(cmd.v);
        const names = v ? [...v.snapshots.keys()].sort() : [];
        if (!v || names.length === 0) return;
        const name = names[cmd.s % names.length]!;
        this.note(`delete snapshot ${v.name} ${name}`);
        await e.deleteSnapshot(v.name, name);
        v.snapshots.delete(name);
        return;
      }
      case 'marker': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const name = `m${this.counter++}`;
        this.note(`marker ${v.name} ${name}`);
        const [info, ...rest] = await e.createMarker(name, [v.name]);
        expect(rest).toEqual([]);
        expect(info).toMatchObject({ volume: v.name, name, group: '', expired: false });
        expect(info!.sequence).toBe(this.sequenceOf(v));
        v.marker(name, info!.sequence, info!.createdAt.getTime());
        return;
      }
      case 'group': {
        const picked = [...new Set(cmd.vs.map((p) => this.volume(p)).filter((v): v is ModelVolume => v !== undefined))];
        if (picked.length < 2) return;
        const name = `g${this.counter++}`;
        this.note(`group marker ${name} on ${picked.map((v) => v.name).join(',')}`);
        const infos = await e.createMarker(name, picked.map((v) => v.name));
        expect(infos.map((i) => i.volume).sort()).toEqual(picked.map((v) => v.name).sort());
        const group = infos[0]!.group;
        expect(group).not.toBe('');
        for (const info of infos) {
          expect(info.group).toBe(group);
          const v = this.volumes.get(info.volume)!;
          // The cut: no record of this volume lies after its marker yet.
          expect(info.sequence).toBe(this.sequenceOf(v));
          v.marker(name, info.sequence, info.createdAt.getTime());
        }
        return;
      }
      case 'restoreSnapshot': {
        const v = this.volume(cmd.v);
        const names = v ? [...v.snapshots.keys()].sort() : [];
        if (!v || names.length === 0) return;
        const snapshot = v.snapshots.get(names[cmd.s % names.length]!)!;
        const ranges = this.ranges(v, cmd.ranges);
        await this.restoreInPlace(v, { volume: v.name, source: { snapshot: snapshot.name }, ranges, force: cmd.force }, snapshot.sequence, () => snapshot.data, 'snapshot-diff');
        return;
      }
      case 'rewind': {
        const v = this.volume(cmd.v);
        const names = v ? [...v.markers.keys()].sort() : [];
        if (!v || names.length === 0) return;
        const marker = v.markers.get(names[cmd.m % names.length]!)!;
        const ranges = this.ranges(v, cmd.ranges);
        await this.restoreInPlace(v, { volume: v.name, source: { marker: marker.name }, ranges, force: cmd.force }, marker.sequence, () => v.dataAt(marker.sequence), 'rewind');
        return;
      }
      case 'restorePoint': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const point = this.pickPoint(v, cmd.p);
        const ranges = this.ranges(v, cmd.ranges);
        const source = cmd.by === 'time' ? { time: new Date(point.time) } : { sequence: point.sequence };
        await this.restoreInPlace(v, { volume: v.name, source, ranges, force: cmd.force }, point.sequence, () => v.dataAt(point.sequence), 'rewind');
        return;
      }
      case 'restoreNew': {
        const v = this.volume(cmd.v);
        if (!v || this.volumes.size >= MAX_VOLUMES + 1) return;
        await this.restoreNew(v, cmd.from, cmd.p);
        return;
      }
      case 'deleteVolume': {
        const v = this.volume(cmd.v);
        if (!v) return;
        this.note(`delete volume ${v.name} force=${cmd.force} held=${this.held.has(v.name)}`);
        if (this.held.has(v.name) && !cmd.force) {
          expect(await codeOf(() => e.deleteVolume(v.name))).toBe('BUSY');
          return;
        }
        await e.deleteVolume(v.name, { force: cmd.force });
        expect(e.has(v.name)).toBe(false);
        this.volumes.delete(v.name);
        this.held.delete(v.name);
        return;
      }
      case 'upkeep': {
        this.note('upkeep of every volume (checkpoints, retention)');
        await e.upkeep();
        return;
      }
      case 'reopen': {
        this.note('close and reopen the engine');
        await e.close();
        await this.open();
        // Holders are connections of the process that went away.
        this.held.clear();
        return;
      }
      case 'retention': {
        const v = this.volume(cmd.v);
        if (!v) return;
        const retention = { maxBytes: cmd.maxKiB * 1024, ...(cmd.maxAgeSeconds === null ? {} : { maxAgeSeconds: cmd.maxAgeSeconds }) };
        this.note(`retention ${v.name} ${JSON.stringify(retention)}`);
        const info = await e.setRetention(v.name, retention);
        expect(info.retention).toEqual(retention);
        return;
      }
      case 'enforce': {
        const v = this.volume(cmd.v);
        if (!v) return;
        this.note(`enforce retention ${v.name} now+${cmd.aheadSeconds}s`);
        const before = this.engine.volumeInfo(v.name).earliestRecoverableSequence;
        const outcome = await e.enforceRetention(v.name, Date.now() + cmd.aheadSeconds * 1000);
        if (outcome.freedBytes > 0) count('enforce freed journal');
        if (outcome.basesTaken.length > 0) count('enforce took a base');
        expect(this.engine.volumeInfo(v.name).earliestRecoverableSequence).toBeGreaterThanOrEqual(before);
        return;
      }
      case 'badRestore':
        await this.badRestore(cmd);
        return;
      case 'hold': {
        const v = this.volume(cmd.v);
        if (!v) return;
        if (this.held.has(v.name)) {
          this.note(`release ${v.name}`);
          e.release(v.name, HOLDER);
          this.held.delete(v.name);
        } else {
          this.note(`hold ${v.name}`);
          e.hold(v.name, HOLDER);
          this.held.add(v.name);
        }
        expect(e.volumeInfo(v.name).holders).toEqual(this.held.has(v.name) ? [HOLDER] : []);
        return;
      }
    }
  }

  /** A point of the volume's history: an observed moment or a marker's creation time. */
  private pickPoint(v: ModelVolume, pick: number): { time: number; sequence: number } {
    const points = [
      ...v.timePoints,
      ...[...v.markers.values()].filter((m) => !m.sharesItsTime).map((m) => ({ time: m.createdAt, sequence: m.sequence })),
    ];
    if (points.length === 0) return { time: Date.now(), sequence: this.sequenceOf(v) };
    return points[pick % points.length]!;
  }

  /**
   * An in-place restore: refused with BUSY while held (unless forced); EXPIRED accepted only
   * for a point older than the earliest recoverable sequence; otherwise the data must be
   * `expected()` inside the ranges and unchanged outside.
   */
  private async restoreInPlace(v: ModelVolume, request: RestoreRequest, point: number, expected: () => Buffer, method: RestoreResult['method']): Promise<void> {
    this.note(`restore ${v.name} from ${JSON.stringify(request.source)} point=${point} ranges=${JSON.stringify(request.ranges ?? 'all')} force=${request.force} held=${this.held.has(v.name)}`);
    if (this.held.has(v.name) && !request.force) {
      expect(await codeOf(() => this.engine.restore(request))).toBe('BUSY');
      return;
    }
    let result: RestoreResult;
    try {
      result = await this.engine.restore(request);
    } catch (err) {
      if (err instanceof TidemarkError && err.code === 'EXPIRED') {
        const earliest = this.engine.volumeInfo(v.name).earliestRecoverableSequence;
        this.note(`  -> EXPIRED (earliest recoverable ${earliest})`);
        count('expired in place');
        expect(point).toBeLessThan(earliest);
        return;
      }
      throw err;
    }
    count(`restored in place by ${method} (${Object.keys(request.source)[0]}${request.ranges ? ', ranges' : ''})`);
    expect(result.method).toBe(method);
    expect(result.volume).toBe(v.name);
    expectSamePoint(v, request.source, point, result.pointSequence);
    v.replace(this.sequenceOf(v), Date.now(), v.restored(expected(), request.ranges));
  }

  private async restoreNew(v: ModelVolume, from: 'snapshot' | 'marker' | 'time' | 'sequence', pick: number): Promise<void> {
    const target = `v${this.counter++}`;
    let source: RestoreRequest['source'];
    let point: number;
    let expected: () => Buffer;
    if (from === 'snapshot') {
      const names = [...v.snapshots.keys()].sort();
      if (names.length === 0) return;
      const snapshot = v.snapshots.get(names[pick % names.length]!)!;
      source = { snapshot: snapshot.name };
      point = snapshot.sequence;
      expected = () => snapshot.data;
    } else if (from === 'marker') {
      const names = [...v.markers.keys()].sort();
      if (names.length === 0) return;
      const marker = v.markers.get(names[pick % names.length]!)!;
      source = { marker: marker.name };
      point = marker.sequence;
      expected = () => v.dataAt(marker.sequence);
    } else {
      const p = this.pickPoint(v, pick);
      source = from === 'time' ? { time: new Date(p.time) } : { sequence: p.sequence };
      point = p.sequence;
      expected = () => v.dataAt(p.sequence);
    }
    this.note(`restore ${v.name} from ${JSON.stringify(source)} point=${point} into new volume ${target}`);
    let result: RestoreResult;
    try {
      // Allowed while the source is held: the source is only read.
      result = await this.engine.restore({ volume: v.name, source, target });
    } catch (err) {
      if (err instanceof TidemarkError && err.code === 'EXPIRED') {
        const earliest = this.engine.volumeInfo(v.name).earliestRecoverableSequence;
        this.note(`  -> EXPIRED (earliest recoverable ${earliest})`);
        count('expired new');
        expect(point).toBeLessThan(earliest);
        expect(this.engine.has(target)).toBe(false);
        return;
      }
      throw err;
    }
    count(`restored into a new volume from ${from}`);
    expect(result.method).toBe('rebuild');
    expect(result.volume).toBe(target);
    expectSamePoint(v, source, point, result.pointSequence);
    const info = this.engine.volumeInfo(target);
    expect(info).toMatchObject({ size: v.size, blockSize: v.blockSize, granularity: v.granularity });
    const model = new ModelVolume(target, v.size, v.blockSize, v.granularity, info.sequence);
    model.replace(info.sequence, Date.now(), expected());
    this.volumes.set(target, model);
  }

  /** Malformed or misplaced ranges are refused before anything is written. */
  private async badRestore(cmd: Extract<Cmd, { k: 'badRestore' }>): Promise<void> {
    const v = this.volume(cmd.v);
    if (!v) return;
    const snapshots = [...v.snapshots.keys()].sort();
    const markers = [...v.markers.keys()].sort();
    const source: RestoreRequest['source'] =
      snapshots.length > 0 ? { snapshot: snapshots[cmd.pick % snapshots.length]! } : markers.length > 0 ? { marker: markers[cmd.pick % markers.length]! } : { sequence: 0 };
    const blocks = v.size / v.blockSize;
    const at = (cmd.pick % blocks) * v.blockSize;
    const cases: [Range[], string, string?][] = [
      [[{ offset: at + 1 + (cmd.pick % (v.blockSize - 1)), length: v.blockSize }], 'INVALID_ARGUMENT'],
      [[{ offset: at, length: v.blockSize + 1 + (cmd.pick % (v.blockSize - 1)) }], 'INVALID_ARGUMENT'],
      [[{ offset: at, length: v.size - at + v.blockSize }], 'OUT_OF_RANGE'],
      [[], 'INVALID_ARGUMENT'],
      [[{ offset: at, length: 0 }], 'INVALID_ARGUMENT'],
      [[{ offset: 0, length: v.blockSize }], 'INVALID_ARGUMENT', `new${this.counter++}`],
      [[{ offset: -v.blockSize, length: v.blockSize }], 'INVALID_ARGUMENT'],
      [[{ offset: 0, length: v.blockSize }, { offset: v.size, length: v.blockSize }], 'OUT_OF_RANGE'],
    ];
    const [ranges, code, target] = cases[cmd.kind % cases.length]!;
    this.note(`bad restore ${v.name} from ${JSON.stringify(source)} ranges=${JSON.stringify(ranges)} target=${target} expecting ${code}`);
    // force: being held must not be what refuses it.
    expect(await codeOf(() => this.engine.restore({ volume: v.name, source, ranges, target, force: true }))).toBe(code);
    if (target) expect(this.engine.has(target)).toBe(false);
  }

  /** Everything the engine shows must match the model. */
  async check(): Promise<void> {
    const e = this.engine;
    expect(e.listVolumes().map((i) => i.name)).toEqual([...this.volumes.keys()].sort());
    for (const v of this.volumes.values()) {
      const data = await e.read(v.name, 0, v.size);
      const diffAt = firstDifference(data, v.data);
      if (diffAt >= 0) throw new Error(`volume ${v.name} differs from the model at byte ${diffAt}: engine ${data[diffAt]} model ${v.data[diffAt]}`);

      const info = e.volumeInfo(v.name);
      const markers = e.listMarkers(v.name);
      expect(info.snapshotCount).toBe(v.snapshots.size);
      expect(info.markerCount).toBe(v.markers.size);
      expect(markers.map((m) => [m.name, m.sequence]).sort()).toEqual([...v.markers.values()].map((m) => [m.name, m.sequence]).sort());
      for (const m of markers) expect(m.expired).toBe(m.sequence < info.earliestRecoverableSequence);
      expect(info.earliestRecoverableSequence).toBeLessThanOrEqual(info.sequence);

      const snapshots = e.listSnapshots(v.name);
      expect(snapshots.map((s) => [s.name, s.sequence]).sort()).toEqual([...v.snapshots.values()].map((s) => [s.name, s.sequence]).sort());
      const ordered = [...v.snapshots.values()].sort((a, b) => a.sequence - b.sequence);
      for (const s of ordered) {
        const image = await fs.readFile(e.snapshotImagePath(v.name, s.name));
        const at = firstDifference(image, s.data);
        if (at >= 0) throw new Error(`snapshot image ${v.name}/${s.name} differs from the model at byte ${at} (length ${image.length})`);
        this.checkDiff(v, e.diff(v.name, s.name), differingRanges(s.data, data, 4096), `diff ${v.name} ${s.name}..live`);
      }
      for (let i = 1; i < ordered.length; i++) {
        const [a, b] = [ordered[i - 1]!, ordered[i]!];
        this.checkDiff(v, e.diff(v.name, a.name, b.name), differingRanges(a.data, b.data, 4096), `diff ${v.name} ${a.name}..${b.name}`);
      }
      if (ordered.length > 2) {
        const [a, b] = [ordered[0]!, ordered[ordered.length - 1]!];
        this.checkDiff(v, e.diff(v.name, a.name, b.name), differingRanges(a.data, b.data, 4096), `diff ${v.name} ${a.name}..${b.name}`);
      }
      // A backup that reads only the allocated extents must still see every non-zero byte.
      this.checkDiff(v, e.allocated(v.name), differingRanges(Buffer.alloc(v.size), data, 4096), `allocated ${v.name}`);
    }
  }

  private checkDiff(v: ModelVolume, extents: Range[], differing: Range[], what: string): void {
    for (const x of extents) {
      expect(x.offset % v.granularity).toBe(0);
      expect(x.length).toBeGreaterThan(0);
      expect(x.offset + x.length).toBeLessThanOrEqual(v.size);
      if (x.offset + x.length < v.size) expect((x.offset + x.length) % v.granularity).toBe(0);
    }
    const missed = covers(extents, differing);
    if (missed) throw new Error(`${what} under-reports: bytes ${missed.offset}+${missed.length} differ but are not listed in ${JSON.stringify(extents)}`);
  }

  /**
   * At the end, a few points per volume rebuild into new volumes: the oldest marker that is
   * not expired, the newest marker, and the latest observed moment (which must stay
   * recoverable however much journal retention freed). Then the volume is rewound in place
   * through its live markers and some observed moments, and forward again to the latest.
   */
  async sweep(): Promise<void> {
    for (const v of [...this.volumes.values()]) {
      const earliest = this.engine.volumeInfo(v.name).earliestRecoverableSequence;
      const markers = [...v.markers.values()].sort((a, b) => a.sequence - b.sequence);
      const live = markers.filter((m) => m.sequence >= earliest);
      const chosen = new Set([live[0], markers[markers.length - 1]].filter((m) => m !== undefined));
      const latest = v.timePoints[v.timePoints.length - 1]!;
      const points = [
        ...[...chosen].map((m) => ({ source: { marker: m.name } as RestoreRequest['source'], sequence: m.sequence })),
        { source: { time: new Date(latest.time) } as RestoreRequest['source'], sequence: latest.sequence },
      ];
      for (const point of points) {
        const target = `sweep${this.counter++}`;
        this.note(`sweep: restore ${v.name} ${JSON.stringify(point.source)} point=${point.sequence} into ${target}`);
        try {
          await this.engine.restore({ volume: v.name, source: point.source, target });
        } catch (err) {
          if (err instanceof TidemarkError && err.code === 'EXPIRED') {
            expect(point.sequence).toBeLessThan(this.engine.volumeInfo(v.name).earliestRecoverableSequence);
            count('sweep expired');
            continue;
          }
          throw err;
        }
        count('sweep restored');
        const data = await this.engine.read(target, 0, v.size);
        const expected = v.dataAt(point.sequence);
        const at = firstDifference(data, expected);
        if (at >= 0) throw new Error(`sweep: ${v.name} at ${JSON.stringify(point.source)} differs from the model at byte ${at}`);
        await this.engine.deleteVolume(target);
      }
      // In place too, which reads the journal another way: back to each live marker and to a
      // few observed moments, then forward again to the latest moment, which the rewinds must
      // have left reachable.
      const moments = v.timePoints.filter((p, i) => p.sequence >= earliest && i % 3 === 1).slice(-4);
      const rewinds = [
        ...live.slice(-4).map((m) => ({ source: { marker: m.name } as RestoreRequest['source'], sequence: m.sequence })),
        ...moments.map((p) => ({ source: { time: new Date(p.time) } as RestoreRequest['source'], sequence: p.sequence })),
        { source: { time: new Date(latest.time) } as RestoreRequest['source'], sequence: latest.sequence },
      ];
      for (const point of rewinds) {
        await this.nextMillisecond();
        await this.restoreInPlace(v, { volume: v.name, source: point.source, force: true }, point.sequence, () => v.dataAt(point.sequence), 'rewind');
        const at = firstDifference(await this.engine.read(v.name, 0, v.size), v.data);
        if (at >= 0) throw new Error(`sweep: ${v.name} rewound in place to ${JSON.stringify(point.source)} differs from the model at byte ${at}`);
      }
      this.observe();
      await this.check();
    }
  }
}

/**
 * The engine's restore point against the model's: nothing that changed data may lie between
 * them. A snapshot, marker or sequence names a record, so the engine's point is never earlier.
 * A time names a moment: once retention has freed the records around it and a snapshot there
 * was deleted, the engine knows only the last data change before it, which is an earlier
 * sequence holding the same data.
 */
function expectSamePoint(v: ModelVolume, source: RestoreRequest['source'], point: number, engine: number): void {
  if (!('time' in source)) expect(engine).toBeGreaterThanOrEqual(point);
  const [low, high] = [Math.min(point, engine), Math.max(point, engine)];
  expect(v.entries.filter((entry) => entry.sequence > low && entry.sequence <= high)).toEqual([]);
}

/** Rejects with `why()` when `work` has not settled within `ms`; the timer never holds the process. */
async function withDeadline<T>(work: Promise<T>, ms: number, why: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why())), ms);
    timer.unref();
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

let reported = false;

describe('engine against the reference model', () => {
  it(`agrees after every step of ${RUNS} random command sequences`, async () => {
    await fc.assert(
      fc.asyncProperty(configArb, createArb, fc.array(cmdArb, { minLength: 5, maxLength: 40, size: 'max' }), async (config, first, cmds) => {
        const store = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-property-'));
        const run = new Run(store, config.segmentSize, config.retentionKiB);
        try {
          await run.open();
          run.trace.push(`store segmentSize=${config.segmentSize ?? 'default'} retention=${config.retentionKiB ?? 'none'} KiB`);
          await withDeadline(
            (async () => {
              for (const cmd of [first, ...cmds]) await run.step(cmd);
              const swept = performance.now();
              run.trace.push('sweep');
              await run.sweep();
              if (process.env.TIDEMARK_PROPERTY_STATS) stats.set('ms sweep', (stats.get('ms sweep') ?? 0) + Math.round(performance.now() - swept));
            })(),
            RUN_DEADLINE_MS,
            () => `hung: no progress for ${RUN_DEADLINE_MS} ms in the last step below`,
          );
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          const report = `${message}\n--- steps ---\n${run.trace.join('\n')}`;
          // Straight to stderr: if shrinking outlasts the time limit, the first failure is still on record.
          if (!reported) process.stderr.write(`property test: first failure, replay with TIDEMARK_PROPERTY_SEED=${SEED} TIDEMARK_PROPERTY_NO_SHRINK=1\n${report}\n`);
          reported = true;
          throw new Error(report);
        } finally {
          // A hung engine may never close; the store is removed either way.
          await withDeadline(run.engine?.close() ?? Promise.resolve(), 5_000, () => 'close hung').catch(() => undefined);
          await fs.rm(store, { recursive: true, force: true });
        }
      }),
      {
        numRuns: RUNS,
        seed: SEED,
        path: process.env.TIDEMARK_PROPERTY_PATH,
        endOnFailure: process.env.TIDEMARK_PROPERTY_NO_SHRINK === '1',
        interruptAfterTimeLimit: TOTAL_MS,
        markInterruptAsFailure: true,
      },
    );
    if (process.env.TIDEMARK_PROPERTY_STATS) console.log([...stats].sort().map(([k, n]) => `${k}: ${n}`).join('\n'));
  }, 900_000);
});
