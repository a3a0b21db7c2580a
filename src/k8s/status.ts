import { sameStatus } from './conditions.js';
import type { ReconcilerContext } from './context.js';
import type { EventType } from './events.js';
import type { ResourceType } from './kube.js';
import type { Condition, ObjectMeta } from './resources.js';

interface Reconciled<S> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  status: S;
}

/**
 * Writes a new status when it differs from the one the object has, and records an Event
 * when the phase changes. The write is conditional on the resourceVersion read, so a
 * reconcile acting on a stale object fails (409) and is retried on the fresh one.
 * Returns the object as it is now, with the new resourceVersion.
 */
export async function writeStatus<O extends Reconciled<{ phase?: string; conditions?: Condition[]; message?: string }>>(
  ctx: ReconcilerContext,
  type: ResourceType,
  object: O,
  next: O['status'],
  event?: { type: EventType; reason: string },
): Promise<O> {
  if (sameStatus(object.status, next)) return object;
  const written = (await ctx.kube.replaceStatus(type, object, next)) as { metadata?: { resourceVersion?: string } };
  const updated = { ...object, metadata: { ...object.metadata, resourceVersion: written.metadata?.resourceVersion ?? object.metadata.resourceVersion }, status: next };
  if (next.phase !== object.status.phase) {
    const reason = event?.reason ?? next.phase ?? 'Updated';
    await ctx.events.record(object, event?.type ?? 'Normal', reason, next.message ?? `phase ${next.phase}`);
    ctx.logger.info('phase changed', { kind: object.kind, namespace: object.metadata.namespace, object: object.metadata.name, uid: object.metadata.uid, from: object.status.phase, to: next.phase, reason, message: next.message });
  }
  return updated;
}
