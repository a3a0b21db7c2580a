import * as fs from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import type { SnapshotInfo, VolumeInfo } from '../engine/index.js';
import { malformedCapability, requireSupported, unsupportedCapability } from './capabilities.js';
import { BLOCK_SIZE, parseRange, roundUp } from './capacity.js';
import type { CsiContext } from './context.js';
import { checkAccessible, checkCsiName, createVolume } from './create-volume.js';
import { alreadyExists, engineCode, failedPrecondition, invalid, notFound, outOfRange } from './errors.js';
import { engineNameFor, isGroupMember, isHiddenSnapshot } from './handles.js';
import { snapshotKey, snapshotNameKey, volumeKey } from './inflight.js';
import { allSnapshots, findSnapshot, findVolume, lookupSnapshot, snapshotsNamed, volumeSnapshots } from './lookup.js';
import type {
  ControllerExpandVolumeRequest,
  ControllerExpandVolumeResponse,
  ControllerGetCapabilitiesRequest,
  ControllerGetCapabilitiesResponse,
  ControllerGetVolumeHealthRequest,
  ControllerGetVolumeHealthResponse,
  ControllerGetVolumeRequest,
  ControllerGetVolumeResponse,
  ControllerHandlers,
  ControllerListVolumeHealthRequest,
  ControllerListVolumeHealthResponse,
  ControllerModifyVolumeRequest,
  ControllerModifyVolumeResponse,
  ControllerRpcType,
  CreateSnapshotRequest,
  CreateSnapshotResponse,
  CreateVolumeRequest,
  CreateVolumeResponse,
  DeleteSnapshotRequest,
  DeleteSnapshotResponse,
  DeleteVolumeRequest,
  DeleteVolumeResponse,
  GetCapacityRequest,
  GetCapacityResponse,
  GetSnapshotRequest,
  GetSnapshotResponse,
  ListSnapshotsRequest,
  ListSnapshotsResponse,
  ListVolumesRequest,
  ListVolumesResponse,
  ValidateVolumeCapabilitiesRequest,
  ValidateVolumeCapabilitiesResponse,
  VolumeHealth,
} from './messages.js';
import { compareKeys, paginate } from './pagination.js';
import { DEFAULT_FS_TYPE, applyRetentionChange, checkNoParameters, parseMutableParameters, parseVolumeParameters } from './params.js';
import { unary, type CallIds } from './rpc.js';
import { restoreHealth, snapshotMessage, volumeContext, volumeMessage, volumeStatus } from './views.js';

export const CONTROLLER_CAPABILITIES: ControllerRpcType[] = [
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
  'CLONE_VOLUME',
  'EXPAND_VOLUME',
  'GET_VOLUME',
  'MODIFY_VOLUME',
  'GET_SNAPSHOT',
  'GET_VOLUME_HEALTH',
  'LIST_VOLUME_HEALTH',
];

/**
 * The CSI Controller service. Volumes are created on this node only (in Kubernetes the
 * provisioner runs as a sidecar of every node's daemon, `--node-deployment`); handles name
 * the node, and a handle of another node names nothing here.
 */
