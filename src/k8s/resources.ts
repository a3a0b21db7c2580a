/**
 * The tidemark custom resources as the reconcilers see them. Objects arrive from the API
 * server as JSON; `parseRecoveryPoint` and `parseVolumeRestore` are the boundary where that
 * JSON becomes these types. Admission (the CRD schema and its CEL rules, in
 * charts/tidemark/crds/) has already refused bad specs, so a parse failure here means a
 * schema drift, reported on the object rather than thrown away.
 */

export const GROUP = 'tidemark.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  generation: number;
  resourceVersion: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers: string[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export type Consistency = 'Crash' | 'Filesystem';

export interface RecoveryPointSpec {
  claims: string[];
  consistency: Consistency;
}

export type RecoveryPointPhase = 'Pending' | 'Recorded' | 'Failed' | 'Expired';

export interface RecordedMarker {
  claim: string;
  volumeHandle: string;
  marker: string;
  sequence: string;
}

export interface RecoveryPointStatus {
  phase?: RecoveryPointPhase;
  message?: string;
  observedGeneration?: number;
  recordedAt?: string;
  expiresAfter?: string;
  retention?: string;
  node?: string;
  markers?: RecordedMarker[];
  conditions?: Condition[];
}

export interface RecoveryPoint {
  apiVersion: string;
  kind: 'RecoveryPoint';
  metadata: ObjectMeta;
  spec: RecoveryPointSpec;
  status: RecoveryPointStatus;
}

export type RestoreSourceSpec = { volumeSnapshotName: string } | { recoveryPointName: string } | { time: string };

export interface Area {
  offset: number;
  length: number;
}

export interface VolumeRestoreSpec {
  claim: string;
  source: RestoreSourceSpec;
  areas?: Area[];
  newClaimName?: string;
}

export type VolumeRestorePhase = 'Pending' | 'WaitingForDetach' | 'Restoring' | 'Succeeded' | 'Failed';

export interface VolumeRestoreStatus {
  phase?: VolumeRestorePhase;
  message?: string;
  observedGeneration?: number;
  node?: string;
  bytesTotal?: number;
  bytesRestored?: number;
  progress?: string;
  startedAt?: string;
  completedAt?: string;
  method?: string;
  restoredTo?: { sequence?: string; time?: string };
  newClaimName?: string;
  volumeSnapshotName?: string;
  conditions?: Condition[];
}

export interface VolumeRestore {
  apiVersion: string;
  kind: 'VolumeRestore';
  metadata: ObjectMeta;
  spec: VolumeRestoreSpec;
  status: VolumeRestoreStatus;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const num = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);

export function parseMeta(value: unknown): Parsed<ObjectMeta> {
  if (!isObject(value)) return { ok: false, reason: 'metadata is missing' };
  const name = str(value.name);
  const namespace = str(value.namespace);
  const uid = str(value.uid);
  if (!name || !namespace || !uid) return { ok: false, reason: 'metadata lacks name, namespace or uid' };
  const finalizers = Array.isArray(value.finalizers) ? value.finalizers.filter((f): f is string => typeof f === 'string') : [];
  return {
    ok: true,
    value: {
      name,
      namespace,
      uid,
      generation: num(value.generation) ?? 1,
      resourceVersion: str(value.resourceVersion) ?? '',
      ...(str(value.creationTimestamp) ? { creationTimestamp: str(value.creationTimestamp)! } : {}),
      ...(str(value.deletionTimestamp) ? { deletionTimestamp: str(value.deletionTimestamp)! } : {}),
      finalizers,
    },
  };
}

/** Status is ours: we wrote it, so it is taken as it is once it is an object. */
function statusOf<T>(value: unknown): T {
  return (isObject(value) ? value : {}) as T;
}

export function parseRecoveryPoint(value: unknown): Parsed<RecoveryPoint> {
  if (!isObject(value)) return { ok: false, reason: 'not an object' };
  const meta = parseMeta(value.metadata);
  if (!meta.ok) return meta;
  const spec = value.spec;
  if (!isObject(spec) || !Array.isArray(spec.claims) || spec.claims.length === 0 || !spec.claims.every((c) => typeof c === 'string' && c.length > 0)) {
    return { ok: false, reason: 'spec.claims must list at least one PersistentVolumeClaim name' };
  }
  const consistency = spec.consistency ?? 'Crash';
  if (consistency !== 'Crash' && consistency !== 'Filesystem') return { ok: false, reason: `spec.consistency "${String(consistency)}" must be Crash or Filesystem` };
  return {
    ok: true,
    value: {
      apiVersion: API_VERSION,
      kind: 'RecoveryPoint',
      metadata: meta.value,
      spec: { claims: [...new Set(spec.claims as string[])], consistency },
      status: statusOf<RecoveryPointStatus>(value.status),
    },
  };
}

export function parseVolumeRestore(value: unknown): Parsed<VolumeRestore> {
  if (!isObject(value)) return { ok: false, reason: 'not an object' };
  const meta = parseMeta(value.metadata);
  if (!meta.ok) return meta;
  const spec = value.spec;
  if (!isObject(spec) || !str(spec.claim)) return { ok: false, reason: 'spec.claim must name a PersistentVolumeClaim' };
  const source = parseSource(spec.source);
  if (!source.ok) return source;
  let areas: Area[] | undefined;
  if (spec.areas !== undefined) {
    if (!Array.isArray(spec.areas) || spec.areas.length === 0) return { ok: false, reason: 'spec.areas must list at least one area when present' };
    areas = [];
    for (const area of spec.areas) {
      const offset = isObject(area) ? num(area.offset) : undefined;
      const length = isObject(area) ? num(area.length) : undefined;
      if (offset === undefined || length === undefined || offset < 0 || length < 1 || offset % 4096 !== 0 || length % 4096 !== 0) {
        return { ok: false, reason: `area ${JSON.stringify(area)} needs an offset ≥ 0 and a length ≥ 1, both multiples of 4096` };
      }
      areas.push({ offset, length });
    }
  }
  const newClaimName = str(spec.newClaimName);
  return {
    ok: true,
    value: {
      apiVersion: API_VERSION,
      kind: 'VolumeRestore',
      metadata: meta.value,
      spec: { claim: str(spec.claim)!, source: source.value, ...(areas ? { areas } : {}), ...(newClaimName ? { newClaimName } : {}) },
      status: statusOf<VolumeRestoreStatus>(value.status),
    },
  };
}

function parseSource(value: unknown): Parsed<RestoreSourceSpec> {
  if (!isObject(value)) return { ok: false, reason: 'spec.source must name exactly one of volumeSnapshotName, recoveryPointName or time' };
  const given = (['volumeSnapshotName', 'recoveryPointName', 'time'] as const).filter((key) => str(value[key]));
  if (given.length !== 1) return { ok: false, reason: 'spec.source must name exactly one of volumeSnapshotName, recoveryPointName or time' };
  const key = given[0]!;
  const text = str(value[key])!;
  if (key === 'time' && Number.isNaN(Date.parse(text))) return { ok: false, reason: `spec.source.time "${text}" is not an RFC 3339 time` };
  if (key === 'volumeSnapshotName') return { ok: true, value: { volumeSnapshotName: text } };
  if (key === 'recoveryPointName') return { ok: true, value: { recoveryPointName: text } };
  return { ok: true, value: { time: text } };
}

/** "VolumeSnapshot snap-1", "RecoveryPoint before-migration" or "time 2026-…", for messages. */
export function describeSource(source: RestoreSourceSpec): string {
  if ('volumeSnapshotName' in source) return `VolumeSnapshot ${source.volumeSnapshotName}`;
  if ('recoveryPointName' in source) return `RecoveryPoint ${source.recoveryPointName}`;
  return `time ${source.time}`;
}

export const RECOVERY_POINTS = { group: GROUP, version: VERSION, plural: 'recoverypoints', kind: 'RecoveryPoint', namespaced: true } as const;
export const VOLUME_RESTORES = { group: GROUP, version: VERSION, plural: 'volumerestores', kind: 'VolumeRestore', namespaced: true } as const;
export const VOLUME_SNAPSHOTS = { group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshots', kind: 'VolumeSnapshot', namespaced: true } as const;
export const VOLUME_SNAPSHOT_CONTENTS = { group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshotcontents', kind: 'VolumeSnapshotContent', namespaced: false } as const;
