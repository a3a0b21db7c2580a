import * as grpc from '@grpc/grpc-js';
import { fits, newVolumeSize, parseRange } from '../../src/csi/capacity.js';
import { CsiError } from '../../src/csi/errors.js';
import { Handles, engineNameFor, groupNameFor, isGroupMember, isHiddenSnapshot, temporarySnapshotName } from '../../src/csi/handles.js';
import { InFlight } from '../../src/csi/inflight.js';
import { paginate } from '../../src/csi/pagination.js';
import { applyRetentionChange, checkNoParameters, parseDuration, parseMutableParameters, parseVolumeParameters } from '../../src/csi/params.js';
import { redact } from '../../src/csi/redact.js';
import { unary } from '../../src/csi/rpc.js';
import type { CsiContext } from '../../src/csi/context.js';
import { mountFilesystem } from '../../src/host/index.js';
import { captureLogger } from '../engine/fixtures/capture-logger.js';

const codeOf = (fn: () => unknown): grpc.status | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof CsiError ? err.code : undefined;
  }
  return undefined;
};

describe('CSI handles', () => {
  const handles = new Handles('node-a');

  it('name the node and parse back', () => {
    expect(handles.volumeId('pvc-1')).toBe('node-a:pvc-1');
    expect(handles.parseVolumeId('node-a:pvc-1')).toEqual({ ok: true, value: 'pvc-1' });
    expect(handles.parseSnapshotId(handles.snapshotId('pvc-1', 'snap'))).toEqual({ ok: true, value: { volume: 'pvc-1', snapshot: 'snap' } });
    const group = groupNameFor('groupsnapshot-1');
    expect(handles.parseGroupSnapshotId(handles.groupSnapshotId(group))).toEqual({ ok: true, value: group });
  });

  it('refuse malformed handles and handles of other nodes with a reason', () => {
    for (const id of ['pvc-1', 'node-a:pvc-1:x', 'node-a:', ':pvc', 'node-a:has space', 'node-a:~origin:x:y']) {
      const parsed = handles.parseVolumeId(id);
      expect(parsed.ok).toBe(false);
    }
    const elsewhere = handles.parseVolumeId('node-b:pvc-1');
    expect(elsewhere).toEqual({ ok: false, reason: expect.stringContaining('node-b') as unknown as string });
    expect(handles.parseGroupSnapshotId('node-a:pvc-1').ok).toBe(false);
    expect(handles.parseSnapshotId('node-a:pvc-1').ok).toBe(false);
  });

  it('need a node id that cannot break a handle', () => {
    expect(() => new Handles('a:b')).toThrow(/node id/);
    expect(() => new Handles('')).toThrow(/node id/);
  });

  it('map CSI names to engine names: Kubernetes names as they are, anything else hashed', () => {
    expect(engineNameFor('pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')).toBe('pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0');
    expect(engineNameFor('snapshot-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')).toBe('snapshot-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0');
    for (const odd of ['with space', '_leading', '~tilde', 'x'.repeat(49), 'ünï', '.dot']) {
      expect(engineNameFor(odd)).toMatch(/^_h[0-9a-f]{32}$/);
      expect(engineNameFor(odd)).toBe(engineNameFor(odd));
    }
    expect(engineNameFor('a b')).not.toBe(engineNameFor('a  b'));
    expect(isGroupMember(groupNameFor('x'))).toBe(true);
    expect(isGroupMember(engineNameFor('x y'))).toBe(false);
    expect(isHiddenSnapshot(temporarySnapshotName())).toBe(true);
    expect(isHiddenSnapshot('~origin')).toBe(true);
    expect(isHiddenSnapshot('snap')).toBe(false);
  });
});

