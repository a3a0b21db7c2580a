/**
 * The Node service on the real host: volumes attached through the NBD server (nbdfuse + a
 * loop device here, the kernel client where the nbd module is loaded), real filesystems,
 * real bind mounts. Data written through a published path is checked in the engine, in a
 * clone made from a snapshot, and after an expansion.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { mountAt } from '../../src/host/index.js';
import { needing, root, tools } from '../support/requirements.js';
import { MiB, NODE, blockCapability, createSnapshot, createVolume, interruptRestore, mountCapability, startHarness, type Harness } from './helpers.js';

const TOOLS = ['nbdfuse', 'fusermount3', 'losetup', 'blkid', 'blockdev', 'mkfs.ext4', 'resize2fs', 'mkfs.xfs', 'xfs_growfs', 'mount', 'umount'];
const devices = needing([root('loop devices, mkfs and mounts'), ...tools(...TOOLS)]);

describe('CSI Node service', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.stop();
  });

  it('reports the node id, its topology and its capabilities', async () => {
    const info = await h.node.call<{ nodeId: string; accessibleTopology: { segments: Record<string, string> } }>('NodeGetInfo');
    expect(info.nodeId).toBe(NODE);
    expect(info.accessibleTopology).toEqual({ segments: { 'topology.tidemark.dev/node': NODE } });
    const caps = await h.node.call<{ capabilities: { rpc: { type: string } }[] }>('NodeGetCapabilities');
    expect(caps.capabilities.map((c) => c.rpc.type).sort()).toEqual(['EXPAND_VOLUME', 'GET_STORAGE_HEALTH', 'GET_VOLUME_HEALTH', 'GET_VOLUME_STATS', 'STAGE_UNSTAGE_VOLUME']);
    expect(await h.node.call('NodeGetStorageHealth')).toEqual({ backendHealth: [] });
  });

  it('reports a volume whose in-place restore was cut short as degraded, attached or not', async () => {
    const volume = await createVolume(h, 'mixed', { capacityRange: { requiredBytes: String(32 * MiB) } });
    await interruptRestore(h, 'mixed');
    const health = await h.node.call<{ volumeHealth: { volumeId: string; healthStatuses: { status: string; reason: string; message: string }[] } }>('NodeGetVolumeHealth', {
      volumeId: volume.volumeId,
    });
    expect(health.volumeHealth.healthStatuses).toEqual([{ status: 'DEGRADED', reason: 'RestoreInterrupted', message: expect.stringMatching(/to marker "before".*did not finish/) }]);
    await h.engine.restore({ volume: 'mixed', source: { marker: 'before' } });
    expect(await h.node.call('NodeGetVolumeHealth', { volumeId: volume.volumeId })).toEqual({ volumeHealth: { volumeId: volume.volumeId, healthStatuses: [] } });
  });

  it('refuses malformed and impossible requests with the spec’s codes, touching nothing', async () => {
    const volume = await createVolume(h, 'v');
    const staging = path.join(h.dir, 'staging');
    const target = path.join(h.dir, 'target');
    const cap = mountCapability();
    expect(await h.node.code('NodeStageVolume', { stagingTargetPath: staging, volumeCapability: cap })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodeStageVolume', { volumeId: volume.volumeId, volumeCapability: cap })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodeStageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodeStageVolume', { volumeId: `${NODE}:missing`, stagingTargetPath: staging, volumeCapability: cap })).toBe(grpc.status.NOT_FOUND);
    expect(await h.node.code('NodeStageVolume', { volumeId: 'other-node:v', stagingTargetPath: staging, volumeCapability: cap })).toBe(grpc.status.NOT_FOUND);
    expect(
      await h.node.code('NodeStageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, volumeCapability: { mount: { fsType: 'btrfs' }, accessMode: { mode: 'SINGLE_NODE_WRITER' } } }),
    ).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await h.node.code('NodePublishVolume', { volumeId: volume.volumeId, targetPath: target, volumeCapability: cap })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodePublishVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, volumeCapability: cap })).toBe(grpc.status.INVALID_ARGUMENT);
    // Not staged: publishing has nothing to bind.
    expect(await h.node.code('NodePublishVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: cap })).toBe(
      grpc.status.FAILED_PRECONDITION,
    );
    expect(await h.node.code('NodeUnpublishVolume', { volumeId: volume.volumeId })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodeUnpublishVolume', { volumeId: `${NODE}:missing`, targetPath: target })).toBe(grpc.status.NOT_FOUND);
    expect(await h.node.code('NodeUnstageVolume', { volumeId: volume.volumeId })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodeGetVolumeStats', { volumeId: volume.volumeId, volumePath: h.dir })).toBe(grpc.status.NOT_FOUND);
    expect(await h.node.code('NodeGetVolumeStats', { volumeId: `${NODE}:missing`, volumePath: h.dir })).toBe(grpc.status.NOT_FOUND);
    expect(await h.node.code('NodeExpandVolume', { volumeId: volume.volumeId })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.node.code('NodeExpandVolume', { volumeId: `${NODE}:missing`, volumePath: 'some/path' })).toBe(grpc.status.NOT_FOUND);
    // Unpublishing and unstaging what was never done is done.
    await h.node.call('NodeUnpublishVolume', { volumeId: volume.volumeId, targetPath: target });
    await h.node.call('NodeUnstageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging });
    expect(h.engine.volumeInfo('v').holders).toEqual([]);
  });

  devices.describe('with real devices and filesystems', () => {
    async function stage(volumeId: string, staging: string, capability: object): Promise<void> {
      await fs.mkdir(staging, { recursive: true });
      await h.node.call('NodeStageVolume', { volumeId, stagingTargetPath: staging, volumeCapability: capability });
    }

    async function teardown(volumeId: string, staging: string, target: string): Promise<void> {
      await h.node.call('NodeUnpublishVolume', { volumeId, targetPath: target });
      await h.node.call('NodeUnstageVolume', { volumeId, stagingTargetPath: staging });
    }

    it('stages ext4, publishes it, reports usage, and the files reach snapshots and clones', async () => {
      const volume = await createVolume(h, 'data', { capacityRange: { requiredBytes: String(64 * MiB) } });
      const staging = path.join(h.dir, 'staging');
      const target = path.join(h.dir, 'pods', 'p1', 'target');
      const cap = mountCapability('ext4');
      await stage(volume.volumeId, staging, cap);
      await stage(volume.volumeId, staging, cap); // idempotent
      expect(h.engine.volumeInfo('data').holders.length).toBeGreaterThan(0);
      const request = { volumeId: volume.volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: cap };
      await h.node.call('NodePublishVolume', request);
      await h.node.call('NodePublishVolume', request); // idempotent
      // Same target, other mode: the spec's ALREADY_EXISTS.
      expect(await h.node.code('NodePublishVolume', { ...request, readonly: true })).toBe(grpc.status.ALREADY_EXISTS);
      // Staged elsewhere already.
      const elsewhere = path.join(h.dir, 'staging2');
      await fs.mkdir(elsewhere);
      expect(await h.node.code('NodeStageVolume', { volumeId: volume.volumeId, stagingTargetPath: elsewhere, volumeCapability: cap })).toBe(grpc.status.FAILED_PRECONDITION);

      const content = Buffer.alloc(3 * MiB + 123, 0);
      for (let i = 0; i < content.length; i++) content[i] = (i * 31 + 7) & 0xff;
      await fs.writeFile(path.join(target, 'file.bin'), content);
      const handle = await fs.open(path.join(target, 'file.bin'), 'r+');
      await handle.sync();
      await handle.close();

      const stats = await h.node.call<{ usage: { unit: string; total: string; used: string; available: string }[] }>(
        'NodeGetVolumeStats',
        { volumeId: volume.volumeId, volumePath: target },
      );
      const bytes = stats.usage.find((u) => u.unit === 'BYTES')!;
      const inodes = stats.usage.find((u) => u.unit === 'INODES')!;
      expect(Number(bytes.total)).toBeGreaterThan(40 * MiB);
      expect(Number(bytes.used)).toBeGreaterThanOrEqual(3 * MiB);
      expect(Number(inodes.total)).toBeGreaterThan(0);
      expect(Number(inodes.used)).toBeGreaterThan(0);
      const health = await h.node.call<{ volumeHealth: { volumeId: string; healthStatuses: unknown[] } }>('NodeGetVolumeHealth', { volumeId: volume.volumeId, volumePublishPath: target });
      expect(health.volumeHealth).toEqual({ volumeId: volume.volumeId, healthStatuses: [] });

      // A snapshot while published: the filesystem was synced, so the clone has the file.
      const snapshot = await createSnapshot(h, 'snap', volume.volumeId);
      await teardown(volume.volumeId, staging, target);
      await teardown(volume.volumeId, staging, target); // idempotent
      expect(await mountAt(target)).toBeUndefined();
      expect(await mountAt(staging)).toBeUndefined();
      await expect(fs.stat(target)).rejects.toThrow();
      expect(h.engine.volumeInfo('data').holders).toEqual([]);

      const clone = (
        await h.controller.call<{ volume: { volumeId: string } }>('CreateVolume', {
          name: 'clone',
          capacityRange: { requiredBytes: String(64 * MiB) },
          volumeCapabilities: [cap],
          volumeContentSource: { snapshot: { snapshotId: snapshot.snapshotId } },
        })
      ).volume;
      const cloneStaging = path.join(h.dir, 'clone-staging');
      const cloneTarget = path.join(h.dir, 'clone-target');
      await stage(clone.volumeId, cloneStaging, cap);
      await h.node.call('NodePublishVolume', { volumeId: clone.volumeId, stagingTargetPath: cloneStaging, targetPath: cloneTarget, volumeCapability: cap, readonly: true });
      expect((await fs.readFile(path.join(cloneTarget, 'file.bin'))).equals(content)).toBe(true);
      await expect(fs.writeFile(path.join(cloneTarget, 'other'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
      await teardown(clone.volumeId, cloneStaging, cloneTarget);
    });

    it('publishes a raw block device read-write, and what is written lands in the volume', async () => {
      const volume = await createVolume(h, 'raw', { capacityRange: { requiredBytes: String(16 * MiB) }, volumeCapabilities: [blockCapability()] });
      const staging = path.join(h.dir, 'staging');
      const target = path.join(h.dir, 'dev', 'raw');
      // Some COs create the target as a directory; it is replaced by the device file.
      await fs.mkdir(target, { recursive: true });
      await stage(volume.volumeId, staging, blockCapability());
      await h.node.call('NodePublishVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: blockCapability() });
      const pattern = Buffer.alloc(1 * MiB);
      for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 13 + 1) & 0xff;
      const handle = await fs.open(target, 'r+');
      await handle.write(pattern, 0, pattern.length, 5 * MiB);
      await handle.sync();
      await handle.close();
      const stats = await h.node.call<{ usage: { unit: string; total: string }[] }>('NodeGetVolumeStats', { volumeId: volume.volumeId, volumePath: target });
      expect(stats.usage).toEqual([expect.objectContaining({ unit: 'BYTES', total: String(16 * MiB) })]);
      // Staged for block, so a mount publish of it is refused.
      expect(
        await h.node.code('NodePublishVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, targetPath: path.join(h.dir, 'm'), volumeCapability: mountCapability() }),
      ).toBe(grpc.status.FAILED_PRECONDITION);
      await teardown(volume.volumeId, staging, target);
      await expect(fs.stat(target)).rejects.toThrow();
      expect((await h.engine.read('raw', 5 * MiB, pattern.length)).equals(pattern)).toBe(true);
    });

    it('refuses to format over another filesystem, and mounts xfs clones side by side', async () => {
      const volume = await createVolume(h, 'x', { capacityRange: { requiredBytes: String(320 * MiB) } });
      const staging = path.join(h.dir, 'staging');
      const target = path.join(h.dir, 'target');
      await stage(volume.volumeId, staging, mountCapability('xfs'));
      await h.node.call('NodePublishVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCapability('xfs') });
      await fs.writeFile(path.join(target, 'hello'), 'xfs');
      await h.node.call('NodeUnpublishVolume', { volumeId: volume.volumeId, targetPath: target });
      await h.node.call('NodeUnstageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging }); // unmount syncs
      // The device holds xfs now; staging it as ext4 must not format it.
      expect(await h.node.code('NodeStageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, volumeCapability: mountCapability('ext4') })).toBe(
        grpc.status.FAILED_PRECONDITION,
      );
      await h.node.call('NodeUnstageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging });
      // A clone has the same filesystem UUID; both mount at once.
      const snapshot = await createSnapshot(h, 's', volume.volumeId);
      const clone = (
        await h.controller.call<{ volume: { volumeId: string } }>('CreateVolume', {
          name: 'x-clone',
          capacityRange: { requiredBytes: String(320 * MiB) },
          volumeCapabilities: [mountCapability('xfs')],
          volumeContentSource: { snapshot: { snapshotId: snapshot.snapshotId } },
        })
      ).volume;
      const cloneStaging = path.join(h.dir, 'clone-staging');
      await stage(volume.volumeId, staging, mountCapability('xfs'));
      await stage(clone.volumeId, cloneStaging, mountCapability('xfs'));
      expect(await fs.readFile(path.join(cloneStaging, 'hello'), 'utf8')).toBe('xfs');
      expect(await fs.readFile(path.join(staging, 'hello'), 'utf8')).toBe('xfs');
      await h.node.call('NodeUnstageVolume', { volumeId: clone.volumeId, stagingTargetPath: cloneStaging });
      await h.node.call('NodeUnstageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging });
    });

    it('grows the filesystem once the device has the new size (offline expansion)', async () => {
      const cap = mountCapability('ext4');
      const volume = await createVolume(h, 'grow', { capacityRange: { requiredBytes: String(64 * MiB) } });
      const staging = path.join(h.dir, 'staging');
      const target = path.join(h.dir, 'target');
      const publish = { volumeId: volume.volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: cap };
      await stage(volume.volumeId, staging, cap);
      await h.node.call('NodePublishVolume', publish);
      await fs.writeFile(path.join(target, 'keep'), 'before the resize');
      const before = (await fs.statfs(target)).blocks * (await fs.statfs(target)).bsize;
      await h.controller.call('ControllerExpandVolume', { volumeId: volume.volumeId, capacityRange: { requiredBytes: String(128 * MiB) } });
      // Attached at the old size: the node says what to do instead of pretending.
      expect(await h.node.code('NodeExpandVolume', { volumeId: volume.volumeId, volumePath: target, capacityRange: { requiredBytes: String(128 * MiB) } })).toBe(
        grpc.status.FAILED_PRECONDITION,
      );
      await teardown(volume.volumeId, staging, target);
      await stage(volume.volumeId, staging, cap);
      await h.node.call('NodePublishVolume', publish);
      const grown = await h.node.call<{ capacityBytes: string }>('NodeExpandVolume', {
        volumeId: volume.volumeId,
        volumePath: target,
        capacityRange: { requiredBytes: String(128 * MiB) },
        volumeCapability: cap,
      });
      expect(Number(grown.capacityBytes)).toBe(128 * MiB);
      const after = (await fs.statfs(target)).blocks * (await fs.statfs(target)).bsize;
      expect(after).toBeGreaterThan(before + 50 * MiB);
      expect(await fs.readFile(path.join(target, 'keep'), 'utf8')).toBe('before the resize');
      await teardown(volume.volumeId, staging, target);
    });
  });
});