export function controllerService(ctx: CsiContext): grpc.UntypedServiceImplementation {
  const read = { readOnly: true };
  return {
    ControllerGetCapabilities: unary<ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse>(
      ctx,
      'ControllerGetCapabilities',
      () => ({ capabilities: CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })) }),
      read,
    ),
    CreateVolume: unary<CreateVolumeRequest, CreateVolumeResponse>(ctx, 'CreateVolume', (req, ids) => createVolume(ctx, req, ids)),
    DeleteVolume: unary<DeleteVolumeRequest, DeleteVolumeResponse>(ctx, 'DeleteVolume', (req, ids) => deleteVolume(ctx, req, ids)),
    ValidateVolumeCapabilities: unary<ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse>(
      ctx,
      'ValidateVolumeCapabilities',
      (req, ids) => validateVolumeCapabilities(ctx, req, ids),
      read,
    ),
    ListVolumes: unary<ListVolumesRequest, ListVolumesResponse>(ctx, 'ListVolumes', (req) => listVolumes(ctx, req), read),
    GetCapacity: unary<GetCapacityRequest, GetCapacityResponse>(ctx, 'GetCapacity', (req) => getCapacity(ctx, req), read),
    ControllerGetVolume: unary<ControllerGetVolumeRequest, ControllerGetVolumeResponse>(
      ctx,
      'ControllerGetVolume',
      (req, ids) => {
        const info = findVolume(ctx, req.volumeId);
        ids.volume = info.name;
        return { volume: volumeMessage(ctx, info), status: volumeStatus(ctx, info) };
      },
      read,
    ),
    ControllerGetVolumeHealth: unary<ControllerGetVolumeHealthRequest, ControllerGetVolumeHealthResponse>(
      ctx,
      'ControllerGetVolumeHealth',
      async (req, ids) => {
        const info = findVolume(ctx, req.volumeId);
        ids.volume = info.name;
        return { volumeHealth: await volumeHealth(ctx, info) };
      },
      read,
    ),
    ControllerListVolumeHealth: unary<ControllerListVolumeHealthRequest, ControllerListVolumeHealthResponse>(
      ctx,
      'ControllerListVolumeHealth',
      (req) => listVolumeHealth(ctx, req),
      read,
    ),
    ControllerModifyVolume: unary<ControllerModifyVolumeRequest, ControllerModifyVolumeResponse>(ctx, 'ControllerModifyVolume', (req, ids) => modifyVolume(ctx, req, ids)),
    ControllerExpandVolume: unary<ControllerExpandVolumeRequest, ControllerExpandVolumeResponse>(ctx, 'ControllerExpandVolume', (req, ids) =>
      expandVolume(ctx, req, ids),
    ),
    CreateSnapshot: unary<CreateSnapshotRequest, CreateSnapshotResponse>(ctx, 'CreateSnapshot', (req, ids) => createSnapshot(ctx, req, ids)),
    DeleteSnapshot: unary<DeleteSnapshotRequest, DeleteSnapshotResponse>(ctx, 'DeleteSnapshot', (req, ids) => deleteSnapshot(ctx, req, ids)),
    ListSnapshots: unary<ListSnapshotsRequest, ListSnapshotsResponse>(ctx, 'ListSnapshots', (req) => listSnapshots(ctx, req), read),
    GetSnapshot: unary<GetSnapshotRequest, GetSnapshotResponse>(
      ctx,
      'GetSnapshot',
      (req, ids) => {
        const snapshot = findSnapshot(ctx, req.snapshotId);
        Object.assign(ids, { volume: snapshot.volume, snapshot: snapshot.name });
        return { snapshot: snapshotMessage(ctx, snapshot) };
      },
      read,
    ),
    // ControllerPublishVolume and ControllerUnpublishVolume stay unimplemented (grpc-js answers
    // UNIMPLEMENTED): a node-local volume needs no controller-side attach.
  } satisfies Partial<ControllerHandlers>;
}

// ---- volumes -----------------------------------------------------------------------------

async function deleteVolume(ctx: CsiContext, req: DeleteVolumeRequest, ids: CallIds): Promise<DeleteVolumeResponse> {
  if (!req.volumeId) throw invalid('volume_id is required');
  const parsed = ctx.handles.parseVolumeId(req.volumeId);
  if (!parsed.ok) {
    // Nothing by that id lives here; deleting it again is the idempotent no-op.
    ids.note = parsed.reason;
    return {};
  }
  const name = parsed.value;
  ids.volume = name;
  return ctx.inflight.run([volumeKey(name)], async () => {
    if (ctx.engine.has(name)) {
      const snapshots = volumeSnapshots(ctx, name);
      if (snapshots.length > 0) {
        // Snapshots live inside their volume in the store, so deleting it would take them along.
        throw failedPrecondition(
          `volume ${req.volumeId} still has ${snapshots.length} snapshot(s) (${snapshots.map((s) => s.name).join(', ')}); tidemark keeps snapshots inside their volume, so delete them first`,
        );
      }
      try {
        await ctx.engine.deleteVolume(name);
      } catch (err) {
        if (engineCode(err) !== 'NOT_FOUND') throw err;
      }
    }
    await ctx.records.deleteVolume(name);
    return {};
  });
}

