import type { Command } from 'commander';
import type { RestoreProgress, RestoreRequest, RestoreResult, RestoreSource } from '../../engine/index.js';
import { invalidArgument } from '../../util/errors.js';
import { parseRfc3339 } from '../../util/time.js';
import { collect, parseRange, parseSequence } from '../args.js';
import { withClient } from '../context.js';
import * as out from '../output.js';

interface RestoreOptions {
  snapshot?: string;
  marker?: string;
  time?: string;
  sequence?: string;
  range?: string[];
  to?: string;
  force?: boolean;
}

export function registerRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description('put a volume back to a snapshot, a marker or a point in time, in place or into a new volume')
    .argument('<volume>', 'volume name')
    .option('--snapshot <name>', 'restore the blocks changed since this snapshot')
    .option('--marker <name>', 'restore to this marker')
    .option('--time <rfc3339>', 'restore to the last write at or before this time, e.g. 2026-11-21T10:00:00Z')
    .option('--sequence <n>', 'restore to this journal sequence number')
    .option('--range <offset:length>', 'restore only this byte range, aligned to the block size (repeatable)', collect)
    .option('--to <volume>', 'restore into this new volume instead of in place')
    .option('--force', 'restore in place even while the volume is in use')
    .action(async (volume: string, opts: RestoreOptions, cmd: Command) => {
      const request = restoreRequest(volume, opts);
      await withClient(cmd, async (client, g) => {
        const progress = new ProgressLine(process.stderr.isTTY === true);
        let result: RestoreResult;
        try {
          result = await client.restore(request, (p) => progress.update(p));
        } finally {
          progress.clear();
        }
        if (g.json) return out.printJson(result);
        return out.printLine(summary(request, result));
      });
    });
}

function restoreRequest(volume: string, opts: RestoreOptions): RestoreRequest {
  const sources: RestoreSource[] = [];
  if (opts.snapshot !== undefined) sources.push({ snapshot: opts.snapshot });
  if (opts.marker !== undefined) sources.push({ marker: opts.marker });
  if (opts.time !== undefined) sources.push({ time: parseRfc3339(opts.time) });
  if (opts.sequence !== undefined) sources.push({ sequence: parseSequence(opts.sequence) });
  if (sources.length !== 1) throw invalidArgument('name exactly one of --snapshot, --marker, --time or --sequence');
  const request: RestoreRequest = { volume, source: sources[0]!, force: opts.force === true };
  if (opts.range && opts.range.length > 0) request.ranges = opts.range.map(parseRange);
  if (opts.to !== undefined) request.target = opts.to;
  return request;
}

function describeSource(source: RestoreSource): string {
  if ('snapshot' in source) return `snapshot "${source.snapshot}"`;
  if ('marker' in source) return `marker "${source.marker}"`;
  if ('time' in source) return `time ${source.time.toISOString()}`;
  return `sequence ${source.sequence}`;
}

function summary(request: RestoreRequest, result: RestoreResult): string {
  const what = describeSource(request.source);
  const where = request.target !== undefined ? `${what} of volume "${request.volume}" restored into new volume "${result.volume}"` : `volume "${request.volume}" restored to ${what}`;
  const base = result.baseSnapshot && !result.baseSnapshot.startsWith('~') ? ` from snapshot "${result.baseSnapshot}"` : '';
  const areas = request.ranges ? ` in ${request.ranges.length} range${request.ranges.length === 1 ? '' : 's'}` : '';
  return `${where} (sequence ${result.pointSequence}) by ${result.method}${base}${areas}: ${out.size(result.bytesRestored)} ${result.method === 'rebuild' ? 'written' : 'rewritten'} in ${out.seconds(result.durationMs)}`;
}

/** One self-overwriting progress line on a terminal; nothing at all otherwise. */
class ProgressLine {
  private shown = false;
  private last = 0;

  constructor(private readonly enabled: boolean) {}

  update(progress: RestoreProgress): void {
    const now = Date.now();
    if (!this.enabled || (now - this.last < 100 && progress.bytesRestored < progress.bytesTotal)) return;
    this.last = now;
    const percent = progress.bytesTotal > 0 ? Math.floor((progress.bytesRestored / progress.bytesTotal) * 100) : 100;
    process.stderr.write(`\rrestoring: ${out.size(progress.bytesRestored)} of ${out.size(progress.bytesTotal)} (${percent}%)\x1b[K`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
