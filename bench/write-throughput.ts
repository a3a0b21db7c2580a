import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Engine } from '../src/engine/index.js';
import { DataPool, GiB, KiB, MiB, Random, fmtBytes, fmtMs, inFlight, mbPerSecond, median, syncAll, tempDir, timed } from './lib/harness.js';
import { crcCostMsPerMiB, encodeCostMsPerMiB, instrumentWritePath, type WriteProfile } from './lib/instrument.js';
import { verdict, type BenchOptions, type BenchResult, type Row } from './lib/report.js';

const TARGET = 0.9;
const DEPTH = 64;
const CONTENDERS = ['engine', 'plain', 'double'] as const;
type Contender = (typeof CONTENDERS)[number];

interface Pattern {
  id: 'sequential' | 'random';
  label: string;
  io: number;
  offsets: number[];
}

interface PatternResult {
  pattern: string;
  io: number;
  count: number;
  bytes: number;
  depth: number;
  engineMs: number[];
  plainMs: number[];
  /** The floor of any write-twice design: the same bytes to a journal-shaped file and an image file. */
  doubleMs: number[];
  engineMBps: number;
  plainMBps: number;
  doubleMBps: number;
  ratio: number;
  profile?: ProfileSummary;
}

interface ProfileSummary {
  wallMs: number;
  batches: number;
  opsPerBatch: number;
  /** Milliseconds per part, see instrumentWritePath. */
  parts: Record<string, number>;
  encodeMsPerMiB: number;
  crcMsPerMiB: number;
  checkpoints: number;
  rolls: number;
}

/**
 * Journaled write throughput (design: ≥ 0.9× writing without a journal). The same payloads at
 * the same offsets with the same number in flight go once through engine.write followed by
 * one flush, and once through FileHandle.write to a plain sparse file followed by fdatasync.
 */
