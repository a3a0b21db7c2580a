import { readStageRecord } from '../csi/index.js';
import { isTidemarkError } from '../util/errors.js';
import { lookupClaim, type ClaimProblem, type TidemarkClaim } from './claims.js';
import { setCondition } from './conditions.js';
import type { ReconcilerContext } from './context.js';
import { withFrozen } from './freeze.js';
import type { Outcome } from './queue.js';
import { RECOVERY_POINTS, parseRecoveryPoint, type RecordedMarker, type RecoveryPoint, type RecoveryPointStatus } from './resources.js';
import { writeStatus } from './status.js';

/**
 * The engine marker of a RecoveryPoint is named after the object's uid, not its name: a
 * retried reconcile or a restarted daemon finds the marker it already recorded instead of
 * recording a second one, and a new object of the same name gets a marker of its own.
 */
export function markerNameFor(uid: string): string {
  return `rp-${uid}`;
}

/** A failure that ends the RecoveryPoint, with the condition reason that names the cause. */
class PointFailure extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Reconciles one RecoveryPoint: records one marker across its claims at one cut, once, and
 * later notices when retention has freed the journal under it.
 */
export async function reconcileRecoveryPoint(ctx: ReconcilerContext, namespace: string, name: string): Promise<Outcome | void> {
  const raw = await ctx.kube.get(RECOVERY_POINTS, namespace, name);
  if (raw === undefined) return;
  const parsed = parseRecoveryPoint(raw);
  if (!parsed.ok) {
    ctx.logger.warn('ignoring a RecoveryPoint that does not parse', { namespace, object: name, error: parsed.reason });
    return;
  }
  const point = parsed.value;
  if (point.metadata.deletionTimestamp) return;
  const phase = point.status.phase;
  if (phase === 'Failed' || phase === 'Expired') return;
  if (phase === 'Recorded') return checkExpiry(ctx, point);

  let claims: TidemarkClaim[];
  try {
    claims = await resolveClaims(ctx, point);
  } catch (err) {
    if (err instanceof PointFailure) return fail(ctx, point, err.reason, err.message);
    throw err;
  }
  // Ownership: the node that holds the claims records the point; others leave it alone.
  if (claims[0]!.node !== ctx.node) return;

  let current = point;
  if (phase === undefined) {
    current = await writeStatus(ctx, RECOVERY_POINTS, current, pendingStatus(ctx, current, `recording a marker on ${claims.map((c) => c.claim).join(', ')}`));
  }
  try {
    const markers = await recordMarkers(ctx, current, claims);
    return recorded(ctx, current, claims, markers);
  } catch (err) {
    if (err instanceof PointFailure) return fail(ctx, current, err.reason, err.message);
    if (isTidemarkError(err) && (err.code === 'NOT_FOUND' || err.code === 'INVALID_ARGUMENT')) return fail(ctx, current, 'MarkerFailed', err.message);
    throw err;
  }
}

async function resolveClaims(ctx: ReconcilerContext, point: RecoveryPoint): Promise<TidemarkClaim[]> {
  const { namespace } = point.metadata;
  const found: TidemarkClaim[] = [];
  const problems: ClaimProblem[] = [];
  for (const claim of point.spec.claims) {
    const lookup = await lookupClaim(ctx.kube, namespace, claim);
    if (lookup.ok) found.push(lookup.value);
    else problems.push(lookup.problem);
  }
  if (problems.length > 0) {
    const reasons = new Set(problems.map((p) => p.reason));
    throw new PointFailure(reasons.size === 1 ? problems[0]!.reason : 'ClaimsUnusable', problems.map((p) => p.message).join('; '));
  }
  const nodes = new Map<string, string[]>();
  for (const claim of found) nodes.set(claim.node, [...(nodes.get(claim.node) ?? []), claim.claim]);
  if (nodes.size > 1) {
    const where = [...nodes].map(([node, names]) => `${names.join(', ')} on node ${node}`).join('; ');
    throw new PointFailure('ClaimsOnDifferentNodes', `a RecoveryPoint's claims must live on one node to be cut together: ${where}`);
  }
  return found;
}

