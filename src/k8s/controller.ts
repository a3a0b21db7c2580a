import type { Logger } from '../util/log.js';
import type { ReconcilerContext, ReconcilerEngine } from './context.js';
import { EventRecorder } from './events.js';
import { fsfreeze, type Freezer } from './freeze.js';
import { Informer, splitKey } from './informer.js';
import { Kube } from './kube.js';
import { WorkQueue } from './queue.js';
import { reconcileRecoveryPoint } from './recoverypoint.js';
import { RECOVERY_POINTS, VOLUME_RESTORES } from './resources.js';
import { reconcileVolumeRestore } from './volumerestore.js';

export interface ControllersOptions {
  engine: ReconcilerEngine;
  node: string;
  /** Absent: the in-cluster service account. */
  kubeconfig?: string;
  nodeStateDir: string;
  logger: Logger;
  /** Full re-list period; also how soon a RecoveryPoint's expiry is noticed. */
  resyncMs?: number;
  freezer?: Freezer;
  /** Told the outcome and duration of every reconcile, by resource (for metrics). */
  observeReconcile?: (kind: string, result: 'success' | 'error' | 'conflict', seconds: number) => void;
}

/**
 * The reconcilers of one node: a RecoveryPoint and a VolumeRestore loop, each an informer
 * feeding a work queue. Every node runs them over every object and acts only on those whose
 * claims live on it, so no leader election is needed.
 */
export class Controllers {
  private constructor(
    private readonly informers: Informer[],
    private readonly queues: WorkQueue[],
    private readonly logger: Logger,
  ) {}

  static start(options: ControllersOptions): Controllers {
    const kube = Kube.load(options.kubeconfig);
    const resyncMs = options.resyncMs ?? 60_000;
    const ctx: ReconcilerContext = {
      kube,
      engine: options.engine,
      node: options.node,
      events: new EventRecorder(kube, options.node, options.logger),
      logger: options.logger,
      nodeStateDir: options.nodeStateDir,
      freezer: options.freezer ?? fsfreeze,
      now: () => new Date(),
      resyncMs,
    };
    const queueOptions = options.observeReconcile ? { observe: options.observeReconcile } : {};
    const points = new WorkQueue('recoverypoints', (key) => {
      const { namespace, name } = splitKey(key);
      return reconcileRecoveryPoint(ctx, namespace, name);
    }, options.logger, queueOptions);
    const restores = new WorkQueue('volumerestores', (key) => {
      const { namespace, name } = splitKey(key);
      return reconcileVolumeRestore(ctx, namespace, name);
    }, options.logger, queueOptions);
    const informers = [
      new Informer(kube, RECOVERY_POINTS, (key) => points.add(key), options.logger, { resyncMs }),
      new Informer(kube, VOLUME_RESTORES, (key) => restores.add(key), options.logger, { resyncMs }),
    ];
    for (const informer of informers) informer.start();
    options.logger.info('reconcilers started', { node: options.node, kubeconfig: options.kubeconfig ?? 'in-cluster', resyncMs });
    return new Controllers(informers, [points, restores], options.logger);
  }

  /** Stops watching, then waits for running reconciles (a restore in progress) to finish. */
  async stop(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.stop()));
    await Promise.all(this.queues.map((q) => q.stop()));
    this.logger.info('reconcilers stopped');
  }
}
