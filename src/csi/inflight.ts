import { aborted } from './errors.js';

/**
 * Calls in flight per volume, snapshot and group snapshot. The CO normally sends one call
 * per object at a time; after it loses state it may send a second while the first still
 * runs, and the spec lets the plugin reject that one with ABORTED, which the CO retries with
 * back-off.
 *
 * A call holds the objects it changes exclusively and the objects it only reads shared: two
 * volumes can be restored from one snapshot at once, but the snapshot cannot be deleted while
 * they are. Keys read like "volume pvc-1", so the message names what is busy.
 */
export class InFlight {
  private readonly exclusive = new Set<string>();
  private readonly shared = new Map<string, number>();

  async run<T>(exclusive: string[], fn: () => Promise<T>, shared: string[] = []): Promise<T> {
    const mine = [...new Set(exclusive)];
    const read = [...new Set(shared)].filter((key) => !mine.includes(key));
    const busy = mine.find((key) => this.exclusive.has(key) || this.shared.has(key)) ?? read.find((key) => this.exclusive.has(key));
    if (busy) throw aborted(`an operation on ${busy} is already in progress; retry when it has finished`);
    for (const key of mine) this.exclusive.add(key);
    for (const key of read) this.shared.set(key, (this.shared.get(key) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      for (const key of mine) this.exclusive.delete(key);
      for (const key of read) {
        const left = (this.shared.get(key) ?? 1) - 1;
        if (left > 0) this.shared.set(key, left);
        else this.shared.delete(key);
      }
    }
  }

  get size(): number {
    return this.exclusive.size + this.shared.size;
  }
}

export const volumeKey = (volume: string) => `volume ${volume}`;
/** One snapshot of one volume (group members share a name across volumes). */
export const snapshotKey = (volume: string, snapshot: string) => `snapshot ${volume}/${snapshot}`;
/** A snapshot name, unique across volumes for the CSI snapshots CreateSnapshot makes. */
export const snapshotNameKey = (snapshot: string) => `snapshot name ${snapshot}`;
export const groupKey = (group: string) => `group snapshot ${group}`;
