import type { Command } from 'commander';
import { withClient } from '../context.js';
import * as out from '../output.js';
import { describeInterrupted } from './volume.js';

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('show whether the daemon answers, and what it serves')
    .action(async (_opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const status = await client.status();
        const interrupted = (await client.listVolumes()).filter((v) => v.restoreInterrupted);
        if (g.json) return out.printJson({ ...status, adminSocket: client.socketPath, interruptedRestores: interrupted.map((v) => v.name) });
        return out.printLine(
          out.keyValues([
            ['daemon', `tidemark ${status.version}, pid ${status.pid}, up since ${out.time(status.startedAt)}`],
            ['store', status.store],
            ['node', status.nodeId || '-'],
            ['admin socket', client.socketPath],
            ['volumes', String(status.volumeCount)],
            ...interrupted.map((v): [string, string] => [`restore interrupted on ${v.name}`, describeInterrupted(v.name, v.restoreInterrupted!)]),
          ]),
        );
      });
    });
}
