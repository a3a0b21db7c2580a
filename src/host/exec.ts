import { spawn } from 'node:child_process';
import { TidemarkError } from '../util/errors.js';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  /** Exit codes that are answers rather than failures (blkid says 2 for "nothing found"). */
  okCodes?: number[];
  /** The tool is killed after this long (60 s); a hung mount must not hang a CSI call forever. */
  timeoutMs?: number;
}

/** Debian package of each tool, so that "not installed" says what to install. */
const PACKAGES: Record<string, string> = {
  'nbd-client': 'nbd-client',
  nbdfuse: 'libnbd-bin (nbdfuse)',
  fusermount3: 'fuse3',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  blkid: 'util-linux',
  blockdev: 'util-linux',
  'mkfs.ext4': 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  dumpe2fs: 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs',
  xfs_growfs: 'xfsprogs',
};

/**
 * Runs one host tool with arguments (never through a shell) and collects its output. A
 * missing tool or a failure becomes a TidemarkError whose message names the tool and carries
 * its own words, which is what an operator needs to act. The arguments stay out of it: they
 * can hold secrets (CSI mount flags may carry credentials), and the message travels to the
 * CO and into error-level logs.
 */
export function runTool(tool: string, args: string[], options: ToolOptions = {}): Promise<ToolResult> {
  const okCodes = options.okCodes ?? [0];
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT') {
        reject(new TidemarkError('FAILED_PRECONDITION', `${tool} is not installed on this node; install ${PACKAGES[tool] ?? tool}`, { tool }));
      } else {
        reject(new TidemarkError('INTERNAL', `running ${tool}: ${err.message}`, { tool }));
      }
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const exit = code ?? -1;
      if (okCodes.includes(exit)) {
        resolve({ code: exit, stdout, stderr });
        return;
      }
      const why = signal ? `was killed by ${signal}` : `exited with ${exit}`;
      const said = (stderr.trim() || stdout.trim()).split('\n').slice(-3).join('; ');
      reject(new TidemarkError('INTERNAL', `${tool} ${why}${said ? `: ${said}` : ''}`, { tool, exit }));
    });
  });
}
