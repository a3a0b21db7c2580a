import type { Engine } from '../engine/index.js';
import type { Logger } from '../util/log.js';
import type { EventRecorder } from './events.js';
import type { Freezer } from './freeze.js';
import type { Kube } from './kube.js';

/** The part of the engine the reconcilers use. */
export type ReconcilerEngine = Pick<Engine, 'has' | 'volumeInfo' | 'listMarkers' | 'createMarker' | 'restore' | 'createSnapshot' | 'listSnapshots' | 'deleteVolume'>;

/** What every reconciler is given: the API server, the engine of this node, and the node's name. */
export interface ReconcilerContext {
  kube: Kube;
  engine: ReconcilerEngine;
  /** The Kubernetes node this daemon serves (`--node-id`). */
  node: string;
  events: EventRecorder;
  logger: Logger;
  /** The CSI node service's records, to find where a volume's filesystem is mounted. */
  nodeStateDir: string;
  freezer: Freezer;
  now: () => Date;
  /** How often terminal states that can still change (a point's expiry) are looked at again. */
  resyncMs: number;
}
