import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TidemarkError, classifyError } from '../util/errors.js';
import { PRIVATE_FILE_MODE, makePrivateDir, writeFileAtomic } from '../util/files.js';
import type { Logger } from '../util/log.js';
import { runTool } from './exec.js';
import { KernelAttacher, type DirectServer, type KernelDevice } from './kernel-attach.js';
import { isMountPoint } from './mounts.js';

/**
 * How a volume's NBD export becomes a block device on this node:
 * - `kernel`: the kernel's nbd driver, given one end of a socketpair over netlink (see
 *   KernelAttacher); it survives a daemon restart;
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
  /** kernel mode: the device as the kernel knows it. Absent in records nbd-client made. */
  kernel?: KernelDevice;
  /** Set when I/O to the device may have failed (the daemon was down past the timeout). */
  ioFailed?: string;
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
  /** Serves volumes on sockets the kernel path makes; without it only fuse attaches. */
  direct?: DirectServer;
  /** Seconds the kernel holds a device's I/O while the daemon is away (120). */
  deadConnTimeoutS?: number;
}

/** How often the daemon notes that it is alive, to tell later how long it was away. */
const HEARTBEAT_MS = 5000;

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
  private readonly kernel: KernelAttacher | undefined;
  private readonly heartbeatFile: string;
  private heartbeat: NodeJS.Timeout | undefined;
  private resolvedMode: Promise<AttachMode> | undefined;

  constructor(private readonly options: AttacherOptions) {
    this.recordDir = path.join(options.stateDir, 'attachments');
    this.fuseRoot = path.join(options.stateDir, 'fuse');
    this.heartbeatFile = path.join(options.stateDir, 'alive');
    this.timeoutMs = options.timeoutMs ?? 15_000;
    if (options.direct) this.kernel = new KernelAttacher(options.direct, options.logger, options.deadConnTimeoutS ?? 120);
  }

  /** The mode new attachments use: the kernel driver where its netlink family answers. */
  mode(): Promise<AttachMode> {
    this.resolvedMode ??= this.resolveMode();
    return this.resolvedMode;
  }

  private async resolveMode(): Promise<AttachMode> {
    const wanted = this.options.mode ?? 'auto';
    if (wanted === 'fuse') return 'fuse';
    if (!existsSync('/sys/module/nbd')) await runTool('modprobe', ['nbd'], { okCodes: [0, 1] }).catch(() => undefined);
    const why = this.kernel ? await this.kernel.unavailable() : 'the kernel path needs the daemon\'s NBD server';
    if (why === undefined) return 'kernel';
    if (wanted === 'kernel') throw new TidemarkError('FAILED_PRECONDITION', `the kernel NBD path was asked for but cannot be used: ${why}`);
    // Said once: attachments made through nbdfuse do not survive a daemon restart.
    this.options.logger.warn('volumes attach through nbdfuse: the kernel NBD path cannot be used', { reason: why });
    return 'fuse';
  }

  /**
   * At daemon start: gives every kernel device that is still connected a socket to this
   * daemon (the kernel held its I/O meanwhile), notes devices whose I/O may have failed
   * because the daemon was away longer than their dead-connection timeout, and warns loudly
   * about nbdfuse attachments, which cannot survive a restart. Then starts the heartbeat.
   */
  async reattach(): Promise<void> {
    const last = await fs.stat(this.heartbeatFile).then((s) => s.mtimeMs, () => undefined);
    const awayS = last === undefined ? undefined : Math.max(0, (Date.now() - last) / 1000);
    const logger = this.options.logger;
    let fuseLive = 0;
    for (const attachment of await this.list()) {
      const { volume, device } = attachment;
      if (attachment.mode === 'fuse') {
        if (alive(attachment.pid)) fuseLive++;
        logger.error('an nbdfuse attachment cannot survive a daemon restart: its I/O fails from now on; unpublish and unstage the volume (or restart the pods using it) to attach it again', {
          volume,
          device,
        });
        continue;
      }
      if (!attachment.kernel || !this.kernel) {
        logger.error('a kernel attachment made by nbd-client cannot be reconnected; unstage and stage the volume again', { volume, device });
        continue;
      }
      try {
        if (!(await this.kernel.connected(attachment.kernel))) {
          logger.warn('a recorded kernel nbd device is no longer connected', { volume, device });
          continue;
        }
        if (awayS !== undefined && awayS > attachment.kernel.deadConnTimeoutS && !attachment.ioFailed) {
          attachment.ioFailed = `the daemon was away for ${Math.round(awayS)} s, longer than the ${attachment.kernel.deadConnTimeoutS} s the kernel holds I/O for ${device}, so I/O to it may have failed`;
          await writeFileAtomic(this.recordFile(volume), JSON.stringify(attachment));
          logger.error('a kernel nbd device may have failed I/O while the daemon was away', { volume, device, awaySeconds: Math.round(awayS) });
        }
        await this.kernel.reconnect(volume, attachment.size, attachment.readOnly, attachment.kernel);
        logger.info('kernel nbd device reconnected', { volume, device, awaySeconds: awayS === undefined ? undefined : Math.round(awayS) });
      } catch (err) {
        logger.error('could not reconnect a kernel nbd device', { volume, device, error: (err as Error).message });
      }
    }
    if (fuseLive > 0) {
      logger.error(`the daemon restarted over ${fuseLive} live nbdfuse attachment(s); their volumes now fail I/O until they are staged again. Use the kernel nbd path (load the nbd module) to survive restarts`, {
        attachments: fuseLive,
      });
    }
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Stops the heartbeat; kernel devices stay, waiting for the next daemon. */
  stop(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private async beat(): Promise<void> {
    await makePrivateDir(this.options.stateDir).catch(() => undefined);
    const now = new Date();
    await fs.utimes(this.heartbeatFile, now, now).catch(async () => {
      await fs.writeFile(this.heartbeatFile, '', { mode: PRIVATE_FILE_MODE }).catch(() => undefined);
    });
  }

  /**
   * Grows a kernel device online to the volume's new size. Returns false where the path
   * cannot (nbdfuse, or a device nbd-client made): those grow when staged again.
   */
  async resize(volume: string, size: number): Promise<boolean> {
    const attachment = await this.find(volume);
    if (!attachment?.kernel || !this.kernel) return false;
    await this.kernel.resize(volume, size, attachment.kernel);
    await writeFileAtomic(this.recordFile(volume), JSON.stringify({ ...attachment, size }));
    this.options.logger.info('kernel nbd device resized', { volume, device: attachment.device, bytes: size });
    return true;
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
    if (attachment.ioFailed) return attachment.ioFailed;
    if (attachment.mode === 'kernel' && attachment.kernel) {
      if (!this.kernel) return `${attachment.device} needs the kernel path, which this daemon does not run`;
      return this.kernel.problem(attachment.volume, attachment.kernel);
    }
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
    if (!this.kernel) throw new TidemarkError('FAILED_PRECONDITION', 'the kernel path needs the daemon\'s NBD server');
    const { device, ...kernel } = await this.kernel.attach(volume, size, readOnly);
    return { volume, mode: 'kernel', device, size, readOnly, kernel };
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
    if (attachment.mode === 'kernel' && attachment.kernel) {
      if (!this.kernel) throw new TidemarkError('FAILED_PRECONDITION', `${attachment.device} needs the kernel path to be disconnected, which this daemon does not run`);
      await this.kernel.detach(attachment.volume, attachment.kernel);
      return;
    }
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
