import { WriteBatcher, type BatchTarget } from '../../src/engine/batcher.js';
import { VolumeLock, type Held } from '../../src/engine/lock.js';
import type { JournalRecord, RecordBody } from '../../src/engine/record.js';

/**
 * A target that numbers records as the volume does and keeps each batch it was given, so
 * that a test sees where the batcher drew the lines between batches.
 */
class RecordingTarget implements BatchTarget {
  readonly name = 'vol';
  lastSequence = 0;
  readonly batches: RecordBody[][] = [];
  durableCalls = 0;
  failNext: Error | undefined;

  constructor(private readonly lock: VolumeLock) {}

  assertOpen(): void {}

  async applyLocked(held: Held, bodies: RecordBody[]): Promise<JournalRecord[]> {
    this.lock.check(held);
    this.batches.push(bodies);
    // A journal append yields to the event loop: later operations queue meanwhile.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.failNext) {
      const error = this.failNext;
      this.failNext = undefined;
      throw error;
    }
    return bodies.map((body) => ({ ...body, sequence: ++this.lastSequence, time: 0 }) as JournalRecord);
  }

  async makeDurable(): Promise<void> {
    this.durableCalls++;
  }

  afterBatch(held: Held): void {
    this.lock.check(held);
  }
}

function setup(): { batcher: WriteBatcher; target: RecordingTarget } {
  const lock = new VolumeLock('vol');
  const target = new RecordingTarget(lock);
  return { batcher: new WriteBatcher(lock, target), target };
}

const data = (n: number) => Buffer.alloc(4096, n);

describe('write batcher', () => {
  it('puts operations queued in one synchronous run into one batch, the first included', async () => {
    const { batcher, target } = setup();
    // As a socket read hands over several requests at once.
    const done = Promise.all([0, 1, 2, 3, 4, 5].map((i) => batcher.write(i * 4096, data(i), false)));
    expect(await done).toEqual([1, 2, 3, 4, 5, 6]);
    expect(target.batches.map((b) => b.length)).toEqual([6]);
  });

  it('takes what arrives while a batch runs as the next batch, in order', async () => {
    const { batcher, target } = setup();
    const first = batcher.write(0, data(1), false);
    // Queued once the first batch has started, so it cannot join it.
    await new Promise((resolve) => setImmediate(resolve));
    const later = [batcher.write(4096, data(2), false), batcher.write(8192, data(3), false), batcher.flush()];
    expect(await first).toBe(1);
    expect(await Promise.all(later)).toEqual([2, 3, 3]);
    expect(target.batches.map((b) => b.map((r) => ('offset' in r ? r.offset : -1)))).toEqual([[0], [4096, 8192]]);
    expect(target.durableCalls).toBe(1);
  });

  it('syncs only batches that hold a flush or a FUA write', async () => {
    const { batcher, target } = setup();
    await Promise.all([batcher.write(0, data(1), false), batcher.write(4096, data(2), false)]);
    expect(target.durableCalls).toBe(0);
    await Promise.all([batcher.write(0, data(1), false), batcher.write(4096, data(2), true)]);
    expect(target.durableCalls).toBe(1);
  });

  it('fails every operation of a failed batch and goes on with the next', async () => {
    const { batcher, target } = setup();
    target.failNext = new Error('disk gone');
    const failed = [batcher.write(0, data(1), false), batcher.write(4096, data(2), false)];
    await expect(failed[0]).rejects.toThrow(/writing volume "vol"/);
    await expect(failed[1]).rejects.toThrow(/writing volume "vol"/);
    expect(await batcher.write(8192, data(3), false)).toBe(1);
    expect(target.batches.map((b) => b.length)).toEqual([2, 1]);
  });
});
