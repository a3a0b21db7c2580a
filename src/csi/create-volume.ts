import type { RestoreRequest, SnapshotInfo, VolumeInfo } from '../engine/index.js';
import { requestedFsTypes, requireSupported } from './capabilities.js';
import { BLOCK_SIZE, fits, newVolumeSize, parseRange, roundUp, type Range } from './capacity.js';
import type { CsiContext } from './context.js';
import { alreadyExists, engineCode, invalid, notFound, outOfRange, resourceExhausted } from './errors.js';
import { engineNameFor, temporarySnapshotName } from './handles.js';
import { snapshotKey, volumeKey } from './inflight.js';
import { findSnapshot } from './lookup.js';
import type { CreateVolumeRequest, CreateVolumeResponse, TopologyRequirement } from './messages.js';
import { DEFAULT_FS_TYPE, PARAM_GRANULARITY, applyRetentionChange, parseMutableParameters, parseVolumeParameters, type FsType, type VolumeParameters } from './params.js';
import type { CallIds } from './rpc.js';
import type { VolumeRecord } from './records.js';
import { volumeMessage } from './views.js';

/** U+0000-U+0008, U+000B, U+000C, U+000E-U+001F, U+007F-U+009F: the spec bans them in names. */
// eslint-disable-next-line no-control-regex
const BANNED_IN_NAMES = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;

export function checkCsiName(name: string, field = 'name'): void {
  if (!name) throw invalid(`${field} is required`);
  if (BANNED_IN_NAMES.test(name)) throw invalid(`${field} contains a control character the CSI spec does not allow`);
}

/**
 * Volumes live on the node that creates them. A requirement whose requisite topologies all
 * name other nodes cannot be met here; preferred topologies are only preferences.
 */
export function checkAccessible(ctx: CsiContext, requirement: TopologyRequirement | null, what: string): void {
  if (!requirement || requirement.requisite.length === 0) return;
  if (requirement.requisite.some((t) => ctx.handles.isThisNode(t))) return;
  const wanted = requirement.requisite.map((t) => JSON.stringify(t.segments)).join(', ');
  throw resourceExhausted(`${what} must be accessible from ${wanted}, but this plugin serves node "${ctx.handles.nodeId}" only`);
}

/** Where a new volume's data comes from. */
type Source = { kind: 'empty' } | { kind: 'snapshot'; id: string; snapshot: SnapshotInfo } | { kind: 'volume'; id: string; volume: VolumeInfo };

function resolveSource(ctx: CsiContext, request: CreateVolumeRequest): Source {
  const source = request.volumeContentSource;
  if (!source || !source.type) return { kind: 'empty' };
  if (source.type === 'snapshot') {
    const id = source.snapshot?.snapshotId ?? '';
    return { kind: 'snapshot', id, snapshot: findSnapshot(ctx, id, 'volume_content_source.snapshot.snapshot_id') };
  }
  const id = source.volume?.volumeId ?? '';
  if (!id) throw invalid('volume_content_source.volume.volume_id is required');
  const parsed = ctx.handles.parseVolumeId(id);
  if (!parsed.ok) throw notFound(parsed.reason);
  if (!ctx.engine.has(parsed.value)) throw notFound(`source volume ${id} does not exist`);
  return { kind: 'volume', id, volume: ctx.engine.volumeInfo(parsed.value) };
}

function sourceRecord(source: Source): VolumeRecord['contentSource'] {
  if (source.kind === 'snapshot') return { snapshotId: source.id };
  if (source.kind === 'volume') return { volumeId: source.id };
  return undefined;
}

const sameSource = (a: VolumeRecord['contentSource'], b: VolumeRecord['contentSource']) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const sameMap = (a: Record<string, string>, b: Record<string, string>) =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

interface Plan {
  csiName: string;
  name: string;
  range: Range;
  fsType: FsType;
  /** Whether the request named a filesystem type (a mount capability or the fsType parameter). */
  fsTypeRequested: boolean;
  params: VolumeParameters;
  mutableCanonical: Record<string, string>;
  retention: ReturnType<typeof applyRetentionChange>;
}

