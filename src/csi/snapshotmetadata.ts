import type * as grpc from '@grpc/grpc-js';
import type { Extent, SnapshotInfo } from '../engine/index.js';
import type { CsiContext } from './context.js';
import { invalid, notFound, outOfRange } from './errors.js';
import { findSnapshot, lookupSnapshot } from './lookup.js';
import type { BlockMetadata, GetMetadataAllocatedRequest, GetMetadataDeltaRequest, MetadataResponse, SnapshotMetadataHandlers } from './messages.js';
import { serverStream, type Send } from './rpc.js';

/** Tuples per message when the caller leaves max_results at 0. */
export const DEFAULT_RESULTS_PER_MESSAGE = 1024;

/**
 * The CSI SnapshotMetadata service (changed block tracking for backup tools), served from
 * the engine's differential bitmaps. Ranges are VARIABLE_LENGTH extents, in ascending order,
 * never overlapping, at the volume's tracking granularity (a chunk is reported whole when any
 * byte of it was written).
 */
export function snapshotMetadataService(ctx: CsiContext): grpc.UntypedServiceImplementation {
  return {
    GetMetadataAllocated: serverStream<GetMetadataAllocatedRequest, MetadataResponse>(
      ctx,
      'GetMetadataAllocated',
      async (req, ids, send) => {
        if (!req.snapshotId) throw invalid('snapshot_id is required');
        const maxResults = checkMaxResults(req.maxResults);
        const start = parseOffset(req.startingOffset);
        const snapshot = findSnapshot(ctx, req.snapshotId);
        Object.assign(ids, { volume: snapshot.volume, snapshot: snapshot.name, startingOffset: start });
        checkOffset(start, snapshot.size);
        ids.tuples = await stream(send, allocatedAt(ctx, snapshot), start, snapshot.size, maxResults);
      },
      { readOnly: true },
    ),
    GetMetadataDelta: serverStream<GetMetadataDeltaRequest, MetadataResponse>(
      ctx,
      'GetMetadataDelta',
      async (req, ids, send) => {
        if (!req.baseSnapshotId) throw invalid('base_snapshot_id is required');
        if (!req.targetSnapshotId) throw invalid('target_snapshot_id is required');
        const maxResults = checkMaxResults(req.maxResults);
        const start = parseOffset(req.startingOffset);
        const base = lookupSnapshot(ctx, req.baseSnapshotId);
        const target = lookupSnapshot(ctx, req.targetSnapshotId);
        if (!base.snapshot) throw notFound(base.reason);
        if (!target.snapshot) throw notFound(target.reason);
        if (base.snapshot.volume !== target.snapshot.volume) {
          throw invalid(`snapshots ${req.baseSnapshotId} and ${req.targetSnapshotId} are of different volumes; a delta needs two snapshots of one volume`);
        }
        Object.assign(ids, { volume: base.snapshot.volume, base: base.snapshot.name, target: target.snapshot.name, startingOffset: start });
        checkOffset(start, target.snapshot.size);
        // The engine refuses a target older than the base (INVALID_ARGUMENT).
        const changed = ctx.engine.diff(base.snapshot.volume, base.snapshot.name, target.snapshot.name);
        ids.tuples = await stream(send, changed, start, target.snapshot.size, maxResults);
      },
      { readOnly: true },
    ),
  } satisfies SnapshotMetadataHandlers;
}

function checkMaxResults(maxResults: number): number {
  if (!Number.isInteger(maxResults) || maxResults < 0) throw invalid(`max_results ${maxResults} must not be negative`);
  return maxResults === 0 ? DEFAULT_RESULTS_PER_MESSAGE : maxResults;
}

function parseOffset(text: string): number {
  if (!/^-?\d+$/.test(text || '0')) throw invalid(`starting_offset "${text}" is not a whole number`);
  const offset = Number(text || '0');
  if (offset < 0) throw outOfRange(`starting_offset ${text} is negative`);
  return offset;
}

function checkOffset(start: number, capacity: number): void {
  if (start > capacity) throw outOfRange(`starting_offset ${start} lies beyond the end of the ${capacity}-byte volume`);
}

/**
 * The data ranges of a snapshot. The engine reports what was written to the volume since it
 * was created, up to now rather than up to the snapshot, so this may include ranges first
 * written after the snapshot: they read as zeros in the snapshot and cost a backup only a
 * read, never a missed byte. A volume created from another's data (a restore or a clone)
 * starts with data its bitmaps never saw being written; all of it is reported.
 */
function allocatedAt(ctx: CsiContext, snapshot: SnapshotInfo): Extent[] {
  const hasOrigin = ctx.engine.listSnapshots(snapshot.volume, { includeInternal: true }).some((s) => s.internal && s.sequence === 0);
  if (hasOrigin) return [{ offset: 0, length: snapshot.size }];
  return ctx.engine.allocated(snapshot.volume);
}

/** Sends the extents from `start` on, clipped to the capacity, `maxResults` per message. */
async function stream(send: Send<MetadataResponse>, extents: Extent[], start: number, capacity: number, maxResults: number): Promise<number> {
  const tuples: BlockMetadata[] = [];
  for (const extent of extents) {
    const from = Math.max(extent.offset, start);
    const to = Math.min(extent.offset + extent.length, capacity);
    if (to > from) tuples.push({ byteOffset: from, sizeBytes: to - from });
  }
  const message = (blockMetadata: BlockMetadata[]): MetadataResponse => ({ blockMetadataType: 'VARIABLE_LENGTH', volumeCapacityBytes: capacity, blockMetadata });
  // One message even when there is nothing to report, so the caller learns the capacity.
  if (tuples.length === 0) await send(message([]));
  for (let at = 0; at < tuples.length; at += maxResults) await send(message(tuples.slice(at, at + maxResults)));
  return tuples.length;
}
