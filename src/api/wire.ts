import type { Extent, InterruptedRestore, MarkerInfo, RestoreProgress, RestoreResult, RetentionPolicy, SnapshotInfo, VolumeInfo } from '../engine/index.js';
import { TidemarkError } from '../util/errors.js';
import type { InterruptedRestore as InterruptedRestoreMessage } from './generated/tidemark/v1/InterruptedRestore.js';
import type { Marker as MarkerMessage } from './generated/tidemark/v1/Marker.js';
import type { RestoreResult as RestoreResultMessage } from './generated/tidemark/v1/RestoreResult.js';
import type { Retention as RetentionMessage } from './generated/tidemark/v1/Retention.js';
import type { Snapshot as SnapshotMessage } from './generated/tidemark/v1/Snapshot.js';
import type { Volume as VolumeMessage } from './generated/tidemark/v1/Volume.js';
import { bool, fields, list, optionalMessage, optionalString, optionalUint64, stringList, uint64, type Fields } from './validate.js';

/**
 * Conversions between the engine's values and the messages of admin.proto, both ways: the
 * server encodes engine results, the client decodes them back into the same engine types.
 * Encoding hands numbers to protobufjs (it accepts them for uint64); decoding receives
 * uint64 as decimal strings and checks each one.
 */

export interface WriteResult {
  bytesWritten: number;
  /** Journal sequence of the last record written (0 when nothing was). */
  sequence: number;
  flushed: boolean;
}

export interface DiffResult {
  extents: Extent[];
  changedBytes: number;
}

export interface DaemonStatus {
  store: string;
  version: string;
  volumeCount: number;
  nodeId: string;
  pid: number;
  startedAt: Date;
}

// ---- encoding (server) -------------------------------------------------------------------

export function encodeRetention(retention: RetentionPolicy): RetentionMessage {
  const out: RetentionMessage = {};
  if (retention.maxBytes !== undefined) out.maxBytes = retention.maxBytes;
  // The engine accepts fractional seconds; the wire carries whole ones, rounded up so that
  // a policy never reads back as "no limit".
  if (retention.maxAgeSeconds !== undefined) out.maxAgeSeconds = Math.ceil(retention.maxAgeSeconds);
  return out;
}

export function encodeVolume(info: VolumeInfo): VolumeMessage {
  return {
    name: info.name,
    size: info.size,
    blockSize: info.blockSize,
    granularity: info.granularity,
    createdAt: info.createdAt.toISOString(),
    retention: encodeRetention(info.retention),
    sequence: info.sequence,
    earliestRecoverableSequence: info.earliestRecoverableSequence,
    journalBytes: info.journalBytes,
    journalSegments: info.journalSegments,
    earliestRecoverableTime: info.earliestRecoverableTime?.toISOString() ?? '',
    snapshotCount: info.snapshotCount,
    markerCount: info.markerCount,
    holders: info.holders,
    ...(info.restoreInterrupted ? { restoreInterrupted: encodeInterruptedRestore(info.restoreInterrupted) } : {}),
  };
}

function encodeInterruptedRestore(restore: InterruptedRestore): InterruptedRestoreMessage {
  return {
    source: restore.source,
    pointSequence: restore.pointSequence,
    ranges: restore.ranges ?? [],
    startedAt: restore.startedAt.toISOString(),
  };
}

export function encodeSnapshot(info: SnapshotInfo): SnapshotMessage {
  return { ...info, createdAt: info.createdAt.toISOString() };
}

export function encodeMarker(info: MarkerInfo): MarkerMessage {
  return { ...info, createdAt: info.createdAt.toISOString() };
}

export function encodeResult(result: RestoreResult): RestoreResultMessage {
  return { ...result, baseSnapshot: result.baseSnapshot ?? '', durationMs: Math.max(0, Math.round(result.durationMs)) };
}

// ---- decoding (client) -------------------------------------------------------------------

function date(message: Fields, field: string): Date {
  const value = message[field];
  const parsed = typeof value === 'string' ? new Date(value) : new Date(NaN);
  if (Number.isNaN(parsed.getTime())) throw new TidemarkError('INTERNAL', `the daemon sent an invalid time in ${field}: ${String(value)}`);
  return parsed;
}

function text(message: Fields, field: string): string {
  return optionalString(message, field) ?? '';
}

export function decodeRetention(value: unknown): RetentionPolicy {
  if (value === undefined || value === null) return {};
  const message = fields(value, 'retention');
  const out: RetentionPolicy = {};
  const maxBytes = optionalUint64(message, 'maxBytes');
  const maxAgeSeconds = optionalUint64(message, 'maxAgeSeconds');
  if (maxBytes !== undefined) out.maxBytes = maxBytes;
  if (maxAgeSeconds !== undefined) out.maxAgeSeconds = maxAgeSeconds;
  return out;
}

