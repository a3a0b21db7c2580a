import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/engine/index.js';
import { DataPool, GiB, KiB, MiB, Random, fmtBytes, fmtMs, inFlight, onAbort, run, tempDir } from './lib/harness.js';
import { verdict, type BenchOptions, type BenchResult, type Row } from './lib/report.js';

const VOLUMES = 100;
const VOLUME_SIZE = 10 * GiB;
const TARGET_MIB = 200;
/** Writes given to each volume before it goes idle, so it has a journal and bitmap pages. */
const WRITES_PER_VOLUME = 16;
const READY_TIMEOUT_MS = 120_000;
const SETTLE_MS = 3_000;
const SOCKET_GRACE_MS = 5_000;
const SAMPLES = 5;

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench → the package root. */
const packageRoot = path.resolve(here, '..', '..');

interface ProcessMemory {
  what: string;
  command: string;
  readyMs: number;
  rssSamplesMiB: number[];
  rssMiB: number;
  peakRssMiB: number;
  openFiles: number;
  /** What the process printed on stdout as JSON once ready, if anything. */
  report?: Record<string, unknown>;
}

/**
 * Resident memory of a daemon holding many idle volumes (design: 100 idle 10 GiB volumes in
 * ≤ 200 MiB). The volumes are made with the engine and closed; then the real daemon is
 * started on the store, and, for comparison, a process that only opens the engine, on the
 * same store and on an empty one.
 */
export async function memory(options: BenchOptions): Promise<BenchResult> {
  const { dir, dispose } = await tempDir('memory', options.baseDir);
  const store = path.join(dir, 'store');
  const emptyStore = path.join(dir, 'empty');
  const notes: string[] = [];
  const measured: ProcessMemory[] = [];
  let daemonProblem: string | undefined;
  try {
    options.log(`memory: creating ${VOLUMES} volumes of ${fmtBytes(VOLUME_SIZE)}`);
    await createIdleVolumes(store);
    await fs.mkdir(emptyStore);
    const storeKiB = Number((await run('du', ['-sk', store])).split(/\s/)[0]);

    const daemonEntry = path.join(packageRoot, 'dist', 'src', 'cli', 'main.js');
    const daemonBuilt = await fs.stat(daemonEntry).then(
      () => true,
      () => false,
    );
    if (daemonBuilt) {
      options.log('memory: starting tidemark serve');
      try {
        measured.push(
          await measureProcess({
            what: 'daemon: tidemark serve',
            command: path.join(packageRoot, 'bin', 'tidemark'),
            args: ['serve', '--store', store],
            ready: { socket: path.join(store, 'admin.sock'), line: /"message":"[^"]*\b(ready|listening|serving)\b/i },
          }),
        );
      } catch (err) {
        daemonProblem = `tidemark serve did not come up: ${(err as Error).message}`;
      }
    } else {
      daemonProblem = `the daemon is not built (${path.relative(packageRoot, daemonEntry)} is missing)`;
    }
    const idleEngine = path.join(here, 'idle-engine.js');
    options.log('memory: engine-only process, 100 volumes');
    measured.push(await measureProcess({ what: `engine only, ${VOLUMES} volumes`, command: process.execPath, args: [idleEngine, store], ready: { json: true } }));
    options.log('memory: engine-only process, empty store');
    measured.push(await measureProcess({ what: 'engine only, empty store', command: process.execPath, args: [idleEngine, emptyStore], ready: { json: true } }));
    const storeUse = `store: ${VOLUMES} × ${fmtBytes(VOLUME_SIZE)} apparent, ${fmtBytes(storeKiB * KiB)} allocated`;
    notes.push(storeUse);
  } finally {
    await dispose();
  }

  const daemon = measured.find((m) => m.what.startsWith('daemon'));
  const engineFull = measured.find((m) => m.what.startsWith(`engine only, ${VOLUMES}`))!;
  const engineEmpty = measured.find((m) => m.what === 'engine only, empty store')!;
  const headline = daemon ?? engineFull;
  const memoryBytes = Number(engineFull.report?.['memoryBytes'] ?? NaN);
  const perVolumeKiB = ((engineFull.rssMiB - engineEmpty.rssMiB) * 1024) / VOLUMES;
  const rows: Row[] = [
    {
      case: `${daemon ? 'daemon' : 'engine-only process (daemon not available)'} RSS, ${VOLUMES} idle ${fmtBytes(VOLUME_SIZE)} volumes`,
      tidemark: `${headline.rssMiB.toFixed(1)} MiB`,
      peer: `peak ${headline.peakRssMiB.toFixed(1)} MiB`,
      target: `≤ ${TARGET_MIB} MiB`,
      verdict: verdict(headline.rssMiB <= TARGET_MIB),
    },
  ];
  for (const m of measured) {
    if (m === headline) continue;
    rows.push({ case: `${m.what} RSS`, tidemark: `${m.rssMiB.toFixed(1)} MiB`, peer: `peak ${m.peakRssMiB.toFixed(1)} MiB`, verdict: 'info' });
  }
  rows.push({ case: 'RSS per idle volume (engine only, vs empty store)', tidemark: `${perVolumeKiB.toFixed(0)} KiB`, verdict: 'info' });
  rows.push({ case: 'engine.memoryBytes() (bitmaps), 100 volumes', tidemark: fmtBytes(memoryBytes), verdict: 'info' });
  for (const m of measured) rows.push({ case: `${m.what}: open files, start-up time`, tidemark: `${m.openFiles} fds`, peer: fmtMs(m.readyMs), verdict: 'info' });
  if (daemonProblem) notes.unshift(`${daemonProblem}; the headline figure is the engine-only process (Engine.open on the same store, idle)`);
  notes.push(
    `each volume got ${WRITES_PER_VOLUME} random 64 KiB writes before going idle; RSS = max of ${SAMPLES} VmRSS samples 1 s apart, ${SETTLE_MS / 1000} s after the process was ready; peak = VmHWM`,
  );
  return {
    id: 'memory',
    title: 'Memory: resident set with 100 idle 10 GiB volumes',
    rows,
    data: { volumes: VOLUMES, volumeSize: VOLUME_SIZE, writesPerVolume: WRITES_PER_VOLUME, measured, memoryBytes, perVolumeKiB, daemonMeasured: Boolean(daemon), daemonProblem },
    notes,
  };
}

