import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Engine } from '../src/engine/index.js';
import { DataPool, GiB, MiB, Random, fmtBytes, fmtMs, inFlight, median, run, syncAll, tempDir, timed } from './lib/harness.js';
import { verdict, type BenchOptions, type BenchResult } from './lib/report.js';

const VOLUME = 'restore-bench';
const CHANGED_FRACTION = 0.01;
const TARGET = 0.05;

/**
 * Partial-area restore (design: "≤ 5% of the time of copying the area"). A volume twice the
 * area's size holds random data in the area; after a snapshot, 1% of the area's tracking
 * blocks change, and as many blocks outside the area change too, which the restore must
 * leave alone. The restore of the area from the snapshot is timed against `cp` of a plain
 * file holding the same bytes as the area, with and without a final sync.
 */
export async function partialRestore(options: BenchOptions): Promise<BenchResult> {
  const area = options.quick ? 64 * MiB : GiB;
  const runs = options.quick ? 3 : 5;
  const areaStart = area / 2;
  const { dir, dispose } = await tempDir('restore', options.baseDir);
  const engine = await Engine.open({ store: path.join(dir, 'store'), upkeepIntervalMs: 0 });
  try {
    const info = await engine.createVolume(VOLUME, { size: 2 * area });
    const granularity = info.granularity;
    const areaFile = path.join(dir, 'area.bin');
    const copyFile = path.join(dir, 'copy.bin');

    options.log(`restore: filling a ${fmtBytes(area)} area with random data`);
    const pool = new DataPool(64 * MiB);
    const chunk = MiB;
    const plain = await fs.open(areaFile, 'w');
    try {
      await inFlight(area / chunk, 16, async (i) => {
        const data = pool.at(i, chunk);
        await engine.write(VOLUME, areaStart + i * chunk, data);
        await plain.write(data, 0, chunk, i * chunk);
      });
      await engine.flush(VOLUME);
      await plain.sync();
    } finally {
      await plain.close();
    }

    const blocksInArea = area / granularity;
    const changed = Math.max(1, Math.round(blocksInArea * CHANGED_FRACTION));
    const restoreMs: number[] = [];
    const cpMs: number[] = [];
    const cpSyncMs: number[] = [];
    const snapshotMs: number[] = [];
    let bytesRestored = 0;
    let snapshotMethod = '';
    let previous: string | undefined;
    for (let r = 0; r < runs; r++) {
      // A fresh snapshot per run, so each restore sees exactly this run's changes.
      if (previous) await engine.deleteSnapshot(VOLUME, previous);
      const snapshot = `base-${r}`;
      previous = snapshot;
      await syncAll();
      const snap = await timed(() => engine.createSnapshot(VOLUME, snapshot));
      snapshotMs.push(snap.ms);
      snapshotMethod = snap.value.method;

      const random = new Random(0x5eed + r);
      const inside = random.sample(blocksInArea, changed).map((b) => areaStart + b * granularity);
      // Outside blocks: indexes below half the count lie before the area, the rest after it.
      const outside = random.sample(blocksInArea, changed).map((b) => (b < blocksInArea / 2 ? b : b + blocksInArea) * granularity);
      const changes = [...inside, ...outside];
      await inFlight(changes.length, 16, (i) => engine.write(VOLUME, changes[i]!, pool.take(granularity)));
      await engine.flush(VOLUME);
      await syncAll();

      options.log(`restore: run ${r + 1}/${runs}: restoring ${changed} changed blocks of ${fmtBytes(granularity)} in the area`);
      const restored = await timed(() => engine.restore({ volume: VOLUME, source: { snapshot }, ranges: [{ offset: areaStart, length: area }] }));
      restoreMs.push(restored.ms);
      bytesRestored = restored.value.bytesRestored;
      await checkRestore(engine, snapshot, inside, outside, granularity);

      // Peers: a discarded copy first, then both kinds in alternating order. Where a VM guest
      // hands freed memory back to the host (free page reporting), the first big copy after a
      // while pays to fault it in again; the warm-up gives the peers their best case.
      await copyOnce(areaFile, copyFile, false);
      const peers = [
        { sync: false, into: cpMs },
        { sync: true, into: cpSyncMs },
      ];
      if (r % 2 === 1) peers.reverse();
      for (const peer of peers) peer.into.push(await copyOnce(areaFile, copyFile, peer.sync));
    }

    const restoreMedian = median(restoreMs);
    const cpMedian = median(cpMs);
    const cpSyncMedian = median(cpSyncMs);
    const ratio = restoreMedian / cpMedian;
    const ratioSync = restoreMedian / cpSyncMedian;
    const what = `${fmtBytes(area)} area, ${changed} of ${blocksInArea} blocks changed`;
    return {
      id: 'restore',
      title: 'Partial restore: differential restore of an area vs copying the area',
      rows: [
        { case: `${what} vs cp`, tidemark: fmtMs(restoreMedian), peer: `cp ${fmtMs(cpMedian)}`, ratio: pct(ratio), target: `≤ ${pct(TARGET)}`, verdict: verdict(ratio <= TARGET) },
        { case: `${what} vs cp + sync`, tidemark: fmtMs(restoreMedian), peer: `cp+sync ${fmtMs(cpSyncMedian)}`, ratio: pct(ratioSync), target: `≤ ${pct(TARGET)}`, verdict: verdict(ratioSync <= TARGET) },
        { case: 'bytes copied back by the restore', tidemark: fmtBytes(bytesRestored), peer: fmtBytes(area), ratio: pct(bytesRestored / area), verdict: 'info' },
      ],
      data: {
        areaBytes: area,
        volumeBytes: 2 * area,
        granularity,
        changedBlocksInArea: changed,
        changedBlocksOutsideArea: changed,
        runs,
        restoreMs,
        cpMs,
        cpSyncMs,
        snapshotMs,
        snapshotMethod,
        restoreMedianMs: restoreMedian,
        cpMedianMs: cpMedian,
        cpSyncMedianMs: cpSyncMedian,
        ratioVsCp: ratio,
        ratioVsCpSync: ratioSync,
        bytesRestored,
      },
      notes: [
        `median of ${runs} runs; each run takes a new snapshot (${snapshotMethod}), changes ${changed} random ${fmtBytes(granularity)} blocks inside the area and ${changed} outside it, then restores the area`,
        'restore = engine.restore({source:{snapshot}, ranges:[area]}), durable on return (journal fdatasync); checked after each run: blocks inside match the snapshot, blocks outside keep their new data',
        `peer = cp of a ${fmtBytes(area)} file with the same bytes (page cache warm for both, as the snapshot copy is); cp+sync adds "sync FILE"; each run makes one discarded copy first and alternates the order of the two`,
        ...(options.quick ? ['quick mode: the area is too small for the ratio to mean much, as the restore has a fixed cost of a few ms (opening the snapshot, one fdatasync)'] : []),
      ],
    };
  } finally {
    await engine.close();
    await dispose();
  }
}

