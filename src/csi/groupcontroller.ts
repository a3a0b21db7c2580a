import type { SnapshotInfo } from '../engine/index.js';
import type * as grpc from '@grpc/grpc-js';
import type { CsiContext } from './context.js';
import { checkCsiName } from './create-volume.js';
import { alreadyExists, engineCode, invalid, notFound } from './errors.js';
import { groupNameFor } from './handles.js';
import { groupKey, snapshotKey, volumeKey } from './inflight.js';
import { volumeSnapshots } from './lookup.js';
import type {
  CreateVolumeGroupSnapshotRequest,
  CreateVolumeGroupSnapshotResponse,
  DeleteVolumeGroupSnapshotRequest,
  DeleteVolumeGroupSnapshotResponse,
  GetVolumeGroupSnapshotRequest,
  GetVolumeGroupSnapshotResponse,
  GroupControllerGetCapabilitiesRequest,
  GroupControllerGetCapabilitiesResponse,
  GroupControllerHandlers,
  VolumeGroupSnapshot,
} from './messages.js';
import { checkNoParameters } from './params.js';
import type { GroupRecord } from './records.js';
import { unary, type CallIds } from './rpc.js';
import { snapshotMessage, timestamp } from './views.js';

/**
 * The CSI GroupController service: group snapshots, one snapshot of each volume, all at one
 * write-order-consistent point. The engine takes them under every volume's lock at once
 * (`createSnapshotGroup`), so no write lands on any member between the first copy and the
 * last, under any write load.
 *
 * Members share one engine snapshot name, "_g" + a hash of the group's CSI name; the group
 * exists once its record (written after the cut) does, so members of a cut that a crash
 * interrupted are removed at the next start, and by a retried call.
 */