async function createIdleVolumes(store: string): Promise<void> {
  const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
  const pool = new DataPool(4 * MiB);
  const random = new Random(0x1d1e);
  try {
    for (let v = 0; v < VOLUMES; v++) {
      const name = `idle-${String(v).padStart(3, '0')}`;
      await engine.createVolume(name, { size: VOLUME_SIZE });
      const chunk = 64 * KiB;
      const offsets = random.sample(VOLUME_SIZE / chunk, WRITES_PER_VOLUME).map((c) => c * chunk);
      await inFlight(offsets.length, 16, (i) => engine.write(name, offsets[i]!, pool.take(chunk)));
      await engine.flush(name);
    }
  } finally {
    await engine.close();
  }
}

type Readiness = { socket: string; line: RegExp } | { json: true };

/** Starts a process, waits until it says it is ready, samples its memory, and stops it. */
async function measureProcess(spec: { what: string; command: string; args: string[]; ready: Readiness }): Promise<ProcessMemory> {
  const started = performance.now();
  const child = spawn(spec.command, spec.args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TIDEMARK_LOG_LEVEL: 'info' } });
  const forget = onAbort(`${spec.what} (pid ${child.pid})`, () => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    let report: Record<string, unknown> | undefined;
    let socketSince: number | undefined;
    for (;;) {
      if (exitCode !== undefined) throw new Error(`exited with ${exitCode} before it was ready: ${tail(stderr)}`);
      if (performance.now() - started > READY_TIMEOUT_MS) throw new Error(`not ready after ${READY_TIMEOUT_MS / 1000} s: ${tail(stderr)}`);
      if ('json' in spec.ready) {
        const line = stdout.split('\n').find((l) => l.startsWith('{'));
        if (line && stdout.includes('\n')) {
          report = JSON.parse(line) as Record<string, unknown>;
          break;
        }
      } else {
        // The ready line comes once every service is up; the socket alone (admin listens
        // first) counts only if no line matching the pattern shows up for a while.
        if (spec.ready.line.test(stderr)) break;
        const isSocket = await fs.stat(spec.ready.socket).then(
          (s) => s.isSocket(),
          () => false,
        );
        if (isSocket) socketSince ??= performance.now();
        if (socketSince !== undefined && performance.now() - socketSince > SOCKET_GRACE_MS) break;
      }
      await sleep(50);
    }
    const readyMs = performance.now() - started;
    await sleep(SETTLE_MS);
    const samples: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      if (i > 0) await sleep(1000);
      samples.push((await procStatus(child.pid!))['VmRSS']! / 1024);
    }
    const peak = (await procStatus(child.pid!))['VmHWM']! / 1024;
    const openFiles = (await fs.readdir(`/proc/${child.pid}/fd`)).length;
    return {
      what: spec.what,
      command: [spec.command, ...spec.args].join(' '),
      readyMs,
      rssSamplesMiB: samples,
      rssMiB: Math.max(...samples),
      peakRssMiB: peak,
      openFiles,
      report,
    };
  } finally {
    if (exitCode === undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    forget();
  }
}

/** The kB fields of /proc/PID/status. */
async function procStatus(pid: number): Promise<Record<string, number>> {
  const text = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const fields: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (match) fields[match[1]!] = Number(match[2]);
  }
  return fields;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tail(text: string): string {
  const lines = text.trim().split('\n');
  return lines.slice(-5).join(' | ').slice(-800) || '(no output)';
}
