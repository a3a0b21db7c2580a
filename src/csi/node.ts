import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { VolumeInfo } from '../engine/index.js';
import {
  Attacher,
  bindMount,
  deviceSize,
  filesystemUsage,
  growFilesystem,
  growUnmounted,
  makeFilesystem,
  mountAt,
  mountFilesystem,
  probeDevice,
  unmountAll,
  type AttachMode,
  type DirectServer,
  type MountEntry,
} from '../host/index.js';
import { classifyError } from '../util/errors.js';
import { makePrivateDir, writeFileAtomic } from '../util/files.js';
import { malformedCapability, unsupportedCapability } from './capabilities.js';
import type { CsiContext } from './context.js';
import { alreadyExists, failedPrecondition, invalid, notFound, outOfRange } from './errors.js';
import { volumeKey } from './inflight.js';
import { findVolume } from './lookup.js';
import type {
  NodeExpandVolumeRequest,
  NodeExpandVolumeResponse,
  NodeGetCapabilitiesRequest,
  NodeGetCapabilitiesResponse,
  NodeGetInfoRequest,
  NodeGetInfoResponse,
  NodeGetStorageHealthRequest,
  NodeGetStorageHealthResponse,
  NodeGetVolumeHealthRequest,
  NodeGetVolumeHealthResponse,
  NodeGetVolumeStatsRequest,
  NodeGetVolumeStatsResponse,
  NodeHandlers,
  NodePublishVolumeRequest,
  NodePublishVolumeResponse,
  NodeRpcType,
  NodeStageVolumeRequest,
  NodeStageVolumeResponse,
  NodeUnpublishVolumeRequest,
  NodeUnpublishVolumeResponse,
  NodeUnstageVolumeRequest,
  NodeUnstageVolumeResponse,
  StorageBackendHealth,
  VolumeCapability,
  VolumeHealthEntry,
} from './messages.js';
import { DEFAULT_FS_TYPE, isFsType, type FsType } from './params.js';
import { unary } from './rpc.js';
import { CONTEXT_FS_TYPE, restoreHealth } from './views.js';

export interface NodeServiceOptions {
  /** The daemon's NBD socket, which attachments connect to. */
  nbdSocket: string;
  /** Attachment and staging records (STORE/csi/node). */
  stateDir: string;
  /** Forces an attach mode; by default the kernel driver where it exists, nbdfuse otherwise. */
  attachMode?: AttachMode;
  /** Reported by NodeGetInfo; 0 means no limit beyond the node's devices. */
  maxVolumes?: number;
  /** Serves volumes on the sockets the kernel path hands to the kernel (the NBD server). */
  direct?: DirectServer;
  /** Seconds the kernel holds a device's I/O while the daemon is away (120). */
  deadConnTimeoutS?: number;
}

/** The node's attacher, built once per daemon: it keeps the kernel path's live connections. */
export function nodeAttacher(ctx: CsiContext, options: NodeServiceOptions): Attacher {
  return new Attacher({
    nbdSocket: options.nbdSocket,
    stateDir: options.stateDir,
    logger: ctx.logger,
    ...(options.attachMode ? { mode: options.attachMode } : {}),
    ...(options.direct ? { direct: options.direct } : {}),
    ...(options.deadConnTimeoutS !== undefined ? { deadConnTimeoutS: options.deadConnTimeoutS } : {}),
  });
}

/** What NodeStageVolume did for a volume, so that a repeat can be compared with it. */
export interface StageRecord {
  stagingPath: string;
  accessType: 'block' | 'mount';
  fsType?: string;
  readOnly: boolean;
}

/**
 * CSI v1.13 moved the volume condition out of NodeGetVolumeStats into the (alpha)
 * NodeGetVolumeHealth call, so that is where a broken attachment is reported.
 */
const CAPABILITIES: NodeRpcType[] = ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME', 'GET_VOLUME_HEALTH', 'GET_STORAGE_HEALTH'];

function checkCapability(capability: VolumeCapability | null, fsType?: string): VolumeCapability {
  const malformed = malformedCapability(capability);
  if (malformed) throw invalid(malformed.replace('a volume capability', 'volume_capability'));
  const unsupported = unsupportedCapability(capability!, fsType);
  if (unsupported) throw failedPrecondition(unsupported);
  return capability!;
}

function readOnlyMode(capability: VolumeCapability): boolean {
  return capability.accessMode?.mode === 'SINGLE_NODE_READER_ONLY';
}

