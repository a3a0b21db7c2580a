import type { Logger } from '../util/log.js';
import { earliestRecoverable } from './restore.js';
import type { Held, Volume } from './volume.js';

export interface RetentionOutcome {
  freedBytes: number;
  basesTaken: string[];
  basesDropped: string[];
}

/**
 * Frees journal segments while the volume's criterion (size, age) is exceeded, keeping
 * recovery possible from a newer snapshot plus the remaining journal: before a segment goes,
 * some snapshot must lie at or after its last record, and the engine takes an internal base
 * snapshot itself when none does. Runs under the volume lock (`held`).
 */
export async function enforceRetentionLocked(volume: Volume, held: Held, logger: Logger, now: number): Promise<RetentionOutcome> {
  const outcome: RetentionOutcome = { freedBytes: 0, basesTaken: [], basesDropped: [] };
  const { maxBytes, maxAgeSeconds } = volume.retention;
  if (volume.pinned || (maxBytes === undefined && maxAgeSeconds === undefined)) return outcome;
  const cutoff = maxAgeSeconds === undefined ? -Infinity : now - maxAgeSeconds * 1000;
  const overSize = () => maxBytes !== undefined && volume.journalBytes > maxBytes;
  const overAge = () => (volume.oldestRecordTime() ?? Infinity) < cutoff;

  // Taking a base early, once half the allowance has accumulated since the newest one, lets
  // freeing keep the newer half of the history instead of all of it going at once.
  const newestBase = Math.max(0, ...volume.snapshotMeta().map((s) => s.sequence));
  const sinceBase = volume.journalSegments().filter((s) => s.lastSequence > newestBase).reduce((sum, s) => sum + s.size, 0);
  if (maxBytes !== undefined && sinceBase > maxBytes / 2 && volume.lastSequence > newestBase) {
    outcome.basesTaken.push((await volume.snapshotLocked(held, `~base-${volume.nextSequence}`, true)).name);
  }

  let checkpointed = false;
  while (overSize() || overAge()) {
    const segments = volume.journalSegments();
    const active = segments[segments.length - 1]!;
    if (segments.length === 1) {
      const activeOver = (maxBytes !== undefined && active.size > maxBytes) || (active.size > 0 && active.lastTime < cutoff);
      if (!activeOver) break;
      await volume.rollJournalLocked(held);
      continue;
    }
    const oldest = segments[0]!;
    if (!volume.snapshotMeta().some((s) => s.sequence >= oldest.lastSequence)) {
      outcome.basesTaken.push((await volume.snapshotLocked(held, `~base-${volume.nextSequence}`, true)).name);
    }
    if (!checkpointed) {
      // Freed records must already be in the image that start-up begins from.
      await volume.writeCheckpoint(held);
      checkpointed = true;
    }
    outcome.freedBytes += await volume.freeJournalLocked(held, oldest.lastSequence);
  }

  const earliest = earliestRecoverable(volume);
  for (const snapshot of [...volume.snapshotMeta()]) {
    if (snapshot.internal && snapshot.sequence < earliest) {
      await volume.deleteSnapshotLocked(held, snapshot.name);
      outcome.basesDropped.push(snapshot.name);
    }
  }
  if (outcome.freedBytes > 0 || outcome.basesTaken.length > 0 || outcome.basesDropped.length > 0) {
    await volume.writeCheckpoint(held);
    logger.info('journal freed by retention', { volume: volume.name, ...outcome, earliestRecoverable: earliest });
  }
  return outcome;
}