export function decodeVolume(value: unknown): VolumeInfo {
  const m = fields(value, 'volume');
  return {
    name: text(m, 'name'),
    size: uint64(m, 'size'),
    blockSize: uint64(m, 'blockSize'),
    granularity: uint64(m, 'granularity'),
    createdAt: date(m, 'createdAt'),
    retention: decodeRetention(m.retention),
    sequence: uint64(m, 'sequence'),
    earliestRecoverableSequence: uint64(m, 'earliestRecoverableSequence'),
    journalBytes: uint64(m, 'journalBytes'),
    journalSegments: uint64(m, 'journalSegments'),
    ...(text(m, 'earliestRecoverableTime') ? { earliestRecoverableTime: date(m, 'earliestRecoverableTime') } : {}),
    snapshotCount: uint64(m, 'snapshotCount'),
    markerCount: uint64(m, 'markerCount'),
    holders: stringList(m, 'holders'),
    ...decodeInterruptedRestore(optionalMessage(m, 'restoreInterrupted')),
  };
}

function decodeInterruptedRestore(m: Fields | undefined): { restoreInterrupted?: InterruptedRestore } {
  if (!m) return {};
  const ranges = decodeExtents(m, 'ranges');
  return {
    restoreInterrupted: {
      source: text(m, 'source'),
      pointSequence: uint64(m, 'pointSequence'),
      ...(ranges.length > 0 ? { ranges } : {}),
      startedAt: date(m, 'startedAt'),
    },
  };
}

const SNAPSHOT_METHODS = ['reflink', 'sparse-copy', 'empty'] as const;

export function decodeSnapshot(value: unknown): SnapshotInfo {
  const m = fields(value, 'snapshot');
  const method = text(m, 'method');
  return {
    volume: text(m, 'volume'),
    name: text(m, 'name'),
    sequence: uint64(m, 'sequence'),
    createdAt: date(m, 'createdAt'),
    internal: bool(m, 'internal'),
    method: (SNAPSHOT_METHODS as readonly string[]).includes(method) ? (method as SnapshotInfo['method']) : 'sparse-copy',
    size: uint64(m, 'size'),
  };
}

export function decodeMarker(value: unknown): MarkerInfo {
  const m = fields(value, 'marker');
  return {
    volume: text(m, 'volume'),
    name: text(m, 'name'),
    sequence: uint64(m, 'sequence'),
    createdAt: date(m, 'createdAt'),
    group: text(m, 'group'),
    expired: bool(m, 'expired'),
  };
}

export function decodeExtent(value: unknown): Extent {
  const m = fields(value, 'extent');
  return { offset: uint64(m, 'offset'), length: uint64(m, 'length') };
}

export function decodeExtents(message: Fields, field: string): Extent[] {
  return list(message, field).map(decodeExtent);
}

export function decodeProgress(value: unknown): RestoreProgress {
  const m = fields(value, 'progress');
  return { bytesTotal: uint64(m, 'bytesTotal'), bytesRestored: uint64(m, 'bytesRestored') };
}

const RESTORE_METHODS = ['snapshot-diff', 'rewind', 'rebuild'] as const;

export function decodeResult(value: unknown): RestoreResult {
  const m = fields(value, 'result');
  const method = text(m, 'method');
  if (!(RESTORE_METHODS as readonly string[]).includes(method)) throw new TidemarkError('INTERNAL', `the daemon sent an unknown restore method "${method}"`);
  const base = optionalString(m, 'baseSnapshot');
  return {
    volume: text(m, 'volume'),
    pointSequence: uint64(m, 'pointSequence'),
    method: method as RestoreResult['method'],
    ...(base !== undefined ? { baseSnapshot: base } : {}),
    bytesTotal: uint64(m, 'bytesTotal'),
    bytesRestored: uint64(m, 'bytesRestored'),
    durationMs: uint64(m, 'durationMs'),
  };
}

export function decodeStatus(value: unknown): DaemonStatus {
  const m = fields(value, 'status');
  return {
    store: text(m, 'store'),
    version: text(m, 'version'),
    volumeCount: uint64(m, 'volumeCount'),
    nodeId: text(m, 'nodeId'),
    pid: uint64(m, 'pid'),
    startedAt: date(m, 'startedAt'),
  };
}

export function decodeWriteResult(value: unknown): WriteResult {
  const m = fields(value, 'write result');
  return { bytesWritten: uint64(m, 'bytesWritten'), sequence: uint64(m, 'sequence'), flushed: bool(m, 'flushed') };
}
