import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { isMountPoint } from '../../src/csi/node.js';
import { NODE, createVolume, startHarness, type Harness } from './helpers.js';

describe('CSI Node service (without the data path)', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.stop();
  });

  it('reports the node id and its topology', async () => {
    const info = await h.node.call<{ nodeId: string; accessibleTopology: { segments: Record<string, string> } }>('NodeGetInfo');
    expect(info.nodeId).toBe(NODE);
    expect(info.accessibleTopology).toEqual({ segments: { 'topology.tidemark.dev/node': NODE } });
    expect(await h.node.call('NodeGetCapabilities')).toEqual({ capabilities: [] });
  });

  it('cannot stage or publish yet, and confirms that an unpublished volume is unpublished', async () => {
    const volume = await createVolume(h, 'v');
    const target = path.join(h.dir, 'target');
    expect(await h.node.code('NodePublishVolume', { volumeId: volume.volumeId, targetPath: target })).toBe(grpc.status.UNIMPLEMENTED);
    expect(await h.node.code('NodeStageVolume', { volumeId: volume.volumeId, stagingTargetPath: target })).toBe(grpc.status.UNIMPLEMENTED);
    await h.node.call('NodeUnpublishVolume', { volumeId: volume.volumeId, targetPath: target });
    await fs.mkdir(target);
    await h.node.call('NodeUnpublishVolume', { volumeId: volume.volumeId, targetPath: target });
    expect(await h.node.code('NodeUnpublishVolume', { volumeId: `${NODE}:missing`, targetPath: target })).toBe(grpc.status.NOT_FOUND);
    expect(await h.node.code('NodeUnpublishVolume', { volumeId: volume.volumeId })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodeUnpublishVolume', { targetPath: target })).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('tells mount points from plain directories', async () => {
    expect(await isMountPoint('/')).toBe(true);
    expect(await isMountPoint('/proc')).toBe(true);
    expect(await isMountPoint(h.dir)).toBe(false);
  });
});