export async function writeThroughput(options: BenchOptions): Promise<BenchResult> {
  const volumeSize = options.quick ? 256 * MiB : GiB;
  const sequentialBytes = options.quick ? 128 * MiB : GiB;
  const randomBytes = options.quick ? 16 * MiB : 256 * MiB;
  // This machine's disk is noisy (±40% between identical runs): full mode takes five.
  const runs = options.quick ? 2 : 5;
  const random = new Random(0x77);
  const patterns: Pattern[] = [
    { id: 'sequential', label: 'sequential 1 MiB', io: MiB, offsets: Array.from({ length: sequentialBytes / MiB }, (_, i) => i * MiB) },
    { id: 'random', label: 'random 4 KiB', io: 4 * KiB, offsets: random.sample(volumeSize / (4 * KiB), randomBytes / (4 * KiB)).map((b) => b * 4 * KiB) },
  ];
  const pool = new DataPool(64 * MiB);
  const { dir, dispose } = await tempDir('write', options.baseDir);
  const engine = await Engine.open({ store: path.join(dir, 'store'), upkeepIntervalMs: 0 });
  const results: PatternResult[] = [];
  try {
    for (const pattern of patterns) {
      const timings: Record<Contender, number[]> = { engine: [], plain: [], double: [] };
      const once = async (who: Contender, tag: string): Promise<number> => {
        if (who === 'engine') return engineRun(engine, pool, pattern, volumeSize, `${pattern.id}-${tag}`);
        if (who === 'plain') return plainRun(path.join(dir, `plain-${pattern.id}-${tag}.img`), pool, pattern, volumeSize);
        return doubleRun(path.join(dir, `double-${pattern.id}-${tag}`), pool, pattern, volumeSize);
      };
      // A discarded first round: the first runs in a process are slower for everyone (fresh
      // memory for buffers and page cache, cold code), which would bias whoever goes first.
      options.log(`write: ${pattern.label}, warm-up`);
      for (const who of CONTENDERS) await once(who, 'warm-up');
      for (let r = 0; r < runs; r++) {
        // Rotate who goes first, so none always inherits another's writeback.
        const order = CONTENDERS.map((_, i) => CONTENDERS[(i + r) % CONTENDERS.length]!);
        for (const who of order) {
          options.log(`write: ${pattern.label}, run ${r + 1}/${runs}, ${who}`);
          timings[who].push(await once(who, String(r)));
        }
      }
      const engineMs = timings.engine;
      const plainMs = timings.plain;
      const doubleMs = timings.double;
      const bytes = pattern.offsets.length * pattern.io;
      const engineMBps = mbPerSecond(bytes, median(engineMs));
      const plainMBps = mbPerSecond(bytes, median(plainMs));
      const result: PatternResult = {
        pattern: pattern.label,
        io: pattern.io,
        count: pattern.offsets.length,
        bytes,
        depth: DEPTH,
        engineMs,
        plainMs,
        doubleMs,
        engineMBps,
        plainMBps,
        doubleMBps: mbPerSecond(bytes, median(doubleMs)),
        ratio: engineMBps / plainMBps,
      };
      // Where the time goes: on request, and in full runs whenever the engine falls short.
      if (options.profile || (!options.quick && result.ratio < TARGET)) {
        options.log(`write: ${pattern.label}, instrumented run`);
        result.profile = await profiledRun(engine, pool, pattern, volumeSize);
      }
      results.push(result);
    }
  } finally {
    await engine.close();
    await dispose();
  }

  const rows: Row[] = [];
  for (const r of results) {
    const bestEngine = mbPerSecond(r.bytes, Math.min(...r.engineMs));
    const bestPlain = mbPerSecond(r.bytes, Math.min(...r.plainMs));
    rows.push({
      case: `${r.pattern}, ${DEPTH} in flight, ${fmtBytes(r.bytes)} + flush`,
      tidemark: `${r.engineMBps.toFixed(0)} MB/s (best ${bestEngine.toFixed(0)})`,
      peer: `pwrite ${r.plainMBps.toFixed(0)} MB/s (best ${bestPlain.toFixed(0)})`,
      ratio: `${r.ratio.toFixed(2)}× (best ${(bestEngine / bestPlain).toFixed(2)}×)`,
      target: `≥ ${TARGET}×`,
      verdict: verdict(r.ratio >= TARGET),
    });
  }
  for (const r of results) {
    rows.push({
      case: `${r.pattern}: floor of writing twice`,
      tidemark: `${r.engineMBps.toFixed(0)} MB/s`,
      peer: `2× pwrite ${r.doubleMBps.toFixed(0)} MB/s`,
      ratio: `${(r.engineMBps / r.doubleMBps).toFixed(2)}×`,
      verdict: 'info',
    });
  }
  for (const r of results) if (r.profile) rows.push(...profileRows(r));
  return {
    id: 'write',
    title: 'Write throughput: journaled engine writes vs plain pwrite',
    rows,
    data: { volumeSize, runs, depth: DEPTH, patterns: results },
    notes: [
      `median (and best) of ${runs} runs each after a discarded warm-up round, rotating which goes first, sync(1) before each; MB = 10^6 bytes; the verdict uses the medians`,
      'tidemark = engine.write (journal record with CRC32C, bitmap; the image is written by the background applier once the journal is durable) with the given number in flight, then engine.flush (journal fdatasync)',
      'peer = FileHandle.write of the same bytes to a sparse file of the volume size, same number in flight, then fdatasync',
      '2× pwrite (info) = each payload written both to a journal-shaped file (appended in arrival order) and to an image file, concurrently, then fdatasync of the journal file: what any journal-then-image design pays at least',
      'the engine writes every byte twice (journal and image), so where the disk is the limit it cannot pass the 2× pwrite floor; checkpoints (image fdatasync outside the volume lock) follow every 4 segments of 64 MiB',
    ],
  };
}

async function engineRun(engine: Engine, pool: DataPool, pattern: Pattern, size: number, name: string): Promise<number> {
  return (await engineRunWith(engine, pool, pattern, size, name, false)).ms;
}

/** One engine run; with `instrument`, only the timed part (writes and flush) is attributed. */
async function engineRunWith(
  engine: Engine,
  pool: DataPool,
  pattern: Pattern,
  size: number,
  name: string,
  instrument: boolean,
): Promise<{ ms: number; profile?: WriteProfile }> {
  const volume = `write-${name}`;
  await engine.createVolume(volume, { size });
  try {
    await syncAll();
    const probe = instrument ? instrumentWritePath() : undefined;
    try {
      const { ms } = await timed(async () => {
        await inFlight(pattern.offsets.length, DEPTH, (i) => engine.write(volume, pattern.offsets[i]!, pool.at(i, pattern.io)));
        await engine.flush(volume);
      });
      return { ms, profile: probe?.stop() };
    } catch (err) {
      probe?.stop();
      throw err;
    }
  } finally {
    await engine.deleteVolume(volume, { force: true });
  }
}

