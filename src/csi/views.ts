import type { SnapshotInfo, VolumeInfo } from '../engine/index.js';
import type { CsiContext } from './context.js';
import { isGroupMember } from './handles.js';
import type { Snapshot, Timestamp, Volume, VolumeContentSource, VolumeHealthEntry, VolumeStatus } from './messages.js';
import { DEFAULT_FS_TYPE } from './params.js';
import type { VolumeRecord } from './records.js';

/** volume_context keys; the values never change for a volume (the spec requires it). */
export const CONTEXT_FS_TYPE = 'fsType';
export const CONTEXT_BLOCK_SIZE = 'blockSize';
export const CONTEXT_GRANULARITY = 'trackingGranularity';

export function timestamp(date: Date): Timestamp {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

export function volumeContext(info: VolumeInfo, record: VolumeRecord | undefined): Record<string, string> {
  return {
    [CONTEXT_FS_TYPE]: record?.fsType ?? DEFAULT_FS_TYPE,
    [CONTEXT_BLOCK_SIZE]: String(info.blockSize),
    [CONTEXT_GRANULARITY]: String(info.granularity),
  };
}

function contentSource(record: VolumeRecord | undefined): VolumeContentSource | null {
  const source = record?.contentSource;
  if (!source) return null;
  return 'snapshotId' in source ? { snapshot: { snapshotId: source.snapshotId } } : { volume: { volumeId: source.volumeId } };
}

export function volumeMessage(ctx: CsiContext, info: VolumeInfo): Volume {
  const record = ctx.records.volume(info.name);
  return {
    capacityBytes: info.size,
    volumeId: ctx.handles.volumeId(info.name),
    volumeContext: volumeContext(info, record),
    contentSource: contentSource(record),
    accessibleTopology: [ctx.handles.topology()],
  };
}

/** Held volumes are in use on this node, the only node a volume can be published to. */
export function volumeStatus(ctx: CsiContext, info: VolumeInfo): VolumeStatus {
  return { publishedNodeIds: info.holders.length > 0 ? [ctx.handles.nodeId] : [] };
}

/**
 * The health entry of a volume whose in-place restore was cut short: its data is a mix of
 * two points in time, which no filesystem check would notice.
 */
export function restoreHealth(info: VolumeInfo): VolumeHealthEntry[] {
  const restore = info.restoreInterrupted;
  if (!restore) return [];
  const ranges = restore.ranges ? ` in ${restore.ranges.length} range(s)` : '';
  return [
    {
      status: 'DEGRADED',
      reason: 'RestoreInterrupted',
      message:
        `an in-place restore of volume ${info.name} to ${restore.source} (sequence ${restore.pointSequence})${ranges}, started ${restore.startedAt.toISOString()}, did not finish: ` +
        `the volume holds a mix of its old data and that point's; run the restore again, or clear it with tidemark volume clear-restore`,
    },
  ];
}

export function snapshotMessage(ctx: CsiContext, info: SnapshotInfo): Snapshot {
  return {
    sizeBytes: info.size,
    snapshotId: ctx.handles.snapshotId(info.volume, info.name),
    sourceVolumeId: ctx.handles.volumeId(info.volume),
    creationTime: timestamp(info.createdAt),
    // A snapshot is a complete copy when the call that took it returns.
    readyToUse: true,
    groupSnapshotId: isGroupMember(info.name) ? ctx.handles.groupSnapshotId(info.name) : '',
    // Only with SNAPSHOT_ACCESSIBILITY_CONSTRAINTS, which is not advertised (see identity.ts).
    accessibleTopology: [],
  };
}
