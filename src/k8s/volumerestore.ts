import type { V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { DRIVER_NAME } from '../csi/index.js';
import type { RestoreProgress, RestoreRequest, RestoreResult, RestoreSource } from '../engine/index.js';
import { isTidemarkError, type TidemarkError } from '../util/errors.js';
import { lookupClaim, type TidemarkClaim } from './claims.js';
import { setCondition } from './conditions.js';
import type { ReconcilerContext } from './context.js';
import { apiMessage, statusCode } from './kube.js';
import type { Outcome } from './queue.js';
import { markerNameFor } from './recoverypoint.js';
import {
  RECOVERY_POINTS,
  VOLUME_RESTORES,
  VOLUME_SNAPSHOTS,
  VOLUME_SNAPSHOT_CONTENTS,
  describeSource,
  parseRecoveryPoint,
  parseVolumeRestore as parseVolumeRestoreObject,
  type VolumeRestore,
  type VolumeRestorePhase,
  type VolumeRestoreStatus,
} from './resources.js';
import { writeStatus } from './status.js';

/** Keeps a VolumeRestore from vanishing while its restore runs. */
export const RESTORE_FINALIZER = 'tidemark.dev/restore-in-progress';
/** On a claim made by a restore, names the VolumeRestore (by uid) that made it. */
export const RESTORED_BY = 'tidemark.dev/restored-by';
export const SELECTED_NODE = 'volume.kubernetes.io/selected-node';
const MANAGED_BY = 'snapshot.storage.kubernetes.io/managed-by';

/** How often a running restore writes its progress to the status. */
const PROGRESS_INTERVAL_MS = 2000;
/** How often a restore waiting on something outside it (pods, a snapshot, a binding) looks again. */
const WAIT_MS = 3000;

/**
 * Names derived from the VolumeRestore's uid: a daemon that restarts part-way finds what it
 * made before instead of making it again. The done-marker is recorded in the restored
 * volume's journal once the restore has returned, so its presence, and nothing else, says an
 * in-place restore completed.
 */
export const doneMarkerFor = (uid: string) => `vrs-${uid}`;
const stagingNameFor = (uid: string) => `tidemark-restore-${uid}`;

class RestoreFailure extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** A wait on something outside the restore, with the phase and message to show meanwhile. */
class Wait extends Error {
  constructor(
    readonly phase: VolumeRestorePhase,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Where the data comes from, once the source object has been followed to the engine. */
type ResolvedSource =
  | { kind: 'engine'; source: RestoreSource; pointTime?: string; description: string }
  | { kind: 'volumeSnapshot'; name: string; description: string; point?: { sequence?: string; time?: string } };

export async function reconcileVolumeRestore(ctx: ReconcilerContext, namespace: string, name: string): Promise<Outcome | void> {
  const raw = await ctx.kube.get(VOLUME_RESTORES, namespace, name);
  if (raw === undefined) return;
  const parsed = parseVolumeRestore(raw);
  if (!parsed) return;
  let restore = parsed;
  const phase = restore.status.phase;
  if (phase === 'Succeeded' || phase === 'Failed') {
    await dropFinalizer(ctx, restore);
    return;
  }
  const lookup = await lookupClaim(ctx.kube, namespace, restore.spec.claim);
  if (!lookup.ok) {
    await dropFinalizer(ctx, restore);
    return fail(ctx, restore, lookup.problem.reason, lookup.problem.message);
  }
  const claim = lookup.value;
  if (claim.node !== ctx.node) return;
  if (restore.metadata.deletionTimestamp) {
    // Deleted before its restore started (one that runs holds this reconcile until it ends).
    await dropFinalizer(ctx, restore);
    return;
  }
  if (!restore.metadata.finalizers.includes(RESTORE_FINALIZER)) {
    await ctx.kube.setFinalizers(VOLUME_RESTORES, restore.metadata, [...restore.metadata.finalizers, RESTORE_FINALIZER]);
    return { requeueAfterMs: 0 };
  }
  if (phase === undefined) restore = await setPhase(ctx, restore, 'Pending', 'Accepted', `restoring ${claim.claim} from ${describeSource(restore.spec.source)}`);

  try {
    if (!ctx.engine.has(claim.volume)) throw new RestoreFailure('VolumeNotFound', `volume ${claim.volume} of claim ${claim.claim} does not exist on node ${ctx.node}`);
    const source = await resolveSource(ctx, restore, claim);
    if (restore.spec.newClaimName) return await restoreIntoNewClaim(ctx, restore, claim, source);
    return await restoreInPlace(ctx, restore, claim, source);
  } catch (err) {
    if (err instanceof Wait) {
      await setPhase(ctx, restore, err.phase, err.reason, err.message);
      return { requeueAfterMs: WAIT_MS };
    }
    if (err instanceof RestoreFailure) return fail(ctx, restore, err.reason, err.message);
    if (isTidemarkError(err)) {
      const reason = reasonFor(err);
      if (reason) return fail(ctx, restore, reason, err.message);
    }
    throw err;
  }
}

function parseVolumeRestore(raw: unknown): VolumeRestore | undefined {
  const parsed = parseVolumeRestoreObject(raw);
  return parsed.ok ? parsed.value : undefined;
}

/** Engine errors that end a restore, with their condition reason; others are retried. */
function reasonFor(err: TidemarkError): string | undefined {
  switch (err.code) {
    case 'EXPIRED':
      return 'PointExpired';
    case 'NOT_FOUND':
      return 'SourceNotFound';
    case 'OUT_OF_RANGE':
      return 'AreaOutsideVolume';
    case 'INVALID_ARGUMENT':
      return 'InvalidRequest';
    case 'ALREADY_EXISTS':
      return 'AlreadyExists';
    case 'INTERNAL':
      return 'RestoreFailed';
    default:
      return undefined;
  }
}

async function resolveSource(ctx: ReconcilerContext, restore: VolumeRestore, claim: TidemarkClaim): Promise<ResolvedSource> {
  const { namespace } = restore.metadata;
  const source = restore.spec.source;
  if ('time' in source) {
    return { kind: 'engine', source: { time: new Date(source.time) }, pointTime: new Date(source.time).toISOString(), description: `time ${source.time}` };
  }
  if ('recoveryPointName' in source) {
    const raw = await ctx.kube.get(RECOVERY_POINTS, namespace, source.recoveryPointName);
    if (raw === undefined) throw new RestoreFailure('RecoveryPointNotFound', `RecoveryPoint ${namespace}/${source.recoveryPointName} does not exist`);
    const parsed = parseRecoveryPoint(raw);
    if (!parsed.ok) throw new RestoreFailure('RecoveryPointNotFound', `RecoveryPoint ${source.recoveryPointName} is malformed: ${parsed.reason}`);
    const point = parsed.value;
    const phase = point.status.phase;
    if (phase === 'Expired') throw new RestoreFailure('PointExpired', `RecoveryPoint ${point.metadata.name} has expired: ${point.status.message ?? 'its journal was freed'}`);
    if (phase === 'Failed') throw new RestoreFailure('RecoveryPointFailed', `RecoveryPoint ${point.metadata.name} failed: ${point.status.message ?? ''}`);
    if (phase !== 'Recorded') throw new Wait('Pending', 'WaitingForRecoveryPoint', `waiting for RecoveryPoint ${point.metadata.name} to be recorded`);
    const marker = (point.status.markers ?? []).find((m) => m.claim === claim.claim);
    if (!marker || marker.volumeHandle !== claim.volumeHandle) {
      throw new RestoreFailure('ClaimNotInRecoveryPoint', `RecoveryPoint ${point.metadata.name} has no marker for claim ${claim.claim} (it covers ${(point.status.markers ?? []).map((m) => m.claim).join(', ') || 'no claims'})`);
    }
    return {
      kind: 'engine',
      source: { marker: marker.marker || markerNameFor(point.metadata.uid) },
      ...(point.status.recordedAt ? { pointTime: point.status.recordedAt } : {}),
      description: `RecoveryPoint ${point.metadata.name}`,
    };
  }
  const snapshotName = source.volumeSnapshotName;
  const snapshot = (await ctx.kube.get(VOLUME_SNAPSHOTS, namespace, snapshotName)) as
    | { status?: { boundVolumeSnapshotContentName?: string; readyToUse?: boolean; creationTime?: string; error?: { message?: string } } }
    | undefined;
  if (!snapshot) throw new RestoreFailure('SnapshotNotFound', `VolumeSnapshot ${namespace}/${snapshotName} does not exist`);
  const contentName = snapshot.status?.boundVolumeSnapshotContentName;
  if (!contentName || snapshot.status?.readyToUse !== true) {
    const why = snapshot.status?.error?.message ? `: ${snapshot.status.error.message}` : '';
    throw new Wait('Pending', 'WaitingForSnapshot', `waiting for VolumeSnapshot ${snapshotName} to be ready to use${why}`);
  }
  const content = (await ctx.kube.get(VOLUME_SNAPSHOT_CONTENTS, undefined, contentName)) as { spec?: { driver?: string }; status?: { snapshotHandle?: string } } | undefined;
  const handle = content?.status?.snapshotHandle;
  if (!content || !handle) throw new Wait('Pending', 'WaitingForSnapshot', `waiting for VolumeSnapshotContent ${contentName} to report its snapshot handle`);
  if (content.spec?.driver !== DRIVER_NAME) throw new RestoreFailure('NotTidemarkSnapshot', `VolumeSnapshot ${snapshotName} was taken by ${content.spec?.driver ?? 'an unknown driver'}, not ${DRIVER_NAME}`);
  const [node, volume, engineSnapshot] = handle.split(':');
  if (restore.spec.newClaimName) {
    // The new claim is provisioned from the VolumeSnapshot itself; the engine only tells which
    // journal point it holds, when the snapshot lives here.
    const sequence = node === ctx.node && volume && ctx.engine.has(volume) ? ctx.engine.listSnapshots(volume).find((s) => s.name === engineSnapshot)?.sequence : undefined;
    const time = snapshot.status?.creationTime;
    return {
      kind: 'volumeSnapshot',
      name: snapshotName,
      description: `VolumeSnapshot ${snapshotName}`,
      point: { ...(sequence !== undefined ? { sequence: String(sequence) } : {}), ...(time ? { time } : {}) },
    };
  }
  if (volume !== claim.volume || node !== claim.node || !engineSnapshot) {
    throw new RestoreFailure(
      'SnapshotOfAnotherVolume',
      `VolumeSnapshot ${snapshotName} is of volume ${volume ?? '?'} on node ${node ?? '?'}, not of claim ${claim.claim} (${claim.volumeHandle}); restore it into a new claim with newClaimName, or use a PVC dataSource`,
    );
  }
  return { kind: 'engine', source: { snapshot: engineSnapshot }, ...(snapshot.status?.creationTime ? { pointTime: snapshot.status.creationTime } : {}), description: `VolumeSnapshot ${snapshotName}` };
}

// ---- in place ------------------------------------------------------------------------------

async function restoreInPlace(ctx: ReconcilerContext, restore: VolumeRestore, claim: TidemarkClaim, source: ResolvedSource): Promise<Outcome | void> {
  if (source.kind !== 'engine') throw new RestoreFailure('InvalidRequest', 'an in-place restore needs a source on the claim\'s own volume');
  const done = doneMarkerFor(restore.metadata.uid);
  const already = ctx.engine.listMarkers(claim.volume).find((m) => m.name === done);
  if (already) {
    // The restore finished before a restart could record it here: report, never run it again.
    return succeed(ctx, restore, {
      bytesTotal: restore.status.bytesTotal ?? 0,
      bytesRestored: restore.status.bytesTotal ?? 0,
      restoredTo: restore.status.restoredTo ?? { sequence: String(already.sequence) },
      method: restore.status.method ?? 'unknown',
      message: `restored ${claim.claim} from ${source.description} (completed before the daemon restarted)`,
    });
  }
  const users = await podsUsing(ctx, claim);
  if (users.length > 0) {
    throw new Wait('WaitingForDetach', 'ClaimInUse', `claim ${claim.claim} is used by pod${users.length > 1 ? 's' : ''} ${users.join(', ')} on node ${ctx.node}; an in-place restore starts once no pod uses it`);
  }
  const holders = ctx.engine.volumeInfo(claim.volume).holders;
  if (holders.length > 0) {
    throw new Wait('WaitingForDetach', 'VolumeAttached', `volume ${claim.volume} of claim ${claim.claim} is still attached (${holders.join(', ')}); waiting for it to be released`);
  }
  const request: RestoreRequest = { volume: claim.volume, source: source.source, ...(restore.spec.areas ? { ranges: restore.spec.areas } : {}) };
  const result = await runRestore(ctx, restore, request, source.description);
  await ctx.engine.createMarker(done, [claim.volume]);
  const restored = await ctx.kube.get(VOLUME_RESTORES, restore.metadata.namespace, restore.metadata.name);
  const latest = restored === undefined ? undefined : parseVolumeRestore(restored);
  if (!latest) return;
  return succeed(ctx, latest, {
    bytesTotal: result.bytesTotal,
    bytesRestored: result.bytesRestored,
    restoredTo: { sequence: String(result.pointSequence), ...(source.pointTime ? { time: source.pointTime } : {}) },
    method: result.method,
    message: `restored ${claim.claim} from ${source.description}: ${result.bytesRestored} of ${result.bytesTotal} bytes rewritten in ${result.durationMs} ms`,
  });
}

/** Pods on this node, not yet terminated, that name the claim among their volumes. */
async function podsUsing(ctx: ReconcilerContext, claim: TidemarkClaim): Promise<string[]> {
  const pods = await ctx.kube.podsOnNode(claim.namespace, ctx.node);
  return pods.filter((pod) => !terminated(pod) && (pod.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === claim.claim)).map((pod) => pod.metadata?.name ?? '?');
}

function terminated(pod: V1Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}

/**
 * Runs the engine restore with the phase at Restoring, and writes progress to the status
 * every few seconds. Progress writes are best effort and one at a time; the final status is
 * written by the caller.
 */
async function runRestore(ctx: ReconcilerContext, restore: VolumeRestore, request: RestoreRequest, description: string): Promise<RestoreResult> {
  const startedAt = restore.status.startedAt ?? ctx.now().toISOString();
  let current = await writeStatus(ctx, VOLUME_RESTORES, restore, {
    ...restore.status,
    phase: 'Restoring',
    message: `restoring from ${description}`,
    observedGeneration: restore.metadata.generation,
    node: ctx.node,
    startedAt,
    conditions: progressing(ctx, restore, 'True', 'Restoring', `restoring from ${description}`),
  });
  let lastWrite = 0;
  let writing: Promise<void> = Promise.resolve();
  const onProgress = (progress: RestoreProgress) => {
    const now = Date.now();
    if (now - lastWrite < PROGRESS_INTERVAL_MS) return;
    lastWrite = now;
    writing = writing.then(async () => {
      try {
        current = await writeStatus(ctx, VOLUME_RESTORES, current, { ...current.status, ...progressFields(progress) });
      } catch (err) {
        ctx.logger.warn('could not write restore progress', { namespace: restore.metadata.namespace, object: restore.metadata.name, error: apiMessage(err) });
      }
    });
  };
  ctx.logger.info('restore starting', { namespace: restore.metadata.namespace, object: restore.metadata.name, uid: restore.metadata.uid, volume: request.volume, target: request.target, source: description });
  try {
    return await ctx.engine.restore(request, onProgress);
  } finally {
    await writing;
  }
}

function progressFields(progress: RestoreProgress): Pick<VolumeRestoreStatus, 'bytesTotal' | 'bytesRestored' | 'progress'> {
  const percent = progress.bytesTotal > 0 ? Math.floor((progress.bytesRestored / progress.bytesTotal) * 100) : 100;
  return { bytesTotal: progress.bytesTotal, bytesRestored: progress.bytesRestored, progress: `${percent}%` };
}

// ---- into a new claim -----------------------------------------------------------------------

/**
 * The point is made a snapshot on this node and handed to Kubernetes as a pre-provisioned
 * VolumeSnapshotContent and VolumeSnapshot; the new claim names that snapshot as its data
 * source, so csi-provisioner creates it through the ordinary CreateVolume path. A
 * VolumeSnapshot source skips the first step: the new claim names it directly.
 */
async function restoreIntoNewClaim(ctx: ReconcilerContext, restore: VolumeRestore, claim: TidemarkClaim, source: ResolvedSource): Promise<Outcome | void> {
  const newName = restore.spec.newClaimName!;
  const { namespace, uid } = restore.metadata;
  const existing = await ctx.kube.getClaim(namespace, newName);
  if (existing && existing.metadata?.annotations?.[RESTORED_BY] !== uid) {
    throw new RestoreFailure('NewClaimExists', `PersistentVolumeClaim ${namespace}/${newName} already exists; choose another newClaimName or delete it`);
  }
  let snapshotName: string;
  let restoredTo = restore.status.restoredTo;
  let progress: RestoreProgress = { bytesTotal: restore.status.bytesTotal ?? 0, bytesRestored: restore.status.bytesRestored ?? 0 };
  let method = restore.status.method ?? 'clone';
  if (source.kind === 'volumeSnapshot') {
    snapshotName = source.name;
  } else {
    snapshotName = stagingNameFor(uid);
    if (!existing) {
      const staged = await stagePoint(ctx, restore, claim, source);
      if (staged) {
        restoredTo = staged.restoredTo;
        progress = staged.progress;
        method = staged.method;
      }
      await exposeSnapshot(ctx, restore, claim, snapshotName);
    }
  }
  let current = restore;
  if (!existing) {
    await ctx.kube.createClaim(namespace, newClaimBody(restore, claim, snapshotName)).catch((err: unknown) => {
      if (statusCode(err) === 409) throw new RestoreFailure('NewClaimExists', `PersistentVolumeClaim ${namespace}/${newName} already exists; choose another newClaimName or delete it`);
      throw err;
    });
    ctx.logger.info('restore claim created', { namespace, object: restore.metadata.name, uid, claim: newName, snapshot: snapshotName });
  }
  const made = existing ?? (await ctx.kube.getClaim(namespace, newName));
  if (made?.status?.phase !== 'Bound') {
    current = await writeStatus(ctx, VOLUME_RESTORES, current, {
      ...current.status,
      phase: 'Restoring',
      message: `waiting for the new claim ${newName} to be provisioned from VolumeSnapshot ${snapshotName}`,
      observedGeneration: restore.metadata.generation,
      node: ctx.node,
      startedAt: current.status.startedAt ?? ctx.now().toISOString(),
      newClaimName: newName,
      volumeSnapshotName: snapshotName,
      method,
      ...(restoredTo ? { restoredTo } : {}),
      ...(progress.bytesTotal > 0 ? progressFields(progress) : {}),
      conditions: progressing(ctx, current, 'True', 'ProvisioningClaim', `provisioning ${newName} from VolumeSnapshot ${snapshotName}`),
    });
    return { requeueAfterMs: WAIT_MS };
  }
  if (source.kind === 'engine') await cleanUpStaging(ctx, restore);
  const size = Number(claim.pv.spec?.capacity?.storage ? parseQuantity(claim.pv.spec.capacity.storage) : progress.bytesTotal);
  return succeed(ctx, current, {
    bytesTotal: progress.bytesTotal || size,
    bytesRestored: progress.bytesRestored || size,
    restoredTo: restoredTo ?? (source.kind === 'volumeSnapshot' ? (source.point ?? {}) : source.pointTime ? { time: source.pointTime } : {}),
    method,
    message: `restored ${claim.claim} from ${source.description} into the new claim ${newName}`,
    newClaimName: newName,
  });
}

/** Rebuilds the point into a hidden engine volume and snapshots it, once. */
async function stagePoint(
  ctx: ReconcilerContext,
  restore: VolumeRestore,
  claim: TidemarkClaim,
  source: Extract<ResolvedSource, { kind: 'engine' }>,
): Promise<{ restoredTo: { sequence?: string; time?: string }; progress: RestoreProgress; method: string } | undefined> {
  const staging = stagingNameFor(restore.metadata.uid);
  if (ctx.engine.has(staging) && ctx.engine.listSnapshots(staging).some((s) => s.name === staging)) return undefined;
  if (ctx.engine.has(staging)) await ctx.engine.deleteVolume(staging, { force: true });
  const result = await runRestore(ctx, restore, { volume: claim.volume, source: source.source, target: staging }, source.description);
  await ctx.engine.createSnapshot(staging, staging);
  return {
    restoredTo: { sequence: String(result.pointSequence), ...(source.pointTime ? { time: source.pointTime } : {}) },
    progress: { bytesTotal: result.bytesTotal, bytesRestored: result.bytesRestored },
    method: result.method,
  };
}

/** A pre-provisioned VolumeSnapshotContent and its VolumeSnapshot for the staged point. */
async function exposeSnapshot(ctx: ReconcilerContext, restore: VolumeRestore, claim: TidemarkClaim, name: string): Promise<void> {
  const { namespace, uid } = restore.metadata;
  const labels = { [MANAGED_BY]: ctx.node, 'app.kubernetes.io/managed-by': 'tidemark', [RESTORED_BY]: uid };
  const ignoreExisting = (err: unknown) => {
    if (statusCode(err) !== 409) throw err;
  };
  await ctx.kube
    .create(VOLUME_SNAPSHOT_CONTENTS, undefined, {
      apiVersion: 'snapshot.storage.k8s.io/v1',
      kind: 'VolumeSnapshotContent',
      metadata: { name, labels },
      spec: {
        deletionPolicy: 'Delete',
        driver: DRIVER_NAME,
        source: { snapshotHandle: `${ctx.node}:${name}:${name}` },
        sourceVolumeMode: claim.volumeMode,
        volumeSnapshotRef: { name, namespace },
      },
    })
    .catch(ignoreExisting);
  await ctx.kube
    .create(VOLUME_SNAPSHOTS, namespace, {
      apiVersion: 'snapshot.storage.k8s.io/v1',
      kind: 'VolumeSnapshot',
      metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'tidemark', [RESTORED_BY]: uid } },
      spec: { source: { volumeSnapshotContentName: name } },
    })
    .catch(ignoreExisting);
}

function newClaimBody(restore: VolumeRestore, claim: TidemarkClaim, snapshotName: string): V1PersistentVolumeClaim {
  const source = claim.pvc;
  const storage = claim.pv.spec?.capacity?.storage ?? source.spec?.resources?.requests?.storage;
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: restore.spec.newClaimName!,
      namespace: restore.metadata.namespace,
      annotations: { [RESTORED_BY]: restore.metadata.uid, [SELECTED_NODE]: claim.node },
      labels: { 'app.kubernetes.io/managed-by': 'tidemark' },
    },
    spec: {
      ...(source.spec?.storageClassName !== undefined ? { storageClassName: source.spec.storageClassName } : {}),
      accessModes: source.spec?.accessModes ?? ['ReadWriteOnce'],
      volumeMode: claim.volumeMode,
      resources: { requests: storage ? { storage } : {} },
      dataSource: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: snapshotName },
    },
  };
}