async function plainRun(file: string, pool: DataPool, pattern: Pattern, size: number): Promise<number> {
  const handle = await fs.open(file, 'w+');
  try {
    await handle.truncate(size);
    await syncAll();
    const { ms } = await timed(async () => {
      await inFlight(pattern.offsets.length, DEPTH, (i) => pwriteFully(handle, pool.at(i, pattern.io), pattern.offsets[i]!));
      await handle.datasync();
    });
    return ms;
  } finally {
    await handle.close();
    await fs.rm(file, { force: true });
  }
}

async function doubleRun(prefix: string, pool: DataPool, pattern: Pattern, size: number): Promise<number> {
  const journal = await fs.open(`${prefix}.journal`, 'w+');
  const image = await fs.open(`${prefix}.img`, 'w+');
  try {
    await image.truncate(size);
    await syncAll();
    const { ms } = await timed(async () => {
      let appended = 0;
      await inFlight(pattern.offsets.length, DEPTH, (i) => {
        const data = pool.at(i, pattern.io);
        const at = appended;
        appended += data.length;
        return Promise.all([pwriteFully(journal, data, at), pwriteFully(image, data, pattern.offsets[i]!)]);
      });
      await journal.datasync();
    });
    return ms;
  } finally {
    await journal.close();
    await image.close();
    await fs.rm(`${prefix}.journal`, { force: true });
    await fs.rm(`${prefix}.img`, { force: true });
  }
}

async function pwriteFully(handle: fs.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await handle.write(data, done, data.length - done, position + done)).bytesWritten;
}

async function profiledRun(engine: Engine, pool: DataPool, pattern: Pattern, size: number): Promise<ProfileSummary> {
  const { ms: wallMs, profile } = await engineRunWith(engine, pool, pattern, size, `${pattern.id}-profiled`, true);
  const ms = (key: string) => profile!.ms[key] ?? 0;
  const batches = profile!.batchOps.length;
  const ops = profile!.batchOps.reduce((s, n) => s + n, 0);
  const opsPerBatch = batches > 0 ? ops / batches : 0;
  const bytes = pattern.offsets.length * pattern.io;
  const encodeMsPerMiB = encodeCostMsPerMiB(pattern.io, Math.max(1, Math.round(opsPerBatch)));
  const crcMsPerMiB = crcCostMsPerMiB(pattern.io);
  const encode = encodeMsPerMiB * (bytes / MiB);
  const foreground = Object.entries(profile!.ms)
    .filter(([key]) => !key.startsWith('background'))
    .reduce((sum, [, v]) => sum + v, 0);
  const parts: Record<string, number> = {
    'journal encode (copy + CRC32C, estimated)': encode,
    'journal write syscalls': Math.max(0, ms('append') - encode),
    'segment roll (open the next)': ms('roll'),
    'bitmap marks + hand-over': ms('apply'),
    'journal fdatasync on FLUSH/FUA': ms('sync'),
    'checkpoints (drain + image fdatasync + file)': ms('checkpoint'),
    'batch bookkeeping': ms('batch'),
    'outside the lock (queueing, event loop)': Math.max(0, wallMs - foreground),
    'overlapped: image writes by the applier': ms('background'),
    'overlapped: journal syncs by the applier': ms('background sync'),
  };
  return { wallMs, batches, opsPerBatch, parts, encodeMsPerMiB, crcMsPerMiB, checkpoints: profile!.calls['checkpoint'] ?? 0, rolls: profile!.calls['roll'] ?? 0 };
}

function profileRows(r: PatternResult): Row[] {
  const p = r.profile!;
  const rows: Row[] = [
    {
      case: `profile ${r.pattern}: instrumented run`,
      tidemark: `${fmtMs(p.wallMs)}, ${mbPerSecond(r.bytes, p.wallMs).toFixed(0)} MB/s`,
      peer: `${p.batches} batches, ${p.opsPerBatch.toFixed(1)} writes/batch, ${p.rolls} rolls, ${p.checkpoints} checkpoints`,
      verdict: 'info',
    },
  ];
  for (const [part, ms] of Object.entries(p.parts)) {
    rows.push({ case: `  ${part}`, tidemark: fmtMs(ms), peer: `${((ms / p.wallMs) * 100).toFixed(1)}% of wall`, verdict: 'info' });
  }
  rows.push({
    case: '  encode cost per MiB (CRC32C alone)',
    tidemark: `${p.encodeMsPerMiB.toFixed(3)} ms/MiB`,
    peer: `${p.crcMsPerMiB.toFixed(3)} ms/MiB`,
    verdict: 'info',
  });
  return rows;
}
