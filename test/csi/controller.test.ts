import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import winston from 'winston';
import {
  MiB,
  NODE,
  blockCapability,
  createSnapshot,
  createVolume,
  engineName,
  interruptRestore,
  mountCapability,
  pattern,
  startHarness,
  type Harness,
  type SnapshotMessage,
  type VolumeMessage,
} from './helpers.js';

const TOPOLOGY = { segments: { 'topology.tidemark.dev/node': NODE } };

describe('CSI Controller service: volumes', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.stop();
  });

  it('advertises exactly the controller capabilities it implements', async () => {
    const { capabilities } = await h.controller.call<{ capabilities: { rpc: { type: string } }[] }>('ControllerGetCapabilities');
    expect(capabilities.map((c) => c.rpc.type).sort()).toEqual(
      [
        'CLONE_VOLUME',
        'CREATE_DELETE_SNAPSHOT',
        'CREATE_DELETE_VOLUME',
        'EXPAND_VOLUME',
        'GET_CAPACITY',
        'GET_SNAPSHOT',
        'GET_VOLUME',
        'GET_VOLUME_HEALTH',
        'LIST_SNAPSHOTS',
        'LIST_VOLUMES',
        'LIST_VOLUME_HEALTH',
        'MODIFY_VOLUME',
      ].sort(),
    );
    expect(await h.controller.code('ControllerPublishVolume', { volumeId: `${NODE}:x`, nodeId: NODE })).toBe(grpc.status.UNIMPLEMENTED);
  });

  it('creates a mount volume rounded up to the block size, on this node, with its context', async () => {
    const volume = await createVolume(h, 'pvc-1', { capacityRange: { requiredBytes: String(5 * MiB + 1) } });
    expect(volume.volumeId).toBe(`${NODE}:pvc-1`);
    expect(volume.capacityBytes).toBe(String(5 * MiB + 4096));
    expect(volume.accessibleTopology).toEqual([TOPOLOGY]);
    expect(volume.volumeContext).toEqual({ fsType: 'ext4', blockSize: '4096', trackingGranularity: String(64 * 1024) });
    expect(volume.contentSource).toBeNull();
    const info = h.engine.volumeInfo('pvc-1');
    expect(info.size).toBe(5 * MiB + 4096);
    expect(info.blockSize).toBe(4096);
  });

  it('creates a block volume of 1 GiB when no capacity is asked for, and honours limit_bytes alone', async () => {
    const { volume } = await h.controller.call<{ volume: VolumeMessage }>('CreateVolume', { name: 'raw', volumeCapabilities: [blockCapability()] });
    expect(volume.capacityBytes).toBe(String(1024 * MiB));
    const limited = await createVolume(h, 'small', { capacityRange: { limitBytes: String(3 * MiB + 100) } });
    expect(limited.capacityBytes).toBe(String(3 * MiB));
  });

  it('applies StorageClass parameters: fsType, tracking granularity, journal retention', async () => {
    const volume = await createVolume(h, 'tuned', {
      parameters: { fsType: 'xfs', trackingGranularity: '16Ki', retentionSize: '64Mi', retentionAge: '2h', 'csi.storage.k8s.io/pvc/name': 'data' },
    });
    expect(volume.volumeContext).toMatchObject({ fsType: 'xfs', trackingGranularity: String(16 * 1024) });
    const info = h.engine.volumeInfo('tuned');
    expect(info.granularity).toBe(16 * 1024);
    expect(info.retention).toEqual({ maxBytes: 64 * MiB, maxAgeSeconds: 7200 });
    // mutable_parameters (a VolumeAttributesClass) override the class's retention.
    await createVolume(h, 'vac', { parameters: { retentionAge: '2h' }, mutableParameters: { retentionAge: '1d' } });
    expect(h.engine.volumeInfo('vac').retention).toEqual({ maxAgeSeconds: 86400 });
    // The mount capability's fs_type decides when the class has none.
    const fromCapability = await createVolume(h, 'xfs-cap', { volumeCapabilities: [mountCapability('xfs')] });
    expect(fromCapability.volumeContext.fsType).toBe('xfs');
  });

  it('is idempotent by name and refuses a conflicting request with ALREADY_EXISTS', async () => {
    const first = await createVolume(h, 'twice', { parameters: { retentionAge: '1h' } });
    const again = await createVolume(h, 'twice', { parameters: { retentionAge: '3600' } });
    expect(again).toEqual(first);
    expect(h.engine.listVolumes().map((v) => v.name)).toEqual(['twice']);
    const conflicts = [
      { capacityRange: { requiredBytes: String(8 * MiB) } },
      { parameters: { retentionAge: '2h' } },
      { parameters: { retentionAge: '1h', trackingGranularity: '4Ki' } },
      { parameters: { retentionAge: '1h' }, volumeCapabilities: [mountCapability('xfs')] },
      { parameters: { retentionAge: '1h' }, mutableParameters: { retentionSize: '1Gi' } },
    ];
    for (const conflict of conflicts) {
      expect(await h.controller.code('CreateVolume', { name: 'twice', capacityRange: { requiredBytes: String(4 * MiB) }, volumeCapabilities: [mountCapability()], ...conflict })).toBe(
        grpc.status.ALREADY_EXISTS,
      );
    }
  });

  it('hashes names the engine cannot use, stably', async () => {
    const name = 'A volume name with spaces, ünïcode and 128 bytes of length'.padEnd(128, 'x');
    const first = await createVolume(h, name);
    expect(first.volumeId).toMatch(new RegExp(`^${NODE}:_h[0-9a-f]{32}$`));
    expect((await createVolume(h, name)).volumeId).toBe(first.volumeId);
    // A literal name that starts with "_" is hashed too, so it can never pose as a hashed one.
    expect((await createVolume(h, '_h0123')).volumeId).toMatch(/:_h[0-9a-f]{32}$/);
  });

  it('refuses bad requests with the codes the spec prescribes', async () => {
    const base = { name: 'bad', capacityRange: { requiredBytes: String(4 * MiB) }, volumeCapabilities: [mountCapability()] };
    const cases: [object, grpc.status][] = [
      [{ ...base, name: '' }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, name: 'ctl\u0007char' }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, volumeCapabilities: [] }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, volumeCapabilities: [{ mount: { fsType: '' } }] }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, volumeCapabilities: [{ accessMode: { mode: 'SINGLE_NODE_WRITER' } }] }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, volumeCapabilities: [{ block: {}, accessMode: { mode: 'MULTI_NODE_MULTI_WRITER' } }] }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, volumeCapabilities: [mountCapability('btrfs')] }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, volumeCapabilities: [mountCapability('ext4'), mountCapability('xfs')] }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, parameters: { fsType: 'ext4' }, volumeCapabilities: [mountCapability('xfs')] }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, parameters: { colour: 'blue' } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, parameters: { trackingGranularity: '3000' } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, parameters: { retentionAge: 'soon' } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, parameters: { retentionSize: '-1' } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, mutableParameters: { XXX_FakeKey: 'x' } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, mutableParameters: { trackingGranularity: '4Ki' } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, capacityRange: { requiredBytes: '-5' } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, capacityRange: { requiredBytes: String(8 * MiB), limitBytes: String(4 * MiB) } }, grpc.status.INVALID_ARGUMENT],
      [{ ...base, capacityRange: { requiredBytes: '4097', limitBytes: '8000' } }, grpc.status.OUT_OF_RANGE],
      [{ ...base, capacityRange: { limitBytes: '100' } }, grpc.status.OUT_OF_RANGE],
      [{ ...base, capacityRange: { requiredBytes: String(2 ** 60) } }, grpc.status.OUT_OF_RANGE],
      [{ ...base, accessibilityRequirements: { requisite: [{ segments: { 'topology.tidemark.dev/node': 'node-b' } }] } }, grpc.status.RESOURCE_EXHAUSTED],
      [{ ...base, volumeContentSource: { snapshot: { snapshotId: `${NODE}:nope:snap` } } }, grpc.status.NOT_FOUND],
      [{ ...base, volumeContentSource: { snapshot: { snapshotId: 'garbage' } } }, grpc.status.NOT_FOUND],
      [{ ...base, volumeContentSource: { volume: { volumeId: `${NODE}:nope` } } }, grpc.status.NOT_FOUND],
      [{ ...base, volumeContentSource: { volume: { volumeId: 'node-b:pvc-1' } } }, grpc.status.NOT_FOUND],
    ];
    for (const [request, code] of cases) {
      const got = await h.controller.code('CreateVolume', request);
      if (got !== code) throw new Error(`CreateVolume ${JSON.stringify(request)}: expected ${grpc.status[code]}, got ${grpc.status[got]}`);
    }
    expect(h.engine.listVolumes()).toEqual([]);
    expect(await fs.readdir(path.join(h.store, 'csi', 'volumes'))).toEqual([]);
  });

  it('creates volumes that must be reachable from this node among others, and ignores preferences', async () => {
    const other = { segments: { 'topology.tidemark.dev/node': 'node-b' } };
    await createVolume(h, 'here', { accessibilityRequirements: { requisite: [other, TOPOLOGY], preferred: [other] } });
    await createVolume(h, 'anywhere', { accessibilityRequirements: { requisite: [], preferred: [other] } });
    expect(h.engine.has('here') && h.engine.has('anywhere')).toBe(true);
  });

  it('deletes idempotently, and not while the volume has snapshots or is in use', async () => {
    const volume = await createVolume(h, 'doomed');
    await h.controller.call('CreateSnapshot', { name: 'keep', sourceVolumeId: volume.volumeId });
    expect(await h.controller.code('DeleteVolume', { volumeId: volume.volumeId })).toBe(grpc.status.FAILED_PRECONDITION);
    await h.controller.call('DeleteSnapshot', { snapshotId: `${volume.volumeId}:keep` });
    h.engine.hold('doomed', 'nbd:test');
    expect(await h.controller.code('DeleteVolume', { volumeId: volume.volumeId })).toBe(grpc.status.FAILED_PRECONDITION);
    h.engine.release('doomed', 'nbd:test');
    await h.controller.call('DeleteVolume', { volumeId: volume.volumeId });
    expect(h.engine.has('doomed')).toBe(false);
    expect(await fs.readdir(path.join(h.store, 'csi', 'volumes'))).toEqual([]);
    await h.controller.call('DeleteVolume', { volumeId: volume.volumeId });
    await h.controller.call('DeleteVolume', { volumeId: 'not-a-handle' });
    await h.controller.call('DeleteVolume', { volumeId: 'node-b:doomed' });
    expect(await h.controller.code('DeleteVolume', { volumeId: '' })).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('lists volumes page by page, and refuses a token it did not issue with ABORTED', async () => {
    const names = ['v1', 'v2', 'v3', 'v4', 'v5'];
    for (const name of names) await createVolume(h, name);
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = await h.controller.call<{ entries: { volume: VolumeMessage; status: { publishedNodeIds: string[] } }[]; nextToken: string }>('ListVolumes', {
        maxEntries: 2,
        startingToken: token,
      });
      expect(page.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page.entries.map((e) => e.volume.volumeId));
      token = page.nextToken;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen).toEqual(names.map((n) => `${NODE}:${n}`));
    // A token stays good when the entry it points after is deleted.
    const first = await h.controller.call<{ nextToken: string }>('ListVolumes', { maxEntries: 2 });
    await h.controller.call('DeleteVolume', { volumeId: `${NODE}:v2` });
    const rest = await h.controller.call<{ entries: { volume: VolumeMessage }[] }>('ListVolumes', { startingToken: first.nextToken });
    expect(rest.entries.map((e) => e.volume.volumeId)).toEqual([`${NODE}:v3`, `${NODE}:v4`, `${NODE}:v5`]);
    expect(await h.controller.code('ListVolumes', { startingToken: 'invalid-token' })).toBe(grpc.status.ABORTED);
    expect(await h.controller.code('ListVolumes', { maxEntries: -1 })).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('validates capabilities against the volume', async () => {
    const volume = await createVolume(h, 'checked', { parameters: { fsType: 'xfs' } });
    const ok = await h.controller.call<{ confirmed: { volumeCapabilities: unknown[] } | null; message: string }>('ValidateVolumeCapabilities', {
      volumeId: volume.volumeId,
      volumeCapabilities: [mountCapability('xfs'), blockCapability()],
      volumeContext: volume.volumeContext,
    });
    expect(ok.confirmed?.volumeCapabilities).toHaveLength(2);
    for (const capability of [
      { block: {}, accessMode: { mode: 'MULTI_NODE_READER_ONLY' } },
      mountCapability('ext4'),
    ]) {
      const refused = await h.controller.call<{ confirmed: unknown; message: string }>('ValidateVolumeCapabilities', {
        volumeId: volume.volumeId,
        volumeCapabilities: [capability],
      });
      expect(refused.confirmed).toBeNull();
      expect(refused.message).not.toBe('');
    }
    const wrongContext = await h.controller.call<{ confirmed: unknown; message: string }>('ValidateVolumeCapabilities', {
      volumeId: volume.volumeId,
      volumeCapabilities: [blockCapability()],
      volumeContext: { fsType: 'ext4' },
    });
    expect(wrongContext.confirmed).toBeNull();
    expect(await h.controller.code('ValidateVolumeCapabilities', { volumeId: `${NODE}:missing`, volumeCapabilities: [blockCapability()] })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('ValidateVolumeCapabilities', { volumeId: '', volumeCapabilities: [blockCapability()] })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.controller.code('ValidateVolumeCapabilities', { volumeId: volume.volumeId })).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('reports the free space of the store as capacity, and none for another node', async () => {
    const stats = await fs.statfs(h.store);
    const response = await h.controller.call<{ availableCapacity: string; minimumVolumeSize: { value: string } }>('GetCapacity', {
      volumeCapabilities: [mountCapability()],
      parameters: { fsType: 'ext4' },
    });
    // Other processes write to the same filesystem meanwhile; the figure must be the store's.
    expect(Math.abs(Number(response.availableCapacity) - stats.bavail * stats.bsize)).toBeLessThan(256 * MiB);
    expect(response.minimumVolumeSize.value).toBe('4096');
    const elsewhere = await h.controller.call<{ availableCapacity: string }>('GetCapacity', {
      accessibleTopology: { segments: { 'topology.tidemark.dev/node': 'node-b' } },
    });
    expect(elsewhere.availableCapacity).toBe('0');
    const unsupported = await h.controller.call<{ availableCapacity: string }>('GetCapacity', {
      volumeCapabilities: [{ block: {}, accessMode: { mode: 'MULTI_NODE_MULTI_WRITER' } }],
    });
    expect(unsupported.availableCapacity).toBe('0');
    expect(await h.controller.code('GetCapacity', { parameters: { nonsense: '1' } })).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('gets a volume with its publication status and health', async () => {
    const volume = await createVolume(h, 'watched');
    const got = await h.controller.call<{ volume: VolumeMessage; status: { publishedNodeIds: string[] } }>('ControllerGetVolume', { volumeId: volume.volumeId });
    expect(got.volume).toEqual(volume);
    expect(got.status.publishedNodeIds).toEqual([]);
    h.engine.hold('watched', 'nbd:test');
    const held = await h.controller.call<{ status: { publishedNodeIds: string[] } }>('ControllerGetVolume', { volumeId: volume.volumeId });
    expect(held.status.publishedNodeIds).toEqual([NODE]);
    h.engine.release('watched', 'nbd:test');
    const health = await h.controller.call('ControllerGetVolumeHealth', { volumeId: volume.volumeId });
    expect(health).toEqual({ volumeHealth: { volumeId: volume.volumeId, healthStatuses: [] } });
    expect(await h.controller.call('ControllerListVolumeHealth', {})).toEqual({ entries: [], nextToken: '' });
    expect(await h.controller.code('ControllerGetVolume', { volumeId: `${NODE}:gone` })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('ControllerGetVolumeHealth', { volumeId: '' })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.controller.code('ControllerGetVolumeHealth', { volumeId: 'node-b:watched' })).toBe(grpc.status.NOT_FOUND);
  });

  it('reports a volume whose in-place restore was cut short as degraded until it is cleared', async () => {
    const volume = await createVolume(h, 'mixed', { capacityRange: { requiredBytes: String(32 * MiB) } });
    const sequence = await interruptRestore(h, 'mixed');
    const degraded = {
      volumeId: volume.volumeId,
      healthStatuses: [
        {
          status: 'DEGRADED',
          reason: 'RestoreInterrupted',
          message: expect.stringMatching(new RegExp(`^an in-place restore of volume mixed to marker "before" \\(sequence ${sequence}\\), started \\S+, did not finish: .*clear-restore$`)),
        },
      ],
    };
    expect(await h.controller.call('ControllerGetVolumeHealth', { volumeId: volume.volumeId })).toEqual({ volumeHealth: degraded });
    expect(await h.controller.call('ControllerListVolumeHealth', {})).toEqual({ entries: [degraded], nextToken: '' });
    await h.engine.clearInterruptedRestore('mixed');
    expect(await h.controller.call('ControllerGetVolumeHealth', { volumeId: volume.volumeId })).toEqual({ volumeHealth: { volumeId: volume.volumeId, healthStatuses: [] } });
  });

  it('modifies journal retention, and nothing else', async () => {
    const volume = await createVolume(h, 'kept', { parameters: { retentionSize: '1Gi', retentionAge: '1h' } });
    await h.controller.call('ControllerModifyVolume', { volumeId: volume.volumeId, mutableParameters: { retentionAge: '7d' } });
    expect(h.engine.volumeInfo('kept').retention).toEqual({ maxBytes: 1024 * MiB, maxAgeSeconds: 7 * 86400 });
    await h.controller.call('ControllerModifyVolume', { volumeId: volume.volumeId, mutableParameters: { retentionSize: 'none' } });
    expect(h.engine.volumeInfo('kept').retention).toEqual({ maxAgeSeconds: 7 * 86400 });
    for (const mutableParameters of [{ XXX_FakeKey: 'x' }, { fsType: 'xfs' }, { retentionAge: '-3' }]) {
      expect(await h.controller.code('ControllerModifyVolume', { volumeId: volume.volumeId, mutableParameters })).toBe(grpc.status.INVALID_ARGUMENT);
    }
    // Nothing to change succeeds and changes nothing; the volume is checked before the parameters.
    expect(await h.controller.call('ControllerModifyVolume', { volumeId: volume.volumeId, mutableParameters: {} })).toEqual({});
    expect(h.engine.volumeInfo('kept').retention).toEqual({ maxAgeSeconds: 7 * 86400 });
    expect(await h.controller.code('ControllerModifyVolume', { volumeId: `${NODE}:missing`, mutableParameters: { retentionAge: '1h' } })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('ControllerModifyVolume', { volumeId: `${NODE}:missing`, mutableParameters: {} })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('ControllerModifyVolume', { volumeId: `${NODE}:missing`, mutableParameters: { XXX_FakeKey: 'x' } })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('ControllerModifyVolume', { volumeId: '', mutableParameters: { retentionAge: '1h' } })).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('expands a volume online, keeping its data, and never shrinks it', async () => {
    const volume = await createVolume(h, 'growing');
    const data = pattern(64 * 1024, 3);
    await h.engine.write('growing', 4 * MiB - data.length, data);
    h.engine.hold('growing', 'nbd:test');
    const grown = await h.controller.call<{ capacityBytes: string; nodeExpansionRequired: boolean }>('ControllerExpandVolume', {
      volumeId: volume.volumeId,
      capacityRange: { requiredBytes: String(6 * MiB + 1) },
      volumeCapability: mountCapability(),
    });
    expect(grown).toEqual({ capacityBytes: String(6 * MiB + 4096), nodeExpansionRequired: true });
    expect(h.engine.volumeInfo('growing').size).toBe(6 * MiB + 4096);
    expect((await h.engine.read('growing', 4 * MiB - data.length, data.length)).equals(data)).toBe(true);
    expect((await h.engine.read('growing', 4 * MiB, 2 * MiB)).equals(Buffer.alloc(2 * MiB))).toBe(true);
    // A retry, or a smaller request, answers with the size the volume has.
    const again = await h.controller.call<{ capacityBytes: string }>('ControllerExpandVolume', { volumeId: volume.volumeId, capacityRange: { requiredBytes: String(5 * MiB) } });
    expect(again.capacityBytes).toBe(String(6 * MiB + 4096));
    expect(await h.controller.code('ControllerExpandVolume', { volumeId: volume.volumeId, capacityRange: { requiredBytes: '1', limitBytes: String(2 * MiB) } })).toBe(
      grpc.status.OUT_OF_RANGE,
    );
    expect(await h.controller.code('ControllerExpandVolume', { volumeId: volume.volumeId })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.controller.code('ControllerExpandVolume', { volumeId: '', capacityRange: { requiredBytes: '1' } })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(
      await h.controller.code('ControllerExpandVolume', {
        volumeId: volume.volumeId,
        capacityRange: { requiredBytes: String(8 * MiB) },
        volumeCapability: mountCapability('xfs'),
      }),
    ).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.controller.code('ControllerExpandVolume', { volumeId: `${NODE}:missing`, capacityRange: { requiredBytes: '1' } })).toBe(grpc.status.NOT_FOUND);
    h.engine.release('growing', 'nbd:test');
  });

  it('turns a second call on a volume that is still being made away with ABORTED, and guards its source', async () => {
    const source = await createVolume(h, 'big', { capacityRange: { requiredBytes: String(128 * MiB) } });
    // Data everywhere, so that the restore has real copying to do while the other calls arrive.
    for (let at = 0; at < 128 * MiB; at += 4 * MiB) await h.engine.write('big', at, pattern(4 * MiB, at));
    const snapshot = await createSnapshot(h, 'big-snap', source.volumeId);
    const request = {
      name: 'copy',
      capacityRange: { requiredBytes: String(128 * MiB) },
      volumeCapabilities: [blockCapability()],
      volumeContentSource: { snapshot: { snapshotId: snapshot.snapshotId } },
    };
    const first = h.controller.call<{ volume: VolumeMessage }>('CreateVolume', request);
    const again = h.controller.code('CreateVolume', request);
    const deleteSource = h.controller.code('DeleteSnapshot', { snapshotId: snapshot.snapshotId });
    // Other restores of the same snapshot are welcome meanwhile.
    const sibling = h.controller.call<{ volume: VolumeMessage }>('CreateVolume', { ...request, name: 'sibling' });
    expect(await again).toBe(grpc.status.ABORTED);
    expect(await deleteSource).toBe(grpc.status.ABORTED);
    const made = (await first).volume;
    expect((await sibling).volume.capacityBytes).toBe(String(128 * MiB));
    // Once the first call is done, the retry is the idempotent repeat and the snapshot can go.
    expect((await h.controller.call<{ volume: VolumeMessage }>('CreateVolume', request)).volume).toEqual(made);
    await h.controller.call('DeleteSnapshot', { snapshotId: snapshot.snapshotId });
    expect((await h.engine.read('copy', 124 * MiB, 4 * MiB)).equals(pattern(4 * MiB, 124 * MiB))).toBe(true);
  });

  it('never logs secrets or mount flags', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    await h.stop();
    const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: sink })] });
    h = await startHarness({ logger });
    const secrets = { password: 'hunter2-secret' };
    const capability = { mount: { fsType: 'ext4', mountFlags: ['credentials=flag-secret'] }, accessMode: { mode: 'SINGLE_NODE_WRITER' } };
    const volume = (await h.controller.call<{ volume: VolumeMessage }>('CreateVolume', { name: 'private', volumeCapabilities: [capability], secrets })).volume;
    await h.controller.call('CreateSnapshot', { name: 'snap', sourceVolumeId: volume.volumeId, secrets });
    await h.controller.code('CreateVolume', { name: '', volumeCapabilities: [capability], secrets });
    await h.controller.call('DeleteSnapshot', { snapshotId: `${volume.volumeId}:snap`, secrets });
    await h.controller.call('DeleteVolume', { volumeId: volume.volumeId, secrets });
    const log = lines.join('');
    expect(log).toContain('"volume":"private"');
    expect(log).toContain('CreateVolume');
    expect(log).toContain('<redacted: 1>');
    expect(log).not.toContain('hunter2-secret');
    expect(log).not.toContain('flag-secret');
  });
});

describe('CSI Controller service: snapshots, restores and clones', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.stop();
  });

  it('creates snapshots idempotently by name, and refuses the name for another volume', async () => {
    const a = await createVolume(h, 'a');
    const b = await createVolume(h, 'b');
    const snapshot = await createSnapshot(h, 'snapshot-1', a.volumeId);
    expect(snapshot).toMatchObject({ snapshotId: `${NODE}:a:snapshot-1`, sourceVolumeId: a.volumeId, sizeBytes: String(4 * MiB), readyToUse: true, groupSnapshotId: '' });
    expect(Number(snapshot.creationTime.seconds)).toBeGreaterThan(0);
    expect(await createSnapshot(h, 'snapshot-1', a.volumeId)).toEqual(snapshot);
    expect(h.engine.listSnapshots('a')).toHaveLength(1);
    expect(await h.controller.code('CreateSnapshot', { name: 'snapshot-1', sourceVolumeId: b.volumeId })).toBe(grpc.status.ALREADY_EXISTS);
    expect(await h.controller.code('CreateSnapshot', { name: '', sourceVolumeId: a.volumeId })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.controller.code('CreateSnapshot', { name: 'x' })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await h.controller.code('CreateSnapshot', { name: 'x', sourceVolumeId: `${NODE}:missing` })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('CreateSnapshot', { name: 'x', sourceVolumeId: 'node-b:a' })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('CreateSnapshot', { name: 'x', sourceVolumeId: a.volumeId, parameters: { colour: 'red' } })).toBe(grpc.status.INVALID_ARGUMENT);
    const requisite = [{ segments: { 'topology.tidemark.dev/node': 'node-b' } }];
    expect(await h.controller.code('CreateSnapshot', { name: 'x', sourceVolumeId: a.volumeId, accessibilityRequirements: { requisite } })).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('lists, filters and pages snapshots; gets and deletes them idempotently', async () => {
    const a = await createVolume(h, 'a');
    const b = await createVolume(h, 'b');
    for (const name of ['s1', 's2', 's3']) await createSnapshot(h, name, a.volumeId);
    await createSnapshot(h, 't1', b.volumeId);
    type List = { entries: { snapshot: SnapshotMessage }[]; nextToken: string };
    const all = await h.controller.call<List>('ListSnapshots');
    expect(all.entries.map((e) => e.snapshot.snapshotId)).toEqual([`${NODE}:a:s1`, `${NODE}:a:s2`, `${NODE}:a:s3`, `${NODE}:b:t1`]);
    const ofB = await h.controller.call<List>('ListSnapshots', { sourceVolumeId: b.volumeId });
    expect(ofB.entries.map((e) => e.snapshot.snapshotId)).toEqual([`${NODE}:b:t1`]);
    const one = await h.controller.call<List>('ListSnapshots', { snapshotId: `${NODE}:a:s2` });
    expect(one.entries.map((e) => e.snapshot.snapshotId)).toEqual([`${NODE}:a:s2`]);
    for (const filter of [{ snapshotId: 'none-exist-id' }, { sourceVolumeId: `${NODE}:nope` }, { snapshotId: `${NODE}:a:s2`, sourceVolumeId: b.volumeId }]) {
      expect((await h.controller.call<List>('ListSnapshots', filter)).entries).toEqual([]);
    }
    const page1 = await h.controller.call<List>('ListSnapshots', { maxEntries: 3 });
    expect(page1.entries).toHaveLength(3);
    const page2 = await h.controller.call<List>('ListSnapshots', { startingToken: page1.nextToken });
    expect(page2.entries.map((e) => e.snapshot.snapshotId)).toEqual([`${NODE}:b:t1`]);
    expect(page2.nextToken).toBe('');
    expect(await h.controller.code('ListSnapshots', { startingToken: 'bogus!' })).toBe(grpc.status.ABORTED);

    const got = await h.controller.call<{ snapshot: SnapshotMessage }>('GetSnapshot', { snapshotId: `${NODE}:a:s3` });
    expect(got.snapshot.sourceVolumeId).toBe(a.volumeId);
    expect(await h.controller.code('GetSnapshot', { snapshotId: 'none-exist-id' })).toBe(grpc.status.NOT_FOUND);
    expect(await h.controller.code('GetSnapshot', {})).toBe(grpc.status.INVALID_ARGUMENT);

    await h.controller.call('DeleteSnapshot', { snapshotId: `${NODE}:a:s1` });
    await h.controller.call('DeleteSnapshot', { snapshotId: `${NODE}:a:s1` });
    await h.controller.call('DeleteSnapshot', { snapshotId: 'reallyfakesnapshotid' });
    await h.controller.call('DeleteSnapshot', { snapshotId: `${NODE}:a:~origin` });
    expect(await h.controller.code('DeleteSnapshot', {})).toBe(grpc.status.INVALID_ARGUMENT);
    expect(h.engine.listSnapshots('a').map((s) => s.name)).toEqual(['s2', 's3']);
  });

  it('restores a snapshot into a new volume byte for byte, larger when asked', async () => {
    const source = await createVolume(h, 'origin', { parameters: { trackingGranularity: '16Ki' } });
    const before = pattern(4 * MiB, 1);
    await h.engine.write('origin', 0, before);
    const snapshot = await createSnapshot(h, 'before', source.volumeId);
    await h.engine.write('origin', MiB, pattern(MiB, 99));
    await h.engine.zero('origin', 3 * MiB, MiB);

    const restored = await createVolume(h, 'restored', { volumeContentSource: { snapshot: { snapshotId: snapshot.snapshotId } } });
    expect(restored.contentSource?.snapshot?.snapshotId).toBe(snapshot.snapshotId);
    expect(restored.volumeContext.trackingGranularity).toBe(String(16 * 1024));
    expect((await h.engine.read('restored', 0, 4 * MiB)).equals(before)).toBe(true);
    // The request is remembered: the same one again is the same volume, another source is not.
    const request = { volumeContentSource: { snapshot: { snapshotId: snapshot.snapshotId } } };
    expect(await createVolume(h, 'restored', request)).toEqual(restored);
    expect(await h.controller.code('CreateVolume', { name: 'restored', volumeCapabilities: [mountCapability()] })).toBe(grpc.status.ALREADY_EXISTS);

    const larger = await createVolume(h, 'larger', { capacityRange: { requiredBytes: String(6 * MiB) }, ...request });
    expect(larger.capacityBytes).toBe(String(6 * MiB));
    expect((await h.engine.read('larger', 0, 4 * MiB)).equals(before)).toBe(true);
    expect((await h.engine.read('larger', 4 * MiB, 2 * MiB)).equals(Buffer.alloc(2 * MiB))).toBe(true);

    expect(await h.controller.code('CreateVolume', { name: 'smaller', volumeCapabilities: [blockCapability()], capacityRange: { limitBytes: String(2 * MiB) }, ...request })).toBe(
      grpc.status.OUT_OF_RANGE,
    );
    expect(
      await h.controller.code('CreateVolume', { name: 'regrained', volumeCapabilities: [blockCapability()], parameters: { trackingGranularity: '64Ki' }, ...request }),
    ).toBe(grpc.status.INVALID_ARGUMENT);
    expect(h.engine.has('smaller') || h.engine.has('regrained')).toBe(false);
  });

  it('makes a restored or cloned volume whole before it appears: size and retention are set as it is built', async () => {
    const source = await createVolume(h, 'whole');
    await h.engine.write('whole', 0, pattern(MiB, 3));
    const snapshot = await createSnapshot(h, 'at', source.volumeId);
    // What the volume looks like the moment the engine's restore has made it, which is what a
    // crash right after would leave.
    const seen: { size: number; retention: object }[] = [];
    const restore = h.engine.restore.bind(h.engine);
    h.engine.restore = async (request, onProgress) => {
      const result = await restore(request, onProgress);
      const info = h.engine.volumeInfo(request.target!);
      seen.push({ size: info.size, retention: info.retention });
      return result;
    };
    const wanted = { capacityRange: { requiredBytes: String(8 * MiB) }, parameters: { retentionSize: '1Gi' } };
    await createVolume(h, 'from-snapshot', { ...wanted, volumeContentSource: { snapshot: { snapshotId: snapshot.snapshotId } } });
    await createVolume(h, 'from-volume', { ...wanted, volumeContentSource: { volume: { volumeId: source.volumeId } } });
    expect(seen).toEqual([
      { size: 8 * MiB, retention: { maxBytes: 1024 * MiB } },
      { size: 8 * MiB, retention: { maxBytes: 1024 * MiB } },
    ]);
    expect((await h.engine.read('from-volume', 0, MiB)).equals(pattern(MiB, 3))).toBe(true);
  });

  it('clones a volume byte for byte and leaves no temporary snapshot behind', async () => {
    const source = await createVolume(h, 'source');
    const data = pattern(4 * MiB, 7);
    await h.engine.write('source', 0, data);
    const clone = await createVolume(h, 'clone', { volumeContentSource: { volume: { volumeId: source.volumeId } } });
    expect(clone.contentSource?.volume?.volumeId).toBe(source.volumeId);
    expect((await h.engine.read('clone', 0, 4 * MiB)).equals(data)).toBe(true);
    expect(h.engine.listSnapshots('source', { includeInternal: true })).toEqual([]);
    // Clone and source are independent from here on.
    await h.engine.write('clone', 0, Buffer.alloc(4096, 1));
    expect((await h.engine.read('source', 0, 4096)).equals(data.subarray(0, 4096))).toBe(true);
    await h.controller.call('DeleteVolume', { volumeId: source.volumeId });
    expect((await h.engine.read('clone', 4096, 4 * MiB - 4096)).equals(data.subarray(4096))).toBe(true);
    expect(engineName(clone.volumeId)).toBe('clone');
  });
});