function validateVolumeCapabilities(ctx: CsiContext, req: ValidateVolumeCapabilitiesRequest, ids: CallIds): ValidateVolumeCapabilitiesResponse {
  if (!req.volumeId) throw invalid('volume_id is required');
  if (req.volumeCapabilities.length === 0) throw invalid('volume_capabilities must name at least one capability');
  for (const capability of req.volumeCapabilities) {
    const problem = malformedCapability(capability);
    if (problem) throw invalid(problem);
  }
  const info = findVolume(ctx, req.volumeId);
  ids.volume = info.name;
  const record = ctx.records.volume(info.name);
  const fsType = record?.fsType ?? DEFAULT_FS_TYPE;
  const problems: string[] = [];
  for (const capability of req.volumeCapabilities) {
    const problem = unsupportedCapability(capability, fsType);
    if (problem) problems.push(problem);
  }
  const context = volumeContext(info, record);
  for (const [key, value] of Object.entries(req.volumeContext)) {
    if (context[key] !== value) problems.push(`volume_context ${key}=${value} does not match the volume (${context[key] ?? 'not set'})`);
  }
  const params = parseVolumeParameters(req.parameters);
  if (params.granularity !== undefined && params.granularity !== info.granularity) {
    problems.push(`the volume tracks changes in ${info.granularity}-byte chunks, not ${params.granularity}`);
  }
  if (params.fsType !== undefined && params.fsType !== fsType) problems.push(`the volume is formatted as ${fsType}, not ${params.fsType}`);
  parseMutableParameters(req.mutableParameters);
  if (problems.length > 0) return { confirmed: null, message: problems.join('; ') };
  return {
    confirmed: {
      volumeContext: req.volumeContext,
      volumeCapabilities: req.volumeCapabilities,
      parameters: req.parameters,
      mutableParameters: req.mutableParameters,
    },
    message: '',
  };
}

function listVolumes(ctx: CsiContext, req: ListVolumesRequest): ListVolumesResponse {
  const volumes = ctx.engine.listVolumes().sort((a, b) => compareKeys(a.name, b.name));
  const page = paginate(volumes, (v) => v.name, req.maxEntries, req.startingToken);
  return {
    entries: page.items.map((info) => ({ volume: volumeMessage(ctx, info), status: volumeStatus(ctx, info) })),
    nextToken: page.nextToken,
  };
}

async function getCapacity(ctx: CsiContext, req: GetCapacityRequest): Promise<GetCapacityResponse> {
  for (const capability of req.volumeCapabilities) {
    const problem = malformedCapability(capability);
    if (problem) throw invalid(problem);
  }
  parseVolumeParameters(req.parameters);
  const minimum = { value: BLOCK_SIZE };
  const elsewhere = req.accessibleTopology !== null && !ctx.handles.isThisNode(req.accessibleTopology);
  const unsupported = req.volumeCapabilities.some((c) => unsupportedCapability(c) !== undefined);
  if (elsewhere || unsupported) return { availableCapacity: 0, maximumVolumeSize: null, minimumVolumeSize: minimum };
  // Volumes are sparse: what can still be written is the free space of the store's filesystem.
  const stats = await fs.statfs(ctx.engine.store);
  return { availableCapacity: stats.bavail * stats.bsize, maximumVolumeSize: null, minimumVolumeSize: minimum };
}

/**
 * A volume is healthy when its image can be read (the engine stops a volume whose image write
 * failed) and no in-place restore of it was cut short.
 */
