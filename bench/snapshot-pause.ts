import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../src/engine/index.js';
import { DataPool, GiB, KiB, MiB, Random, filesystemType, fmtBytes, fmtMs, hasCommand, inFlight, median, onAbort, run, syncAll, tempDir, timed } from './lib/harness.js';
import { verdict, type BenchOptions, type BenchResult, type Row } from './lib/report.js';

/** The large volume's pause may exceed the small one's by this factor and still count as independent of size. */
const MAX_GROWTH = 2;
/** A reflink snapshot is a handful of fsyncs; on a shared disk those alone vary by this much. */
const NOISE_MS = 20;
const XFS_IMAGE_SIZE = 24 * GiB;

interface Shape {
  volumeSize: number;
  dataBytes: number;
}

interface Measurement extends Shape {
  filesystem: string;
  method: string;
  snapshotMs: number[];
  /** Longest a concurrent 4 KiB writer waited for one write while each snapshot was taken. */
  writeStallMs: number[];
}

/**
 * Snapshot pause (design: independent of volume size on reflink filesystems). Three sparse
 * volumes: 1 GiB and 8 GiB holding the same data, which isolates the size, and 8 GiB holding
 * eight times the data, which shows what the pause does follow. Each is snapshotted while a
 * writer keeps issuing 4 KiB writes; the pause is createSnapshot's duration, and the longest
 * write the writer saw is what an application feels. Runs on the store's filesystem and, as
 * root, on an XFS filesystem with reflink on a loop device.
 */
export async function snapshotPause(options: BenchOptions): Promise<BenchResult> {
  const data = options.quick ? 16 * MiB : 64 * MiB;
  const snapshots = options.quick ? 3 : 7;
  const shapes: Shape[] = [
    { volumeSize: GiB, dataBytes: data },
    { volumeSize: 8 * GiB, dataBytes: data },
    { volumeSize: 8 * GiB, dataBytes: 8 * data },
  ];
  const measurements: Measurement[] = [];
  const notes: string[] = [];

  const base = options.baseDir ?? os.tmpdir();
  const storeFs = await filesystemType(base);
  measurements.push(...(await onFilesystem(options, base, `${storeFs} (store fs)`, shapes, snapshots)));

  const xfsProblem = xfsUnavailable();
  if (xfsProblem) {
    notes.push(`XFS reflink case skipped: ${xfsProblem}`);
  } else {
    measurements.push(...(await withXfsLoop(options, (mount) => onFilesystem(options, mount, 'xfs reflink=1 (loop)', shapes, snapshots))));
  }

  const rows: Row[] = [];
  const byFs = new Map<string, Measurement[]>();
  for (const m of measurements) byFs.set(m.filesystem, [...(byFs.get(m.filesystem) ?? []), m]);
  for (const [filesystem, list] of byFs) {
    for (const m of list) {
      rows.push({
        case: `${filesystem}: ${fmtBytes(m.volumeSize)} volume, ${fmtBytes(m.dataBytes)} data`,
        tidemark: `${fmtMs(median(m.snapshotMs))} (${m.method})`,
        peer: `write stall ${fmtMs(median(m.writeStallMs))}`,
        verdict: 'info',
      });
    }
    const [small, large, fuller] = list as [Measurement, Measurement, Measurement];
    const reflink = large.method === 'reflink';
    const compare = (a: Measurement, b: Measurement, judged: boolean): Row => {
      const growth = median(b.snapshotMs) / median(a.snapshotMs);
      const extra = median(b.snapshotMs) - median(a.snapshotMs);
      return {
        case: `${filesystem}: pause ${fmtBytes(b.volumeSize)}/${fmtBytes(b.dataBytes)} vs ${fmtBytes(a.volumeSize)}/${fmtBytes(a.dataBytes)}`,
        tidemark: `${growth.toFixed(2)}× (${extra >= 0 ? '+' : ''}${fmtMs(extra)})`,
        peer: `${b.volumeSize / a.volumeSize}× size, ${b.dataBytes / a.dataBytes}× data`,
        target: judged ? `≤ ${MAX_GROWTH}× or ≤ +${fmtMs(NOISE_MS)}` : undefined,
        verdict: judged ? verdict(growth <= MAX_GROWTH || extra <= NOISE_MS) : 'info',
      };
    };
    rows.push(compare(small, large, reflink), compare(small, fuller, false));
  }
  notes.push(
    `data in 1 MiB writes at random places; sync(1) before each snapshot; median of ${snapshots} snapshots per volume`,
    'write stall = longest single 4 KiB engine.write of a writer running (one at a time) across the snapshot call',
    'the size verdict compares the two volumes with the same data; without reflink the engine copies the allocated data (cp --sparse=always), so its pause follows the data; a reflink clone follows the number of extents, far more gently',
  );
  return { id: 'snapshot', title: 'Snapshot pause vs volume size', rows, data: { snapshots, measurements }, notes };
}

