import { setCondition, sameStatus } from '../../src/k8s/conditions.js';
import { withFrozen, type Freezer } from '../../src/k8s/freeze.js';
import { WorkQueue } from '../../src/k8s/queue.js';
import { describeSource, parseRecoveryPoint, parseVolumeRestore } from '../../src/k8s/resources.js';
import { parseQuantity } from '../../src/k8s/volumerestore.js';
import { silentLogger } from '../../src/util/log.js';

const meta = { name: 'p', namespace: 'ns', uid: 'u-1', generation: 2, resourceVersion: '7' };

describe('custom resource parsing', () => {
  it('reads a RecoveryPoint, defaulting consistency to Crash and dropping repeated claims', () => {
    const parsed = parseRecoveryPoint({ metadata: meta, spec: { claims: ['a', 'b', 'a'] } });
    expect(parsed.ok && parsed.value.spec).toEqual({ claims: ['a', 'b'], consistency: 'Crash' });
  });

  it('refuses a RecoveryPoint without claims or with an unknown consistency', () => {
    expect(parseRecoveryPoint({ metadata: meta, spec: { claims: [] } }).ok).toBe(false);
    const bad = parseRecoveryPoint({ metadata: meta, spec: { claims: ['a'], consistency: 'App' } });
    expect(bad.ok ? '' : bad.reason).toMatch(/Crash or Filesystem/);
    expect(parseRecoveryPoint({ metadata: { name: 'x' }, spec: { claims: ['a'] } }).ok).toBe(false);
  });

  it('reads each kind of VolumeRestore source, and refuses none or two', () => {
    for (const source of [{ volumeSnapshotName: 's' }, { recoveryPointName: 'r' }, { time: '2026-11-21T10:00:00Z' }]) {
      const parsed = parseVolumeRestore({ metadata: meta, spec: { claim: 'c', source } });
      expect(parsed.ok && parsed.value.spec.source).toEqual(source);
    }
    expect(parseVolumeRestore({ metadata: meta, spec: { claim: 'c', source: {} } }).ok).toBe(false);
    expect(parseVolumeRestore({ metadata: meta, spec: { claim: 'c', source: { recoveryPointName: 'r', time: '2026-11-21T10:00:00Z' } } }).ok).toBe(false);
    expect(parseVolumeRestore({ metadata: meta, spec: { claim: 'c', source: { time: 'yesterday' } } }).ok).toBe(false);
  });

  it('checks areas: aligned to 4096, non-negative offset, positive length', () => {
    const ok = parseVolumeRestore({ metadata: meta, spec: { claim: 'c', source: { time: '2026-11-21T10:00:00Z' }, areas: [{ offset: 0, length: 8192 }] } });
    expect(ok.ok && ok.value.spec.areas).toEqual([{ offset: 0, length: 8192 }]);
    for (const area of [{ offset: 100, length: 4096 }, { offset: 0, length: 0 }, { offset: -4096, length: 4096 }, { offset: 0 }]) {
      expect(parseVolumeRestore({ metadata: meta, spec: { claim: 'c', source: { time: '2026-11-21T10:00:00Z' }, areas: [area] } }).ok).toBe(false);
    }
  });

  it('describes sources for messages', () => {
    expect(describeSource({ recoveryPointName: 'before' })).toBe('RecoveryPoint before');
    expect(describeSource({ volumeSnapshotName: 's1' })).toBe('VolumeSnapshot s1');
  });
});

