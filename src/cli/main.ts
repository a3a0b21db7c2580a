import { Command, CommanderError } from 'commander';
import { TidemarkError, classifyError } from '../util/errors.js';
import { packageVersion } from '../util/package.js';
import { registerDiffCommand } from './commands/diff.js';
import { registerMarkerCommands } from './commands/marker.js';
import { registerRestoreCommand } from './commands/restore.js';
import { registerServeCommand } from './commands/serve.js';
import { registerSnapshotCommands } from './commands/snapshot.js';
import { registerStatusCommand } from './commands/status.js';
import { registerVolumeCommands } from './commands/volume.js';
import { DEFAULT_STORE } from './context.js';
import { EXIT, exitCodeFor } from './exit-codes.js';

export function buildProgram(): Command {
  const program = new Command('tidemark');
  program
    .description('continuous data protection for node-local block volumes')
    .version(packageVersion(), '--version', 'print the version')
    .option('--store <dir>', `the daemon's store (default: $TIDEMARK_STORE or ${DEFAULT_STORE}); its admin socket is admin.sock in it`)
    .option('--admin-socket <path>', "the daemon's admin socket, when not admin.sock in the store")
    .option('--json', 'print machine-readable JSON')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    // Usage errors come back here as exceptions, so that they get the same one-line format
    // and exit code as every other error.
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => write(`tidemark: ${text.replace(/^error: /, '')}`),
    });

  program.addHelpText(
    'after',
    `
Exit codes: 0 done, 1 other error, 2 usage or invalid argument, 3 not found, 4 already exists,
5 failed precondition (expired, busy), 6 daemon unreachable or store locked, 7 disk full.
Reference: docs/cli.md`,
  );

  registerServeCommand(program);
  registerVolumeCommands(program);
  registerSnapshotCommands(program);
  registerMarkerCommands(program);
  registerRestoreCommand(program);
  registerDiffCommand(program);
  registerStatusCommand(program);
  return program;
}

/** Runs the command line and returns the exit code; errors become one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT.OK;
  } catch (err) {
    // Commander may stop before it has parsed --json, so the argument list decides.
    const json = argv.slice(2).includes('--json');
    if (err instanceof CommanderError) {
      // Commander already printed its message (help, version, or a usage error).
      if (err.exitCode === 0) return EXIT.OK;
      if (json) printJsonError('INVALID_ARGUMENT', err.message.replace(/^error: /, ''));
      return EXIT.USAGE;
    }
    const error = err instanceof TidemarkError ? err : classifyError(err, 'tidemark');
    process.stderr.write(`tidemark: ${error.message}\n`);
    if (json) printJsonError(error.code, error.message);
    return exitCodeFor(error.code);
  }
}

function printJsonError(code: string, message: string): void {
  process.stdout.write(JSON.stringify({ error: { code, message } }) + '\n');
}

// Whoever reads our output may stop early (`tidemark volume read v | head -c 10`); that is
// not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT.OK);
  throw err;
});

process.exitCode = await main(process.argv);