/** Records the group marker, or finds it when an earlier attempt already did. */
async function recordMarkers(ctx: ReconcilerContext, point: RecoveryPoint, claims: TidemarkClaim[]): Promise<RecordedMarker[]> {
  const marker = markerNameFor(point.metadata.uid);
  for (const claim of claims) {
    if (!ctx.engine.has(claim.volume)) {
      throw new PointFailure('VolumeNotFound', `volume ${claim.volume} of claim ${claim.claim} does not exist on node ${ctx.node}`);
    }
  }
  const existing = claims.map((claim) => ctx.engine.listMarkers(claim.volume).find((m) => m.name === marker));
  if (existing.every((m) => m !== undefined)) {
    return claims.map((claim, i) => ({ claim: claim.claim, volumeHandle: claim.volumeHandle, marker, sequence: String(existing[i]!.sequence) }));
  }
  if (existing.some((m) => m !== undefined)) {
    // The engine commits a group marker on all volumes or none, so this is not a crash left-over.
    throw new PointFailure('MarkerFailed', `marker ${marker} exists on some of the claims' volumes but not all; delete and re-create the RecoveryPoint`);
  }
  const volumes = claims.map((c) => c.volume);
  const mountPoints = point.spec.consistency === 'Filesystem' ? await filesystemsToFreeze(ctx, claims) : [];
  const record = () => ctx.engine.createMarker(marker, volumes);
  let infos;
  try {
    infos = mountPoints.length > 0 ? await withFrozen(ctx.freezer, mountPoints, ctx.logger, record) : await record();
  } catch (err) {
    if (isTidemarkError(err) && err.code === 'ALREADY_EXISTS') return recordMarkers(ctx, point, claims);
    if (mountPoints.length > 0 && !isTidemarkError(err)) throw new PointFailure('FreezeFailed', `could not freeze ${mountPoints.join(', ')}: ${err instanceof Error ? err.message : String(err)}`);
    throw err;
  }
  ctx.logger.info('recovery point recorded', { namespace: point.metadata.namespace, object: point.metadata.name, uid: point.metadata.uid, marker, volumes, frozen: mountPoints });
  return claims.map((claim) => {
    const info = infos.find((m) => m.volume === claim.volume)!;
    return { claim: claim.claim, volumeHandle: claim.volumeHandle, marker, sequence: String(info.sequence) };
  });
}

/**
 * Mount-mode claims staged on this node get frozen; an unstaged one has no mounted filesystem
 * and nobody writing, so its cut is already clean. A block-mode claim has no filesystem to
 * freeze, so asking for Filesystem consistency on one is an error rather than a silent Crash.
 */
async function filesystemsToFreeze(ctx: ReconcilerContext, claims: TidemarkClaim[]): Promise<string[]> {
  const block = claims.filter((c) => c.volumeMode === 'Block').map((c) => c.claim);
  if (block.length > 0) {
    throw new PointFailure('BlockModeClaim', `consistency Filesystem needs a filesystem, but ${block.join(', ')} ${block.length > 1 ? 'are' : 'is a'} block-mode claim${block.length > 1 ? 's' : ''}; use consistency Crash`);
  }
  const mountPoints: string[] = [];
  for (const claim of claims) {
    const staged = await readStageRecord(ctx.nodeStateDir, claim.volume);
    if (staged?.accessType === 'mount') mountPoints.push(staged.stagingPath);
  }
  return mountPoints;
}