/** Once the new claim is bound the staged point has served its purpose. */
async function cleanUpStaging(ctx: ReconcilerContext, restore: VolumeRestore): Promise<void> {
  const name = stagingNameFor(restore.metadata.uid);
  await ctx.kube.delete(VOLUME_SNAPSHOTS, restore.metadata.namespace, name);
  if (ctx.engine.has(name)) await ctx.engine.deleteVolume(name, { force: true });
}

// ---- status ---------------------------------------------------------------------------------

function progressing(ctx: ReconcilerContext, restore: VolumeRestore, status: 'True' | 'False', reason: string, message: string) {
  return setCondition(restore.status.conditions, { type: 'Progressing', status, reason, message, observedGeneration: restore.metadata.generation }, ctx.now());
}

async function setPhase(ctx: ReconcilerContext, restore: VolumeRestore, phase: VolumeRestorePhase, reason: string, message: string): Promise<VolumeRestore> {
  return writeStatus(
    ctx,
    VOLUME_RESTORES,
    restore,
    {
      ...restore.status,
      phase,
      message,
      observedGeneration: restore.metadata.generation,
      node: ctx.node,
      conditions: progressing(ctx, restore, 'True', reason, message),
    },
    { type: phase === 'WaitingForDetach' ? 'Warning' : 'Normal', reason },
  );
}

