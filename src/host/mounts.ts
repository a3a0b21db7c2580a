import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { runTool } from './exec.js';

/** One line of /proc/self/mountinfo, the fields tidemark needs. */
export interface MountEntry {
  /** major:minor of the mounted device (or of the file's device, for a bind of a file). */
  devNumbers: string;
  /** The path inside the source filesystem that is mounted (`/` unless a bind of a subtree). */
  root: string;
  mountPoint: string;
  options: string[];
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export async function readMounts(): Promise<MountEntry[]> {
  const table = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const entries: MountEntry[] = [];
  for (const line of table.split('\n')) {
    if (!line) continue;
    const [head, tail] = line.split(' - ');
    const fields = head!.split(' ');
    const after = (tail ?? '').split(' ');
    entries.push({
      devNumbers: fields[2] ?? '',
      root: unescape(fields[3] ?? ''),
      mountPoint: unescape(fields[4] ?? ''),
      options: (fields[5] ?? '').split(','),
      fsType: after[0] ?? '',
      source: unescape(after[1] ?? ''),
    });
  }
  return entries;
}

/** The topmost mount at exactly this path, if any. */
export async function mountAt(target: string): Promise<MountEntry | undefined> {
  const wanted = path.resolve(target);
  return (await readMounts()).filter((m) => m.mountPoint === wanted).at(-1);
}

export async function isMountPoint(target: string): Promise<boolean> {
  return (await mountAt(target)) !== undefined;
}

export async function mountFilesystem(device: string, target: string, fsType: string, options: string[]): Promise<void> {
  const args = ['-t', fsType];
  if (options.length > 0) args.push('-o', options.join(','));
  await runTool('mount', [...args, device, target]);
}

/**
 * Binds a directory or a device file onto a target. A read-only bind needs a second step:
 * the kernel ignores `ro` on the bind itself and takes it only on a remount.
 */
export async function bindMount(source: string, target: string, readOnly: boolean, options: string[] = []): Promise<void> {
  await runTool('mount', ['--bind', source, target]);
  if (readOnly || options.length > 0) {
    const remount = ['remount', 'bind', ...(readOnly ? ['ro'] : []), ...options].join(',');
    try {
      await runTool('mount', ['-o', remount, target]);
    } catch (err) {
      await runTool('umount', [target]).catch(() => undefined);
      throw err;
    }
  }
}

/** Unmounts every mount stacked at the target; nothing mounted there is not an error. */
export async function unmountAll(target: string): Promise<void> {
  while (await isMountPoint(target)) await runTool('umount', [path.resolve(target)]);
}
