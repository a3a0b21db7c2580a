import { runTool } from '../host/index.js';
import type { Logger } from '../util/log.js';

/** How long a freeze may take before the cut is abandoned (and the filesystem thawed). */
const FREEZE_TIMEOUT_MS = 20_000;
/** A thaw is retried this long; a filesystem left frozen would hang its application. */
const THAW_DEADLINE_MS = 30_000;

export interface Freezer {
  freeze(mountPoint: string): Promise<void>;
  thaw(mountPoint: string): Promise<void>;
}

/** fsfreeze(8), which flushes a filesystem and holds new writes until thawed (FIFREEZE/FITHAW). */
export const fsfreeze: Freezer = {
  async freeze(mountPoint) {
    await runTool('fsfreeze', ['--freeze', mountPoint], { timeoutMs: FREEZE_TIMEOUT_MS });
  },
  async thaw(mountPoint) {
    // EINVAL means "not frozen", which is what a thaw wants.
    const result = await runTool('fsfreeze', ['--unfreeze', mountPoint], { okCodes: [0, 1], timeoutMs: 10_000 });
    if (result.code !== 0 && !/Invalid argument/i.test(result.stderr)) throw new Error(`fsfreeze --unfreeze failed: ${result.stderr.trim()}`);
  },
};

/**
 * Runs `fn` with every listed filesystem frozen, and thaws every one of them afterwards on
 * every path: success, a failed freeze part-way, or a failing `fn`. A thaw that fails is
 * retried until a deadline, and reported, since an application stays blocked until it works.
 */
export async function withFrozen<T>(freezer: Freezer, mountPoints: string[], logger: Logger, fn: () => Promise<T>): Promise<T> {
  const frozen: string[] = [];
  try {
    for (const mountPoint of mountPoints) {
      // Marked before the call: a freeze that timed out may still have taken effect.
      frozen.push(mountPoint);
      await freezer.freeze(mountPoint);
    }
    return await fn();
  } finally {
    const failures: string[] = [];
    for (const mountPoint of frozen.reverse()) {
      const deadline = Date.now() + THAW_DEADLINE_MS;
      for (let attempt = 1; ; attempt++) {
        try {
          await freezer.thaw(mountPoint);
          break;
        } catch (err) {
          if (Date.now() > deadline) {
            failures.push(mountPoint);
            logger.error('could not thaw a filesystem; its application stays blocked until `fsfreeze --unfreeze` succeeds', { mountPoint, error: String(err) });
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 100 * attempt)));
        }
      }
    }
    if (failures.length > 0) logger.warn('filesystems left frozen', { mountPoints: failures });
  }
}