async function succeed(
  ctx: ReconcilerContext,
  restore: VolumeRestore,
  outcome: { bytesTotal: number; bytesRestored: number; restoredTo: { sequence?: string; time?: string }; method: string; message: string; newClaimName?: string },
): Promise<Outcome> {
  let conditions = progressing(ctx, restore, 'False', 'Succeeded', outcome.message);
  conditions = setCondition(conditions, { type: 'Succeeded', status: 'True', reason: 'Restored', message: outcome.message, observedGeneration: restore.metadata.generation }, ctx.now());
  const status: VolumeRestoreStatus = {
    ...restore.status,
    phase: 'Succeeded',
    message: outcome.message,
    observedGeneration: restore.metadata.generation,
    node: ctx.node,
    ...progressFields({ bytesTotal: outcome.bytesTotal, bytesRestored: outcome.bytesRestored }),
    startedAt: restore.status.startedAt ?? ctx.now().toISOString(),
    completedAt: ctx.now().toISOString(),
    method: outcome.method,
    restoredTo: outcome.restoredTo,
    ...(outcome.newClaimName ? { newClaimName: outcome.newClaimName } : {}),
    conditions,
  };
  await writeStatus(ctx, VOLUME_RESTORES, restore, status, { type: 'Normal', reason: 'Succeeded' });
  // The finalizer goes on the next pass, from the object as the status write left it.
  return { requeueAfterMs: 0 };
}

