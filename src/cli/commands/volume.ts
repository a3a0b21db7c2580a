import * as fs from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { CHUNK_SIZE } from '../../api/proto.js';
import type { InterruptedRestore, RetentionPolicy, VolumeInfo } from '../../engine/index.js';
import { classifyError, invalidArgument, notFound, type TidemarkError } from '../../util/errors.js';
import { BLOCK_SIZE, LENGTH, OFFSET, RETENTION_SIZE, VOLUME_SIZE, granularityRange, parseDuration, parseSizeOption } from '../args.js';
import { withClient } from '../context.js';
import * as out from '../output.js';

interface RetentionOptions {
  retentionSize?: string;
  retentionAge?: string;
}

export function registerVolumeCommands(program: Command): void {
  const volume = program.command('volume').description('manage volumes');

  volume
    .command('create')
    .description('create a volume')
    .argument('<name>', 'volume name')
    .requiredOption('--size <size>', 'size in bytes or with Ki, Mi, Gi, Ti (e.g. 10Gi)')
    .option('--block-size <size>', 'smallest I/O and restore alignment, a power of two from 512 to 64Ki (default 4Ki)')
    .option('--granularity <size>', 'bytes per bit of changed-block tracking, a power of two from the block size to 64Mi (default 64Ki)')
    .option('--retention-size <size>', 'keep at most this much journal (default: no limit)')
    .option('--retention-age <duration>', 'free journal older than this, e.g. 30s, 10m, 2h, 7d (default: no limit)')
    .action(async (name: string, opts: RetentionOptions & { size: string; blockSize?: string; granularity?: string }, cmd: Command) => {
      const size = parseSizeOption(opts.size, 'size', VOLUME_SIZE);
      const blockSize = opts.blockSize === undefined ? undefined : parseSizeOption(opts.blockSize, 'block size', BLOCK_SIZE);
      const granularity = opts.granularity === undefined ? undefined : parseSizeOption(opts.granularity, 'granularity', granularityRange(blockSize));
      const retention = retentionFrom(opts, {});
      await withClient(cmd, async (client, g) => {
        const info = await client.createVolume(name, {
          size,
          ...(blockSize !== undefined ? { blockSize } : {}),
          ...(granularity !== undefined ? { granularity } : {}),
          retention,
        });
        if (g.json) return out.printJson(info);
        return out.printLine(`volume "${info.name}" created: ${out.size(info.size)}, block size ${info.blockSize}, granularity ${out.size(info.granularity)}, retention ${out.retention(info.retention)}`);
      });
    });

  volume
    .command('list')
    .description('list volumes')
    .action(async (_opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const volumes = await client.listVolumes();
        if (g.json) return out.printJson(volumes);
        if (volumes.length === 0) return out.printLine('no volumes');
        return out.printLine(
          out.table(
            ['NAME', 'SIZE', 'SEQUENCE', 'SNAPSHOTS', 'MARKERS', 'JOURNAL', 'RETENTION', 'IN USE BY'],
            volumes.map((v) => [
              v.name,
              out.size(v.size),
              String(v.sequence),
              String(v.snapshotCount),
              String(v.markerCount),
              out.size(v.journalBytes),
              out.retention(v.retention),
              v.holders.join(',') || '-',
            ]),
            [1, 2, 3, 4, 5],
          ),
        );
      });
    });

  volume
    .command('info')
    .description('show one volume')
    .argument('<name>', 'volume name')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const info = await client.getVolume(name);
        if (g.json) return out.printJson(info);
        return out.printLine(describeVolume(info));
      });
    });

  volume
    .command('delete')
    .description('delete a volume with its journal, snapshots and markers')
    .argument('<name>', 'volume name')
    .option('--force', 'delete even while the volume is in use')
    .action(async (name: string, opts: { force?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        await client.deleteVolume(name, { force: opts.force === true });
        if (g.json) return out.printJson({ deleted: name });
        return out.printLine(`volume "${name}" deleted`);
      });
    });

  volume
    .command('clear-restore')
    .description('forget that an in-place restore was cut short, leaving the data as the restore left it')
    .argument('<name>', 'volume name')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const before = await client.getVolume(name);
        const info = await client.clearInterruptedRestore(name);
        if (g.json) return out.printJson(info);
        if (!before.restoreInterrupted) return out.printLine(`volume "${name}" has no interrupted restore`);
        return out.printLine(`volume "${name}": interrupted restore to ${before.restoreInterrupted.source} cleared; its data stays as the restore left it`);
      });
    });

  volume
    .command('set-retention')
    .description('change how much journal a volume keeps; options left out keep their value')
    .argument('<name>', 'volume name')
    .option('--retention-size <size>', 'keep at most this much journal, or "none" for no size limit')
    .option('--retention-age <duration>', 'free journal older than this (30s, 10m, 2h, 7d), or "none" for no age limit')
    .action(async (name: string, opts: RetentionOptions, cmd: Command) => {
      if (opts.retentionSize === undefined && opts.retentionAge === undefined) {
        throw invalidArgument('give --retention-size and/or --retention-age (a value or "none")');
      }
      await withClient(cmd, async (client, g) => {
        const current = await client.getVolume(name);
        const info = await client.setRetention(name, retentionFrom(opts, current.retention));
        if (g.json) return out.printJson(info);
        return out.printLine(`volume "${name}" retention: ${out.retention(info.retention)}; earliest recoverable sequence ${info.earliestRecoverableSequence}`);
      });
    });

  volume
    .command('write')
    .description('write a file (or stdin) into a volume through the journal; durable when the command returns')
    .argument('<name>', 'volume name')
    .option('--offset <offset>', 'byte offset to write at (sizes such as 1Mi accepted)', '0')
    .option('--file <file>', 'file to write; "-" or absent reads stdin')
    .action(async (name: string, opts: { offset: string; file?: string }, cmd: Command) => {
      const offset = parseSizeOption(opts.offset, 'offset', OFFSET);
      const { source, length, close } = await openSource(opts.file);
      try {
        await withClient(cmd, async (client, g) => {
          const result = await client.writeVolume(name, offset, rechunk(source), { flush: true, ...(length !== undefined ? { length } : {}) });
          if (g.json) return out.printJson({ volume: name, offset, ...result });
          return out.printLine(`wrote ${out.sizeWithBytes(result.bytesWritten)} to volume "${name}" at offset ${offset} (journal sequence ${result.sequence}, flushed)`);
        });
      } finally {
        await close();
      }
    });

  volume
    .command('read')
    .description('write a volume\'s raw bytes to stdout (whole volume by default)')
    .argument('<name>', 'volume name')
    .option('--offset <offset>', 'first byte to read', '0')
    .option('--length <length>', 'bytes to read (default: to the end of the volume)')
    .addOption(new Option('-o, --output <file>', 'write to this file instead of stdout'))
    .action(async (name: string, opts: { offset: string; length?: string; output?: string }, cmd: Command) => {
      const offset = parseSizeOption(opts.offset, 'offset', OFFSET);
      const length = opts.length === undefined ? undefined : parseSizeOption(opts.length, 'length', LENGTH);
      await withClient(cmd, async (client, g) => {
        const chunks = client.readVolume(name, { offset, ...(length !== undefined ? { length } : {}) });
        if (g.json) {
          const parts: Buffer[] = [];
          for await (const chunk of chunks) parts.push(chunk);
          const data = Buffer.concat(parts);
          return out.printJson({ volume: name, offset, length: data.length, data: data.toString('base64') });
        }
        if (opts.output !== undefined) return copyToFile(chunks, opts.output);
        if (process.stdout.isTTY) throw invalidArgument('refusing to write raw volume bytes to a terminal: redirect stdout, or use --output FILE');
        for await (const chunk of chunks) await out.writeOut(chunk);
      });
    });
}

