import type { Extent } from './extents.js';

export type { Extent };

/** Journal freeing criterion; absent fields mean no limit of that kind. */
export interface RetentionPolicy {
  /** Journal bytes kept at most (whole segments are freed, so it may briefly exceed this). */
  maxBytes?: number;
  /** Records older than this many seconds are freed. */
  maxAgeSeconds?: number;
}

export interface VolumeOptions {
  size: number;
  /** Smallest unit of I/O alignment for restore areas; a power of two from 512 to 64 KiB. */
  blockSize?: number;
  /** Bytes covered by one bit of differential information; a power of two ≥ blockSize. */
  granularity?: number;
  retention?: RetentionPolicy;
}

export interface VolumeInfo {
  name: string;
  size: number;
  blockSize: number;
  granularity: number;
  createdAt: Date;
  retention: RetentionPolicy;
  /** Newest journal sequence number. */
  sequence: number;
  /** Oldest sequence still recoverable to; points before it are expired. */
  earliestRecoverableSequence: number;
  journalBytes: number;
  /** Journal segment files kept. */
  journalSegments: number;
  /**
   * Journal bytes written past the page cache (`O_DIRECT`) since the daemon opened the
   * volume. Known to the daemon only: the admin API does not carry it.
   */
  journalDirectBytes?: number;
  /**
   * When the oldest recoverable point was written: the start of the recovery window. Absent
   * when it cannot be told (a point inside a journal whose times were not kept).
   */
  earliestRecoverableTime?: Date;
  snapshotCount: number;
  markerCount: number;
  /** Who holds the volume (NBD connections, attachments); empty when idle. */
  holders: string[];
  /**
   * Set when an in-place restore began writing and did not finish (a crash, a failure half
   * way): the volume holds a mix of its old data and the point's. Cleared by running a restore
   * that covers it to completion, or by `clearInterruptedRestore`.
   */
  restoreInterrupted?: InterruptedRestore;
}

export interface InterruptedRestore {
  /** What the restore was to, as named: `marker "m"`, `snapshot "s"`, `time ...`, `sequence N`. */
  source: string;
  /** The journal sequence the restore was bringing the volume to. */
  pointSequence: number;
  /** The ranges it was limited to; absent for the whole volume. */
  ranges?: Extent[];
  startedAt: Date;
}

export interface SnapshotInfo {
  volume: string;
  name: string;
  /** The journal sequence number the snapshot was recorded at. */
  sequence: number;
  createdAt: Date;
  /** Taken by the engine to keep markers recoverable while the journal is freed. */
  internal: boolean;
  method: 'reflink' | 'sparse-copy' | 'empty';
  size: number;
}

export interface MarkerInfo {
  volume: string;
  name: string;
  sequence: number;
  createdAt: Date;
  /** Shared by the markers of one group marker; empty for a single-volume marker. */
  group: string;
  /** True once the journal needed to recover to it has been freed. */
  expired: boolean;
}

export type RestoreSource =
  | { snapshot: string }
  | { marker: string }
  | { time: Date }
  | { sequence: number };

export interface RestoreRequest {
  volume: string;
  source: RestoreSource;
  /** Byte ranges, aligned to the block size; absent means the whole volume. */
  ranges?: Extent[];
  /** Restore into this new volume instead of in place. */
  target?: string;
  /** Restore in place even while the volume is in use. */
  force?: boolean;
  /**
   * Only with `target`: the new volume's size (at least the source's) and retention, set
   * before it appears, so that a crash never leaves it half configured. Defaults: the
   * source's.
   */
  targetOptions?: { size?: number; retention?: RetentionPolicy };
}

export interface RestoreProgress {
  bytesTotal: number;
  bytesRestored: number;
}

export interface RestoreResult extends RestoreProgress {
  volume: string;
  /** The journal sequence the data now matches. */
  pointSequence: number;
  /** Which strategy ran: differential copy from a snapshot, rewind in place, or rebuild into a new volume. */
  method: 'snapshot-diff' | 'rewind' | 'rebuild';
  /** The base the restore started from, when it used one. */
  baseSnapshot?: string;
  durationMs: number;
}

export interface WriteOptions {
  /** Durable before the call returns (NBD's FUA). */
  fua?: boolean;
}