/** Times `cp` (and `sync FILE`) of the area file; removes the copy and syncs before returning. */
async function copyOnce(from: string, to: string, withSync: boolean): Promise<number> {
  await syncAll();
  const { ms } = await timed(async () => {
    await run('cp', [from, to]);
    if (withSync) await run('sync', [to]);
  });
  await fs.rm(to);
  return ms;
}

function pct(ratio: number): string {
  return Number.isFinite(ratio) ? `${(ratio * 100).toFixed(2)}%` : 'n/a';
}

/** A benchmark of a wrong restore measures nothing: compare the touched blocks with the snapshot. */
async function checkRestore(engine: Engine, snapshot: string, inside: number[], outside: number[], granularity: number): Promise<void> {
  const copy = await fs.open(engine.snapshotImagePath(VOLUME, snapshot), 'r');
  try {
    const expected = Buffer.alloc(granularity);
    for (const [offsets, shouldMatch] of [
      [inside, true],
      [outside, false],
    ] as const) {
      for (const offset of offsets) {
        await copy.read(expected, 0, granularity, offset);
        const actual = await engine.read(VOLUME, offset, granularity);
        if (actual.equals(expected) !== shouldMatch) {
          throw new Error(`restore check failed at offset ${offset}: block ${shouldMatch ? 'differs from' : 'was reset to'} the snapshot`);
        }
      }
    }
  } finally {
    await copy.close();
  }
}