async function volumeHealth(ctx: CsiContext, info: VolumeInfo): Promise<VolumeHealth> {
  const health: VolumeHealth = { volumeId: ctx.handles.volumeId(info.name), healthStatuses: restoreHealth(info) };
  try {
    await ctx.engine.read(info.name, 0, Math.min(info.blockSize, info.size));
  } catch (err) {
    if (engineCode(err) === 'NOT_FOUND') throw notFound(`volume ${health.volumeId} does not exist`);
    health.healthStatuses.push({ status: 'INACCESSIBLE', reason: 'VolumeStopped', message: (err as Error).message });
  }
  return health;
}

async function listVolumeHealth(ctx: CsiContext, req: ControllerListVolumeHealthRequest): Promise<ControllerListVolumeHealthResponse> {
  const volumes = ctx.engine.listVolumes().sort((a, b) => compareKeys(a.name, b.name));
  const unhealthy: VolumeHealth[] = [];
  for (const info of volumes) {
    const health = await volumeHealth(ctx, info).catch(() => undefined);
    // The spec asks to leave out volumes with no known problem.
    if (health && health.healthStatuses.length > 0) unhealthy.push(health);
  }
  const page = paginate(unhealthy, (h) => h.volumeId, req.maxEntries, req.startingToken);
  return { entries: page.items, nextToken: page.nextToken };
}

async function modifyVolume(ctx: CsiContext, req: ControllerModifyVolumeRequest, ids: CallIds): Promise<ControllerModifyVolumeResponse> {
  if (!req.volumeId) throw invalid('volume_id is required');
  // The volume first: a request for a volume that does not exist is NOT_FOUND whatever it asks.
  const info = findVolume(ctx, req.volumeId);
  ids.volume = info.name;
  // Nothing to change is a change that succeeds (csi-sanity asks so when no mutable
  // parameters are configured).
  if (Object.keys(req.mutableParameters ?? {}).length === 0) return {};
  // Checked before anything changes: the spec wants no partial modification.
  const change = parseMutableParameters(req.mutableParameters);
  return ctx.inflight.run([volumeKey(info.name)], async () => {
    const current = ctx.engine.volumeInfo(info.name).retention;
    const next = applyRetentionChange(current, change.retention);
    Object.assign(ids, { retentionBytes: next.maxBytes, retentionSeconds: next.maxAgeSeconds });
    await ctx.engine.setRetention(info.name, next);
    return {};
  });
}

async function expandVolume(ctx: CsiContext, req: ControllerExpandVolumeRequest, ids: CallIds): Promise<ControllerExpandVolumeResponse> {
  if (!req.volumeId) throw invalid('volume_id is required');
  if (!req.capacityRange) throw invalid('capacity_range is required');
  const range = parseRange(req.capacityRange);
  if (range.required === 0 && range.limit === 0) throw invalid('capacity_range must set required_bytes or limit_bytes');
  const info = findVolume(ctx, req.volumeId);
  ids.volume = info.name;
  if (req.volumeCapability) requireSupported([req.volumeCapability], ctx.records.volume(info.name)?.fsType ?? DEFAULT_FS_TYPE);
  return ctx.inflight.run([volumeKey(info.name)], async () => {
    const current = ctx.engine.volumeInfo(info.name);
    if (range.limit > 0 && current.size > range.limit) {
      throw outOfRange(`volume ${req.volumeId} already holds ${current.size} bytes, more than limit_bytes ${range.limit}; volumes never shrink`);
    }
    const target = Math.max(current.size, roundUp(range.required, current.blockSize));
    if (range.limit > 0 && target > range.limit) {
      throw outOfRange(`no multiple of the ${current.blockSize}-byte block size lies between required_bytes ${range.required} and limit_bytes ${range.limit}`);
    }
    const grown = target > current.size ? await ctx.engine.resizeVolume(info.name, target) : current;
    Object.assign(ids, { from: current.size, size: grown.size });
    // Always true, also on a retry that finds the volume grown already: the node grows the
    // device and filesystem idempotently, and a lost first answer must not leave them small.
    return { capacityBytes: grown.size, nodeExpansionRequired: true };
  });
}

