import type { Engine } from '../engine/index.js';
import type { Logger } from '../util/log.js';
import type { Handles } from './handles.js';
import type { InFlight } from './inflight.js';
import type { CsiRecords } from './records.js';

/** What every CSI service works with; built once by CsiServer. */
export interface CsiContext {
  engine: Engine;
  logger: Logger;
  handles: Handles;
  records: CsiRecords;
  inflight: InFlight;
  /** False while the daemon starts or stops; Probe reports it. */
  ready(): boolean;
}
