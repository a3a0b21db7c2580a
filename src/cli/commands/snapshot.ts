import type { Command } from 'commander';
import { withClient } from '../context.js';
import * as out from '../output.js';

export function registerSnapshotCommands(program: Command): void {
  const snapshot = program.command('snapshot').description('manage snapshots');

  snapshot
    .command('create')
    .description('take a snapshot of a volume')
    .argument('<volume>', 'volume name')
    .argument('<name>', 'snapshot name')
    .action(async (volume: string, name: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const info = await client.createSnapshot(volume, name);
        if (g.json) return out.printJson(info);
        return out.printLine(`snapshot "${info.name}" of volume "${info.volume}" created at sequence ${info.sequence} (${info.method})`);
      });
    });

  snapshot
    .command('list')
    .description("list a volume's snapshots, oldest first")
    .argument('<volume>', 'volume name')
    .option('--all', "include the engine's own base snapshots")
    .action(async (volume: string, opts: { all?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const snapshots = await client.listSnapshots(volume, { includeInternal: opts.all === true });
        if (g.json) return out.printJson(snapshots);
        if (snapshots.length === 0) return out.printLine(`volume "${volume}" has no snapshots`);
        const headers = ['NAME', 'SEQUENCE', 'CREATED', 'METHOD'];
        if (opts.all) headers.push('INTERNAL');
        return out.printLine(
          out.table(
            headers,
            snapshots.map((s) => {
              const row = [s.name, String(s.sequence), out.time(s.createdAt), s.method];
              if (opts.all) row.push(s.internal ? 'yes' : 'no');
              return row;
            }),
            [1],
          ),
        );
      });
    });

  snapshot
    .command('delete')
    .description('delete a snapshot')
    .argument('<volume>', 'volume name')
    .argument('<name>', 'snapshot name')
    .action(async (volume: string, name: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        await client.deleteSnapshot(volume, name);
        if (g.json) return out.printJson({ deleted: name, volume });
        return out.printLine(`snapshot "${name}" of volume "${volume}" deleted`);
      });
    });
}
