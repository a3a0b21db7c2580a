import type { Command } from 'commander';
import { withClient } from '../context.js';
import * as out from '../output.js';

export function registerDiffCommand(program: Command): void {
  program
    .command('diff')
    .description('list the byte extents changed since a snapshot (up to another snapshot, or the live volume)')
    .argument('<volume>', 'volume name')
    .requiredOption('--base <snapshot>', 'the older snapshot')
    .option('--target <snapshot>', 'the newer snapshot (default: the live volume)')
    .action(async (volume: string, opts: { base: string; target?: string }, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const result = await client.diff(volume, opts.base, opts.target);
        const target = opts.target ?? null;
        if (g.json) return out.printJson({ volume, base: opts.base, target, extents: result.extents, changedBytes: result.changedBytes });
        const span = `between snapshot "${opts.base}" and ${opts.target !== undefined ? `snapshot "${opts.target}"` : 'the live volume'}`;
        if (result.extents.length === 0) return out.printLine(`volume "${volume}": no changes ${span}`);
        const rows = result.extents.map((e) => [String(e.offset), String(e.length), out.size(e.length)]);
        await out.printLine(out.table(['OFFSET', 'LENGTH', 'SIZE'], rows, [0, 1, 2]));
        const count = result.extents.length;
        return out.printLine(`volume "${volume}": ${count} extent${count === 1 ? '' : 's'}, ${out.sizeWithBytes(result.changedBytes)} changed ${span}`);
      });
    });
}
