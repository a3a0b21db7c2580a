/**
 * NBD data path benchmark: tidemark against nbdkit's file plugin and qemu-nbd, each serving
 * the same size on its own unix socket, driven by the same clients (nbdcopy, qemu-img
 * bench, fio's nbd engine). qemu's NBD client keeps at most 16 requests in flight, so
 * `qemu-img bench -d 64` runs at 16; fio is the client that really keeps 64. Prints a table
 * with the ratios tidemark/nbdkit and tidemark/qemu-nbd next to the design's targets, and a
 * table of the CPU each server spent on each run (read from /proc, until the server is idle
 * again, so work deferred past the answer counts). Timing is reported, never asserted.
 *
 * --dir puts the servers' files on a filesystem of your choice (the temp directory by
 * default). The store of a real node is a filesystem of its own; on XFS or btrfs the journal
 * lays large writes out so that the image can share their blocks.
 *
 *   npm run bench:nbd -- [--quick] [--sizes 512,1024] [--runs N] [--profile | --no-profile]
 *                        [--dir BASE]
 *
 *   --quick       one 128 MiB size and fewer operations instead of 512 MiB and 1 GiB
 *   --sizes LIST  export sizes in MiB, comma-separated (default 512,1024; quick 128)
 *   --runs N      repetitions per measurement; the median and the spread are shown
 *                 (default 2, quick 1)
 *   --profile     run the measured tidemark server itself under `node --cpu-prof`
 *                 (its figures then include the profiler's cost) and summarise it
 *   --no-profile  skip the short profile run that full runs end with
 *   --profile-only  only the short profile run
 *   --compare-with FILE  also run the tidemark server of another build (its dist/bench/nbd.js)
 *                 in the same rounds, and show tidemark/base: a change measured against its
 *                 starting point under the same noise
 *
 * Unless --no-profile or --profile is given, a full run ends with a separate short profile:
 * a fresh tidemark server under `node --cpu-prof` takes one 128 MiB sequential write + flush
 * and 20 000 4 KiB random writes at QD64 (fio), and the summary of where its CPU time went is
 * printed. The table's figures are measured without the profiler.
 *
 * Internally `node dist/bench/nbd.js --serve STORE SOCKET VOLUME SIZE` is the tidemark
 * server process: an engine and an NbdServer, as `tidemark serve` runs them.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Engine, type VolumeInfo } from '../src/engine/index.js';
import { NbdServer, nbdUnixUri, type NbdBackend } from '../src/nbd/index.js';
import { silentLogger } from '../src/util/log.js';
import { instrumentWritePath, type WriteProfile } from './lib/instrument.js';

const MiB = 1024 * 1024;
const SELF = fileURLToPath(import.meta.url);

// ---- server mode ------------------------------------------------------------------------

async function serve(store: string, socket: string, volume: string, size: number): Promise<void> {
  const logger = silentLogger();
  const engine = await Engine.open({ store, logger });
  if (!engine.has(volume)) await engine.createVolume(volume, { size });
  const server = new NbdServer(engine, logger);
  await server.listenUnix(socket);
  // Wall-time attribution of the engine's write path (bench/lib/instrument.ts), for the profile.
  const traceFile = process.env.TIDEMARK_BENCH_TRACE;
  const trace = traceFile ? instrumentWritePath() : undefined;
  const stop = async () => {
    await server.close();
    if (trace) await fs.writeFile(traceFile!, JSON.stringify(trace.stop()));
    await engine.close();
    // A normal exit, so that --cpu-prof writes its profile.
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  process.stdout.write('ready\n');
}

/**
 * The NBD layer over a volume held in memory: what the protocol code alone can do, with
 * no journal, image or page cache behind it. For the profile, not for the targets.
 */
