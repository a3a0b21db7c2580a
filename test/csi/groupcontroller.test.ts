import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CsiServer } from '../../src/csi/index.js';
import { silentLogger } from '../../src/util/log.js';
import { MiB, NODE, createVolume, mountCapability, pattern, startHarness, type Harness, type SnapshotMessage, type VolumeMessage } from './helpers.js';

interface Group {
  groupSnapshotId: string;
  snapshots: SnapshotMessage[];
  creationTime: { seconds: string; nanos: number };
  readyToUse: boolean;
}

const counter = (n: number) => {
  const block = Buffer.alloc(4096);
  block.writeUInt32LE(n, 0);
  return block;
};

/**
 * Writes 1, 2, 3, ... to block 0 of volume a and then of volume b, one write at a time, until
 * stopped. At any consistent cut, a holds the same count as b or one more.
 */
function startWriter(h: Harness, pauseMs = 0) {
  let stop = false;
  let count = 0;
  const running = (async () => {
    while (!stop) {
      count++;
      const n = count;
      await h.engine.write('a', 0, counter(n));
      await h.engine.write('b', 0, counter(n));
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  })();
  return {
    get count() {
      return count;
    },
    async stop() {
      stop = true;
      await running;
    },
  };
}

async function countsAt(h: Harness, group: Group, tag: string): Promise<{ a: number; b: number }> {
  const counts: Record<string, number> = {};
  for (const snapshot of group.snapshots) {
    const volume = snapshot.sourceVolumeId.split(':')[1]!;
    const restored = await createVolume(h, `${tag}-${volume}`, { volumeContentSource: { snapshot: { snapshotId: snapshot.snapshotId } } });
    counts[volume] = (await h.engine.read(restored.volumeId.split(':')[1]!, 0, 4)).readUInt32LE(0);
  }
  return { a: counts.a!, b: counts.b! };
}

describe('CSI GroupController service', () => {
  let h: Harness;
  let a: VolumeMessage;
  let b: VolumeMessage;

  beforeEach(async () => {
    h = await startHarness();
    a = await createVolume(h, 'a');
    b = await createVolume(h, 'b');
  });

  afterEach(async () => {
    await h.stop();
  });

  it('advertises group snapshots', async () => {
    const { capabilities } = await h.group.call<{ capabilities: { rpc: { type: string } }[] }>('GroupControllerGetCapabilities');
    expect(capabilities.map((c) => c.rpc.type)).toEqual(['CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT']);
  });

  it('snapshots several volumes at one point, idempotently, and deletes them as one', async () => {
    const dataA = pattern(4 * MiB, 1);
    const dataB = pattern(4 * MiB, 2);
    await h.engine.write('a', 0, dataA);
    await h.engine.write('b', 0, dataB);
    const request = { name: 'groupsnapshot-1', sourceVolumeIds: [b.volumeId, a.volumeId], parameters: { 'csi.storage.k8s.io/volumegroupsnapshot/name': 'g' } };
    const { groupSnapshot } = await h.group.call<{ groupSnapshot: Group }>('CreateVolumeGroupSnapshot', request);
    expect(groupSnapshot.groupSnapshotId).toMatch(new RegExp(`^${NODE}:_g[0-9a-f]{32}$`));
    expect(groupSnapshot.readyToUse).toBe(true);
    expect(groupSnapshot.snapshots.map((s) => s.sourceVolumeId).sort()).toEqual([a.volumeId, b.volumeId]);
    for (const snapshot of groupSnapshot.snapshots) expect(snapshot.groupSnapshotId).toBe(groupSnapshot.groupSnapshotId);
    await h.engine.write('a', 0, Buffer.alloc(MiB, 9));

    expect((await h.group.call<{ groupSnapshot: Group }>('CreateVolumeGroupSnapshot', request)).groupSnapshot).toEqual(groupSnapshot);
    expect(await h.group.code('CreateVolumeGroupSnapshot', { ...request, sourceVolumeIds: [a.volumeId] })).toBe(grpc.status.ALREADY_EXISTS);
    const memberIds = groupSnapshot.snapshots.map((s) => s.snapshotId);
    expect((await h.group.call<{ groupSnapshot: Group }>('GetVolumeGroupSnapshot', { groupSnapshotId: groupSnapshot.groupSnapshotId, snapshotIds: memberIds })).groupSnapshot).toEqual(
      groupSnapshot,
    );
    expect(await h.group.code('GetVolumeGroupSnapshot', { groupSnapshotId: groupSnapshot.groupSnapshotId, snapshotIds: [memberIds[0]] })).toBe(grpc.status.INVALID_ARGUMENT);

    // Members are snapshots like any other, except that they go only with their group.
    const listed = await h.controller.call<{ entries: { snapshot: SnapshotMessage }[] }>('ListSnapshots', { sourceVolumeId: a.volumeId });
    expect(listed.entries.map((e) => e.snapshot.groupSnapshotId)).toEqual([groupSnapshot.groupSnapshotId]);
    expect(await h.controller.code('DeleteSnapshot', { snapshotId: memberIds[0] })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.controller.code('DeleteVolume', { volumeId: a.volumeId })).toBe(grpc.status.FAILED_PRECONDITION);
    const memberOfA = groupSnapshot.snapshots.find((s) => s.sourceVolumeId === a.volumeId)!;
    const restored = await createVolume(h, 'restored-a', { volumeContentSource: { snapshot: { snapshotId: memberOfA.snapshotId } } });
    expect((await h.engine.read(restored.volumeId.split(':')[1]!, 0, 4 * MiB)).equals(dataA)).toBe(true);

    expect(await h.group.code('DeleteVolumeGroupSnapshot', { groupSnapshotId: groupSnapshot.groupSnapshotId, snapshotIds: [`${NODE}:c:x`, ...memberIds] })).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    await h.group.call('DeleteVolumeGroupSnapshot', { groupSnapshotId: groupSnapshot.groupSnapshotId, snapshotIds: memberIds });
    expect(h.engine.listSnapshots('a')).toEqual([]);
    expect(h.engine.listSnapshots('b')).toEqual([]);
    await h.group.call('DeleteVolumeGroupSnapshot', { groupSnapshotId: groupSnapshot.groupSnapshotId, snapshotIds: memberIds });
    expect(await h.group.code('GetVolumeGroupSnapshot', { groupSnapshotId: groupSnapshot.groupSnapshotId })).toBe(grpc.status.NOT_FOUND);
    // The cut leaves nothing else behind in the journals.
    expect(h.engine.listMarkers('a')).toEqual([]);
  });

  it('refuses bad requests with the codes the spec prescribes', async () => {
    const cases: [string, object, grpc.status][] = [
      ['CreateVolumeGroupSnapshot', { sourceVolumeIds: [a.volumeId] }, grpc.status.INVALID_ARGUMENT],
      ['CreateVolumeGroupSnapshot', { name: 'g' }, grpc.status.INVALID_ARGUMENT],
      ['CreateVolumeGroupSnapshot', { name: 'g', sourceVolumeIds: [a.volumeId, a.volumeId] }, grpc.status.INVALID_ARGUMENT],
      ['CreateVolumeGroupSnapshot', { name: 'g', sourceVolumeIds: [a.volumeId, ''] }, grpc.status.INVALID_ARGUMENT],
      ['CreateVolumeGroupSnapshot', { name: 'g', sourceVolumeIds: [a.volumeId], parameters: { speed: 'fast' } }, grpc.status.INVALID_ARGUMENT],
      ['CreateVolumeGroupSnapshot', { name: 'g', sourceVolumeIds: [a.volumeId, `${NODE}:missing`] }, grpc.status.NOT_FOUND],
      ['CreateVolumeGroupSnapshot', { name: 'g', sourceVolumeIds: [a.volumeId, 'node-b:b'] }, grpc.status.NOT_FOUND],
      ['GetVolumeGroupSnapshot', {}, grpc.status.INVALID_ARGUMENT],
      ['GetVolumeGroupSnapshot', { groupSnapshotId: 'fake-vol-id' }, grpc.status.NOT_FOUND],
      ['GetVolumeGroupSnapshot', { groupSnapshotId: `${NODE}:_g00000000000000000000000000000000` }, grpc.status.NOT_FOUND],
      ['DeleteVolumeGroupSnapshot', {}, grpc.status.INVALID_ARGUMENT],
    ];
    for (const [method, request, code] of cases) expect([method, await h.group.code(method, request)]).toEqual([method, code]);
    await h.group.call('DeleteVolumeGroupSnapshot', { groupSnapshotId: 'fake-vol-id' });
    expect(h.engine.listSnapshots('a')).toEqual([]);
  });

  it.each([
    ['back to back', 0],
    ['paced', 3],
  ])('cuts consistently while writes keep arriving, %s', async (_pace, pauseMs) => {
    const writer = startWriter(h, pauseMs);
    try {
      while (writer.count < 50) await new Promise((resolve) => setTimeout(resolve, 5));
      for (let round = 1; round <= 4; round++) {
        const { groupSnapshot } = await h.group.call<{ groupSnapshot: Group }>('CreateVolumeGroupSnapshot', { name: `busy-${round}`, sourceVolumeIds: [a.volumeId, b.volumeId] });
        const { a: countA, b: countB } = await countsAt(h, groupSnapshot, `busy-${round}`);
        // The writer writes a, then b: a consistent cut sees equal counts or a one ahead.
        expect(countA === countB || countA === countB + 1).toBe(true);
        expect(countA).toBeGreaterThan(0);
      }
    } finally {
      await writer.stop();
    }
    const { groupSnapshot } = await h.group.call<{ groupSnapshot: Group }>('CreateVolumeGroupSnapshot', { name: 'quiet', sourceVolumeIds: [a.volumeId, b.volumeId] });
    const { a: countA, b: countB } = await countsAt(h, groupSnapshot, 'quiet');
    expect([countA, countB]).toEqual([writer.count, writer.count]);
  });

  it('removes what a crash left behind when the server starts: members of a cut, clone snapshots, records', async () => {
    const orphan = '_g0123456789abcdef0123456789abcdef';
    await h.engine.createSnapshot('a', orphan);
    await h.engine.createSnapshot('b', '_t0123456789abcdef0123456789abcdef');
    await h.engine.createSnapshot('b', 'kept');
    // A record whose volume is gone (a crash between deleting the volume and its record).
    await createVolume(h, 'short-lived');
    await h.engine.deleteVolume('short-lived');
    const second = new CsiServer(h.engine, silentLogger(), { nodeId: NODE, endpoint: `unix://${path.join(h.dir, 'second.sock')}` });
    await second.start();
    await second.stop(1000);
    expect(h.engine.listSnapshots('a')).toEqual([]);
    expect(h.engine.listSnapshots('b').map((s) => s.name)).toEqual(['kept']);
    expect(await fs.readdir(path.join(h.store, 'csi', 'volumes'))).toEqual(['a.json', 'b.json']);
    // A group whose record exists survives a restart.
    const { groupSnapshot } = await h.group.call<{ groupSnapshot: Group }>('CreateVolumeGroupSnapshot', { name: 'durable', sourceVolumeIds: [a.volumeId] });
    const third = new CsiServer(h.engine, silentLogger(), { nodeId: NODE, endpoint: `unix://${path.join(h.dir, 'third.sock')}` });
    await third.start();
    await third.stop(1000);
    expect((await h.group.call<{ groupSnapshot: Group }>('GetVolumeGroupSnapshot', { groupSnapshotId: groupSnapshot.groupSnapshotId })).groupSnapshot).toEqual(groupSnapshot);
  });

  it('creates volumes from members in either access type', async () => {
    const { groupSnapshot } = await h.group.call<{ groupSnapshot: Group }>('CreateVolumeGroupSnapshot', { name: 'kinds', sourceVolumeIds: [a.volumeId, b.volumeId] });
    const member = groupSnapshot.snapshots[0]!;
    const asMount = await createVolume(h, 'from-member', { volumeCapabilities: [mountCapability('xfs')], volumeContentSource: { snapshot: { snapshotId: member.snapshotId } } });
    expect(asMount.volumeContext.fsType).toBe('xfs');
  });
});
