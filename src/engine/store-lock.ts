import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { TidemarkError } from '../util/errors.js';

interface LockOwner {
  pid: number;
  bootId: string;
  startTime: string;
}

async function readOr(file: string, fallback: string): Promise<string> {
  try {
    return (await fs.readFile(file, 'utf8')).trim();
  } catch {
    return fallback;
  }
}

/** The process start time from /proc, which together with the boot id survives pid reuse. */
async function processStartTime(pid: number): Promise<string | undefined> {
  const stat = await readOr(`/proc/${pid}/stat`, '');
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

async function self(): Promise<LockOwner> {
  return {
    pid: process.pid,
    bootId: await readOr('/proc/sys/kernel/random/boot_id', 'unknown'),
    startTime: (await processStartTime(process.pid)) ?? 'unknown',
  };
}

async function isAlive(owner: LockOwner): Promise<boolean> {
  if (owner.bootId !== (await readOr('/proc/sys/kernel/random/boot_id', 'unknown'))) return false;
  const startTime = await processStartTime(owner.pid);
  return startTime !== undefined && startTime === owner.startTime;
}

/**
 * One daemon per store. The lock file names its owner; a lock whose owner is gone (crash,
 * reboot) is taken over, so a SIGKILLed daemon never needs manual clean-up.
 */
export async function lockStore(store: string): Promise<() => Promise<void>> {
  const file = path.join(store, 'store.lock');
  const me = await self();
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fs.writeFile(file, JSON.stringify(me), { flag: 'wx', mode: 0o600 });
      return async () => {
        await fs.rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner: LockOwner | undefined;
    try {
      owner = JSON.parse(await fs.readFile(file, 'utf8')) as LockOwner;
    } catch {
      owner = undefined;
    }
    if (owner && (await isAlive(owner))) {
      throw new TidemarkError('STORE_LOCKED', `store ${store} is locked by another tidemark daemon (pid ${owner.pid}); stop it first`, {
        pid: owner.pid,
      });
    }
    await fs.rm(file, { force: true });
  }
  throw new TidemarkError('STORE_LOCKED', `store ${store} is being locked by another process; try again`);
}
