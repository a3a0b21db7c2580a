import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { TidemarkError, classifyError } from '../util/errors.js';
import { PRIVATE_FILE_MODE, makePrivateDir, writeFileAtomic } from '../util/files.js';
import type { Logger } from '../util/log.js';
import { runTool } from './exec.js';
import { isMountPoint } from './mounts.js';

/**
 * How a volume's NBD export becomes a block device on this node:
 * - `kernel`: the kernel's nbd driver, connected by nbd-client over the daemon's unix socket;
 * - `fuse`: where the nbd module is missing (many kind nodes, containers), nbdfuse exposes the
 *   export as a file on a FUSE mount and a loop device turns the file into a block device.
 */
export type AttachMode = 'kernel' | 'fuse';

export interface Attachment {
  volume: string;
  mode: AttachMode;
  device: string;
  /** Size of the device when it was attached; it does not follow a later engine resize. */
  size: number;
  readOnly: boolean;
  /** fuse mode: the FUSE mount point and the nbdfuse process serving it. */
  fuseDir?: string;
  pid?: number;
}

export interface AttacherOptions {
  /** The daemon's NBD unix socket. */
  nbdSocket: string;
  /** Where attachments are recorded, so that a restarted daemon can still undo them. */
  stateDir: string;
  logger: Logger;
  /** `auto` (default) uses the kernel driver where /dev/nbd0 exists, fuse otherwise. */
  mode?: AttachMode | 'auto';
  /** How long a new attachment may take to appear (15 s). */
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new TidemarkError('UNAVAILABLE', `timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The NBD URI nbdfuse takes for an export on a unix socket. */
function unixUri(volume: string, socket: string): string {
  const escape = (text: string) => encodeURIComponent(text).replace(/%2F/g, '/');
  return `nbd+unix:///${escape(volume)}?socket=${escape(socket)}`;
}

/**
 * Attaches and detaches volumes as block devices on this node. Every attachment is recorded
 * in a file before the call returns, and removed only once it is undone, so NodeUnstage after
 * a daemon restart still finds the loop device and FUSE mount to take down.
 */
export class Attacher {
  private readonly recordDir: string;
  private readonly fuseRoot: string;
  private readonly timeoutMs: number;

  constructor(private readonly options: AttacherOptions) {
    this.recordDir = path.join(options.stateDir, 'attachments');
    this.fuseRoot = path.join(options.stateDir, 'fuse');
    this.timeoutMs = options.timeoutMs ?? 15_000;
  }

  /** The mode new attachments use. */
  async mode(): Promise<AttachMode> {
    const wanted = this.options.mode ?? 'auto';
    if (wanted !== 'auto') return wanted;
    if (!existsSync('/dev/nbd0') && !existsSync('/sys/module/nbd')) {
      await runTool('modprobe', ['nbd'], { okCodes: [0, 1] }).catch(() => undefined);
    }
    return existsSync('/dev/nbd0') ? 'kernel' : 'fuse';
  }

  private recordFile(volume: string): string {
    return path.join(this.recordDir, `${encodeURIComponent(volume)}.json`);
  }

  async find(volume: string): Promise<Attachment | undefined> {
    try {
      return JSON.parse(await fs.readFile(this.recordFile(volume), 'utf8')) as Attachment;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw classifyError(err, `reading the attachment record of volume ${volume}`);
    }
  }