class MemoryBackend implements NbdBackend {
  private readonly data: Buffer;
  constructor(
    private readonly name: string,
    readonly size: number,
  ) {
    this.data = Buffer.alloc(size);
  }
  has(name: string): boolean {
    return name === this.name;
  }
  volumeInfo(): VolumeInfo {
    return {
      name: this.name,
      size: this.size,
      blockSize: 4096,
      granularity: 65536,
      createdAt: new Date(0),
      retention: {},
      sequence: 0,
      earliestRecoverableSequence: 0,
      journalBytes: 0,
      journalSegments: 0,
      snapshotCount: 0,
      markerCount: 0,
      holders: [],
    };
  }
  listVolumes(): VolumeInfo[] {
    return [this.volumeInfo()];
  }
  listSnapshots(): [] {
    return [];
  }
  async read(_name: string, offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  async readInto(_name: string, offset: number, target: Buffer): Promise<void> {
    this.data.copy(target, 0, offset, offset + target.length);
  }
  async write(_name: string, offset: number, data: Buffer): Promise<number> {
    data.copy(this.data, offset);
    return 0;
  }
  async zero(_name: string, offset: number, length: number): Promise<number> {
    this.data.fill(0, offset, offset + length);
    return 0;
  }
  async flush(): Promise<number> {
    return 0;
  }
  allocated(_name: string, range?: { offset: number; length: number }): { offset: number; length: number }[] {
    return [range ?? { offset: 0, length: this.size }];
  }
  diff(): { offset: number; length: number }[] {
    throw new Error('no snapshots in memory');
  }
  hold(): void {}
  release(): void {}
}

async function serveMemory(socket: string, volume: string, size: number): Promise<void> {
  const server = new NbdServer(new MemoryBackend(volume, size), silentLogger());
  await server.listenUnix(socket);
  const stop = async () => {
    await server.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.stdout.write('ready\n');
}

// ---- orchestration ----------------------------------------------------------------------

type TargetName = 'tidemark' | 'nbdkit' | 'qemu-nbd' | 'tidemark-ram' | 'nbdkit-memory' | 'tidemark-base';

interface Target {
  name: TargetName;
  uri: string;
  process: ChildProcess;
}

interface Measurement {
  id: string;
  label: string;
  unit: 'MiB/s' | 'IOPS';
  /** Ratio tidemark/peer the design asks for, against which peer. */
  target?: { peer: 'qemu-nbd' | 'both'; ratio: number };
  run: (target: Target) => Promise<number>;
}

function need(command: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status !== 0) {
    throw new Error(`${command} is missing: apt-get install ${pkg}`);
  }
}

function exec(command: string, args: string[]): Promise<{ stdout: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve({ stdout, ms });
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
    });
  });
}

/** Starts a server and waits until its socket accepts connections. */
const HAVE_SETPRIV = spawnSync('sh', ['-c', 'command -v setpriv'], { stdio: 'ignore' }).status === 0;

async function startServer(name: TargetName, command: string, args: string[], socket: string, env: Record<string, string> = {}): Promise<Target> {
  // Servers die with the benchmark even when it is killed (qemu-nbd has no option for that).
  const [cmd, argv] = HAVE_SETPRIV ? ['setpriv', ['--pdeathsig', 'TERM', command, ...args]] : [command, args];
  // The same thread pool size bin/tidemark gives the daemon.
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { UV_THREADPOOL_SIZE: '16', ...process.env, ...env } });
  child.stdout!.resume();
  const volume = name.startsWith('tidemark') ? 'bench' : '';
  const uri = nbdUnixUri(volume, socket);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode} before serving`);
    const probe = spawnSync('nbdinfo', ['--size', uri], { stdio: 'ignore' });
    if (probe.status === 0) break;
    if (Date.now() > deadline) throw new Error(`${name} did not come up on ${socket}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { name, uri, process: child };
}

