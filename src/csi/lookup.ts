import type { SnapshotInfo, VolumeInfo } from '../engine/index.js';
import type { CsiContext } from './context.js';
import { invalid, notFound } from './errors.js';
import { isHiddenSnapshot } from './handles.js';

/** The volume a handle names, or NOT_FOUND saying why (malformed, another node, gone). */
export function findVolume(ctx: CsiContext, volumeId: string, field = 'volume_id'): VolumeInfo {
  if (!volumeId) throw invalid(`${field} is required`);
  const parsed = ctx.handles.parseVolumeId(volumeId);
  if (!parsed.ok) throw notFound(parsed.reason);
  if (!ctx.engine.has(parsed.value)) throw notFound(`volume ${volumeId} does not exist`);
  return ctx.engine.volumeInfo(parsed.value);
}

/** The CSI snapshots of one volume: the engine's, without its internal and temporary ones. */
export function volumeSnapshots(ctx: CsiContext, volume: string): SnapshotInfo[] {
  if (!ctx.engine.has(volume)) return [];
  return ctx.engine.listSnapshots(volume).filter((s) => !isHiddenSnapshot(s.name));
}

export function allSnapshots(ctx: CsiContext): SnapshotInfo[] {
  return ctx.engine.listVolumes().flatMap((v) => volumeSnapshots(ctx, v.name));
}

/** Snapshots of this engine name on any volume (CSI snapshot names are unique per driver). */
export function snapshotsNamed(ctx: CsiContext, name: string): SnapshotInfo[] {
  return allSnapshots(ctx).filter((s) => s.name === name);
}

/** The snapshot a handle names, or undefined with the reason it names none here. */
export function lookupSnapshot(ctx: CsiContext, snapshotId: string): { snapshot?: SnapshotInfo; reason: string } {
  const parsed = ctx.handles.parseSnapshotId(snapshotId);
  if (!parsed.ok) return { reason: parsed.reason };
  const { volume, snapshot } = parsed.value;
  const found = volumeSnapshots(ctx, volume).find((s) => s.name === snapshot);
  return found ? { snapshot: found, reason: '' } : { reason: `snapshot ${snapshotId} does not exist` };
}

export function findSnapshot(ctx: CsiContext, snapshotId: string, field = 'snapshot_id'): SnapshotInfo {
  if (!snapshotId) throw invalid(`${field} is required`);
  const { snapshot, reason } = lookupSnapshot(ctx, snapshotId);
  if (!snapshot) throw notFound(reason);
  return snapshot;
}