// ---- snapshots ---------------------------------------------------------------------------

async function createSnapshot(ctx: CsiContext, req: CreateSnapshotRequest, ids: CallIds): Promise<CreateSnapshotResponse> {
  checkCsiName(req.name);
  if (!req.sourceVolumeId) throw invalid('source_volume_id is required');
  checkNoParameters(req.parameters, 'CreateSnapshot');
  checkAccessible(ctx, req.accessibilityRequirements, `snapshot "${req.name}"`);
  const name = engineNameFor(req.name);
  Object.assign(ids, { name: req.name, snapshot: name });
  const parsed = ctx.handles.parseVolumeId(req.sourceVolumeId);
  if (!parsed.ok) throw notFound(parsed.reason);
  const volume = parsed.value;
  ids.volume = volume;
  return ctx.inflight.run([snapshotNameKey(name), snapshotKey(volume, name)], async () => {
    const existing = snapshotsNamed(ctx, name);
    const same = existing.find((s) => s.volume === volume);
    if (same) return { snapshot: snapshotMessage(ctx, same) };
    if (existing.length > 0) {
      throw alreadyExists(`snapshot name "${req.name}" is already used by a snapshot of volume ${ctx.handles.volumeId(existing[0]!.volume)}`);
    }
    if (!ctx.engine.has(volume)) throw notFound(`source volume ${req.sourceVolumeId} does not exist`);
    const info = await ctx.engine.createSnapshot(volume, name);
    ids.sequence = info.sequence;
    return { snapshot: snapshotMessage(ctx, info) };
  }, [volumeKey(volume)]);
}

async function deleteSnapshot(ctx: CsiContext, req: DeleteSnapshotRequest, ids: CallIds): Promise<DeleteSnapshotResponse> {
  if (!req.snapshotId) throw invalid('snapshot_id is required');
  const parsed = ctx.handles.parseSnapshotId(req.snapshotId);
  if (!parsed.ok || isHiddenSnapshot(parsed.value.snapshot)) {
    ids.note = parsed.ok ? 'not a CSI snapshot' : parsed.reason;
    return {};
  }
  const { volume, snapshot } = parsed.value;
  Object.assign(ids, { volume, snapshot });
  return ctx.inflight.run([snapshotKey(volume, snapshot), snapshotNameKey(snapshot)], async () => {
    const exists = volumeSnapshots(ctx, volume).some((s) => s.name === snapshot);
    if (!exists) return {};
    if (isGroupMember(snapshot)) {
      throw invalid(`snapshot ${req.snapshotId} belongs to group snapshot ${ctx.handles.groupSnapshotId(snapshot)}; delete the group snapshot instead`);
    }
    try {
      await ctx.engine.deleteSnapshot(volume, snapshot);
    } catch (err) {
      if (engineCode(err) !== 'NOT_FOUND') throw err;
    }
    return {};
  });
}

function listSnapshots(ctx: CsiContext, req: ListSnapshotsRequest): ListSnapshotsResponse {
  let snapshots: SnapshotInfo[];
  if (req.snapshotId) {
    const { snapshot } = lookupSnapshot(ctx, req.snapshotId);
    snapshots = snapshot ? [snapshot] : [];
  } else if (req.sourceVolumeId) {
    const parsed = ctx.handles.parseVolumeId(req.sourceVolumeId);
    snapshots = parsed.ok ? volumeSnapshots(ctx, parsed.value) : [];
  } else {
    snapshots = allSnapshots(ctx);
  }
  if (req.sourceVolumeId) snapshots = snapshots.filter((s) => ctx.handles.volumeId(s.volume) === req.sourceVolumeId);
  const key = (s: SnapshotInfo) => `${s.volume}/${s.name}`;
  snapshots.sort((a, b) => compareKeys(key(a), key(b)));
  const page = paginate(snapshots, key, req.maxEntries, req.startingToken);
  return { entries: page.items.map((s) => ({ snapshot: snapshotMessage(ctx, s) })), nextToken: page.nextToken };
}