/** Everything CreateVolume checks before it looks at what exists: the request alone. */
function plan(ctx: CsiContext, request: CreateVolumeRequest): Plan {
  checkCsiName(request.name);
  requireSupported(request.volumeCapabilities);
  const params = parseVolumeParameters(request.parameters);
  const mutable = parseMutableParameters(request.mutableParameters);
  const asked = requestedFsTypes(request.volumeCapabilities);
  if (asked.length > 1) throw invalid(`the volume capabilities ask for different filesystem types (${asked.join(', ')})`);
  if (asked[0] && params.fsType && asked[0] !== params.fsType) {
    throw invalid(`the mount capability asks for ${asked[0]} but the fsType parameter says ${params.fsType}`);
  }
  checkAccessible(ctx, request.accessibilityRequirements, `volume "${request.name}"`);
  const fsType = (asked[0] as FsType | undefined) ?? params.fsType ?? DEFAULT_FS_TYPE;
  return {
    csiName: request.name,
    name: engineNameFor(request.name),
    range: parseRange(request.capacityRange),
    fsType,
    fsTypeRequested: asked.length > 0 || params.fsType !== undefined,
    params,
    mutableCanonical: mutable.canonical,
    // Mutable parameters (a VolumeAttributesClass) override the class's own.
    retention: applyRetentionChange(applyRetentionChange({}, params.retention), mutable.retention),
  };
}

/**
 * CreateVolume: an empty volume, a restore of a snapshot, or a clone of a volume. Retries
 * with the same name and a compatible request return the same volume; an incompatible one
 * gets ALREADY_EXISTS. A failure leaves neither a volume nor a record behind.
 */
export async function createVolume(ctx: CsiContext, request: CreateVolumeRequest, ids: CallIds): Promise<CreateVolumeResponse> {
  const p = plan(ctx, request);
  ids.name = p.csiName;
  ids.volume = p.name;
  const source = resolveSource(ctx, request);
  if (source.kind === 'snapshot') ids.sourceSnapshot = source.id;
  if (source.kind === 'volume') ids.sourceVolume = source.id;
  // The source is only read: other restores of it may run at once, its deletion may not.
  const reading =
    source.kind === 'snapshot'
      ? [snapshotKey(source.snapshot.volume, source.snapshot.name), volumeKey(source.snapshot.volume)]
      : source.kind === 'volume'
        ? [volumeKey(source.volume.name)]
        : [];
  return ctx.inflight.run([volumeKey(p.name)], async () => {
    if (ctx.engine.has(p.name)) {
      checkCompatible(ctx, p, source);
      ids.existing = true;
      return { volume: volumeMessage(ctx, ctx.engine.volumeInfo(p.name)) };
    }
    const record: VolumeRecord = {
      version: 1,
      csiName: p.csiName,
      volume: p.name,
      fsType: p.fsType,
      parameters: p.params.canonical,
      mutableParameters: p.mutableCanonical,
      ...(sourceRecord(source) ? { contentSource: sourceRecord(source) } : {}),
      createdAt: new Date().toISOString(),
    };
    await ctx.records.putVolume(record);
    let created = false;
    try {
      if (source.kind === 'empty') {
        await ctx.engine.createVolume(p.name, {
          size: newVolumeSize(p.range),
          blockSize: BLOCK_SIZE,
          ...(p.params.granularity !== undefined ? { granularity: p.params.granularity } : {}),
          retention: p.retention,
        });
        created = true;
      } else {
        created = await populate(ctx, p, source);
      }
      const info = ctx.engine.volumeInfo(p.name);
      ids.size = info.size;
      return { volume: volumeMessage(ctx, info) };
    } catch (err) {
      if (created) {
        await ctx.engine.deleteVolume(p.name, { force: true }).catch((cleanup: unknown) => {
          ctx.logger.error('could not remove a half-made volume', { volume: p.name, error: String(cleanup) });
        });
      }
      if (!ctx.engine.has(p.name)) await ctx.records.deleteVolume(p.name).catch(() => undefined);
      throw err;
    }
  }, reading);
}

