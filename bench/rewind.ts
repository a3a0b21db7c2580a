import * as path from 'node:path';
import { Engine } from '../src/engine/index.js';
import { DataPool, GiB, KiB, MiB, Random, fmtBytes, fmtMs, inFlight, median, syncAll, tempDir, timed } from './lib/harness.js';
import { verdict, type BenchOptions, type BenchResult, type Row } from './lib/report.js';

const MARKER = 'before-change';
/** Writes after the marker land in distinct slots of this size, so the bytes to undo are known exactly. */
const SLOT = 256 * KiB;
/** A least-squares line through (data after marker, rewind time) must fit at least this well. */
const MIN_R2 = 0.95;

interface Case {
  afterBytes: number;
  rewindMs: number;
  recoveryMs: number;
  rewindBytes: number;
  recoveryBytes: number;
}

/**
 * Rewind in place vs recovery into a new volume (design: "rewind to a marker in time
 * proportional to the data written after it"). Each case builds the same history up to the
 * marker — base data, a snapshot, some writes, the marker — then writes a growing amount
 * after it. Recovery copies the snapshot and replays the journal up to the marker, so its
 * cost follows the history before the marker; rewind rewrites only what came after.
 */
export async function rewindVsRecovery(options: BenchOptions): Promise<BenchResult> {
  const afterSizes = (options.quick ? [1, 4, 16] : [1, 4, 16, 64, 256]).map((n) => n * MiB);
  const runs = options.quick ? 1 : 3;
  const volumeSize = options.quick ? 128 * MiB : GiB;
  const baseFill = options.quick ? 16 * MiB : 64 * MiB;
  const beforeMarker = options.quick ? 4 * MiB : 16 * MiB;
  const { dir, dispose } = await tempDir('rewind', options.baseDir);
  const engine = await Engine.open({ store: path.join(dir, 'store'), upkeepIntervalMs: 0 });
  const pool = new DataPool(64 * MiB);
  const cases: Case[] = [];
  try {
    for (const afterBytes of afterSizes) {
      const samples: Case[] = [];
      for (let r = 0; r < runs; r++) {
        options.log(`rewind: ${fmtBytes(afterBytes)} after the marker, run ${r + 1}/${runs}`);
        samples.push(await oneCase(engine, pool, { volumeSize, baseFill, beforeMarker, afterBytes, seed: afterBytes + r }));
      }
      cases.push({
        afterBytes,
        rewindMs: median(samples.map((s) => s.rewindMs)),
        recoveryMs: median(samples.map((s) => s.recoveryMs)),
        rewindBytes: samples[0]!.rewindBytes,
        recoveryBytes: samples[0]!.recoveryBytes,
      });
    }
  } finally {
    await engine.close();
    await dispose();
  }

  const fit = linearFit(cases.map((c) => [c.afterBytes / MiB, c.rewindMs]));
  const rows: Row[] = cases.map((c) => ({
    case: `${fmtBytes(c.afterBytes)} written after the marker`,
    tidemark: `rewind ${fmtMs(c.rewindMs)} (${(c.rewindMs / (c.afterBytes / MiB)).toFixed(2)} ms/MiB)`,
    peer: `recovery ${fmtMs(c.recoveryMs)}`,
    ratio: `${(c.rewindMs / c.recoveryMs).toFixed(3)}×`,
    verdict: 'info',
  }));
  const first = cases[0]!;
  const last = cases[cases.length - 1]!;
  rows.push({
    case: `rewind growth ${fmtBytes(first.afterBytes)} → ${fmtBytes(last.afterBytes)} (${last.afterBytes / first.afterBytes}× data)`,
    tidemark: `${(last.rewindMs / first.rewindMs).toFixed(1)}× time`,
    peer: `recovery ${(last.recoveryMs / first.recoveryMs).toFixed(2)}× time`,
    verdict: 'info',
  });
  rows.push({
    case: 'rewind time = a + b·MiB after marker',
    tidemark: `a ${fmtMs(fit.intercept)}, b ${fit.slope.toFixed(2)} ms/MiB, R² ${fit.r2.toFixed(3)}`,
    target: `linear (R² ≥ ${MIN_R2})`,
    verdict: verdict(fit.r2 >= MIN_R2),
  });
  return {
    id: 'rewind',
    title: 'Rewind in place vs recovery to a marker into a new volume',
    rows,
    data: { volumeSize, baseFill, beforeMarker, slot: SLOT, runs, cases, fit },
    notes: [
      `each case: a fresh ${fmtBytes(volumeSize)} volume, ${fmtBytes(baseFill)} written, a snapshot, ${fmtBytes(beforeMarker)} of 64 KiB random writes, the marker, then the given amount in ${fmtBytes(SLOT)} writes to distinct random places`,
      `median of ${runs} run(s) per size; recovery = restore({source:{marker}, target}) (copy of the snapshot + journal replay to the marker), timed first; rewind = restore({source:{marker}}) in place`,
      'checked after each case: the rewound volume equals the recovered one wherever data was written after the marker',
      'the ratio is rewind/recovery: below 1 rewind wins; it grows with the data after the marker while recovery stays flat',
    ],
  };
}

async function oneCase(
  engine: Engine,
  pool: DataPool,
  shape: { volumeSize: number; baseFill: number; beforeMarker: number; afterBytes: number; seed: number },
): Promise<Case> {
  const volume = `rewind-${shape.seed}`;
  const recovered = `${volume}-recovered`;
  await engine.createVolume(volume, { size: shape.volumeSize });
  try {
    const random = new Random(shape.seed);
    await inFlight(shape.baseFill / MiB, 16, (i) => engine.write(volume, i * MiB, pool.take(MiB)));
    await engine.flush(volume);
    await engine.createSnapshot(volume, 'base');

    const small = 64 * KiB;
    const before = random.sample(shape.volumeSize / small, shape.beforeMarker / small);
    await inFlight(before.length, 16, (i) => engine.write(volume, before[i]! * small, pool.take(small)));
    await engine.createMarker(MARKER, [volume]);

    const after = random.sample(shape.volumeSize / SLOT, shape.afterBytes / SLOT).map((s) => s * SLOT);
    await inFlight(after.length, 16, (i) => engine.write(volume, after[i]!, pool.take(SLOT)));
    await engine.flush(volume);
    await syncAll();

    const recovery = await timed(() => engine.restore({ volume, source: { marker: MARKER }, target: recovered }));
    await syncAll();
    const rewind = await timed(() => engine.restore({ volume, source: { marker: MARKER } }));

    for (const offset of after) {
      const [mine, theirs] = await Promise.all([engine.read(volume, offset, SLOT), engine.read(recovered, offset, SLOT)]);
      if (!mine.equals(theirs)) throw new Error(`rewind check failed: volume and recovery differ at offset ${offset}`);
    }
    return {
      afterBytes: shape.afterBytes,
      rewindMs: rewind.ms,
      recoveryMs: recovery.ms,
      rewindBytes: rewind.value.bytesRestored,
      recoveryBytes: recovery.value.bytesRestored,
    };
  } finally {
    if (engine.has(recovered)) await engine.deleteVolume(recovered, { force: true });
    await engine.deleteVolume(volume, { force: true });
  }
}

/** Ordinary least squares y = intercept + slope·x, with the coefficient of determination. */
function linearFit(points: [number, number][]): { slope: number; intercept: number; r2: number } {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
    syy += (y - my) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  const intercept = my - slope * mx;
  const r2 = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return { slope, intercept, r2 };
}
