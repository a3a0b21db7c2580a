import type { Engine } from '../engine/index.js';

/**
 * The part of the engine the NBD layer uses. `Engine` is one; naming the subset keeps this
 * layer's dependence on the engine visible, and lets a benchmark put an in-memory store
 * under the protocol to measure the protocol's own cost.
 */
export type NbdBackend = Pick<
  Engine,
  'has' | 'volumeInfo' | 'listVolumes' | 'listSnapshots' | 'read' | 'write' | 'zero' | 'flush' | 'allocated' | 'diff' | 'hold' | 'release'
> & {
  /**
   * Reads into a buffer the caller owns. Optional: where the backend has it, read replies
   * come from a pool of reused buffers instead of a fresh allocation per request.
   */
  readInto?(name: string, offset: number, target: Buffer): Promise<void>;
};