describe('conditions', () => {
  it('moves lastTransitionTime only when the status changes', () => {
    const t1 = new Date('2026-01-01T00:00:00Z');
    const t2 = new Date('2026-01-01T00:01:00Z');
    const first = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Recording', message: 'a' }, t1);
    const same = setCondition(first, { type: 'Ready', status: 'False', reason: 'Other', message: 'b' }, t2);
    expect(same).toEqual([{ type: 'Ready', status: 'False', reason: 'Other', message: 'b', lastTransitionTime: t1.toISOString() }]);
    const changed = setCondition(same, { type: 'Ready', status: 'True', reason: 'Recorded', message: 'c' }, t2);
    expect(changed[0]!.lastTransitionTime).toBe(t2.toISOString());
    expect(setCondition(changed, { type: 'Other', status: 'True', reason: 'R', message: '' }, t2)).toHaveLength(2);
  });

  it('compares statuses regardless of key order and undefined fields', () => {
    expect(sameStatus({ a: 1, b: [1, { c: 2, d: 3 }] }, { b: [1, { d: 3, c: 2 }], a: 1, e: undefined })).toBe(true);
    expect(sameStatus({ a: 1 }, { a: 2 })).toBe(false);
  });
});

describe('quantities', () => {
  it('turns Kubernetes quantities into bytes', () => {
    expect(parseQuantity('1Gi')).toBe(2 ** 30);
    expect(parseQuantity('64Mi')).toBe(64 * 2 ** 20);
    expect(parseQuantity('1500')).toBe(1500);
    expect(parseQuantity('2G')).toBe(2e9);
    expect(parseQuantity('lots')).toBeNaN();
  });
});

describe('freezing around a cut', () => {
  function recordingFreezer(failFreezeOf?: string): Freezer & { log: string[] } {
    const log: string[] = [];
    return {
      log,
      async freeze(mountPoint) {
        log.push(`freeze ${mountPoint}`);
        if (mountPoint === failFreezeOf) throw new Error('freeze timed out');
      },
      async thaw(mountPoint) {
        log.push(`thaw ${mountPoint}`);
      },
    };
  }

  it('thaws every filesystem after the cut, in reverse order', async () => {
    const freezer = recordingFreezer();
    const result = await withFrozen(freezer, ['/a', '/b'], silentLogger(), async () => {
      freezer.log.push('cut');
      return 42;
    });
    expect(result).toBe(42);
    expect(freezer.log).toEqual(['freeze /a', 'freeze /b', 'cut', 'thaw /b', 'thaw /a']);
  });

  it('thaws when the cut fails, and when a freeze fails part-way (including the one that failed)', async () => {
    const failing = recordingFreezer();
    await expect(withFrozen(failing, ['/a'], silentLogger(), async () => Promise.reject(new Error('engine said no')))).rejects.toThrow('engine said no');
    expect(failing.log).toEqual(['freeze /a', 'thaw /a']);
    const partial = recordingFreezer('/b');
    await expect(withFrozen(partial, ['/a', '/b', '/c'], silentLogger(), async () => 1)).rejects.toThrow('freeze timed out');
    expect(partial.log).toEqual(['freeze /a', 'freeze /b', 'thaw /b', 'thaw /a']);
  });
});

describe('work queue', () => {
  it('runs a key once at a time and once more when it was added while running', async () => {
    const runs: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let active = 0;
    let maxActive = 0;
    const queue = new WorkQueue('test', async (key) => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs.push(key);
      if (runs.length === 1) await gate;
      active--;
    }, silentLogger());
    queue.add('ns/a');
    queue.add('ns/a'); // while running: remembered, not run beside it
    queue.add('ns/a');
    await new Promise((resolve) => setImmediate(resolve));
    release();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(runs).toEqual(['ns/a', 'ns/a']);
    expect(maxActive).toBe(1);
    await queue.stop();
  });

  it('retries a failing key with a growing delay, not in a hot loop', async () => {
    const times: number[] = [];
    const queue = new WorkQueue('test', async () => {
      times.push(Date.now());
      if (times.length < 3) throw new Error('apiserver away');
    }, silentLogger(), { baseBackoffMs: 20, maxBackoffMs: 1000 });
    queue.add('ns/b');
    for (let i = 0; i < 100 && times.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await queue.stop();
    expect(times).toHaveLength(3);
    // Backoff: the second gap (≥ 40 ms) is at least the first (≥ 20 ms).
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(15);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(35);
  });
});
