import * as grpc from '@grpc/grpc-js';
import type { Extent } from '../../src/engine/index.js';
import { MiB, NODE, createSnapshot, createVolume, pattern, startHarness, type Harness, type VolumeMessage } from './helpers.js';

interface Response {
  blockMetadataType: string;
  volumeCapacityBytes: string;
  blockMetadata: { byteOffset: string; sizeBytes: string }[];
}

const KiB = 1024;

/** The tuples of a stream, checked against the spec's rules on the way. */
function tuples(messages: Response[], capacity: number, maxResults?: number): Extent[] {
  const out: Extent[] = [];
  for (const message of messages) {
    expect(message.blockMetadataType).toBe('VARIABLE_LENGTH');
    expect(Number(message.volumeCapacityBytes)).toBe(capacity);
    if (maxResults) expect(message.blockMetadata.length).toBeLessThanOrEqual(maxResults);
    for (const tuple of message.blockMetadata) {
      const extent = { offset: Number(tuple.byteOffset), length: Number(tuple.sizeBytes) };
      expect(extent.length).toBeGreaterThan(0);
      // Ascending and never overlapping, across messages too.
      const last = out[out.length - 1];
      if (last) expect(extent.offset).toBeGreaterThanOrEqual(last.offset + last.length);
      out.push(extent);
    }
  }
  return out;
}

/** The extents from `start` on, the first one cut at `start`. */
function from(extents: Extent[], start: number): Extent[] {
  return extents
    .filter((e) => e.offset + e.length > start)
    .map((e) => (e.offset < start ? { offset: start, length: e.offset + e.length - start } : e));
}