export function groupControllerService(ctx: CsiContext): grpc.UntypedServiceImplementation {
  return {
    GroupControllerGetCapabilities: unary<GroupControllerGetCapabilitiesRequest, GroupControllerGetCapabilitiesResponse>(
      ctx,
      'GroupControllerGetCapabilities',
      () => ({ capabilities: [{ rpc: { type: 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT' } }] }),
      { readOnly: true },
    ),
    CreateVolumeGroupSnapshot: unary<CreateVolumeGroupSnapshotRequest, CreateVolumeGroupSnapshotResponse>(ctx, 'CreateVolumeGroupSnapshot', (req, ids) =>
      createGroup(ctx, req, ids),
    ),
    DeleteVolumeGroupSnapshot: unary<DeleteVolumeGroupSnapshotRequest, DeleteVolumeGroupSnapshotResponse>(ctx, 'DeleteVolumeGroupSnapshot', (req, ids) => deleteGroup(ctx, req, ids)),
    GetVolumeGroupSnapshot: unary<GetVolumeGroupSnapshotRequest, GetVolumeGroupSnapshotResponse>(
      ctx,
      'GetVolumeGroupSnapshot',
      (req, ids) => {
        if (!req.groupSnapshotId) throw invalid('group_snapshot_id is required');
        const parsed = ctx.handles.parseGroupSnapshotId(req.groupSnapshotId);
        if (!parsed.ok) throw notFound(parsed.reason);
        ids.group = parsed.value;
        const record = ctx.records.group(parsed.value);
        if (!record) throw notFound(`group snapshot ${req.groupSnapshotId} does not exist`);
        const members = groupMembers(ctx, record);
        checkSnapshotIds(ctx, req.snapshotIds, members);
        return { groupSnapshot: groupMessage(ctx, record, members) };
      },
      { readOnly: true },
    ),
  } satisfies GroupControllerHandlers;
}

function groupMembers(ctx: CsiContext, record: GroupRecord): SnapshotInfo[] {
  return record.volumes.flatMap((volume) => volumeSnapshots(ctx, volume).filter((s) => s.name === record.group));
}

function groupMessage(ctx: CsiContext, record: GroupRecord, members: SnapshotInfo[]): VolumeGroupSnapshot {
  return {
    groupSnapshotId: ctx.handles.groupSnapshotId(record.group),
    snapshots: members.map((s) => snapshotMessage(ctx, s)),
    creationTime: timestamp(new Date(record.createdAt)),
    readyToUse: members.length === record.volumes.length,
  };
}

/** The spec lets callers pass the member ids; when they do, they must be exactly the members. */
function checkSnapshotIds(ctx: CsiContext, snapshotIds: string[], members: SnapshotInfo[]): void {
  if (snapshotIds.length === 0) return;
  const actual = members.map((s) => ctx.handles.snapshotId(s.volume, s.name)).sort();
  const given = [...new Set(snapshotIds)].sort();
  if (JSON.stringify(actual) !== JSON.stringify(given)) {
    throw invalid(`snapshot_ids ${JSON.stringify(given)} do not match the group's snapshots ${JSON.stringify(actual)}`);
  }
}

/**
 * On delete the given ids may also name members that an interrupted delete removed already,
 * so they must name every remaining member and nothing outside the group.
 */
function checkDeleteIds(ctx: CsiContext, snapshotIds: string[], record: GroupRecord): void {
  if (snapshotIds.length === 0) return;
  const possible = new Set(record.volumes.map((volume) => ctx.handles.snapshotId(volume, record.group)));
  const given = new Set(snapshotIds);
  const stranger = [...given].find((id) => !possible.has(id));
  const missing = groupMembers(ctx, record)
    .map((s) => ctx.handles.snapshotId(s.volume, s.name))
    .find((id) => !given.has(id));
  if (stranger || missing) {
    throw invalid(`snapshot_ids do not match group snapshot ${ctx.handles.groupSnapshotId(record.group)}: ${stranger ? `${stranger} is not a member` : `member ${missing} is not listed`}`);
  }
}

function sourceVolumes(ctx: CsiContext, ids: string[]): string[] {
  if (ids.length === 0) throw invalid('source_volume_ids must name at least one volume');
  const volumes = ids.map((id) => {
    if (!id) throw invalid('source_volume_ids must not contain an empty id');
    const parsed = ctx.handles.parseVolumeId(id);
    if (!parsed.ok) throw notFound(parsed.reason);
    if (!ctx.engine.has(parsed.value)) throw notFound(`source volume ${id} does not exist`);
    return parsed.value;
  });
  if (new Set(volumes).size !== volumes.length) throw invalid('source_volume_ids names a volume more than once');
  return volumes.sort();
}

async function createGroup(ctx: CsiContext, req: CreateVolumeGroupSnapshotRequest, ids: CallIds): Promise<CreateVolumeGroupSnapshotResponse> {
  checkCsiName(req.name);
  checkNoParameters(req.parameters, 'CreateVolumeGroupSnapshot');
  const volumes = sourceVolumes(ctx, req.sourceVolumeIds);
  const group = groupNameFor(req.name);
  Object.assign(ids, { name: req.name, group, volumes });
  const members = volumes.map((volume) => snapshotKey(volume, group));
  return ctx.inflight.run([groupKey(group), ...members], async () => {
    const existing = ctx.records.group(group);
    if (existing) {
      if (JSON.stringify(existing.volumes) !== JSON.stringify(volumes)) {
        throw alreadyExists(`group snapshot "${req.name}" already exists over other volumes (${existing.volumes.join(', ')})`);
      }
      return { groupSnapshot: groupMessage(ctx, existing, groupMembers(ctx, existing)) };
    }
    // Members without a record are the remains of a cut that never completed.
    await removeMembers(ctx, group, ctx.engine.listVolumes().map((v) => v.name));
    const taken = await ctx.engine.createSnapshotGroup(volumes, group);
    const record: GroupRecord = { version: 1, csiName: req.name, group, volumes, createdAt: taken[0]!.createdAt.toISOString() };
    try {
      await ctx.records.putGroup(record);
    } catch (err) {
      await removeMembers(ctx, group, volumes);
      throw err;
    }
    return { groupSnapshot: groupMessage(ctx, record, groupMembers(ctx, record)) };
  }, volumes.map(volumeKey));
}

async function removeMembers(ctx: CsiContext, group: string, volumes: string[]): Promise<void> {
  for (const volume of volumes) {
    if (!volumeSnapshots(ctx, volume).some((s) => s.name === group)) continue;
    try {
      await ctx.engine.deleteSnapshot(volume, group);
    } catch (err) {
      if (engineCode(err) !== 'NOT_FOUND') throw err;
    }
  }
}

async function deleteGroup(ctx: CsiContext, req: DeleteVolumeGroupSnapshotRequest, ids: CallIds): Promise<DeleteVolumeGroupSnapshotResponse> {
  if (!req.groupSnapshotId) throw invalid('group_snapshot_id is required');
  const parsed = ctx.handles.parseGroupSnapshotId(req.groupSnapshotId);
  if (!parsed.ok) {
    ids.note = parsed.reason;
    return {};
  }
  const group = parsed.value;
  ids.group = group;
  return ctx.inflight.run([groupKey(group)], async () => {
    const record = ctx.records.group(group);
    const volumes = record?.volumes ?? ctx.engine.listVolumes().map((v) => v.name);
    if (record) checkDeleteIds(ctx, req.snapshotIds, record);
    await removeMembers(ctx, group, volumes);
    // The record goes last: a delete cut short is finished by the CO's retry.
    await ctx.records.deleteGroup(group);
    return {};
  });
}
