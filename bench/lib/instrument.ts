import { AsyncLocalStorage } from 'node:async_hooks';
import { Journal } from '../../src/engine/journal.js';
import { RecordType, encodeRecord, encodedSize, type JournalRecord } from '../../src/engine/record.js';
import { ImageApplier } from '../../src/engine/applier.js';
import { WriteBatcher } from '../../src/engine/batcher.js';
import { Volume } from '../../src/engine/volume.js';
import { CheckpointWriter } from '../../src/engine/checkpoint.js';
import { crc32c } from '../../src/util/crc32c.js';
import { MiB } from './harness.js';

/**
 * Wall-clock attribution of the engine's write path, by wrapping methods on the engine's own
 * prototypes for the length of one run (the engine is not changed). Each wrapped call is
 * charged its own time minus that of the wrapped calls inside it; nesting is followed per
 * async context (AsyncLocalStorage), because the applier runs beside the batches:
 *
 *   batch        runBatch: one queue drain, under the lock (its own time is bookkeeping)
 *   apply        applyLocked: bitmap marks and hand-over to the applier
 *   append       Journal.append: encode (copy + CRC32C) + the journal write(s)
 *   roll         open of the next segment (the old one is synced by the next sync)
 *   sync         Journal.sync on the acknowledgement path (FLUSH, FUA)
 *   checkpoint   writeCheckpoint: drain, image fdatasync, checkpoint file
 *   background       applyPending: image writes, overlapped with the batches
 *   background sync  journal syncs the applier starts itself, also overlapped
 *   room wait    writers held back because too much waits for the image (inside apply)
 *   checkpoint persist  image fdatasync and checkpoint file of upkeep, beside the writes
 */
export interface WriteProfile {
  /** Own milliseconds per key. */
  ms: Record<string, number>;
  calls: Record<string, number>;
  batchOps: number[];
}

type Method = (this: unknown, ...args: unknown[]) => unknown;

interface Frame {
  children: number;
  background: boolean;
}

export function instrumentWritePath(): { stop: () => WriteProfile } {
  const profile: WriteProfile = { ms: {}, calls: {}, batchOps: [] };
  const context = new AsyncLocalStorage<Frame>();
  const undo: (() => void)[] = [];
  const wrap = (prototype: object, method: string, key: string, options: { background?: boolean; onCall?: (args: unknown[]) => void } = {}) => {
    const table = prototype as Record<string, unknown>;
    const original = table[method];
    if (typeof original !== 'function') throw new Error(`cannot instrument ${method}: the engine no longer has it`);
    const inner = original as Method;
    table[method] = async function (this: unknown, ...args: unknown[]) {
      options.onCall?.(args);
      // The applier is started from inside a batch but outlives it: it is a root of its own.
      const parent = options.background ? undefined : context.getStore();
      const frame: Frame = { children: 0, background: options.background === true || parent?.background === true };
      const start = performance.now();
      try {
        return await context.run(frame, () => inner.apply(this, args));
      } finally {
        const took = performance.now() - start;
        if (parent) parent.children += took;
        const charged = frame.background && !options.background ? `background ${key}` : key;
        profile.ms[charged] = (profile.ms[charged] ?? 0) + took - frame.children;
        profile.calls[charged] = (profile.calls[charged] ?? 0) + 1;
      }
    };
    undo.push(() => (table[method] = original));
  };
  wrap(WriteBatcher.prototype, 'runBatch', 'batch', { onCall: (args) => profile.batchOps.push(Array.isArray(args[0]) ? args[0].length : 0) });
  wrap(Volume.prototype, 'applyLocked', 'apply');
  wrap(ImageApplier.prototype, 'applyPending', 'background', { background: true });
  wrap(Volume.prototype, 'writeCheckpoint', 'checkpoint');
  wrap(Journal.prototype, 'append', 'append');
  wrap(Journal.prototype, 'roll', 'roll');
  wrap(Journal.prototype, 'sync', 'sync');
  wrap(ImageApplier.prototype, 'waitForRoom', 'room wait');
  wrap(CheckpointWriter.prototype, 'persist', 'checkpoint persist', { background: true });
  return {
    stop: () => {
      for (const fn of undo.reverse()) fn();
      return profile;
    },
  };
}

/**
 * CPU cost of encoding journal records (payload copy + CRC32C) per MiB, measured by encoding
 * batches shaped like the benchmark's: the part of `append` that is not the write syscall.
 */
export function encodeCostMsPerMiB(recordBytes: number, recordsPerBatch: number): number {
  const records: JournalRecord[] = [];
  const data = Buffer.alloc(recordBytes, 0x5a);
  for (let i = 0; i < recordsPerBatch; i++) records.push({ type: RecordType.Write, offset: i * recordBytes, data, sequence: i + 1, time: Date.now() });
  const batchBytes = records.reduce((s, r) => s + encodedSize(r), 0);
  const rounds = Math.max(3, Math.ceil((256 * MiB) / batchBytes));
  let best = Infinity;
  // Best of a few passes: the question is the cost of the work, not of a cold allocator.
  for (let pass = 0; pass < 3; pass++) {
    const start = performance.now();
    for (let round = 0; round < rounds; round++) {
      const buffer = Buffer.allocUnsafe(batchBytes);
      let at = 0;
      for (const record of records) at += encodeRecord(record, buffer, at);
    }
    best = Math.min(best, performance.now() - start);
  }
  return best / ((rounds * batchBytes) / MiB);
}

/** CPU cost of CRC32C alone per MiB over buffers of `bytes`, to split encode into copy and checksum. */
export function crcCostMsPerMiB(bytes: number): number {
  const data = Buffer.alloc(bytes, 0xa5);
  const rounds = Math.max(3, Math.ceil((256 * MiB) / bytes));
  let best = Infinity;
  for (let pass = 0; pass < 3; pass++) {
    const start = performance.now();
    for (let round = 0; round < rounds; round++) crc32c(data);
    best = Math.min(best, performance.now() - start);
  }
  return best / ((rounds * bytes) / MiB);
}