/** The filesystem a mount capability gets: what it asks for, else what the volume was created with. */
function filesystemFor(capability: VolumeCapability, context: Record<string, string>): FsType {
  const wanted = capability.mount?.fsType || context[CONTEXT_FS_TYPE] || DEFAULT_FS_TYPE;
  if (!isFsType(wanted)) throw invalid(`filesystem type "${wanted}" is not supported; use ext4 or xfs`);
  return wanted;
}

/**
 * XFS refuses to mount a second filesystem with the same UUID, which every clone and every
 * volume restored from a snapshot of an XFS volume has; nouuid lets them sit side by side.
 */
function mountOptions(fsType: string, capability: VolumeCapability, readOnly: boolean): string[] {
  const options = [...(capability.mount?.mountFlags ?? [])];
  if (fsType === 'xfs' && !options.includes('nouuid')) options.push('nouuid');
  if (readOnly && !options.includes('ro')) options.push('ro');
  return options;
}

/** Whether a mount shows a device: a filesystem on it, or a bind of the device node itself. */
function showsDevice(entry: MountEntry, device: string): boolean {
  return entry.source === device || entry.root === `/${path.basename(device)}`;
}

function stageFileOf(stateDir: string, volume: string): string {
  return path.join(stateDir, 'staged', `${encodeURIComponent(volume)}.json`);
}

/**
 * How a volume is staged on this node, or undefined when it is not. Exported for the
 * reconcilers, which freeze a staged filesystem around a consistent cut.
 */
export async function readStageRecord(stateDir: string, volume: string): Promise<StageRecord | undefined> {
  try {
    return JSON.parse(await fs.readFile(stageFileOf(stateDir, volume), 'utf8')) as StageRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw classifyError(err, `reading the staging record of volume ${volume}`);
  }
}

/**
 * The CSI Node service: stages a volume by attaching its NBD export as a block device (and,
 * for mount access, making a filesystem on a blank device and mounting it), publishes by bind
 * mounts, reports usage and condition, and grows filesystems. Every step checks what is
 * already there first, so that a retried call finishes the work instead of failing on it.
 */
