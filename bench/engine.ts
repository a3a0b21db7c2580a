/**
 * Engine benchmarks: each measures tidemark against a peer in the same run and prints the
 * ratio next to the design's target. Timing is never asserted; a missed target is reported,
 * not failed. The exit code is non-zero only when a benchmark could not run.
 *
 *   node dist/bench/engine.js [--quick] [--only restore,rewind,write,memory,snapshot]
 *                             [--out results.json] [--dir BASE] [--profile]
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { filesystemType, fmtMs, installAbortHandlers } from './lib/harness.js';
import { renderTable, type BenchOptions, type BenchResult } from './lib/report.js';
import { memory } from './memory.js';
import { partialRestore } from './partial-restore.js';
import { rewindVsRecovery } from './rewind.js';
import { snapshotPause } from './snapshot-pause.js';
import { writeThroughput } from './write-throughput.js';

const BENCHMARKS: { id: string; run: (options: BenchOptions) => Promise<BenchResult> }[] = [
  { id: 'restore', run: partialRestore },
  { id: 'rewind', run: rewindVsRecovery },
  { id: 'write', run: writeThroughput },
  { id: 'memory', run: memory },
  { id: 'snapshot', run: snapshotPause },
];

const USAGE = `usage: node dist/bench/engine.js [options]
  --quick          small sizes, for smoke tests (each benchmark well under a minute)
  --only LIST      comma-separated subset of: ${BENCHMARKS.map((b) => b.id).join(', ')}
  --out FILE       also write the results as JSON to FILE
  --dir DIR        create stores under DIR instead of ${os.tmpdir()} (to measure another filesystem)
  --profile        attribute write-path time (journal append, CRC, image write, syncs);
                   full runs do this on their own when writes miss the target
  --help`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      dir: { type: 'string' },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const wanted = values.only ? values.only.split(',').map((s) => s.trim()) : BENCHMARKS.map((b) => b.id);
  const unknown = wanted.filter((id) => !BENCHMARKS.some((b) => b.id === id));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}\n${USAGE}\n`);
    return 2;
  }
  installAbortHandlers();
  const baseDir = values.dir ? path.resolve(values.dir) : undefined;
  if (baseDir) await fs.mkdir(baseDir, { recursive: true });
  const options: BenchOptions = {
    quick: values.quick,
    baseDir,
    profile: values.profile,
    log: (message) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`),
  };
  const command = `node dist/bench/engine.js ${process.argv.slice(2).join(' ')}`.trim();
  const host = {
    node: process.version,
    kernel: os.release(),
    cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown'}`,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    storeFilesystem: await filesystemType(baseDir ?? os.tmpdir()),
    storeDir: baseDir ?? os.tmpdir(),
    loadAverageAtStart: os.loadavg()[0]!,
    loadAverageAtEnd: NaN,
  };
  const started = Date.now();
  const results: BenchResult[] = [];
  const failures: { id: string; error: string }[] = [];
  for (const bench of BENCHMARKS.filter((b) => wanted.includes(b.id))) {
    const t0 = performance.now();
    options.log(`${bench.id}: start (${options.quick ? 'quick' : 'full'})`);
    try {
      const result = await bench.run(options);
      result.data['durationMs'] = performance.now() - t0;
      results.push(result);
      options.log(`${bench.id}: done in ${fmtMs(performance.now() - t0)}`);
    } catch (err) {
      const error = err instanceof Error ? (err.stack ?? err.message) : String(err);
      failures.push({ id: bench.id, error });
      options.log(`${bench.id}: FAILED: ${error}`);
    }
  }

  host.loadAverageAtEnd = os.loadavg()[0]!;
  const busy = Math.max(host.loadAverageAtStart, host.loadAverageAtEnd) > os.cpus().length / 2;
  const out: string[] = [
    `tidemark engine benchmarks (${options.quick ? 'quick' : 'full'} mode), ${new Date(started).toISOString()}`,
    `command: ${command}`,
    `host: node ${host.node}, linux ${host.kernel}, ${host.cpus}, ${host.memoryGiB} GiB RAM, stores on ${host.storeFilesystem} (${host.storeDir})`,
    `load average (1 min): ${host.loadAverageAtStart.toFixed(2)} at start, ${host.loadAverageAtEnd.toFixed(2)} at end${busy ? ' — WARNING: other work was running; ratios are less trustworthy' : ''}`,
    '',
  ];
  for (const result of results) out.push(renderTable(result), '');
  for (const failure of failures) out.push(`== ${failure.id}: FAILED`, failure.error, '');
  out.push(`total ${fmtMs(Date.now() - started)}`);
  process.stdout.write(`${out.join('\n')}\n`);

  if (values.out) {
    const report = { command, mode: options.quick ? 'quick' : 'full', startedAt: new Date(started).toISOString(), durationMs: Date.now() - started, host, results, failures };
    await fs.writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`);
    options.log(`results written to ${values.out}`);
  }
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
