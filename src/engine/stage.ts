import { allocAlignedShared } from '../util/aligned.js';

/** Stages come in multiples of this, so that a freed one fits later batches of about its size. */
const STAGE_STEP_BYTES = 4 * 1024 * 1024;
/** Freed stages kept for reuse, in bytes, across the process. */
const MAX_POOLED_BYTES = 64 * 1024 * 1024;
/** Freed stages go back to the system once no stage was freed for this long. */
const POOL_IDLE_MS = 10_000;

/**
 * Block-aligned shared memory that a direct journal append copies a batch into, and that the
 * applier later writes the image from. Reused: a fresh one costs a page fault and a zeroed
 * page per 4 KiB, which was a tenth of the main thread's time in a sequential write.
 *
 * Each write record whose bytes lie in a stage holds one reference (a HeldBytes); the stage
 * goes back to the pool when the last is released, that is once the image holds them all.
 * A reference that is never released (the volume stopped first) only keeps its stage from
 * being reused: the garbage collector takes it.
 */
export class Stage {
  private refs = 0;

  private constructor(readonly buffer: Buffer) {}

  /** A stage of at least `bytes` bytes, aligned to `alignment`; undefined where none can be made. */
  static take(bytes: number, alignment: number): Stage | undefined {
    // The smallest free stage that is large enough and not more than twice too large.
    let best = -1;
    for (let i = 0; i < pool.length; i++) {
      const length = pool[i]!.buffer.length;
      if (length >= bytes && length <= 2 * bytes + STAGE_STEP_BYTES && (best < 0 || length < pool[best]!.buffer.length)) best = i;
    }
    if (best >= 0) {
      const [reused] = pool.splice(best, 1);
      pooledBytes -= reused!.buffer.length;
      return reused;
    }
    const buffer = allocAlignedShared(Math.ceil(bytes / STAGE_STEP_BYTES) * STAGE_STEP_BYTES, alignment);
    return buffer && new Stage(buffer);
  }

  /** A reference to `length` bytes at `at`, valid until released. */
  hold(at: number, length: number): HeldBytes {
    this.refs++;
    let released = false;
    return {
      bytes: this.buffer.subarray(at, at + length),
      release: () => {
        if (released) return;
        released = true;
        if (--this.refs === 0) this.recycle();
      },
    };
  }

  private recycle(): void {
    if (pooledBytes + this.buffer.length > MAX_POOLED_BYTES) return;
    pooledBytes += this.buffer.length;
    pool.push(this);
    // A daemon whose volumes went quiet should not keep stages it may never use again.
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      pool.length = 0;
      pooledBytes = 0;
    }, POOL_IDLE_MS);
    idleTimer.unref();
  }
}

/** Bytes in a stage, and the promise to stop using them. */
export interface HeldBytes {
  readonly bytes: Uint8Array;
  release(): void;
}

const pool: Stage[] = [];
let pooledBytes = 0;
let idleTimer: NodeJS.Timeout | undefined;