  async list(): Promise<Attachment[]> {
    const names = await fs.readdir(this.recordDir).catch(() => [] as string[]);
    const found = await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => this.find(decodeURIComponent(n.slice(0, -5)))));
    return found.filter((a): a is Attachment => a !== undefined);
  }

  /** Why an attachment no longer works, or undefined while it does. */
  async problem(attachment: Attachment): Promise<string | undefined> {
    if (!existsSync(attachment.device)) return `${attachment.device} is gone`;
    if (attachment.mode === 'kernel') {
      const name = path.basename(attachment.device);
      if (!existsSync(`/sys/block/${name}/pid`)) return `${attachment.device} is no longer connected to the NBD server`;
      return undefined;
    }
    if (!alive(attachment.pid)) return `the nbdfuse process (pid ${attachment.pid}) serving ${attachment.device} has exited`;
    const backing = await fs.readFile(`/sys/block/${path.basename(attachment.device)}/loop/backing_file`, 'utf8').catch(() => '');
    if (backing.trim() !== path.join(attachment.fuseDir ?? '', 'nbd')) return `${attachment.device} no longer reads from the volume's FUSE file`;
    return undefined;
  }

  /**
   * Attaches a volume, or returns its working attachment. A recorded attachment that stopped
   * working (a daemon restart cuts NBD connections) is taken down and made again.
   */
  async attach(volume: string, size: number, readOnly = false): Promise<Attachment> {
    const existing = await this.find(volume);
    if (existing) {
      const problem = await this.problem(existing);
      if (!problem && existing.readOnly === readOnly) return existing;
      this.options.logger.warn('replacing a volume attachment', { volume, device: existing.device, reason: problem ?? 'read-only mode differs' });
      await this.detach(volume);
    }
    await makePrivateDir(this.recordDir);
    const mode = await this.mode();
    const attachment = mode === 'kernel' ? await this.attachKernel(volume, size, readOnly) : await this.attachFuse(volume, size, readOnly);
    try {
      await writeFileAtomic(this.recordFile(volume), JSON.stringify(attachment));
    } catch (err) {
      await this.undo(attachment).catch(() => undefined);
      throw classifyError(err, `recording the attachment of volume ${volume}`);
    }
    this.options.logger.info('volume attached', { volume, device: attachment.device, mode, readOnly });
    return attachment;
  }

  /** Undoes a volume's attachment; a volume that is not attached is not an error. */
  async detach(volume: string): Promise<void> {
    const attachment = await this.find(volume);
    if (!attachment) return;
    await this.undo(attachment);
    await fs.rm(this.recordFile(volume), { force: true });
    this.options.logger.info('volume detached', { volume, device: attachment.device, mode: attachment.mode });
  }

  private async attachKernel(volume: string, size: number, readOnly: boolean): Promise<Attachment> {
    const names = (await fs.readdir('/sys/block')).filter((n) => /^nbd\d+$/.test(n));
    names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
    for (const name of names) {
      const used = existsSync(`/sys/block/${name}/pid`) || (await fs.readFile(`/sys/block/${name}/size`, 'utf8').catch(() => '1')).trim() !== '0';
      if (used) continue;
      const device = `/dev/${name}`;
      const args = ['-unix', this.options.nbdSocket, '-N', volume, device, '-b', '4096', ...(readOnly ? ['-readonly'] : [])];
      try {
        await runTool('nbd-client', args, { timeoutMs: this.timeoutMs });
      } catch (err) {
        // Another attacher may have taken the device between the check and the connect.
        if (existsSync(`/sys/block/${name}/pid`)) continue;
        throw err;
      }
      return { volume, mode: 'kernel', device, size, readOnly };
    }
    throw new TidemarkError('RESOURCE_EXHAUSTED', `no free /dev/nbdN device on this node (${names.length} exist); load the nbd module with more devices (nbds_max)`);
  }

  private async attachFuse(volume: string, size: number, readOnly: boolean): Promise<Attachment> {
    const fuseDir = path.join(this.fuseRoot, encodeURIComponent(volume));
    await makePrivateDir(fuseDir);
    // A FUSE mount left by a crashed nbdfuse answers ENOTCONN; clear it before mounting over.
    await runTool('fusermount3', ['-u', '-z', fuseDir], { okCodes: [0, 1] }).catch(() => undefined);
    const logFile = `${fuseDir}.log`;
    const log = openSync(logFile, 'w', PRIVATE_FILE_MODE);
    const args = [...(readOnly ? ['--readonly'] : []), fuseDir, unixUri(volume, this.options.nbdSocket)];
    // Detached, so that it is not killed with the CSI call; the record keeps its pid.
    const child = spawn('nbdfuse', args, { detached: true, stdio: ['ignore', 'ignore', log] });
    closeSync(log);
    // Until the file appears, a process that failed to start or exited is the answer.
    let startError: TidemarkError | undefined;
    let exitCode: number | null | undefined;
    child.once('error', (err: NodeJS.ErrnoException) => {
      startError = err.code === 'ENOENT' ? new TidemarkError('FAILED_PRECONDITION', 'nbdfuse is not installed on this node; install libnbd-bin') : classifyError(err, 'starting nbdfuse');
    });
    child.once('exit', (code) => (exitCode = code));
    child.unref();
    const file = path.join(fuseDir, 'nbd');
    await until(
      `nbdfuse to expose volume ${volume} at ${file}`,
      async () => {
        if (startError) throw startError;
        if (exitCode !== undefined) throw new TidemarkError('INTERNAL', `nbdfuse exited with ${exitCode}: ${(await fs.readFile(logFile, 'utf8').catch(() => '')).trim()}`);
        return (await fs.stat(file).catch(() => undefined))?.size === size;
      },
      this.timeoutMs,
    ).catch(async (err: unknown) => {
      if (alive(child.pid)) process.kill(child.pid!, 'SIGTERM');
      await runTool('fusermount3', ['-u', '-z', fuseDir], { okCodes: [0, 1] }).catch(() => undefined);
      throw err;
    });
    let device: string;
    try {
      device = (await runTool('losetup', ['--find', '--show', ...(readOnly ? ['--read-only'] : []), file])).stdout.trim();
    } catch (err) {
      await this.undo({ volume, mode: 'fuse', device: '', size, readOnly, fuseDir, ...(child.pid !== undefined ? { pid: child.pid } : {}) });
      throw err;
    }
    return { volume, mode: 'fuse', device, size, readOnly, fuseDir, ...(child.pid !== undefined ? { pid: child.pid } : {}) };
  }

  private async undo(attachment: Attachment): Promise<void> {
    if (attachment.mode === 'kernel') {
      if (existsSync(`/sys/block/${path.basename(attachment.device)}/pid`)) await runTool('nbd-client', ['-d', attachment.device]);
      return;
    }
    const fuseDir = attachment.fuseDir!;
    const file = path.join(fuseDir, 'nbd');
    if (attachment.device) {
      const backing = await fs.readFile(`/sys/block/${path.basename(attachment.device)}/loop/backing_file`, 'utf8').catch(() => '');
      // Only the loop device still reading our file is ours to take down.
      if (backing.trim() === file) await runTool('losetup', ['-d', attachment.device]);
    }
    // The loop driver lets go of the file asynchronously; unmounting FUSE waits for that.
    await until(
      `the FUSE mount ${fuseDir} to be released`,
      async () => (await runTool('fusermount3', ['-u', fuseDir], { okCodes: [0, 1] })).code === 0 || !(await isMountPoint(fuseDir)),
      this.timeoutMs,
    );
    if (alive(attachment.pid)) {
      await until(`nbdfuse (pid ${attachment.pid}) to exit`, () => Promise.resolve(!alive(attachment.pid)), 5000).catch(() => {
        process.kill(attachment.pid!, 'SIGKILL');
      });
    }
    await fs.rm(fuseDir, { recursive: true, force: true });
    await fs.rm(`${fuseDir}.log`, { force: true });
  }
}