function retentionFrom(opts: RetentionOptions, current: RetentionPolicy): RetentionPolicy {
  const policy: RetentionPolicy = { ...current };
  if (opts.retentionSize !== undefined) {
    if (opts.retentionSize === 'none') delete policy.maxBytes;
    else policy.maxBytes = parseSizeOption(opts.retentionSize, 'retention size', RETENTION_SIZE);
  }
  if (opts.retentionAge !== undefined) {
    if (opts.retentionAge === 'none') delete policy.maxAgeSeconds;
    else policy.maxAgeSeconds = parseDuration(opts.retentionAge, 'retention age');
  }
  return policy;
}

function describeVolume(info: VolumeInfo): string {
  return out.keyValues([
    ['name', info.name],
    ['size', out.sizeWithBytes(info.size)],
    ['block size', String(info.blockSize)],
    ['granularity', out.sizeWithBytes(info.granularity)],
    ['created', out.time(info.createdAt)],
    ['retention', out.retention(info.retention)],
    ['sequence', String(info.sequence)],
    ['earliest recoverable', `${info.earliestRecoverableSequence}${info.earliestRecoverableTime ? ` (${out.time(info.earliestRecoverableTime)})` : ''}`],
    ['journal', `${out.sizeWithBytes(info.journalBytes)} in ${info.journalSegments} segment${info.journalSegments === 1 ? '' : 's'}`],
    ['snapshots', String(info.snapshotCount)],
    ['markers', String(info.markerCount)],
    ['in use by', info.holders.join(', ') || '-'],
    ...(info.restoreInterrupted ? [['restore interrupted', describeInterrupted(info.name, info.restoreInterrupted)] as [string, string]] : []),
  ]);
}

