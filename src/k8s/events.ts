import type { Logger } from '../util/log.js';
import type { Kube } from './kube.js';
import type { ObjectMeta } from './resources.js';

export type EventType = 'Normal' | 'Warning';

/** Records Kubernetes Events on our objects, so `kubectl describe` tells their story. */
export class EventRecorder {
  constructor(
    private readonly kube: Kube,
    private readonly node: string,
    private readonly logger: Logger,
  ) {}

  /**
   * An Event is a courtesy to the user: failing to record one is logged and never fails the
   * reconcile that caused it.
   */
  async record(object: { apiVersion: string; kind: string; metadata: ObjectMeta }, type: EventType, reason: string, message: string): Promise<void> {
    const now = new Date();
    const { name, namespace, uid, resourceVersion } = object.metadata;
    try {
      await this.kube.createEvent(namespace, {
        metadata: { generateName: `${name}.`, namespace },
        involvedObject: { apiVersion: object.apiVersion, kind: object.kind, name, namespace, uid, resourceVersion },
        reason,
        message: message.slice(0, 1024),
        type,
        source: { component: 'tidemark', host: this.node },
        reportingComponent: 'tidemark.dev/reconciler',
        reportingInstance: this.node,
        firstTimestamp: now,
        lastTimestamp: now,
        eventTime: undefined,
        count: 1,
      });
    } catch (err) {
      this.logger.warn('could not record an event', { kind: object.kind, namespace, object: name, reason, error: String(err) });
    }
  }
}