describe('CSI parameters', () => {
  it('parse StorageClass parameters into one canonical spelling', () => {
    const parsed = parseVolumeParameters({ fsType: 'XFS', trackingGranularity: '64Ki', retentionSize: '1Gi', retentionAge: '1h30m', 'csi.storage.k8s.io/pvc/name': 'x' });
    expect(parsed).toEqual({
      fsType: 'xfs',
      granularity: 65536,
      retention: { maxBytes: 1024 ** 3, maxAgeSeconds: 5400 },
      canonical: { fsType: 'xfs', trackingGranularity: '65536', retentionSize: String(1024 ** 3), retentionAge: '5400' },
    });
    expect(parseVolumeParameters({ retentionAge: '5400' }).canonical).toEqual(parseVolumeParameters({ retentionAge: '90m' }).canonical);
  });

  it('refuse unknown keys, bad values and immutable keys in mutable parameters', () => {
    const bad: Record<string, string>[] = [{ fstype: 'ext4' }, { fsType: 'ntfs' }, { trackingGranularity: '1000' }, { trackingGranularity: '128Mi' }, { retentionSize: '0' }, { retentionAge: '1y' }];
    for (const params of bad) expect(codeOf(() => parseVolumeParameters(params))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(codeOf(() => parseMutableParameters({ fsType: 'ext4' }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(codeOf(() => parseMutableParameters({ XXX_FakeKey: 'x' }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(codeOf(() => checkNoParameters({ a: 'b' }, 'CreateSnapshot'))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(codeOf(() => checkNoParameters({ 'csi.storage.k8s.io/volumesnapshot/name': 'b' }, 'CreateSnapshot'))).toBeUndefined();
  });

  it('read durations in seconds or with units', () => {
    expect(parseDuration('3600', 'age')).toBe(3600);
    expect(parseDuration('2w1d', 'age')).toBe(15 * 86400);
    expect(codeOf(() => parseDuration('0', 'age'))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(codeOf(() => parseDuration('1.5h', 'age'))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('change only the retention limits a modification names; "none" removes one', () => {
    const change = parseMutableParameters({ retentionSize: 'none', retentionAge: '1d' }).retention;
    expect(applyRetentionChange({ maxBytes: 5, maxAgeSeconds: 10 }, change)).toEqual({ maxAgeSeconds: 86400 });
    expect(applyRetentionChange({ maxBytes: 5 }, parseMutableParameters({ retentionAge: '60' }).retention)).toEqual({ maxBytes: 5, maxAgeSeconds: 60 });
  });
});

describe('CSI capacity ranges', () => {
  it('round up to the block size inside the range', () => {
    expect(newVolumeSize(parseRange({ requiredBytes: '1', limitBytes: '0' }))).toBe(4096);
    expect(newVolumeSize(parseRange({ requiredBytes: '4096', limitBytes: '4096' }))).toBe(4096);
    expect(newVolumeSize(parseRange(null))).toBe(1024 ** 3);
    expect(newVolumeSize(parseRange({ requiredBytes: '', limitBytes: '10000' }))).toBe(8192);
    expect(codeOf(() => newVolumeSize(parseRange({ requiredBytes: '4097', limitBytes: '8191' })))).toBe(grpc.status.OUT_OF_RANGE);
    expect(codeOf(() => parseRange({ requiredBytes: '9', limitBytes: '8' }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(codeOf(() => parseRange({ requiredBytes: '-1', limitBytes: '' }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(codeOf(() => parseRange({ requiredBytes: '9223372036854775807', limitBytes: '' }))).toBe(grpc.status.OUT_OF_RANGE);
    expect(fits(8192, { required: 8192, limit: 0 })).toBe(true);
    expect(fits(8192, { required: 0, limit: 4096 })).toBe(false);
  });
});

describe('CSI pagination', () => {
  const items = ['a', 'b', 'c', 'd', 'e'];
  const key = (s: string) => s;

  it('walks a list in pages and survives deletions at page boundaries', () => {
    const first = paginate(items, key, 2, '');
    expect(first.items).toEqual(['a', 'b']);
    const second = paginate(items, key, 2, first.nextToken);
    expect(second.items).toEqual(['c', 'd']);
    expect(paginate(items, key, 2, second.nextToken)).toEqual({ items: ['e'], nextToken: '' });
    expect(paginate(['a', 'c', 'd', 'e'], key, 0, first.nextToken).items).toEqual(['c', 'd', 'e']);
    expect(paginate(items, key, 5, '')).toEqual({ items, nextToken: '' });
  });

  it('answers ABORTED for a token it did not issue and INVALID_ARGUMENT for a negative size', () => {
    for (const token of ['invalid-token', 'bm90LW91cnM', '!!!']) expect(codeOf(() => paginate(items, key, 0, token))).toBe(grpc.status.ABORTED);
    expect(codeOf(() => paginate(items, key, -1, ''))).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('CSI in-flight registry', () => {
  it('turns a second call on a busy key away with ABORTED and frees the key afterwards', async () => {
    const inflight = new InFlight();
    let release!: () => void;
    const first = inflight.run(['volume a'], () => new Promise<void>((resolve) => (release = resolve)));
    await expect(inflight.run(['volume b', 'volume a'], async () => 'never')).rejects.toMatchObject({ code: grpc.status.ABORTED });
    await expect(inflight.run(['volume c'], async () => 'never', ['volume a'])).rejects.toMatchObject({ code: grpc.status.ABORTED });
    expect(await inflight.run(['volume b'], async () => 'other volumes are free')).toBe('other volumes are free');
    release();
    await first;
    expect(inflight.size).toBe(0);
    await expect(inflight.run(['volume a'], async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await inflight.run(['volume a'], async () => 'free again')).toBe('free again');
  });

  it('lets readers share a key and keeps writers out while any reader holds it', async () => {
    const inflight = new InFlight();
    let release1!: () => void;
    let release2!: () => void;
    const reader1 = inflight.run(['volume x'], () => new Promise<void>((resolve) => (release1 = resolve)), ['snapshot s']);
    const reader2 = inflight.run(['volume y'], () => new Promise<void>((resolve) => (release2 = resolve)), ['snapshot s']);
    await expect(inflight.run(['snapshot s'], async () => 'never')).rejects.toMatchObject({ code: grpc.status.ABORTED });
    release1();
    await reader1;
    await expect(inflight.run(['snapshot s'], async () => 'never')).rejects.toMatchObject({ code: grpc.status.ABORTED });
    release2();
    await reader2;
    expect(await inflight.run(['snapshot s'], async () => 'deleted')).toBe('deleted');
    expect(inflight.size).toBe(0);
  });
});

describe('CSI log redaction', () => {
  it('keeps the shape of a request but drops secrets and mount flags', () => {
    const request = {
      name: 'pvc-1',
      secrets: { password: 'hunter2' },
      volumeCapabilities: [{ mount: { fsType: 'ext4', mountFlags: ['password=hunter2'] } }],
      parameters: { fsType: 'ext4' },
      empty: { secrets: {} },
    };
    const safe = redact(request);
    expect(JSON.stringify(safe)).not.toContain('hunter2');
    expect(safe).toEqual({ name: 'pvc-1', secrets: '<redacted: 1>', volumeCapabilities: [{ mount: { fsType: 'ext4', mountFlags: '<redacted: 1>' } }], parameters: { fsType: 'ext4' }, empty: {} });
  });

  it('keeps mount flags out of the status a failed mount returns and out of the error log', async () => {
    const { logger, entries } = captureLogger();
    const ctx = { logger } as unknown as CsiContext;
    const handler = unary<{ volumeId: string }, object>(ctx, 'NodeStageVolume', async () => {
      await mountFilesystem('/nonexistent/tidemark-device', '/nonexistent/tidemark-staging', 'ext4', ['noatime', 'password=hunter2']);
      return {};
    });
    const status = await new Promise<{ code: grpc.status; details: string }>((resolve) => {
      const call = { request: { volumeId: 'v' } } as unknown as grpc.ServerUnaryCall<{ volumeId: string }, object>;
      handler(call, (err) => resolve(err as { code: grpc.status; details: string }));
    });
    expect(status.code).toBe(grpc.status.INTERNAL);
    expect(status.details).toMatch(/^mount /);
    expect(status.details).not.toContain('hunter2');
    const errors = entries.filter((e) => e.level === 'error');
    expect(errors.length).toBe(1);
    expect(JSON.stringify(errors)).not.toMatch(/hunter2|noatime/);
  });
});