async function stopServer(target: Target): Promise<void> {
  if (target.process.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => target.process.once('exit', () => resolve()));
  target.process.kill('SIGTERM');
  const timer = setTimeout(() => target.process.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

/** qemu-img bench prints "Run completed in N seconds." */
function benchSeconds(stdout: string): number {
  const match = /Run completed in ([\d.]+) seconds/.exec(stdout);
  if (!match) throw new Error(`unexpected qemu-img bench output: ${stdout}`);
  return Number(match[1]);
}

async function writeRandomFile(file: string, size: number): Promise<void> {
  const out = createWriteStream(file);
  // Incompressible but cheap: one random MiB, rotated per MiB so no two MiB are equal.
  const base = Buffer.alloc(MiB);
  for (let i = 0; i < MiB; i += 4) base.writeUInt32LE((Math.random() * 0x1_0000_0000) >>> 0, i);
  for (let at = 0; at < size; at += MiB) {
    const chunk = Buffer.allocUnsafe(MiB);
    const shift = ((at / MiB) * 4099) % MiB;
    base.copy(chunk, 0, shift);
    base.copy(chunk, MiB - shift, 0, shift);
    chunk.writeUInt32LE(at / MiB, 0);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** CPU seconds (user + system, every thread) a process has used, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/**
 * Waits until a server has used no CPU for a while, and returns its CPU seconds then. Work a
 * server defers past its answer to the client (tidemark's applier copying the journal into
 * the image) is then charged to the run that caused it.
 */
async function cpuWhenIdle(pid: number): Promise<number> {
  let before = await cpuSeconds(pid);
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const after = await cpuSeconds(pid);
    if (after - before <= 1.5 / CLOCK_TICKS) return after;
    before = after;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

// ---- CPU profile summary ----------------------------------------------------------------

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

function category(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  if (functionName === '(idle)') return 'idle (waiting for I/O)';
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(program)') return 'native/V8 (program)';
  if (url.includes('/src/nbd/')) return 'tidemark nbd';
  if (url.includes('/src/engine/') || url.includes('/src/util/')) return 'tidemark engine';
  if (url.includes('node_modules')) return 'dependencies';
  if (url.startsWith('node:')) return 'node core (streams, fs, net)';
  if (url === '') return 'native builtins';
  return 'other';
}

function functionKey(node: ProfileNode): string {
  const where = node.callFrame.url ? `${node.callFrame.url.replace(/^.*\/(dist|\.before-dist|node_modules)\//, '')}:${node.callFrame.lineNumber + 1}` : '';
  return `${node.callFrame.functionName || '(anonymous)'} ${where}`.trim();
}

async function summariseProfile(dir: string): Promise<string> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return 'no CPU profile was written';
  const profile = JSON.parse(await fs.readFile(path.join(dir, files[0]!), 'utf8')) as CpuProfile;
  const totalUs = profile.endTime - profile.startTime;
  const samples = profile.samples?.length ?? 0;
  const perSampleUs = samples > 0 ? totalUs / samples : 0;
  const parents = new Map<number, ProfileNode>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node);
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const cat = category(node);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + hits);
    const key = functionKey(node);
    byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
  }
  const busy = samples - (byCategory.get('idle (waiting for I/O)') ?? 0);
  const lines = [`CPU profile of the tidemark server: ${(totalUs / 1e6).toFixed(1)} s wall, ${((busy * perSampleUs) / 1e6).toFixed(1)} s on the main thread (${((100 * busy) / Math.max(1, samples)).toFixed(0)}% busy)`];
  lines.push('  by area (share of all samples):');
  for (const [cat, hits] of [...byCategory].sort((a, b) => b[1] - a[1])) {
    lines.push(`    ${cat.padEnd(32)} ${((100 * hits) / samples).toFixed(1).padStart(5)}%`);
  }
  lines.push('  hottest functions, self time (share of busy samples), with the callers of the top five:');
  const hottest = [...byFunction].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 15);
  hottest.forEach(([fn, hits], rank) => {
    lines.push(`    ${((100 * hits) / Math.max(1, busy)).toFixed(1).padStart(5)}%  ${fn}`);
    if (rank >= 5) return;
    // A native function (writeBuffer, writev) is only told apart by who called it: a file or a socket.
    const callers = new Map<string, number>();
    for (const node of profile.nodes) {
      if ((node.hitCount ?? 0) === 0 || functionKey(node) !== fn) continue;
      let parent = parents.get(node.id);
      const chain: string[] = [];
      while (parent && chain.length < 3) {
        chain.push(functionKey(parent).replace(/ .*\//, ' '));
        parent = parents.get(parent.id);
      }
      const key = chain.join(' < ') || '(root)';
      callers.set(key, (callers.get(key) ?? 0) + node.hitCount!);
    }
    for (const [chain, n] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, 3)) {
      lines.push(`             ${((100 * n) / Math.max(1, hits)).toFixed(0).padStart(3)}% from ${chain}`);
    }
  });
  return lines.join('\n');
}

function printTable(header: string[], rows: string[][], leftAligned: number[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const left = (i: number) => leftAligned.includes(i);
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';
  console.log(line(header));
  console.log('|' + widths.map((w, i) => (left(i) ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
  for (const r of rows) console.log(line(r));
}

// ---- main -------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'boolean', default: false },
      'serve-memory': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'no-profile': { type: 'boolean', default: false },
      'profile-only': { type: 'boolean', default: false },
      sizes: { type: 'string' },
      dir: { type: 'string' },
      'compare-with': { type: 'string' },
    },
    allowPositionals: true,
    strict: false,
  });
  if (values.serve) {
    const [store, socket, volume, size] = process.argv.slice(process.argv.indexOf('--serve') + 1);
    await serve(store!, socket!, volume!, Number(size));
    return;
  }
  if (values['serve-memory']) {
    const [socket, volume, size] = process.argv.slice(process.argv.indexOf('--serve-memory') + 1);
    await serveMemory(socket!, volume!, Number(size));
    return;
  }
  for (const [command, pkg] of [
    ['nbdcopy', 'libnbd-bin'],
    ['nbdinfo', 'libnbd-bin'],
    ['qemu-img', 'qemu-utils'],
    ['qemu-nbd', 'qemu-utils'],
    ['nbdkit', 'nbdkit'],
    ['fio', 'fio'],
  ]) {
    need(command!, pkg!);
  }
  process.stdout.on('error', () => undefined); // a closed pipe (| head) must not skip the cleanup
  const quick = values.quick === true;
  const sizes = (typeof values.sizes === 'string' ? values.sizes.split(',').map(Number) : quick ? [128] : [512, 1024]).map((m) => m * MiB);
  const runs = Number(values.runs ?? (quick ? 1 : 2));
  const base = typeof values.dir === 'string' ? values.dir : os.tmpdir();
  const dir = await fs.mkdtemp(path.join(base, 'tidemark-bench-nbd-'));
  const live: Target[] = [];
  const cleanup = async () => {
    for (const t of live) await stopServer(t);
    await fs.rm(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
  try {
    console.log(`NBD benchmark: ${sizes.map((s) => `${s / MiB} MiB`).join(' and ')} exports, ${runs} run(s) each, median and [min-max of the per-run ratios]; in ${dir}`);
    console.log(`  ${os.cpus().length} CPUs, load average ${load()} at start (other work on the machine skews every column alike)`);
    for (const size of values['profile-only'] === true ? [] : sizes) {
      await measureSize({ dir: path.join(dir, String(size / MiB)), size, runs, quick, profile: values.profile === true, live, base: typeof values['compare-with'] === 'string' ? path.resolve(values['compare-with']) : undefined });
    }
    if (values['profile-only'] === true || (!quick && values.profile !== true && values['no-profile'] !== true)) {
      await shortProfile(path.join(dir, 'short-profile'), live);
    }
  } finally {
    await cleanup();
  }
}

interface SizeRun {
  dir: string;
  size: number;
  runs: number;
  quick: boolean;
  profile: boolean;
  /** Servers that are running, so that the caller's cleanup can stop them. */
  live: Target[];
  /** Another build's dist/bench/nbd.js: its tidemark server runs beside this one (--compare-with). */
  base: string | undefined;
}

function tidemarkArgs(nodeArgs: string[], dir: string, size: number): string[] {
  return [...nodeArgs, SELF, '--serve', path.join(dir, 'store'), path.join(dir, 'tidemark.sock'), 'bench', String(size)];
}

const STRIDE = 4096 * 104_729;

function randomWrite(ops: number, depth: number, pattern: string): (t: Target) => Promise<number> {
  return random(['-w', `--pattern=${pattern}`], ops, depth);
}

function randomRead(ops: number, depth: number): (t: Target) => Promise<number> {
  return random([], ops, depth);
}

function random(mode: string[], ops: number, depth: number): (t: Target) => Promise<number> {
  // A prime stride in 4 KiB units scatters qemu-img bench's otherwise sequential offsets
  // over the whole export: a deterministic stand-in for random 4 KiB I/O.
  return async (t) => {
    const { stdout } = await exec('qemu-img', ['bench', '-f', 'raw', ...mode, '-c', String(ops), '-d', String(depth), '-s', '4K', '-S', String(STRIDE), t.uri]);
    return ops / benchSeconds(stdout);
  };
}

/**
 * 4 KiB random writes with `depth` really in flight: fio's nbd engine (libnbd) keeps as many
 * as it is told, where qemu's NBD client keeps at most 16 whatever `qemu-img bench -d` says.
 */
function fioRandomWrite(ops: number, depth: number, size: number): (t: Target) => Promise<number> {
  return async (t) => {
    const args = ['--name=bench', '--ioengine=nbd', `--uri=${t.uri}`, '--rw=randwrite', '--bs=4k', `--iodepth=${depth}`];
    args.push(`--number_ios=${ops}`, `--size=${size}`, '--norandommap', '--randrepeat=1', '--output-format=json');
    const { stdout } = await exec('fio', args);
    return fioWriteIops(stdout);
  };
}

function fioWriteIops(stdout: string): number {
  // The nbd engine prints a line of its own before the JSON.
  const json = stdout.slice(stdout.indexOf('{'));
  const report = JSON.parse(json) as { jobs?: { error?: number; write?: { iops?: number } }[] };
  const job = report.jobs?.[0];
  if (!job || job.error || typeof job.write?.iops !== 'number') throw new Error(`unexpected fio output: ${stdout.slice(0, 400)}`);
  return job.write.iops;
}

function sequentialWrite(source: string, size: number): (t: Target) => Promise<number> {
  return async (t) => size / MiB / ((await exec('nbdcopy', ['--flush', '--connections=1', source, t.uri])).ms / 1000);
}

async function measureSize(opts: SizeRun): Promise<void> {
  const { dir, size, runs, quick, live } = opts;
  await fs.mkdir(dir, { recursive: true });
  const profileDir = path.join(dir, 'profile');
  const qd1Ops = quick ? 5_000 : 10_000;
  const qd64Ops = quick ? 40_000 : 100_000;
  const targets: Target[] = [];
  const start = async (name: TargetName, command: string, args: string[], socket: string) => {
    const t = await startServer(name, command, args, socket);
    targets.push(t);
    live.push(t);
  };
  const source = path.join(dir, 'source.img');
  await writeRandomFile(source, size);
  for (const name of ['nbdkit.img', 'qemu.img']) {
    const handle = await fs.open(path.join(dir, name), 'w');
    await handle.truncate(size);
    await handle.close();
  }
  const nodeArgs = opts.profile ? [`--cpu-prof`, `--cpu-prof-dir=${profileDir}`] : [];
  await start('tidemark', process.execPath, tidemarkArgs(nodeArgs, dir, size), path.join(dir, 'tidemark.sock'));
  await start('nbdkit', 'nbdkit', ['--foreground', '--exit-with-parent', '--unix', path.join(dir, 'nbdkit.sock'), 'file', `file=${path.join(dir, 'nbdkit.img')}`], path.join(dir, 'nbdkit.sock'));
  await start(
    'qemu-nbd',
    'qemu-nbd',
    ['--persistent', '--shared=16', '--format=raw', '--cache=writeback', '--aio=threads', '--discard=unmap', `--socket=${path.join(dir, 'qemu.sock')}`, path.join(dir, 'qemu.img')],
    path.join(dir, 'qemu.sock'),
  );
  // The protocol layers alone, over RAM: tidemark's NBD code against nbdkit's.
  if (opts.base) {
    await start('tidemark-base', process.execPath, [opts.base, '--serve', path.join(dir, 'store-base'), path.join(dir, 'base.sock'), 'bench', String(size)], path.join(dir, 'base.sock'));
  }
  await start('tidemark-ram', process.execPath, [SELF, '--serve-memory', path.join(dir, 'ram.sock'), 'bench', String(size)], path.join(dir, 'ram.sock'));
  await start('nbdkit-memory', 'nbdkit', ['--foreground', '--exit-with-parent', '--unix', path.join(dir, 'mem.sock'), 'memory', String(size)], path.join(dir, 'mem.sock'));

  const measurements: Measurement[] = [
    {
      id: 'write',
      label: 'sequential write + flush (nbdcopy --flush, 1 conn)',
      unit: 'MiB/s',
      target: { peer: 'qemu-nbd', ratio: 0.9 },
      run: sequentialWrite(source, size),
    },
    {
      id: 'read',
      label: 'sequential read (nbdcopy to null:, 1 conn)',
      unit: 'MiB/s',
      target: { peer: 'both', ratio: 1.0 },
      run: async (t) => size / MiB / ((await exec('nbdcopy', ['--connections=1', t.uri, 'null:'])).ms / 1000),
    },
    {
      id: 'read-qemu',
      label: 'sequential read 256 KiB QD16 (qemu-img bench)',
      unit: 'MiB/s',
      target: { peer: 'both', ratio: 1.0 },
      run: async (t) => {
        const count = size / (256 * 1024);
        const { stdout } = await exec('qemu-img', ['bench', '-f', 'raw', '-c', String(count), '-d', '16', '-s', '256K', t.uri]);
        return size / MiB / benchSeconds(stdout);
      },
    },
    { id: 'rand-read', label: '4 KiB random read QD16 (qemu-img bench)', unit: 'IOPS', target: { peer: 'both', ratio: 1.0 }, run: randomRead(qd64Ops, 16) },
    { id: 'rand-qd1', label: '4 KiB random write QD1 (qemu-img bench)', unit: 'IOPS', run: randomWrite(qd1Ops, 1, '0xa5') },
    // The design's target names qemu-nbd; the ratio to nbdkit is printed as well.
    { id: 'rand-qd64', label: '4 KiB random write, qemu-img bench -d 64 (16 in flight)', unit: 'IOPS', target: { peer: 'qemu-nbd', ratio: 0.8 }, run: randomWrite(qd64Ops, 64, '0x5a') },
    { id: 'rand-fio64', label: '4 KiB random write QD64 (fio, nbd engine)', unit: 'IOPS', target: { peer: 'qemu-nbd', ratio: 0.8 }, run: fioRandomWrite(qd64Ops, 64, size) },
  ];

  const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log('');
  console.log(`${size / MiB} MiB exports (random writes: QD1 ${qd1Ops} ops, QD64 ${qd64Ops} ops), load average ${load()}`);
  const results = new Map<string, Map<string, number[]>>();
  const cpu = new Map<string, Map<string, number[]>>();
  for (const m of measurements) {
    const perTarget = new Map<string, number[]>();
    const cpuPerTarget = new Map<string, number[]>();
    results.set(m.id, perTarget);
    cpu.set(m.id, cpuPerTarget);
    for (let r = 0; r < runs; r++) {
      // Servers take turns within a run, so drift over time hits all of them alike.
      for (const t of targets) {
        // Dirty pages a previous server left (an image the page cache still holds) would be
        // written back during the next one's FLUSH and charged to it: start each clean.
        if (m.unit === 'IOPS' || m.id === 'write') await exec('sync', []);
        const cpuBefore = await cpuWhenIdle(t.process.pid!);
        const value = await m.run(t);
        const cpuUsed = (await cpuWhenIdle(t.process.pid!)) - cpuBefore;
        perTarget.set(t.name, [...(perTarget.get(t.name) ?? []), value]);
        cpuPerTarget.set(t.name, [...(cpuPerTarget.get(t.name) ?? []), cpuUsed]);
      }
    }
    const row = targets.map((t) => `${t.name} ${perTarget.get(t.name)!.map((v) => v.toFixed(0)).join('/')}`).join(', ');
    console.log(`  ${m.label}: ${row} ${m.unit}`);
  }

  const values = (id: string, name: string) => results.get(id)!.get(name)!;
  const value = (id: string, name: string) => median(values(id, name));
  // Ratios are taken per run (the servers ran side by side) and then summarised.
  const ratio = (id: string, a: string, b: string) => {
    const per = values(id, a).map((v, i) => v / values(id, b)[i]!);
    const spread = per.length > 1 ? ` [${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)}]` : '';
    return { median: median(per), text: `${median(per).toFixed(2)}x${spread}` };
  };
  const mainRows: string[][] = [];
  const layer: string[][] = [];
  for (const m of measurements) {
    const tide = value(m.id, 'tidemark');
    const vsKit = ratio(m.id, 'tidemark', 'nbdkit');
    const vsQemu = ratio(m.id, 'tidemark', 'qemu-nbd');
    let target = '-';
    if (m.target) {
      const met = m.target.peer === 'qemu-nbd' ? vsQemu.median >= m.target.ratio : Math.min(vsKit.median, vsQemu.median) >= m.target.ratio;
      target = `>= ${m.target.ratio.toFixed(1)}x ${m.target.peer === 'both' ? 'both' : 'qemu-nbd'}: ${met ? 'met' : 'MISSED'}`;
    }
    const vsBase = opts.base ? [value(m.id, 'tidemark-base').toFixed(0), ratio(m.id, 'tidemark', 'tidemark-base').text] : [];
    mainRows.push([m.label, m.unit, tide.toFixed(0), value(m.id, 'nbdkit').toFixed(0), value(m.id, 'qemu-nbd').toFixed(0), vsKit.text, vsQemu.text, target, ...vsBase]);
    const ram = value(m.id, 'tidemark-ram');
    const memory = value(m.id, 'nbdkit-memory');
    layer.push([m.label, m.unit, ram.toFixed(0), memory.toFixed(0), ratio(m.id, 'tidemark-ram', 'nbdkit-memory').text, ratio(m.id, 'tidemark', 'tidemark-ram').text]);
  }
  console.log(`  load average ${load()} at the end`);
  console.log('');
  printTable(['measurement', 'unit', 'tidemark', 'nbdkit', 'qemu-nbd', 't/nbdkit', 't/qemu-nbd', 'target', ...(opts.base ? ['base', 't/base'] : [])], mainRows, [0, 1, 7]);
  console.log('');
  console.log('Protocol layers alone, over RAM (no journal, no image, no page cache):');
  printTable(['measurement', 'unit', 'tidemark NBD/RAM', 'nbdkit memory', 'ratio', 'tidemark with engine/over RAM'], layer, [0, 1]);

  // On a shared machine the rates above scatter with the load; the CPU a server spends on the
  // same work scatters far less, and on a machine where client and servers share the cores
  // it is what throughput comes down to.
  const cpuOf = (id: string, name: string) => median(cpu.get(id)!.get(name)!);
  const cpuRatio = (id: string, a: string, b: string) => {
    const per = cpu.get(id)!.get(a)!.map((v, i) => v / cpu.get(id)!.get(b)![i]!);
    return `${median(per).toFixed(2)}x [${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)}]`;
  };
  const cpuRows = measurements.map((m) => [
    m.label,
    ...['tidemark', 'nbdkit', 'qemu-nbd'].map((name) => cpuOf(m.id, name).toFixed(2)),
    cpuRatio(m.id, 'tidemark', 'qemu-nbd'),
    ...(opts.base ? [cpuOf(m.id, 'tidemark-base').toFixed(2), cpuRatio(m.id, 'tidemark', 'tidemark-base')] : []),
  ]);
  console.log('');
  console.log('Server CPU seconds per run (user + system, all threads, until the server is idle again; lower is better):');
  printTable(['measurement', 'tidemark', 'nbdkit', 'qemu-nbd', 't/qemu-nbd', ...(opts.base ? ['base', 't/base'] : [])], cpuRows, [0]);

  for (const t of targets) await stopServer(t);
  await fs.rm(path.join(dir, 'store'), { recursive: true, force: true });
  for (const name of ['nbdkit.img', 'qemu.img', 'source.img']) await fs.rm(path.join(dir, name), { force: true });
  if (opts.profile) {
    console.log('');
    console.log(await summariseProfile(profileDir));
  }
}

/** A fresh tidemark server under the profiler: one sequential write + flush and QD64 random writes. */
async function shortProfile(dir: string, live: Target[]): Promise<void> {
  const size = 128 * MiB;
  await fs.mkdir(dir, { recursive: true });
  const profileDir = path.join(dir, 'profile');
  const source = path.join(dir, 'source.img');
  await writeRandomFile(source, size);
  const traceFile = path.join(dir, 'trace.json');
  const t = await startServer('tidemark', process.execPath, tidemarkArgs([`--cpu-prof`, `--cpu-prof-dir=${profileDir}`], dir, size), path.join(dir, 'tidemark.sock'), {
    TIDEMARK_BENCH_TRACE: traceFile,
  });
  live.push(t);
  const write = await sequentialWrite(source, size)(t);
  const qd64 = await fioRandomWrite(20_000, 64, size)(t);
  await stopServer(t);
  console.log('');
  console.log(`Short profile (separate run under --cpu-prof, ${size / MiB} MiB sequential write + flush at ${write.toFixed(0)} MiB/s, 20000 4 KiB random writes QD64 at ${qd64.toFixed(0)} IOPS):`);
  console.log(await summariseProfile(profileDir));
  const trace = JSON.parse(await fs.readFile(traceFile, 'utf8').catch(() => '{}')) as Partial<WriteProfile>;
  if (trace.ms) {
    const ops = trace.batchOps ?? [];
    console.log(`  engine write path, wall time by part (own ms, calls; "background" overlaps the rest), ${ops.length} batches, ${(ops.reduce((a, b) => a + b, 0) / Math.max(1, ops.length)).toFixed(1)} ops per batch:`);
    for (const [key, ms] of Object.entries(trace.ms).sort((a, b) => b[1] - a[1])) {
      console.log(`    ${key.padEnd(18)} ${ms.toFixed(0).padStart(7)} ms  ${String(trace.calls?.[key] ?? 0).padStart(6)} calls`);
    }
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