/** An interrupted restore and the two ways out of it. */
export function describeInterrupted(volume: string, restore: InterruptedRestore): string {
  const ranges = restore.ranges ? ` in ${restore.ranges.map((r) => `${r.offset}:${r.length}`).join(', ')}` : '';
  return (
    `to ${restore.source} (sequence ${restore.pointSequence})${ranges}, started ${out.time(restore.startedAt)}; ` +
    `the volume holds a mix of its old data and that point's: run the restore again, or \`tidemark volume clear-restore ${volume}\``
  );
}

interface Source {
  source: AsyncIterable<Uint8Array>;
  /** Known for regular files, so the daemon can check the whole range before writing. */
  length?: number;
  close: () => Promise<void>;
}

async function openSource(file: string | undefined): Promise<Source> {
  if (file === undefined || file === '-') {
    if (process.stdin.isTTY) throw invalidArgument('no data to write: give --file FILE or pipe the data on stdin');
    return { source: process.stdin, close: async () => undefined };
  }
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    throw userFileError(err, file);
  }
  const stat = await handle.stat();
  const stream = handle.createReadStream({ highWaterMark: CHUNK_SIZE, autoClose: false });
  return {
    source: stream,
    ...(stat.isFile() ? { length: stat.size } : {}),
    close: () => handle.close(),
  };
}

/** Joins a pipe's small reads into chunks of about CHUNK_SIZE, so each becomes one journal record. */
async function* rechunk(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of source) {
    pending.push(chunk);
    bytes += chunk.length;
    if (bytes >= CHUNK_SIZE) {
      yield Buffer.concat(pending);
      pending = [];
      bytes = 0;
    }
  }
  if (bytes > 0) yield Buffer.concat(pending);
}

async function copyToFile(chunks: AsyncIterable<Buffer>, file: string): Promise<void> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'w');
  } catch (err) {
    throw userFileError(err, file);
  }
  try {
    for await (const chunk of chunks) await handle.write(chunk);
  } catch (err) {
    throw classifyError(err, `writing ${file}`);
  } finally {
    await handle.close();
  }
}

/** A file the user named is missing: NOT_FOUND (exit 3), where a missing file of the store's is INTERNAL. */
function userFileError(err: unknown, file: string): TidemarkError {
  if ((err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return notFound(`${file} does not exist`);
  return classifyError(err, `opening ${file}`);
}
