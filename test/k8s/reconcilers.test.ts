import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CsiClient } from '../csi/helpers.js';
import { pattern } from '../cli/harness.js';
import { needing } from '../support/requirements.js';
import { Cluster, NAMESPACE, NODE, PREREQUISITES, SNAPSHOT_CLASS, until } from './cluster.js';

/**
 * The RecoveryPoint and VolumeRestore reconcilers on a real control plane (etcd,
 * kube-apiserver, kube-controller-manager, snapshot-controller) with the CSI sidecars in
 * per-node mode, everything driven through kubectl as a user would. Data goes in and out
 * through the daemon's admin API, the same path as `tidemark volume write/read`.
 * Scenarios follow issue 7's list; they share one cluster and run in order.
 */
const suite = needing(PREREQUISITES).describe;

const KiB = 1024;
const MiB = 1024 * KiB;
const VOLUME_SIZE = 64 * MiB;

interface Status {
  phase?: string;
  message?: string;
  [key: string]: unknown;
}
interface Resource {
  metadata: { name: string; uid: string };
  status?: Status;
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

suite('reconcilers on a real control plane', () => {
  let cluster: Cluster;
  let data: { volume: string; handle: string };
  // Volume content at each point of the story.
  let stateA: Buffer;
  let stateAtTime: Buffer;
  let timePoint: string;
  let stateAtPoint: Buffer;

  const read = (volume: string) => cluster.admin.read(volume, 0, VOLUME_SIZE);
  const write = (volume: string, offset: number, bytes: Buffer) => cluster.admin.write(volume, offset, bytes, { flush: true });

  beforeAll(async () => {
    cluster = await Cluster.start();
    await cluster.startNode(['--segment-size', '1Mi']);
  }, 80 * 60_000);

  afterAll(async () => {
    if (!cluster) return;
    if (process.env.TIDEMARK_KEEP_LOGS) fs.writeFileSync(path.join(process.env.TIDEMARK_KEEP_LOGS, 'daemon.log'), cluster.daemonLogs);
    await cluster.stop();
  }, 180_000);

  it('1. provisions a PVC on the node through csi-provisioner', async () => {
    data = await cluster.provisionClaim('data', '64Mi');
    expect(data.handle).toBe(`${NODE}:${data.volume}`);
    const info = await cluster.admin.getVolume(data.volume);
    expect(info.size).toBe(VOLUME_SIZE);
  });

  it('2. takes a VolumeSnapshot through csi-snapshotter between writes A and B', async () => {
    await write(data.volume, 0, pattern(2 * MiB, 1)); // A
    stateA = await read(data.volume);
    await cluster.apply({
      apiVersion: 'snapshot.storage.k8s.io/v1',
      kind: 'VolumeSnapshot',
      metadata: { name: 'snap-a', namespace: NAMESPACE },
      spec: { volumeSnapshotClassName: SNAPSHOT_CLASS, source: { persistentVolumeClaimName: 'data' } },
    });
    await until('snap-a to be ready', async () => (await cluster.getJson<{ status?: { readyToUse?: boolean } }>('volumesnapshot', 'snap-a'))?.status?.readyToUse === true, 60_000, () =>
      cluster.sidecarLogs('csi-snapshotter').slice(-3000),
    );
    await write(data.volume, 0, pattern(256 * KiB, 2)); // B
    stateAtTime = await read(data.volume);
    // Records carry millisecond times: leave a clear gap on both sides of the chosen time.
    await new Promise((resolve) => setTimeout(resolve, 50));
    timePoint = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await write(data.volume, 4 * MiB, pattern(1 * MiB, 3)); // B2, after the time point
    expect(sha(stateAtTime)).not.toBe(sha(stateA));
  });

  it('3. records a RecoveryPoint with its marker; then damage C', async () => {
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'before-damage', namespace: NAMESPACE }, spec: { claims: ['data'] } });
    const point = await cluster.waitPhase<Resource & { status: Status & { markers: { claim: string; volumeHandle: string; sequence: string; marker: string }[]; recordedAt: string } }>(
      'rp',
      'before-damage',
      ['Recorded', 'Failed'],
    );
    expect(point.status.phase).toBe('Recorded');
    expect(point.status.markers).toEqual([{ claim: 'data', volumeHandle: data.handle, marker: `rp-${point.metadata.uid}`, sequence: expect.stringMatching(/^\d+$/) }]);
    expect(Date.parse(point.status.recordedAt)).toBeGreaterThan(0);
    const markers = await cluster.admin.listMarkers(data.volume);
    expect(markers.filter((m) => m.name === `rp-${point.metadata.uid}`)).toHaveLength(1);
    stateAtPoint = await read(data.volume);
    await write(data.volume, 0, pattern(8 * MiB, 4)); // C: damage
    expect(sha(await read(data.volume))).not.toBe(sha(stateAtPoint));
    const printed = await cluster.k(['get', 'rp', '-n', NAMESPACE]);
    expect(printed).toMatch(/NAME\s+CLAIMS\s+PHASE\s+RECORDED\s+AGE/);
    expect(printed).toMatch(/before-damage\s+\["data"\]\s+Recorded/);
    expect((await cluster.eventsOf('before-damage')).some((e) => e.startsWith('Normal Recorded'))).toBe(true);
  });

  it('4. restores in place to the RecoveryPoint once no pod uses the claim', async () => {
    await cluster.apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'app', namespace: NAMESPACE },
      spec: { nodeName: NODE, containers: [{ name: 'app', image: 'tidemark-e2e/none:0' }], volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'data' } }] },
    });
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'VolumeRestore', metadata: { name: 'undo', namespace: NAMESPACE }, spec: { claim: 'data', source: { recoveryPointName: 'before-damage' } } });
    const waiting = await cluster.waitPhase<Resource>('vrs', 'undo', ['WaitingForDetach', 'Succeeded', 'Failed']);
    expect(waiting.status?.phase).toBe('WaitingForDetach');
    expect(waiting.status?.message).toMatch(/\bapp\b/);
    // The data is untouched while it waits.
    expect(sha(await read(data.volume))).not.toBe(sha(stateAtPoint));
    await cluster.k(['delete', 'pod', 'app', '-n', NAMESPACE, '--grace-period=0', '--force']);
    const done = await cluster.waitPhase<Resource & { status: Status & { bytesTotal: number; bytesRestored: number; restoredTo: { sequence: string }; startedAt: string; completedAt: string } }>(
      'vrs',
      'undo',
      ['Succeeded', 'Failed'],
    );
    expect(done.status.phase).toBe('Succeeded');
    expect(sha(await read(data.volume))).toBe(sha(stateAtPoint));
    const point = await cluster.getJson<{ status: { markers: { sequence: string }[] } }>('rp', 'before-damage');
    expect(done.status.restoredTo.sequence).toBe(point!.status.markers[0]!.sequence);
    expect(done.status.bytesRestored).toBeGreaterThan(0);
    expect(Date.parse(done.status.completedAt)).toBeGreaterThanOrEqual(Date.parse(done.status.startedAt));
    const events = await cluster.eventsOf('undo');
    expect(events.some((e) => e.startsWith('Warning ClaimInUse'))).toBe(true);
    expect(events.filter((e) => e.startsWith('Normal Succeeded'))).toHaveLength(1);
    const printed = await cluster.k(['get', 'vrs', 'undo', '-n', NAMESPACE]);
    expect(printed).toMatch(/NAME\s+CLAIM\s+SOURCE\s+PHASE\s+PROGRESS\s+AGE/);
    expect(printed).toMatch(/undo\s+data\s+before-damage\s+Succeeded\s+100%/);
  });

  it('5. restores one area from the VolumeSnapshot: only that area changes', async () => {
    const before = await read(data.volume);
    await cluster.apply({
      apiVersion: 'tidemark.dev/v1alpha1',
      kind: 'VolumeRestore',
      metadata: { name: 'area', namespace: NAMESPACE },
      spec: { claim: 'data', source: { volumeSnapshotName: 'snap-a' }, areas: [{ offset: 0, length: 64 * KiB }] },
    });
    const done = await cluster.waitPhase<Resource>('vrs', 'area', ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    const after = await read(data.volume);
    expect(sha(after.subarray(0, 64 * KiB))).toBe(sha(stateA.subarray(0, 64 * KiB)));
    expect(sha(after.subarray(64 * KiB))).toBe(sha(before.subarray(64 * KiB)));
    expect(sha(before.subarray(0, 64 * KiB))).not.toBe(sha(stateA.subarray(0, 64 * KiB)));
  });

  it('6. restores a point in time into a new claim that binds with that state', async () => {
    await cluster.apply({
      apiVersion: 'tidemark.dev/v1alpha1',
      kind: 'VolumeRestore',
      metadata: { name: 'to-time', namespace: NAMESPACE },
      spec: { claim: 'data', source: { time: timePoint }, newClaimName: 'data-at-time' },
    });
    const done = await cluster.waitPhase<Resource & { status: Status & { newClaimName: string; restoredTo: { sequence: string; time: string } } }>('vrs', 'to-time', ['Succeeded', 'Failed'], 120_000);
    expect(done.status.phase).toBe('Succeeded');
    expect(done.status.newClaimName).toBe('data-at-time');
    expect(done.status.restoredTo.time).toBe(timePoint);
    const restored = await cluster.boundVolume('data-at-time');
    expect(sha(await read(restored.volume))).toBe(sha(stateAtTime));
    const pvc = await cluster.getJson<{ spec: { storageClassName: string; resources: { requests: { storage: string } } } }>('pvc', 'data-at-time');
    expect(pvc!.spec.storageClassName).toBe('tidemark');
    expect(pvc!.spec.resources.requests.storage).toBe('64Mi');
    // The staging snapshot served its purpose and is gone, in Kubernetes and in the engine.
    await until('the staging VolumeSnapshot to go', async () => (await cluster.getJson('volumesnapshot', `tidemark-restore-${done.metadata.uid}`)) === undefined, 60_000);
    expect((await cluster.admin.listVolumes()).some((v) => v.name === `tidemark-restore-${done.metadata.uid}`)).toBe(false);
  });

  it('7. provisions a PVC from the VolumeSnapshot by dataSource', async () => {
    await cluster.apply({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'from-snap', namespace: NAMESPACE, annotations: { 'volume.kubernetes.io/selected-node': NODE } },
      spec: {
        storageClassName: 'tidemark',
        accessModes: ['ReadWriteOnce'],
        resources: { requests: { storage: '64Mi' } },
        dataSource: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: 'snap-a' },
      },
    });
    const clone = await cluster.boundVolume('from-snap');
    expect(sha(await read(clone.volume))).toBe(sha(stateA));
    // The same through a VolumeRestore into a new claim, which reports the snapshot's point.
    await cluster.apply({
      apiVersion: 'tidemark.dev/v1alpha1',
      kind: 'VolumeRestore',
      metadata: { name: 'snap-copy', namespace: NAMESPACE },
      spec: { claim: 'data', source: { volumeSnapshotName: 'snap-a' }, newClaimName: 'data-snap-copy' },
    });
    const done = await cluster.waitPhase<Resource & { status: Status & { restoredTo: { sequence: string } } }>('vrs', 'snap-copy', ['Succeeded', 'Failed'], 120_000);
    expect(done.status.phase).toBe('Succeeded');
    const engineSnapshot = (await cluster.admin.listSnapshots(data.volume)).find((s) => s.name.startsWith('snapshot-'));
    expect(done.status.restoredTo.sequence).toBe(String(engineSnapshot!.sequence));
    const copy = await cluster.boundVolume('data-snap-copy');
    expect(sha(await read(copy.volume))).toBe(sha(stateA));
  });

  it('8. records a RecoveryPoint over two claims at one cut, under a writer on both', async () => {
    const [left, right] = await Promise.all([cluster.provisionClaim('left', '64Mi'), cluster.provisionClaim('right', '64Mi')]);
    // The writer writes counter n to the left volume, then to the right one, in turn. At any
    // one cut, right is n or n-1 when left is n; a cut taken at two moments could show right
    // ahead of left.
    let stop = false;
    let written = 0;
    const counter = (n: number) => {
      const b = Buffer.alloc(4096);
      b.writeUInt32LE(n, 0);
      return b;
    };
    const writer = (async () => {
      for (let n = 1; !stop; n++) {
        await cluster.admin.write(left.volume, 0, counter(n));
        await cluster.admin.write(right.volume, 0, counter(n));
        written = n;
      }
    })();
    await until('the writer to get going', async () => written > 5, 30_000);
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'pair', namespace: NAMESPACE }, spec: { claims: ['left', 'right'] } });
    const point = await cluster.waitPhase<Resource & { status: Status & { markers: { claim: string; marker: string }[] } }>('rp', 'pair', ['Recorded', 'Failed']);
    await until('more writes after the cut', async () => written > 20, 30_000);
    stop = true;
    await writer;
    expect(point.status.phase).toBe('Recorded');
    expect(point.status.markers.map((m) => m.claim).sort()).toEqual(['left', 'right']);
    const marker = point.status.markers[0]!.marker;
    const values: number[] = [];
    for (const volume of [left.volume, right.volume]) {
      const target = `check-${volume}`.slice(0, 60);
      await cluster.admin.restore({ volume, source: { marker }, target });
      values.push((await cluster.admin.read(target, 0, 4096)).readUInt32LE(0));
      await cluster.admin.deleteVolume(target);
    }
    const [l, r] = values as [number, number];
    expect(l).toBeGreaterThan(0);
    expect(l - r === 0 || l - r === 1).toBe(true);
  });

  it('9. consistency Filesystem freezes a mounted claim around the cut; a block claim fails', async () => {
    const fsClaim = await cluster.provisionClaim('mounted', '64Mi');
    const node = new CsiClient('Node', cluster.csiSocket);
    const staging = fs.mkdtempSync(path.join(cluster.dir, 'staging-'));
    const capability = { mount: { fsType: 'ext4', mountFlags: [] }, accessMode: { mode: 'SINGLE_NODE_WRITER' } };
    await node.call('NodeStageVolume', { volumeId: fsClaim.handle, stagingTargetPath: staging, volumeCapability: capability, volumeContext: {} });
    try {
      fs.writeFileSync(path.join(staging, 'file'), 'hello');
      await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'fs-point', namespace: NAMESPACE }, spec: { claims: ['mounted'], consistency: 'Filesystem' } });
      const point = await cluster.waitPhase<Resource>('rp', 'fs-point', ['Recorded', 'Failed']);
      expect(point.status?.phase).toBe('Recorded');
      const line = cluster.daemonLogs.split('\n').find((l) => l.includes('"recovery point recorded"') && l.includes('fs-point'));
      expect(JSON.parse(line!).frozen).toEqual([staging]);
      // Thawed: the filesystem takes writes again.
      fs.writeFileSync(path.join(staging, 'after'), 'still writable');
    } finally {
      await node.call('NodeUnstageVolume', { volumeId: fsClaim.handle, stagingTargetPath: staging });
      node.close();
    }
    await cluster.provisionClaim('raw', '64Mi', { volumeMode: 'Block' });
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'raw-fs', namespace: NAMESPACE }, spec: { claims: ['raw'], consistency: 'Filesystem' } });
    const failed = await cluster.waitPhase<Resource & { status: Status & { conditions: { type: string; reason: string }[] } }>('rp', 'raw-fs', ['Recorded', 'Failed']);
    expect(failed.status.phase).toBe('Failed');
    expect(failed.status.conditions.find((c) => c.type === 'Ready')?.reason).toBe('BlockModeClaim');
  });

  it('10a. admission refuses bad specs with a message that says what to change', async () => {
    const rp = (spec: object) => ({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'bad-rp', namespace: NAMESPACE }, spec });
    const vr = (spec: object) => ({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'VolumeRestore', metadata: { name: 'bad-vr', namespace: NAMESPACE }, spec });
    const refusals: [object, RegExp][] = [
      [rp({ claims: [] }), /claims.*should have at least 1 items|must have at least 1 items/],
      [rp({ claims: ['Not_A_Name'] }), /claims\[0\].*should match|must match/i],
      [rp({ claims: ['data'], consistency: 'Application' }), /Unsupported value: "Application".*"Crash", "Filesystem"/],
      [rp({}), /claims: Required value/],
      [vr({ claim: 'data', source: {} }), /exactly one of volumeSnapshotName, recoveryPointName or time/],
      [vr({ claim: 'data', source: { recoveryPointName: 'before-damage', time: '2026-11-21T10:00:00Z' } }), /exactly one of/],
      [vr({ claim: 'data', source: { time: 'yesterday' } }), /source\.time.*date-time|must be of type date-time|in body must be of type date-time/],
      [vr({ claim: 'data', source: { recoveryPointName: 'before-damage' }, areas: [{ offset: 100, length: 4096 }] }), /multiples of 4096/],
      [vr({ claim: 'data', source: { recoveryPointName: 'before-damage' }, areas: [{ offset: 0, length: 0 }] }), /length.*should be greater than or equal to 1|must be greater than or equal to 1/],
      [vr({ claim: 'data', source: { recoveryPointName: 'before-damage' }, newClaimName: 'Bad Name' }), /newClaimName.*should match|must match/i],
      [vr({ claim: 'data', source: { recoveryPointName: 'before-damage' }, newClaimName: 'x', areas: [{ offset: 0, length: 4096 }] }), /areas apply to in-place restores only/],
      [vr({ source: { recoveryPointName: 'before-damage' } }), /claim: Required value/],
    ];
    for (const [object, message] of refusals) {
      const result = await cluster.kubectl(['create', '-f', '-'], JSON.stringify(object));
      expect({ object, code: result.code }).toEqual({ object, code: 1 });
      expect(result.stderr).toMatch(message);
    }
    // Immutable specs.
    const changed = await cluster.kubectl(['patch', 'rp', 'before-damage', '-n', NAMESPACE, '--type=merge', '-p', '{"spec":{"consistency":"Filesystem"}}']);
    expect(changed.code).toBe(1);
    expect(changed.stderr).toMatch(/spec is immutable/);
    const changedRestore = await cluster.kubectl(['patch', 'vrs', 'undo', '-n', NAMESPACE, '--type=merge', '-p', '{"spec":{"claim":"other"}}']);
    expect(changedRestore.stderr).toMatch(/spec is immutable/);
  });

  it('10b. bad references reach Failed with a reason, and are not retried in a hot loop', async () => {
    const cases: [string, object, string][] = [
      ['rp', { claims: ['no-such-claim'] }, 'ClaimNotFound'],
      ['vrs', { claim: 'data', source: { volumeSnapshotName: 'no-such-snapshot' } }, 'SnapshotNotFound'],
      ['vrs', { claim: 'data', source: { recoveryPointName: 'no-such-point' } }, 'RecoveryPointNotFound'],
      ['vrs', { claim: 'data', source: { recoveryPointName: 'before-damage' }, areas: [{ offset: 1024 * MiB, length: 4096 }] }, 'AreaOutsideVolume'],
      ['vrs', { claim: 'data', source: { recoveryPointName: 'before-damage' }, newClaimName: 'left' }, 'NewClaimExists'],
      ['vrs', { claim: 'left', source: { volumeSnapshotName: 'snap-a' } }, 'SnapshotOfAnotherVolume'],
      ['vrs', { claim: 'data', source: { time: '2000-01-01T00:00:00Z' } }, 'InvalidRequest'],
    ];
    let i = 0;
    for (const [kind, spec, reason] of cases) {
      const name = `bad-${i++}`;
      const apiKind = kind === 'rp' ? 'RecoveryPoint' : 'VolumeRestore';
      await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: apiKind, metadata: { name, namespace: NAMESPACE }, spec });
      const failed = await cluster.waitPhase<Resource & { status: Status & { conditions: { type: string; reason: string; status: string }[] } }>(kind, name, ['Failed', 'Succeeded', 'Recorded']);
      expect({ name, phase: failed.status.phase }).toEqual({ name, phase: 'Failed' });
      const condition = failed.status.conditions.find((c) => c.status === 'False' && c.reason === reason);
      expect({ name, reason: condition?.reason, message: failed.status.message }).toEqual({ name, reason, message: expect.any(String) });
      // A terminal object keeps its one Failed event: nothing loops on it.
      const events = await cluster.eventsOf(name);
      expect(events.filter((e) => e.startsWith(`Warning ${reason}`))).toHaveLength(1);
    }
    // Ownership: a claim bound to a PV on another node, with a claim on this one.
    await cluster.apply({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: 'elsewhere-pv' },
      spec: {
        capacity: { storage: '64Mi' },
        accessModes: ['ReadWriteOnce'],
        storageClassName: '',
        csi: { driver: 'csi.tidemark.dev', volumeHandle: 'tm-node-2:pvc-elsewhere' },
        claimRef: { namespace: NAMESPACE, name: 'elsewhere' },
      },
    });
    await cluster.apply({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'elsewhere', namespace: NAMESPACE },
      spec: { storageClassName: '', volumeName: 'elsewhere-pv', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '64Mi' } } },
    });
    await until('the static claim to bind', async () => (await cluster.getJson<{ status?: { phase?: string } }>('pvc', 'elsewhere'))?.status?.phase === 'Bound', 60_000);
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'split', namespace: NAMESPACE }, spec: { claims: ['data', 'elsewhere'] } });
    const split = await cluster.waitPhase<Resource & { status: Status & { conditions: { reason: string }[] } }>('rp', 'split', ['Failed', 'Recorded']);
    expect(split.status.phase).toBe('Failed');
    expect(split.status.conditions[0]!.reason).toBe('ClaimsOnDifferentNodes');
    expect(split.status.message).toMatch(/elsewhere on node tm-node-2/);
  });

  it('11. a RecoveryPoint whose journal retention freed becomes Expired, and cannot be restored to', async () => {
    const claim = await cluster.provisionClaim('short', '64Mi');
    await write(claim.volume, 0, pattern(1 * MiB, 5));
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'fleeting', namespace: NAMESPACE }, spec: { claims: ['short'] } });
    const recorded = await cluster.waitPhase<Resource>('rp', 'fleeting', ['Recorded', 'Failed']);
    expect(recorded.status?.phase).toBe('Recorded');
    for (let i = 0; i < 6; i++) await write(claim.volume, i * MiB, pattern(1 * MiB, 10 + i));
    await cluster.admin.setRetention(claim.volume, { maxBytes: 2 * MiB });
    const expired = await cluster.waitPhase<Resource>('rp', 'fleeting', ['Expired'], 30_000);
    expect(expired.status?.message).toMatch(/journal freed by retention/);
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'VolumeRestore', metadata: { name: 'too-late', namespace: NAMESPACE }, spec: { claim: 'short', source: { recoveryPointName: 'fleeting' } } });
    const failed = await cluster.waitPhase<Resource>('vrs', 'too-late', ['Failed', 'Succeeded']);
    expect(failed.status?.phase).toBe('Failed');
    expect(failed.status?.message).toMatch(/expired/);
  });

  it('12. a daemon killed with SIGKILL during a restore finishes it once after restart, with the right data', async () => {
    const claim = await cluster.provisionClaim('big', '256Mi');
    const size = 256 * MiB;
    await cluster.admin.write(claim.volume, 0, pattern(16 * MiB, 20), { flush: true });
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'big-point', namespace: NAMESPACE }, spec: { claims: ['big'] } });
    await cluster.waitPhase('rp', 'big-point', ['Recorded']);
    const expected = sha(await cluster.admin.read(claim.volume, 0, size));
    for (let offset = 0; offset < size; offset += 16 * MiB) await cluster.admin.write(claim.volume, offset, pattern(16 * MiB, 100 + offset / MiB));
    await cluster.admin.flushVolume(claim.volume);
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'VolumeRestore', metadata: { name: 'interrupted', namespace: NAMESPACE }, spec: { claim: 'big', source: { recoveryPointName: 'big-point' } } });
    const seen = await cluster.waitPhase<Resource>('vrs', 'interrupted', ['Restoring', 'Succeeded', 'Failed']);
    await cluster.killDaemon();
    const killedWhile = seen.status?.phase;
    console.log(`SIGKILL landed while the VolumeRestore was ${killedWhile}`);
    await cluster.startNode(['--segment-size', '1Mi']);
    const done = await cluster.waitPhase<Resource>('vrs', 'interrupted', ['Succeeded', 'Failed'], 120_000);
    expect(done.status?.phase).toBe('Succeeded');
    expect(sha(await cluster.admin.read(claim.volume, 0, size))).toBe(expected);
    const doneMarkers = (await cluster.admin.listMarkers(claim.volume)).filter((m) => m.name === `vrs-${done.metadata.uid}`);
    expect(doneMarkers).toHaveLength(1);
    expect((await cluster.eventsOf('interrupted')).filter((e) => e.startsWith('Normal Succeeded'))).toHaveLength(1);
    const info = await cluster.admin.getVolume(claim.volume);
    expect(info.restoreInterrupted).toBeUndefined();
  });

  it('keeps reconciling after the API server is killed and restarted (watches re-list)', async () => {
    await cluster.restartApiServer();
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'after-restart', namespace: NAMESPACE }, spec: { claims: ['data'] } });
    const point = await cluster.waitPhase<Resource>('rp', 'after-restart', ['Recorded', 'Failed'], 90_000);
    expect(point.status?.phase).toBe('Recorded');
    expect(cluster.daemonLogs).toMatch(/watch of custom resources failed; listing again/);
  }, 300_000);

  it('deleting a RecoveryPoint and creating one of the same name records a new point', async () => {
    const first = await cluster.getJson<Resource & { status: { markers: { sequence: string; marker: string }[] } }>('rp', 'before-damage');
    await cluster.k(['delete', 'rp', 'before-damage', '-n', NAMESPACE]);
    await cluster.apply({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'before-damage', namespace: NAMESPACE }, spec: { claims: ['data'] } });
    const second = await cluster.waitPhase<Resource & { status: Status & { markers: { sequence: string; marker: string }[] } }>('rp', 'before-damage', ['Recorded', 'Failed']);
    expect(second.metadata.uid).not.toBe(first!.metadata.uid);
    expect(second.status.markers[0]!.marker).not.toBe(first!.status.markers[0]!.marker);
    expect(Number(second.status.markers[0]!.sequence)).toBeGreaterThan(Number(first!.status.markers[0]!.sequence));
  });
});