async function onFilesystem(options: BenchOptions, base: string, label: string, shapes: Shape[], snapshots: number): Promise<Measurement[]> {
  const { dir, dispose } = await tempDir('snapshot', base);
  const engine = await Engine.open({ store: path.join(dir, 'store'), upkeepIntervalMs: 0 });
  const pool = new DataPool(64 * MiB);
  const out: Measurement[] = [];
  try {
    for (const [index, shape] of shapes.entries()) {
      const volume = `pause-${index}`;
      options.log(`snapshot: ${label}, ${fmtBytes(shape.volumeSize)} volume, writing ${fmtBytes(shape.dataBytes)}`);
      await engine.createVolume(volume, { size: shape.volumeSize });
      const offsets = new Random(index + 1).sample(shape.volumeSize / MiB, shape.dataBytes / MiB).map((c) => c * MiB);
      await inFlight(offsets.length, 16, (i) => engine.write(volume, offsets[i]!, pool.take(MiB)));
      await engine.flush(volume);
      const m: Measurement = { ...shape, filesystem: label, method: '', snapshotMs: [], writeStallMs: [] };
      for (let s = 0; s < snapshots; s++) {
        await syncAll();
        const writer = startWriter(engine, volume, shape.volumeSize, pool);
        // Let the writer get going, so the snapshot lands among its writes.
        await new Promise((resolve) => setTimeout(resolve, 20));
        const snap = await timed(() => engine.createSnapshot(volume, `s${s}`));
        m.writeStallMs.push(await writer.stop());
        m.snapshotMs.push(snap.ms);
        m.method = snap.value.method;
      }
      out.push(m);
      await engine.deleteVolume(volume, { force: true });
    }
  } finally {
    await engine.close();
    await dispose();
  }
  return out;
}

/** One 4 KiB write at a time at random places, recording the longest one. */
function startWriter(engine: Engine, volume: string, size: number, pool: DataPool): { stop: () => Promise<number> } {
  let running = true;
  let longest = 0;
  const random = new Random(0xabc);
  const loop = (async () => {
    while (running) {
      const start = performance.now();
      await engine.write(volume, random.below(size / (4 * KiB)) * 4 * KiB, pool.take(4 * KiB));
      longest = Math.max(longest, performance.now() - start);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return longest;
    },
  };
}

function xfsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (mount -o loop)';
  if (!hasCommand('mkfs.xfs')) return 'mkfs.xfs is missing (apt-get install xfsprogs)';
  if (!hasCommand('mount') || !hasCommand('umount')) return 'mount/umount are missing (apt-get install mount)';
  return undefined;
}

/** Makes an XFS filesystem with reflink on a sparse file, mounts it on a loop device, runs `fn`, and unmounts. */
async function withXfsLoop<T>(options: BenchOptions, fn: (mount: string) => Promise<T>): Promise<T> {
  const { dir, dispose } = await tempDir('xfs', options.baseDir);
  const image = path.join(dir, 'xfs.img');
  const mount = path.join(dir, 'mnt');
  let mounted = false;
  // Registered before the temp dir's own abort handler runs (newest first), so the mount goes first.
  const forget = onAbort(`xfs mount ${mount}`, () => {
    if (mounted) execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
  });
  try {
    const handle = await fs.open(image, 'w');
    await handle.truncate(XFS_IMAGE_SIZE);
    await handle.close();
    await run('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', image]);
    await fs.mkdir(mount);
    await run('mount', ['-o', 'loop', image, mount]);
    mounted = true;
    return await fn(mount);
  } finally {
    if (mounted) {
      await unmount(mount);
      mounted = false;
    }
    forget();
    await dispose();
  }
}

async function unmount(mount: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await run('umount', [mount]);
      return;
    } catch {
      // A file closed an instant ago can still hold the mount busy.
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  // Detach now; the kernel finishes once the last reference goes, and the loop device with it.
  await run('umount', ['-l', mount]);
}