/** Builds a volume from a snapshot or another volume; true once the engine volume exists. */
async function populate(ctx: CsiContext, p: Plan, source: Exclude<Source, { kind: 'empty' }>): Promise<boolean> {
  const sourceVolume = source.kind === 'snapshot' ? source.snapshot.volume : source.volume.name;
  const origin = ctx.engine.volumeInfo(sourceVolume);
  // A restore copies the source's layout; the new volume is at least as large as the source
  // volume is now (a snapshot taken before a resize reads zeros past its own end).
  if (p.params.granularity !== undefined && p.params.granularity !== origin.granularity) {
    throw invalid(`a volume made from ${source.kind} ${source.id} keeps its tracking granularity of ${origin.granularity} bytes; drop the ${PARAM_GRANULARITY} parameter or set it to that`);
  }
  if (p.range.limit > 0 && p.range.limit < origin.size) {
    throw outOfRange(`the source holds ${origin.size} bytes; limit_bytes ${p.range.limit} would make the new volume smaller than its source`);
  }
  const size = Math.max(origin.size, roundUp(p.range.required, origin.blockSize));
  if (p.range.limit > 0 && size > p.range.limit) {
    throw outOfRange(`no multiple of the ${origin.blockSize}-byte block size lies between required_bytes ${p.range.required} and limit_bytes ${p.range.limit}`);
  }
  // Size and retention are set while the engine builds the volume out of sight: resizing it
  // afterwards would leave, after a crash in between, a volume a retry finds incompatible.
  const targetOptions = { size, retention: p.retention };
  if (source.kind === 'snapshot') {
    await ctx.engine.restore({ volume: sourceVolume, source: { snapshot: source.snapshot.name }, target: p.name, targetOptions });
  } else {
    await cloneVolume(ctx, sourceVolume, p.name, targetOptions);
  }
  return true;
}

/**
 * A clone is a restore from a snapshot the CSI layer takes for the length of the call: the
 * engine restores into a new volume only from a point in the source's history, and a fresh
 * snapshot is the one point that needs no journal replay. A crash leaves the temporary
 * snapshot behind; CsiServer removes those at start.
 */
async function cloneVolume(ctx: CsiContext, source: string, target: string, targetOptions: RestoreRequest['targetOptions']): Promise<void> {
  const temporary = temporarySnapshotName();
  await ctx.engine.createSnapshot(source, temporary);
  try {
    await ctx.engine.restore({ volume: source, source: { snapshot: temporary }, target, targetOptions });
  } finally {
    await ctx.engine.deleteSnapshot(source, temporary).catch((err: unknown) => {
      if (engineCode(err) !== 'NOT_FOUND') ctx.logger.warn('could not remove a temporary clone snapshot', { volume: source, snapshot: temporary, error: String(err) });
    });
  }
}

/** A retried CreateVolume must ask for what exists; the first difference found is reported. */
function checkCompatible(ctx: CsiContext, p: Plan, source: Source): void {
  const info = ctx.engine.volumeInfo(p.name);
  const record = ctx.records.volume(p.name);
  const problem = (() => {
    if (!fits(info.size, p.range)) return `a size of ${info.size} bytes, outside the requested capacity range`;
    if (p.params.granularity !== undefined && p.params.granularity !== info.granularity) return `a tracking granularity of ${info.granularity} bytes`;
    if (!record) return source.kind === 'empty' ? undefined : 'no record of being created from a content source';
    if (record.csiName !== p.csiName) return `the engine name "${p.name}" already taken by CSI volume "${record.csiName}"`;
    if (p.fsTypeRequested && record.fsType !== p.fsType) return `filesystem type ${record.fsType}`;
    if (!sameMap(record.parameters, p.params.canonical)) return `other parameters (${JSON.stringify(record.parameters)})`;
    if (!sameMap(record.mutableParameters, p.mutableCanonical)) return `other mutable parameters (${JSON.stringify(record.mutableParameters)})`;
    if (!sameSource(record.contentSource, sourceRecord(source))) return `another content source (${JSON.stringify(record.contentSource ?? 'none')})`;
    return undefined;
  })();
  if (problem) throw alreadyExists(`volume "${p.csiName}" already exists with ${problem}; use another name or the same request`);
}