export function nodeService(ctx: CsiContext, options: NodeServiceOptions, attacher: Attacher): grpc.UntypedServiceImplementation {
  const stageDir = path.join(options.stateDir, 'staged');
  const stageFile = (volume: string) => stageFileOf(options.stateDir, volume);
  const readStage = (volume: string) => readStageRecord(options.stateDir, volume);

  const locked = <T>(volume: string, fn: () => Promise<T>) => ctx.inflight.run([volumeKey(volume)], fn);

  /**
   * The engine name a handle of this node names, whether or not the volume still exists:
   * undoing calls must clean up after a volume deleted while it was staged or published.
   */
  function volumeNameOf(volumeId: string): string {
    const parsed = ctx.handles.parseVolumeId(volumeId);
    if (!parsed.ok) throw notFound(parsed.reason);
    return parsed.value;
  }

  async function stage(req: NodeStageVolumeRequest, info: VolumeInfo): Promise<void> {
    const capability = checkCapability(req.volumeCapability);
    const accessType = capability.accessType!;
    const readOnly = readOnlyMode(capability);
    const fsType = accessType === 'mount' ? filesystemFor(capability, req.volumeContext) : undefined;
    const stagingPath = path.resolve(req.stagingTargetPath);
    const previous = await readStage(info.name);
    if (previous) {
      if (previous.stagingPath !== stagingPath) {
        throw failedPrecondition(`volume ${info.name} is already staged at ${previous.stagingPath}; unstage it there first`);
      }
      if (previous.accessType !== accessType || previous.readOnly !== readOnly || (fsType && previous.fsType !== fsType)) {
        throw alreadyExists(`volume ${info.name} is already staged at ${stagingPath} as ${previous.accessType}${previous.fsType ? ` (${previous.fsType})` : ''}${previous.readOnly ? ', read-only' : ''}, which differs from this request`);
      }
    }
    const stat = await fs.stat(stagingPath).catch(() => undefined);
    if (!stat?.isDirectory()) throw notFound(`staging_target_path ${stagingPath} does not exist or is not a directory; the CO creates it`);

    const attachment = await attacher.attach(info.name, info.size, readOnly);
    const record: StageRecord = { stagingPath, accessType, readOnly, ...(fsType ? { fsType } : {}) };
    await makePrivateDir(stageDir);
    await writeFileAtomic(stageFile(info.name), JSON.stringify(record));
    if (accessType === 'block' || !fsType) return;

    const mounted = await mountAt(stagingPath);
    if (mounted) {
      if (showsDevice(mounted, attachment.device)) return;
      throw alreadyExists(`${stagingPath} already has ${mounted.source} mounted, not volume ${info.name}`);
    }
    const found = await probeDevice(attachment.device);
    if (found.blank) {
      if (readOnly) throw failedPrecondition(`volume ${info.name} has no filesystem and is staged read-only, so none can be made`);
      ctx.logger.info('making a filesystem', { volume: info.name, device: attachment.device, fsType });
      await makeFilesystem(attachment.device, fsType);
    } else if (found.type !== fsType) {
      throw failedPrecondition(`volume ${info.name} holds ${found.type}, not ${fsType}; tidemark does not format over existing data`);
    } else if (!readOnly && (await growUnmounted(fsType, attachment.device))) {
      ctx.logger.info('grew the filesystem to the expanded volume before mounting', { volume: info.name, device: attachment.device, fsType });
    }
    await mountFilesystem(attachment.device, stagingPath, fsType, mountOptions(fsType, capability, readOnly));
  }

  async function publish(req: NodePublishVolumeRequest, info: VolumeInfo): Promise<void> {
    const capability = checkCapability(req.volumeCapability);
    const staged = await readStage(info.name);
    const attachment = await attacher.find(info.name);
    const stagingPath = path.resolve(req.stagingTargetPath);
    if (!staged || !attachment || staged.stagingPath !== stagingPath) {
      throw failedPrecondition(`volume ${info.name} is not staged at ${stagingPath}; call NodeStageVolume first`);
    }
    if (staged.accessType !== capability.accessType) {
      throw failedPrecondition(`volume ${info.name} is staged for ${staged.accessType} access, not ${capability.accessType}`);
    }
    const readOnly = req.readonly || readOnlyMode(capability);
    const target = path.resolve(req.targetPath);
    const mounted = await mountAt(target);
    if (mounted) {
      const sameSource = showsDevice(mounted, attachment.device);
      const sameMode = mounted.options.includes('ro') === readOnly;
      if (sameSource && sameMode) return;
      throw alreadyExists(`${target} is already published${sameSource ? ` ${mounted.options.includes('ro') ? 'read-only' : 'read-write'}` : ` from ${mounted.source}`}, which differs from this request`);
    }
    await fs.mkdir(path.dirname(target), { recursive: true });
    if (capability.accessType === 'block') {
      // The target of a block volume is a file the device node is bound onto; an empty
      // directory in its place (some COs and csi-sanity make one) is replaced by the file.
      const stat = await fs.stat(target).catch(() => undefined);
      if (stat?.isDirectory()) await fs.rmdir(target);
      await (await fs.open(target, 'a')).close();
      await bindMount(attachment.device, target, readOnly);
      return;
    }
    await fs.mkdir(target, { recursive: true });
    await bindMount(stagingPath, target, readOnly);
  }

  /** What is wrong with a volume on this node, as VolumeHealth entries; none when all is well. */
  async function healthOf(info: VolumeInfo, publishPath: string): Promise<VolumeHealthEntry[]> {
    return [...restoreHealth(info), ...(await attachmentHealth(info, publishPath))];
  }

  async function attachmentHealth(info: VolumeInfo, publishPath: string): Promise<VolumeHealthEntry[]> {
    const attachment = await attacher.find(info.name);
    if (!attachment) {
      return publishPath ? [{ status: 'INACCESSIBLE', reason: 'NotStaged', message: `volume ${info.name} is not attached on this node` }] : [];
    }
    const problem = await attacher.problem(attachment);
    if (problem) return [{ status: 'INACCESSIBLE', reason: 'AttachmentBroken', message: `${problem}; unpublish, unstage and stage the volume again` }];
    const staged = await readStage(info.name);
    if (staged?.accessType === 'mount' && !staged.readOnly) {
      const mounted = await mountAt(staged.stagingPath);
      // A filesystem that met I/O errors (ext4 errors=remount-ro) turns itself read-only.
      if (mounted && mounted.options.includes('ro')) {
        return [{ status: 'DEGRADED', reason: 'FilesystemReadOnly', message: `the filesystem of volume ${info.name} at ${staged.stagingPath} is read-only though staged read-write, usually after I/O errors; unpublish, unstage and stage the volume again (staging checks it)` }];
      }
    }
    if (publishPath) {
      const mounted = await mountAt(publishPath);
      if (!mounted || !showsDevice(mounted, attachment.device)) {
        return [{ status: 'INACCESSIBLE', reason: 'NotPublished', message: `volume ${info.name} is not mounted at ${publishPath}` }];
      }
    }
    return [];
  }

  return {
    NodeGetInfo: unary<NodeGetInfoRequest, NodeGetInfoResponse>(
      ctx,
      'NodeGetInfo',
      () => ({ nodeId: ctx.handles.nodeId, maxVolumesPerNode: options.maxVolumes ?? 0, accessibleTopology: ctx.handles.topology() }),
      { readOnly: true },
    ),

    NodeGetCapabilities: unary<NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse>(ctx, 'NodeGetCapabilities', () => ({ capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) }), {
      readOnly: true,
    }),

    NodeStageVolume: unary<NodeStageVolumeRequest, NodeStageVolumeResponse>(ctx, 'NodeStageVolume', async (req, ids) => {
      if (!req.volumeId) throw invalid('volume_id is required');
      if (!req.stagingTargetPath) throw invalid('staging_target_path is required');
      if (!req.volumeCapability) throw invalid('volume_capability is required');
      const info = findVolume(ctx, req.volumeId);
      Object.assign(ids, { volume: info.name, stagingTargetPath: req.stagingTargetPath });
      await locked(info.name, () => stage(req, info));
      return {};
    }),

    NodeUnstageVolume: unary<NodeUnstageVolumeRequest, NodeUnstageVolumeResponse>(ctx, 'NodeUnstageVolume', async (req, ids) => {
      if (!req.volumeId) throw invalid('volume_id is required');
      if (!req.stagingTargetPath) throw invalid('staging_target_path is required');
      const name = volumeNameOf(req.volumeId);
      Object.assign(ids, { volume: name, stagingTargetPath: req.stagingTargetPath });
      await locked(name, async () => {
        const staged = await readStage(name);
        const attachment = await attacher.find(name);
        if (!staged && !attachment && !ctx.engine.has(name)) throw notFound(`volume ${req.volumeId} does not exist`);
        await unmountAll(req.stagingTargetPath);
        await attacher.detach(name);
        await fs.rm(stageFile(name), { force: true });
      });
      return {};
    }),

    NodePublishVolume: unary<NodePublishVolumeRequest, NodePublishVolumeResponse>(ctx, 'NodePublishVolume', async (req, ids) => {
      if (!req.volumeId) throw invalid('volume_id is required');
      if (!req.stagingTargetPath) throw invalid('staging_target_path is required: tidemark volumes are staged first');
      if (!req.targetPath) throw invalid('target_path is required');
      if (!req.volumeCapability) throw invalid('volume_capability is required');
      const info = findVolume(ctx, req.volumeId);
      Object.assign(ids, { volume: info.name, targetPath: req.targetPath, readOnly: req.readonly });
      await locked(info.name, () => publish(req, info));
      return {};
    }),

    NodeUnpublishVolume: unary<NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse>(ctx, 'NodeUnpublishVolume', async (req, ids) => {
      if (!req.volumeId) throw invalid('volume_id is required');
      if (!req.targetPath) throw invalid('target_path is required');
      const name = volumeNameOf(req.volumeId);
      Object.assign(ids, { volume: name, targetPath: req.targetPath });
      await locked(name, async () => {
        const target = path.resolve(req.targetPath);
        const mounted = await mountAt(target);
        // A volume deleted while published still gets its mounts cleaned up.
        if (!mounted && !ctx.engine.has(name) && !(await attacher.find(name))) throw notFound(`volume ${req.volumeId} does not exist`);
        await unmountAll(target);
        // The SP removes what it created at the target: a directory (mount) or a file (block).
        const stat = await fs.lstat(target).catch(() => undefined);
        if (stat?.isDirectory()) await fs.rmdir(target);
        else if (stat) await fs.unlink(target);
      });
      return {};
    }),

    NodeGetVolumeStats: unary<NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse>(
      ctx,
      'NodeGetVolumeStats',
      async (req, ids) => {
        if (!req.volumeId) throw invalid('volume_id is required');
        if (!req.volumePath) throw invalid('volume_path is required');
        const info = findVolume(ctx, req.volumeId);
        Object.assign(ids, { volume: info.name, volumePath: req.volumePath });
        const attachment = await attacher.find(info.name);
        const mounted = await mountAt(req.volumePath);
        if (!attachment || !mounted || !showsDevice(mounted, attachment.device)) {
          throw notFound(`volume ${info.name} is not published or staged at ${req.volumePath}`);
        }
        const stat = await fs.stat(req.volumePath);
        if (!stat.isDirectory()) {
          const total = await deviceSize(attachment.device).catch(() => attachment.size);
          return { usage: [{ unit: 'BYTES', total, used: 0, available: 0 }] };
        }
        const usage = await filesystemUsage(req.volumePath);
        return {
          usage: [
            { unit: 'BYTES', total: usage.totalBytes, used: usage.usedBytes, available: usage.availableBytes },
            { unit: 'INODES', total: usage.totalInodes, used: usage.usedInodes, available: usage.freeInodes },
          ],
        };
      },
      { readOnly: true },
    ),

    NodeGetVolumeHealth: unary<NodeGetVolumeHealthRequest, NodeGetVolumeHealthResponse>(
      ctx,
      'NodeGetVolumeHealth',
      async (req, ids) => {
        if (!req.volumeId) throw invalid('volume_id is required');
        const info = findVolume(ctx, req.volumeId);
        Object.assign(ids, { volume: info.name });
        return { volumeHealth: { volumeId: req.volumeId, healthStatuses: await healthOf(info, req.volumePublishPath) } };
      },
      { readOnly: true },
    ),

    NodeGetStorageHealth: unary<NodeGetStorageHealthRequest, NodeGetStorageHealthResponse>(
      ctx,
      'NodeGetStorageHealth',
      async () => {
        // The node's storage is the store directory and the NBD server attachments use.
        const problems: StorageBackendHealth[] = [];
        const writable = await fs.access(ctx.engine.store, fs.constants.W_OK).then(() => true, () => false);
        if (!writable) problems.push({ status: 'STORAGE_UNREACHABLE', reason: 'StoreNotWritable', message: `the store ${ctx.engine.store} is not writable` });
        const socket = await fs.stat(options.nbdSocket).catch(() => undefined);
        if (!socket?.isSocket()) problems.push({ status: 'STORAGE_UNREACHABLE', reason: 'NbdServerDown', message: `nothing serves NBD at ${options.nbdSocket}` });
        return { backendHealth: problems };
      },
      { readOnly: true },
    ),

    NodeExpandVolume: unary<NodeExpandVolumeRequest, NodeExpandVolumeResponse>(ctx, 'NodeExpandVolume', async (req, ids) => {
      if (!req.volumeId) throw invalid('volume_id is required');
      const info = findVolume(ctx, req.volumeId);
      if (!req.volumePath) throw invalid('volume_path is required');
      Object.assign(ids, { volume: info.name, volumePath: req.volumePath });
      if (req.volumeCapability) checkCapability(req.volumeCapability);
      return locked(info.name, async () => {
        const attachment = await attacher.find(info.name);
        const mounted = await mountAt(req.volumePath);
        if (!attachment || !mounted || !showsDevice(mounted, attachment.device)) {
          throw notFound(`volume ${info.name} is not published or staged at ${req.volumePath}`);
        }
        let size = await deviceSize(attachment.device);
        const required = Number(req.capacityRange?.requiredBytes ?? 0);
        if (required > info.size) throw outOfRange(`volume ${info.name} is ${info.size} bytes, less than the ${required} asked for; expand it through the controller first`);
        // A kernel device is told the new size over netlink; it then grows in place.
        if (size < info.size && (await attacher.resize(info.name, info.size))) size = await deviceSize(attachment.device);
        if (size < Math.max(required, info.size)) {
          // nbdfuse learns the export's size when it connects and cannot be told of a
          // change, so the device grows when the volume is next staged (OFFLINE expansion).
          throw failedPrecondition(
            `volume ${info.name} is ${info.size} bytes but its device ${attachment.device} still has ${size}: a connected NBD client cannot grow; unpublish and unstage the volume, and it is staged at the new size`,
          );
        }
        const stat = await fs.stat(req.volumePath);
        if (stat.isDirectory()) {
          const staged = await readStage(info.name);
          await growFilesystem(staged?.fsType ?? mounted.fsType, attachment.device, req.volumePath);
        }
        ctx.logger.info('volume expanded on node', { volume: info.name, device: attachment.device, bytes: size });
        return { capacityBytes: size };
      });
    }),
  } satisfies NodeHandlers;
}
