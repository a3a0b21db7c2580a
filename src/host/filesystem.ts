import * as fs from 'node:fs/promises';
import { TidemarkError, invalidArgument } from '../util/errors.js';
import { runTool } from './exec.js';

export const FILESYSTEMS = ['ext4', 'xfs'] as const;
export type Filesystem = (typeof FILESYSTEMS)[number];

/**
 * What a device holds: a filesystem type, some other signature (a partition table, LVM, a
 * RAID member), or nothing. Probes the device itself (`-p`), not blkid's cache, so a volume
 * restored under a running node is seen as it is now.
 */
export async function probeDevice(device: string): Promise<{ blank: true } | { blank: false; type: string }> {
  const result = await runTool('blkid', ['-p', '-o', 'export', device], { okCodes: [0, 2] });
  if (result.code === 2) return { blank: true };
  const fields = new Map(result.stdout.split('\n').map((line) => line.split('=', 2) as [string, string]));
  const type = fields.get('TYPE') ?? fields.get('PTTYPE') ?? 'unknown';
  return { blank: false, type };
}

/** Makes a filesystem on a device that `probeDevice` found blank; never forces over data. */
export async function makeFilesystem(device: string, fsType: Filesystem): Promise<void> {
  if (fsType === 'ext4') {
    // lazy init off: the filesystem is complete when staging returns, instead of the kernel
    // zeroing inode tables in the background into the journal for minutes afterwards.
    await runTool('mkfs.ext4', ['-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0', device], { timeoutMs: 600_000 });
  } else {
    await runTool('mkfs.xfs', ['-q', device], { timeoutMs: 600_000 });
  }
}

/** Grows a mounted filesystem to fill its device; nothing to grow is not an error. */
export async function growFilesystem(fsType: string, device: string, mountPoint: string): Promise<void> {
  if (fsType === 'xfs') {
    await runTool('xfs_growfs', [mountPoint], { timeoutMs: 600_000 });
    return;
  }
  if (fsType !== 'ext4') throw invalidArgument(`cannot grow a ${fsType} filesystem: tidemark grows ext4 and xfs`);
  try {
    await runTool('resize2fs', [device], { timeoutMs: 600_000 });
  } catch (err) {
    // The kernel wants CAP_SYS_RESOURCE for online ext4 growth; containers often drop it.
    if (err instanceof TidemarkError && /Permission denied/.test(err.message)) {
      throw new TidemarkError(
        'FAILED_PRECONDITION',
        `growing ext4 on ${device} while mounted needs CAP_SYS_RESOURCE, which this node's daemon lacks; it is grown when the volume is next staged (${err.message})`,
      );
    }
    throw err;
  }
}

/** Bytes an ext4 filesystem spans on its device, from its superblock. */
async function ext4Bytes(device: string): Promise<number> {
  const { stdout } = await runTool('dumpe2fs', ['-h', device]);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(stdout)?.[1] ?? NaN);
  return field('Block count') * field('Block size');
}

/**
 * Grows an unmounted ext4 filesystem that is smaller than its device (the volume was
 * expanded while detached). Offline growth needs no capability beyond opening the device,
 * and resize2fs insists on a forced check first. Returns whether it grew anything.
 */
export async function growUnmounted(fsType: string, device: string): Promise<boolean> {
  if (fsType !== 'ext4') return false;
  const spans = await ext4Bytes(device);
  if (!Number.isFinite(spans) || spans >= (await deviceSize(device))) return false;
  // e2fsck: 0 clean, 1 errors corrected; anything else needs a person.
  await runTool('e2fsck', ['-f', '-p', device], { okCodes: [0, 1], timeoutMs: 600_000 });
  await runTool('resize2fs', [device], { timeoutMs: 600_000 });
  return true;
}

export async function deviceSize(device: string): Promise<number> {
  const { stdout } = await runTool('blockdev', ['--getsize64', device]);
  return Number(stdout.trim());
}

export interface FilesystemUsage {
  totalBytes: number;
  availableBytes: number;
  usedBytes: number;
  totalInodes: number;
  freeInodes: number;
  usedInodes: number;
}

export async function filesystemUsage(mountPoint: string): Promise<FilesystemUsage> {
  const s = await fs.statfs(mountPoint);
  return {
    totalBytes: s.blocks * s.bsize,
    availableBytes: s.bavail * s.bsize,
    usedBytes: (s.blocks - s.bfree) * s.bsize,
    totalInodes: s.files,
    freeInodes: s.ffree,
    usedInodes: s.files - s.ffree,
  };
}
