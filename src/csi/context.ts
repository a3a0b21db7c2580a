import type { Engine } from '../engine/index.js';
import type { Logger } from '../util/log.js';
import type { Handles } from './handles.js';
import type { InFlight } from './inflight.js';
import type { CsiRecords } from './records.js';

/**
 * Holds new writes to some volumes while a group snapshot is cut. `hold` resolves once the
 * writes already in flight on them are done; the function it returns lets writes go again.
 * The data path (the NBD server) provides it; without one, group snapshots are cut
 * optimistically and retried when a write slips in (see groupcontroller.ts).
 */
export interface WriteGate {
  hold(volumes: string[]): Promise<() => void>;
}

/** What every CSI service works with; built once by CsiServer. */
export interface CsiContext {
  engine: Engine;
  logger: Logger;
  handles: Handles;
  records: CsiRecords;
  inflight: InFlight;
  /** False while the daemon starts or stops; Probe reports it. */
  ready(): boolean;
  writeGate?: WriteGate;
}
