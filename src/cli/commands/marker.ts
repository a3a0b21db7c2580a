import type { Command } from 'commander';
import { collect } from '../args.js';
import { withClient } from '../context.js';
import * as out from '../output.js';

export function registerMarkerCommands(program: Command): void {
  const marker = program.command('marker').description('manage journal markers');

  marker
    .command('create')
    .description('record a marker; several --volume options record one group marker at one consistent cut')
    .argument('<name>', 'marker name')
    .requiredOption('--volume <volume>', 'volume to mark (repeat for a group marker)', collect)
    .action(async (name: string, opts: { volume: string[] }, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const markers = await client.createMarker(name, opts.volume);
        if (g.json) return out.printJson(markers);
        const where = markers.map((m) => `"${m.volume}" at sequence ${m.sequence}`).join(', ');
        const group = markers.length > 1 ? ` (group ${markers[0]!.group})` : '';
        return out.printLine(`marker "${name}" recorded on ${where}${group}`);
      });
    });

  marker
    .command('list')
    .description("list a volume's markers, oldest first")
    .argument('<volume>', 'volume name')
    .action(async (volume: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const markers = await client.listMarkers(volume);
        if (g.json) return out.printJson(markers);
        if (markers.length === 0) return out.printLine(`volume "${volume}" has no markers`);
        return out.printLine(
          out.table(
            ['NAME', 'SEQUENCE', 'CREATED', 'GROUP', 'STATUS'],
            markers.map((m) => [m.name, String(m.sequence), out.time(m.createdAt), m.group || '-', m.expired ? 'expired' : 'recoverable']),
            [1],
          ),
        );
      });
    });
}
