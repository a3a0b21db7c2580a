import { execFile, execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

// ---- cleanup ---------------------------------------------------------------------------------

/**
 * Things to undo if the run dies half-way: temp dirs, mounts, child processes. Benchmarks undo
 * their own work in `finally`; this registry only matters on a signal or a crash, so its
 * handlers are synchronous (an exiting process cannot await).
 */
const pending = new Map<number, { what: string; undo: () => void }>();
let nextCleanup = 1;

export function onAbort(what: string, undo: () => void): () => void {
  const id = nextCleanup++;
  pending.set(id, { what, undo });
  return () => pending.delete(id);
}

function runAbortCleanups(): void {
  // Newest first: a temp dir inside a mount must go before the mount.
  for (const id of [...pending.keys()].sort((a, b) => b - a)) {
    const entry = pending.get(id)!;
    pending.delete(id);
    try {
      entry.undo();
    } catch (err) {
      process.stderr.write(`cleanup of ${entry.what} failed: ${String(err)}\n`);
    }
  }
}

export function installAbortHandlers(): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: cleaning up\n`);
      runAbortCleanups();
      process.exit(130);
    });
  }
  process.on('exit', runAbortCleanups);
}

/** A fresh directory under `base` (os.tmpdir() by default), removed by `dispose` or on abort. */
export async function tempDir(prefix: string, base = os.tmpdir()): Promise<{ dir: string; dispose: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(base, `tidemark-bench-${prefix}-`));
  const forget = onAbort(`temp dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    dispose: async () => {
      forget();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

// ---- timing ----------------------------------------------------------------------------------

export function now(): number {
  return performance.now();
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = now();
  const value = await fn();
  return { ms: now() - start, value };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

// ---- processes and the host ------------------------------------------------------------------

export async function run(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { maxBuffer: 16 * MiB });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** Flushes every dirty page of the machine, so one measurement does not pay for the last one's writeback. */
export async function syncAll(): Promise<void> {
  await run('sync', []);
}

export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function filesystemType(dir: string): Promise<string> {
  // findmnt names ext4 as such; stat -f only knows the ext2/ext3 magic number.
  try {
    return (await run('findmnt', ['-n', '-o', 'FSTYPE', '--target', dir])).trim();
  } catch {
    return (await run('stat', ['-f', '-c', '%T', dir])).trim();
  }
}

// ---- data ------------------------------------------------------------------------------------

/** Small deterministic generator (mulberry32), so runs pick the same offsets for peers and engine. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** `count` distinct integers from [0, n), in random order (partial Fisher–Yates). */
  sample(n: number, count: number): number[] {
    if (count > n) throw new Error(`cannot pick ${count} distinct values below ${n}`);
    const swapped = new Map<number, number>();
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      const j = i + this.below(n - i);
      const atJ = swapped.get(j) ?? j;
      swapped.set(j, swapped.get(i) ?? i);
      out.push(atJ);
    }
    return out;
  }
}

/**
 * A pool of random bytes to slice write payloads from, so generating data stays out of the
 * timed loops. Random bytes, so nothing on the path can shortcut zeros.
 */
export class DataPool {
  readonly bytes: Buffer;
  private cursor = 0;

  constructor(size: number) {
    this.bytes = Buffer.allocUnsafe(size);
    randomFillSync(this.bytes);
  }

  /** Payload number `index` of `length` bytes: the same for the same index, so peers write identical data. */
  at(index: number, length: number): Buffer {
    const start = (index * length) % (this.bytes.length - length + 1);
    return this.bytes.subarray(start, start + length);
  }

  /** The next `length` bytes, wrapping around; consecutive calls return different data. */
  take(length: number): Buffer {
    if (length > this.bytes.length) throw new Error(`pool of ${this.bytes.length} bytes cannot give ${length}`);
    if (this.cursor + length > this.bytes.length) this.cursor = 0;
    const slice = this.bytes.subarray(this.cursor, this.cursor + length);
    this.cursor += length + 4096;
    return slice;
  }
}

/** Runs `count` jobs with at most `depth` in flight, like a block-device client's queue. */
export async function inFlight(count: number, depth: number, job: (index: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      await job(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(depth, count) }, worker));
}

// ---- formatting ------------------------------------------------------------------------------

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function fmtBytes(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 1)} MiB`;
  if (bytes >= KiB) return `${(bytes / KiB).toFixed(bytes % KiB === 0 ? 0 : 1)} KiB`;
  return `${bytes} B`;
}

export function mbPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}