async function recorded(ctx: ReconcilerContext, point: RecoveryPoint, claims: TidemarkClaim[], markers: RecordedMarker[]): Promise<Outcome> {
  const first = ctx.engine.listMarkers(claims[0]!.volume).find((m) => m.name === markers[0]!.marker)!;
  const recordedAt = first.createdAt.toISOString();
  const retention = claims.map((c) => ({ claim: c.claim, policy: ctx.engine.volumeInfo(c.volume).retention }));
  const ages = retention.map((r) => r.policy.maxAgeSeconds).filter((a): a is number => a !== undefined);
  const expiresAfter = ages.length > 0 ? new Date(first.createdAt.getTime() + Math.min(...ages) * 1000).toISOString() : undefined;
  const message = `marker recorded on ${markers.map((m) => `${m.claim} at sequence ${m.sequence}`).join(', ')}`;
  const status: RecoveryPointStatus = {
    phase: 'Recorded',
    message,
    observedGeneration: point.metadata.generation,
    recordedAt,
    ...(expiresAfter ? { expiresAfter } : {}),
    retention: describeRetention(retention),
    node: ctx.node,
    markers,
    conditions: setCondition(point.status.conditions, { type: 'Ready', status: 'True', reason: 'Recorded', message, observedGeneration: point.metadata.generation }, ctx.now()),
  };
  await writeStatus(ctx, RECOVERY_POINTS, point, status, { type: 'Normal', reason: 'Recorded' });
  return { requeueAfterMs: ctx.resyncMs };
}

function describeRetention(retention: { claim: string; policy: { maxBytes?: number; maxAgeSeconds?: number } }[]): string {
  const parts = retention.map(({ claim, policy }) => {
    const limits = [
      policy.maxAgeSeconds !== undefined ? `${policy.maxAgeSeconds}s of history` : undefined,
      policy.maxBytes !== undefined ? `${policy.maxBytes} bytes of journal` : undefined,
    ].filter(Boolean);
    return `${claim}: ${limits.length > 0 ? `keeps ${limits.join(' and ')}` : 'no journal limit (kept until the volume is deleted)'}`;
  });
  return parts.join('; ');
}

/** A recorded point expires when retention frees the journal it needs on any of its volumes. */
async function checkExpiry(ctx: ReconcilerContext, point: RecoveryPoint): Promise<Outcome | void> {
  if (point.status.node !== ctx.node) return;
  const gone: string[] = [];
  for (const marker of point.status.markers ?? []) {
    const volume = marker.volumeHandle.split(':')[1] ?? '';
    const info = ctx.engine.has(volume) ? ctx.engine.listMarkers(volume).find((m) => m.name === marker.marker) : undefined;
    if (!info) gone.push(`${marker.claim} (its volume or marker no longer exists)`);
    else if (info.expired) gone.push(`${marker.claim} (journal freed by retention)`);
  }
  if (gone.length === 0) return { requeueAfterMs: ctx.resyncMs };
  const message = `no longer recoverable: ${gone.join(', ')}`;
  const status: RecoveryPointStatus = {
    ...point.status,
    phase: 'Expired',
    message,
    conditions: setCondition(point.status.conditions, { type: 'Ready', status: 'False', reason: 'Expired', message, observedGeneration: point.metadata.generation }, ctx.now()),
  };
  await writeStatus(ctx, RECOVERY_POINTS, point, status, { type: 'Warning', reason: 'Expired' });
}

function pendingStatus(ctx: ReconcilerContext, point: RecoveryPoint, message: string): RecoveryPointStatus {
  return {
    ...point.status,
    phase: 'Pending',
    message,
    observedGeneration: point.metadata.generation,
    node: ctx.node,
    conditions: setCondition(point.status.conditions, { type: 'Ready', status: 'False', reason: 'Recording', message, observedGeneration: point.metadata.generation }, ctx.now()),
  };
}

async function fail(ctx: ReconcilerContext, point: RecoveryPoint, reason: string, message: string): Promise<void> {
  const status: RecoveryPointStatus = {
    ...point.status,
    phase: 'Failed',
    message,
    observedGeneration: point.metadata.generation,
    conditions: setCondition(point.status.conditions, { type: 'Ready', status: 'False', reason, message, observedGeneration: point.metadata.generation }, ctx.now()),
  };
  await writeStatus(ctx, RECOVERY_POINTS, point, status, { type: 'Warning', reason });
}