describe('CSI SnapshotMetadata service', () => {
  let h: Harness;
  let volume: VolumeMessage;
  let s1: string;
  let s2: string;

  beforeEach(async () => {
    h = await startHarness();
    volume = await createVolume(h, 'v', { capacityRange: { requiredBytes: String(8 * MiB) }, parameters: { trackingGranularity: '16Ki' } });
    await h.engine.write('v', 0, pattern(40 * KiB, 1));
    await h.engine.write('v', 1 * MiB + 100, pattern(5000, 2));
    await h.engine.write('v', 5 * MiB, pattern(MiB, 3));
    s1 = (await createSnapshot(h, 's1', volume.volumeId)).snapshotId;
    await h.engine.write('v', 16 * KiB, pattern(4 * KiB, 4));
    await h.engine.write('v', 3 * MiB, pattern(200 * KiB, 5));
    await h.engine.zero('v', 6 * MiB, 64 * KiB);
    s2 = (await createSnapshot(h, 's2', volume.volumeId)).snapshotId;
    // Written after both snapshots: in no delta between them.
    await h.engine.write('v', 7 * MiB, pattern(64 * KiB, 6));
  });

  afterEach(async () => {
    await h.stop();
  });

  it('streams the delta between two snapshots exactly as the engine diffs them', async () => {
    const messages = await h.metadata.stream<Response>('GetMetadataDelta', { baseSnapshotId: s1, targetSnapshotId: s2 });
    const expected = h.engine.diff('v', 's1', 's2');
    expect(expected.length).toBeGreaterThan(1);
    expect(tuples(messages, 8 * MiB)).toEqual(expected);
    // Every byte written between the snapshots is covered.
    for (const written of [{ offset: 16 * KiB, length: 4 * KiB }, { offset: 3 * MiB, length: 200 * KiB }, { offset: 6 * MiB, length: 64 * KiB }]) {
      expect(expected.some((e) => e.offset <= written.offset && e.offset + e.length >= written.offset + written.length)).toBe(true);
    }
    // A delta of a snapshot against itself is empty, but still names the capacity.
    const none = await h.metadata.stream<Response>('GetMetadataDelta', { baseSnapshotId: s2, targetSnapshotId: s2 });
    expect(none).toHaveLength(1);
    expect(tuples(none, 8 * MiB)).toEqual([]);
  });

  it('streams allocated ranges: everything the engine reports written', async () => {
    const messages = await h.metadata.stream<Response>('GetMetadataAllocated', { snapshotId: s1 });
    const got = tuples(messages, 8 * MiB);
    expect(got).toEqual(h.engine.allocated('v'));
    for (const written of [{ offset: 0, length: 40 * KiB }, { offset: 1 * MiB + 100, length: 5000 }, { offset: 5 * MiB, length: MiB }]) {
      expect(got.some((e) => e.offset <= written.offset && e.offset + e.length >= written.offset + written.length)).toBe(true);
    }
  });

  it('reports the whole volume as allocated for a volume that started from another one', async () => {
    const restored = await createVolume(h, 'r', { volumeContentSource: { snapshot: { snapshotId: s1 } } });
    const snapshot = await createSnapshot(h, 'r1', restored.volumeId);
    const messages = await h.metadata.stream<Response>('GetMetadataAllocated', { snapshotId: snapshot.snapshotId });
    expect(tuples(messages, 8 * MiB)).toEqual([{ offset: 0, length: 8 * MiB }]);
  });

  it('honours starting_offset and max_results', async () => {
    const all = h.engine.diff('v', 's1', 's2');
    const start = all[1]!.offset + 4 * KiB;
    for (const maxResults of [1, 2, 0]) {
      const messages = await h.metadata.stream<Response>('GetMetadataDelta', { baseSnapshotId: s1, targetSnapshotId: s2, startingOffset: String(start), maxResults });
      const got = tuples(messages, 8 * MiB, maxResults || undefined);
      expect(got).toEqual(from(all, start));
      expect(got[0]!.offset).toBe(start);
      if (maxResults === 1) expect(messages).toHaveLength(got.length);
    }
    const allocated = await h.metadata.stream<Response>('GetMetadataAllocated', { snapshotId: s2, startingOffset: String(5 * MiB + 1), maxResults: 1 });
    expect(tuples(allocated, 8 * MiB, 1)).toEqual(from(h.engine.allocated('v'), 5 * MiB + 1));
    const atEnd = await h.metadata.stream<Response>('GetMetadataAllocated', { snapshotId: s2, startingOffset: String(8 * MiB) });
    expect(tuples(atEnd, 8 * MiB)).toEqual([]);
  });

  it('splits long answers into messages of max_results ranges, 1024 by default', async () => {
    const wide = await createVolume(h, 'wide', { capacityRange: { requiredBytes: String(64 * MiB) }, parameters: { trackingGranularity: '16Ki' } });
    const base = (await createSnapshot(h, 'base', wide.volumeId)).snapshotId;
    // One small write every 32 KiB: 2048 separate 16 KiB ranges.
    for (let at = 0; at < 64 * MiB; at += 32 * KiB) await h.engine.write('wide', at, Buffer.alloc(512, 1));
    const target = (await createSnapshot(h, 'target', wide.volumeId)).snapshotId;
    const expected = h.engine.diff('wide', 'base', 'target');
    expect(expected).toHaveLength(2048);
    const byDefault = await h.metadata.stream<Response>('GetMetadataDelta', { baseSnapshotId: base, targetSnapshotId: target });
    expect(byDefault.map((m) => m.blockMetadata.length)).toEqual([1024, 1024]);
    expect(tuples(byDefault, 64 * MiB)).toEqual(expected);
    const small = await h.metadata.stream<Response>('GetMetadataDelta', { baseSnapshotId: base, targetSnapshotId: target, maxResults: 300 });
    expect(small).toHaveLength(7);
    expect(tuples(small, 64 * MiB, 300)).toEqual(expected);
  });

  it('refuses bad requests with the codes the spec prescribes', async () => {
    const other = await createVolume(h, 'other');
    const otherSnapshot = (await createSnapshot(h, 'o1', other.volumeId)).snapshotId;
    const cases: [string, object, grpc.status][] = [
      ['GetMetadataAllocated', {}, grpc.status.INVALID_ARGUMENT],
      ['GetMetadataAllocated', { snapshotId: s1, maxResults: -1 }, grpc.status.INVALID_ARGUMENT],
      ['GetMetadataAllocated', { snapshotId: `${NODE}:v:missing` }, grpc.status.NOT_FOUND],
      ['GetMetadataAllocated', { snapshotId: 'node-b:v:s1' }, grpc.status.NOT_FOUND],
      ['GetMetadataAllocated', { snapshotId: s1, startingOffset: '-1' }, grpc.status.OUT_OF_RANGE],
      ['GetMetadataAllocated', { snapshotId: s1, startingOffset: String(8 * MiB + 1) }, grpc.status.OUT_OF_RANGE],
      ['GetMetadataDelta', { targetSnapshotId: s2 }, grpc.status.INVALID_ARGUMENT],
      ['GetMetadataDelta', { baseSnapshotId: s1 }, grpc.status.INVALID_ARGUMENT],
      ['GetMetadataDelta', { baseSnapshotId: s1, targetSnapshotId: `${NODE}:v:gone` }, grpc.status.NOT_FOUND],
      ['GetMetadataDelta', { baseSnapshotId: 'garbage', targetSnapshotId: s2 }, grpc.status.NOT_FOUND],
      ['GetMetadataDelta', { baseSnapshotId: s1, targetSnapshotId: otherSnapshot }, grpc.status.INVALID_ARGUMENT],
      ['GetMetadataDelta', { baseSnapshotId: s2, targetSnapshotId: s1 }, grpc.status.INVALID_ARGUMENT],
      ['GetMetadataDelta', { baseSnapshotId: s1, targetSnapshotId: s2, startingOffset: String(9 * MiB) }, grpc.status.OUT_OF_RANGE],
    ];
    for (const [method, request, code] of cases) expect([method, request, await h.metadata.streamCode(method, request)]).toEqual([method, request, code]);
  });

  it('serves deltas between the members of two group snapshots', async () => {
    type Group = { groupSnapshot: { snapshots: { snapshotId: string; sourceVolumeId: string }[] } };
    const first = await h.group.call<Group>('CreateVolumeGroupSnapshot', { name: 'g1', sourceVolumeIds: [volume.volumeId] });
    await h.engine.write('v', 2 * MiB, pattern(8 * KiB, 8));
    const second = await h.group.call<Group>('CreateVolumeGroupSnapshot', { name: 'g2', sourceVolumeIds: [volume.volumeId] });
    const messages = await h.metadata.stream<Response>('GetMetadataDelta', {
      baseSnapshotId: first.groupSnapshot.snapshots[0]!.snapshotId,
      targetSnapshotId: second.groupSnapshot.snapshots[0]!.snapshotId,
    });
    expect(tuples(messages, 8 * MiB)).toEqual([{ offset: 2 * MiB, length: 16 * KiB }]);
  });
});