async function fail(ctx: ReconcilerContext, restore: VolumeRestore, reason: string, message: string): Promise<Outcome> {
  let conditions = progressing(ctx, restore, 'False', reason, message);
  conditions = setCondition(conditions, { type: 'Succeeded', status: 'False', reason, message, observedGeneration: restore.metadata.generation }, ctx.now());
  await writeStatus(
    ctx,
    VOLUME_RESTORES,
    restore,
    { ...restore.status, phase: 'Failed', message, observedGeneration: restore.metadata.generation, completedAt: ctx.now().toISOString(), conditions },
    { type: 'Warning', reason },
  );
  return { requeueAfterMs: 0 };
}

async function dropFinalizer(ctx: ReconcilerContext, restore: VolumeRestore): Promise<void> {
  if (!restore.metadata.finalizers.includes(RESTORE_FINALIZER)) return;
  await ctx.kube.setFinalizers(
    VOLUME_RESTORES,
    restore.metadata,
    restore.metadata.finalizers.filter((f) => f !== RESTORE_FINALIZER),
  );
}

/** Bytes of a Kubernetes quantity such as "1Gi" or "1073741824". */
export function parseQuantity(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/.exec(text.trim());
  if (!match) return NaN;
  const factors: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 };
  return Math.round(Number(match[1]) * (match[2] ? factors[match[2]]! : 1));
}
