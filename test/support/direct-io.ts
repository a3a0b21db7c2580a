import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** Whether the filesystem of `dir` takes O_DIRECT (tmpfs does not), as a journal there would find. */
export async function takesDirectIo(dir: string): Promise<boolean> {
  const probe = path.join(dir, `.direct-probe-${process.pid}`);
  try {
    await (await fs.open(probe, fsConstants.O_CREAT | fsConstants.O_WRONLY | fsConstants.O_DIRECT)).close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw err;
  } finally {
    await fs.rm(probe, { force: true });
  }
}
