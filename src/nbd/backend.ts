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
  /**
   * Optional: the descriptor of a file that holds a read's bytes right now, in the page
   * cache, or undefined. The server then sends the reply from the file (sendfile) before it
   * next yields, and the bytes never pass through its memory.
   */
  cachedImageRange?(name: string, offset: number, length: number): number | undefined;
};
