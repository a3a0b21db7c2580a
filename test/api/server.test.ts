import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AdminClient } from '../../src/api/client.js';
import type { RestoreProgress } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';
import { PACKAGE_ROOT } from '../../src/util/package.js';
import { TestClock } from '../support/clock.js';
import { pattern, rawServerStream, rawUnary, rawWrite, startHarness, tidemarkCode, type Harness } from './harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function rejection(promise: Promise<unknown>): Promise<TidemarkError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof TidemarkError) return err;
    throw new Error(`expected a TidemarkError, got ${String(err)}`);
  }
  throw new Error('expected the call to fail');
}

let h: Harness;
/** The engine's clock, moved by hand where a test needs two moments apart. */
const clock = new TestClock();

beforeAll(async () => {
  h = await startHarness({ segmentSize: 64 * KiB, clock: clock.now });
});

afterAll(async () => {
  await h.close();
});

describe('admin API: volumes', () => {
  it('reports the daemon status', async () => {
    const pkg = JSON.parse(await fs.readFile(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
    const before = await h.client.status();
    await h.client.createVolume('status-vol', { size: MiB });
    const status = await h.client.status();
    expect(status.store).toBe(h.engine.store);
    expect(status.version).toBe(pkg.version);
    expect(status.nodeId).toBe('node-a');
    expect(status.pid).toBe(process.pid);
    expect(status.volumeCount).toBe(before.volumeCount + 1);
    await h.client.deleteVolume('status-vol');
  });

  it('creates, lists, shows, changes retention of and deletes volumes', async () => {
    const created = await h.client.createVolume('vol-a', { size: 8 * MiB, blockSize: 512, granularity: 4 * KiB, retention: { maxBytes: 64 * MiB, maxAgeSeconds: 3600 } });
    expect(created).toMatchObject({ name: 'vol-a', size: 8 * MiB, blockSize: 512, granularity: 4 * KiB, retention: { maxBytes: 64 * MiB, maxAgeSeconds: 3600 }, sequence: 0, holders: [] });
    expect(created.createdAt).toBeInstanceOf(Date);
    const defaults = await h.client.createVolume('vol-b', { size: MiB });
    expect(defaults).toMatchObject({ blockSize: 4096, granularity: 64 * KiB, retention: {} });

    const names = (await h.client.listVolumes()).map((v) => v.name);
    expect(names).toEqual(expect.arrayContaining(['vol-a', 'vol-b']));
    expect(await h.client.getVolume('vol-a')).toEqual(created);

    // SetRetention replaces the policy as a whole: a limit left out is gone.
    const changed = await h.client.setRetention('vol-a', { maxAgeSeconds: 60 });
    expect(changed.retention).toEqual({ maxAgeSeconds: 60 });
    expect((await h.client.setRetention('vol-a', {})).retention).toEqual({});

    await h.client.deleteVolume('vol-a');
    await h.client.deleteVolume('vol-b');
    expect((await h.client.listVolumes()).map((v) => v.name)).not.toContain('vol-a');
    expect((await rejection(h.client.getVolume('vol-a'))).code).toBe('NOT_FOUND');
  });

  it('answers for existing names and bad sizes with the engine codes', async () => {
    await h.client.createVolume('dup', { size: MiB });
    expect((await rejection(h.client.createVolume('dup', { size: MiB }))).code).toBe('ALREADY_EXISTS');
    expect((await rejection(h.client.createVolume('bad/name', { size: MiB }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(h.client.createVolume('odd', { size: 1000 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(h.client.createVolume('odd', { size: MiB, blockSize: 3000 }))).code).toBe('INVALID_ARGUMENT');
    // The client refuses numbers protobufjs would silently mangle, before sending anything.
    expect((await rejection(h.client.createVolume('neg', { size: -1 }))).message).toMatch(/size must be a whole number/);
    expect((await rejection(h.client.createVolume('frac', { size: 1.5 }))).code).toBe('INVALID_ARGUMENT');
    // On the wire 0 stands for the default; a 0 asked for must not turn into one.
    expect((await rejection(h.client.createVolume('zero-bs', { size: MiB, blockSize: 0 }))).message).toMatch(/block size must be above 0/);
    expect((await rejection(h.client.createVolume('zero-gr', { size: MiB, granularity: 0 }))).message).toMatch(/granularity must be above 0/);
    expect(h.engine.has('zero-bs') || h.engine.has('zero-gr')).toBe(false);
    await h.client.deleteVolume('dup');
  });
});

describe('admin API: data', () => {
  beforeAll(async () => {
    await h.client.createVolume('data', { size: 16 * MiB });
  });

  it('streams a write of several MiB at an unaligned offset and reads it back in chunks', async () => {
    const data = pattern(5 * MiB + 123, 1);
    const result = await h.client.writeVolume('data', 777, [data.subarray(0, 100), data.subarray(100)], { flush: true, length: data.length });
    expect(result.bytesWritten).toBe(data.length);
    expect(result.flushed).toBe(true);
    expect(result.sequence).toBe((await h.client.getVolume('data')).sequence);

    const chunks: Buffer[] = [];
    for await (const chunk of h.client.readVolume('data', { offset: 777, length: data.length })) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(5);
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(MiB);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    // Around the write: zeros on both sides.
    expect((await h.client.read('data', 0, 777)).equals(Buffer.alloc(777))).toBe(true);
    expect((await h.client.read('data', 777 + data.length, 10)).equals(Buffer.alloc(10))).toBe(true);
  });

  it('reads to the end of the volume when no length is given', async () => {
    let total = 0;
    for await (const chunk of h.client.readVolume('data', { offset: 15 * MiB + 5 })) total += chunk.length;
    expect(total).toBe(MiB - 5);
  });

  it('writes from an async source without an announced length', async () => {
    async function* source() {
      for (let i = 0; i < 3; i++) yield pattern(300 * KiB, 10 + i);
    }
    const result = await h.client.writeVolume('data', 8 * MiB, source());
    expect(result).toMatchObject({ bytesWritten: 900 * KiB, flushed: false });
    const expected = Buffer.concat([0, 1, 2].map((i) => pattern(300 * KiB, 10 + i)));
    expect((await h.client.read('data', 8 * MiB, 900 * KiB)).equals(expected)).toBe(true);
    expect(await h.client.flushVolume('data')).toBe((await h.client.getVolume('data')).sequence);
  });

  it('checks an announced range before writing anything', async () => {
    const before = await h.client.read('data', 16 * MiB - 4 * KiB, 4 * KiB);
    const err = await rejection(h.client.write('data', 16 * MiB - 4 * KiB, pattern(8 * KiB, 3)));
    expect(err.code).toBe('OUT_OF_RANGE');
    expect((await h.client.read('data', 16 * MiB - 4 * KiB, 4 * KiB)).equals(before)).toBe(true);
  });

  it('refuses streams that break their own header', async () => {
    const tooLong = await rawWrite(h.socket, [{ volume: 'data', offset: 0, length: 10 }, { data: Buffer.alloc(20) }]);
    expect(tooLong.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const tooShort = await rawWrite(h.socket, [{ volume: 'data', offset: 0, length: 20 }, { data: Buffer.alloc(10) }]);
    expect(tooShort.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(tooShort.error?.details).toMatch(/ended after 10 of the 20 bytes/);
    const noHeader = await rawWrite(h.socket, [{ data: Buffer.alloc(10) }]);
    expect(noHeader.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noHeader.error?.details).toMatch(/volume is required/);
    const switching = await rawWrite(h.socket, [{ volume: 'data', offset: 0 }, { volume: 'other', data: Buffer.alloc(10) }]);
    expect(switching.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const empty = await rawWrite(h.socket, []);
    expect(empty.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const unknown = await rawWrite(h.socket, [{ volume: 'nope', offset: 0 }, { data: Buffer.alloc(1) }]);
    expect(unknown.error?.code).toBe(grpc.status.NOT_FOUND);
  });

  it('refuses reads outside the volume', async () => {
    expect((await rejection(h.client.read('data', 16 * MiB, 1))).code).toBe('OUT_OF_RANGE');
    const raw = await rawServerStream(h.socket, 'ReadVolume', { volume: 'data', offset: 17 * MiB });
    expect(raw.error?.code).toBe(grpc.status.OUT_OF_RANGE);
    expect(tidemarkCode(raw.error)).toBe('OUT_OF_RANGE');
    expect(raw.messages).toHaveLength(0);
  });

  it('stops streaming when the reader goes away early', async () => {
    let seen = 0;
    for await (const chunk of h.client.readVolume('data')) {
      seen += chunk.length;
      if (seen >= 2 * MiB) break;
    }
    expect(seen).toBe(2 * MiB);
    // The daemon still serves calls afterwards.
    expect((await h.client.getVolume('data')).name).toBe('data');
  });
});

describe('admin API: snapshots, markers, restores, diffs', () => {
  const size = 8 * MiB;
  let original: Buffer;

  beforeAll(async () => {
    await h.client.createVolume('hist', { size });
    original = pattern(size, 42);
    await h.client.write('hist', 0, original);
  });

  it('creates, lists and deletes snapshots', async () => {
    const snap = await h.client.createSnapshot('hist', 'first');
    expect(snap).toMatchObject({ volume: 'hist', name: 'first', internal: false, size });
    expect(['reflink', 'sparse-copy']).toContain(snap.method);
    await h.client.createSnapshot('hist', 'doomed');
    expect((await h.client.listSnapshots('hist')).map((s) => s.name)).toEqual(['first', 'doomed']);
    await h.client.deleteSnapshot('hist', 'doomed');
    expect((await h.client.listSnapshots('hist')).map((s) => s.name)).toEqual(['first']);
    expect((await rejection(h.client.deleteSnapshot('hist', 'doomed'))).code).toBe('NOT_FOUND');
    expect((await rejection(h.client.createSnapshot('hist', 'first'))).code).toBe('ALREADY_EXISTS');
    expect((await rejection(h.client.createSnapshot('nope', 'x'))).code).toBe('NOT_FOUND');
  });

  it('diffs against the live volume and between snapshots', async () => {
    await h.client.write('hist', MiB, pattern(4 * KiB, 5));
    expect(await h.client.diff('hist', 'first')).toEqual({ extents: [{ offset: MiB, length: 64 * KiB }], changedBytes: 64 * KiB });
    await h.client.createSnapshot('hist', 'second');
    await h.client.write('hist', 3 * MiB, pattern(4 * KiB, 6));
    expect((await h.client.diff('hist', 'first', 'second')).extents).toEqual([{ offset: MiB, length: 64 * KiB }]);
    expect((await h.client.diff('hist', 'second')).extents).toEqual([{ offset: 3 * MiB, length: 64 * KiB }]);
    expect((await rejection(h.client.diff('hist', 'second', 'first'))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(h.client.diff('hist', 'missing'))).code).toBe('NOT_FOUND');
  });

  it('restores part of a volume from a snapshot, with progress and one final result', async () => {
    const progress: RestoreProgress[] = [];
    const result = await h.client.restore({ volume: 'hist', source: { snapshot: 'first' }, ranges: [{ offset: 0, length: 2 * MiB }] }, (p) => progress.push(p));
    expect(result).toMatchObject({ volume: 'hist', method: 'snapshot-diff', baseSnapshot: 'first', bytesRestored: 64 * KiB });
    expect(progress.length).toBeGreaterThan(0);
    expect(progress[progress.length - 1]).toEqual({ bytesTotal: result.bytesTotal, bytesRestored: result.bytesRestored });
    // Inside the range: back to the snapshot. Outside: the later write stays.
    expect((await h.client.read('hist', MiB, 4 * KiB)).equals(original.subarray(MiB, MiB + 4 * KiB))).toBe(true);
    expect((await h.client.read('hist', 3 * MiB, 4 * KiB)).equals(pattern(4 * KiB, 6))).toBe(true);
  });

  it('rewinds to a marker, rebuilds a marker into a new volume, and restores by time and sequence', async () => {
    const [marker] = await h.client.createMarker('good', ['hist']);
    expect(marker).toMatchObject({ volume: 'hist', name: 'good', group: '', expired: false });
    const good = await h.client.read('hist', 0, size);
    clock.advance(15);
    await h.client.write('hist', 5 * MiB, Buffer.alloc(MiB, 0xee));

    const copy = await h.client.restore({ volume: 'hist', source: { marker: 'good' }, target: 'hist-copy' });
    expect(copy).toMatchObject({ volume: 'hist-copy', method: 'rebuild', pointSequence: marker!.sequence });
    expect((await h.client.read('hist-copy', 0, size)).equals(good)).toBe(true);

    const rewind = await h.client.restore({ volume: 'hist', source: { marker: 'good' } });
    expect(rewind).toMatchObject({ volume: 'hist', method: 'rewind', pointSequence: marker!.sequence, bytesRestored: MiB });
    expect((await h.client.read('hist', 0, size)).equals(good)).toBe(true);

    await h.client.write('hist', 6 * MiB, Buffer.alloc(MiB, 0xdd));
    const byTime = await h.client.restore({ volume: 'hist', source: { time: marker!.createdAt } });
    expect(byTime.pointSequence).toBeGreaterThanOrEqual(marker!.sequence);
    expect((await h.client.read('hist', 0, size)).equals(good)).toBe(true);

    await h.client.write('hist', 7 * MiB, Buffer.alloc(MiB, 0xcc));
    await h.client.restore({ volume: 'hist', source: { sequence: marker!.sequence } });
    expect((await h.client.read('hist', 0, size)).equals(good)).toBe(true);

    expect((await rejection(h.client.restore({ volume: 'hist', source: { marker: 'nope' } }))).code).toBe('NOT_FOUND');
    expect((await rejection(h.client.restore({ volume: 'hist', source: { marker: 'good' }, target: 'hist-copy' }))).code).toBe('ALREADY_EXISTS');
    expect((await rejection(h.client.restore({ volume: 'hist', source: { snapshot: 'first' }, ranges: [{ offset: 100, length: 4096 }] }))).code).toBe(
      'INVALID_ARGUMENT',
    );
    expect((await rejection(h.client.restore({ volume: 'hist', source: { snapshot: 'first' }, ranges: [{ offset: 0, length: 16 * MiB }] }))).code).toBe(
      'OUT_OF_RANGE',
    );
  });

  it('records group markers across volumes and lists them', async () => {
    await h.client.createVolume('grp-a', { size: MiB });
    await h.client.createVolume('grp-b', { size: MiB });
    const markers = await h.client.createMarker('cut', ['grp-a', 'grp-b']);
    expect(markers.map((m) => m.volume).sort()).toEqual(['grp-a', 'grp-b']);
    expect(markers[0]!.group).not.toBe('');
    expect(markers[0]!.group).toBe(markers[1]!.group);
    expect((await h.client.listMarkers('grp-b')).map((m) => m.name)).toEqual(['cut']);
    expect((await rejection(h.client.createMarker('cut', ['grp-a']))).code).toBe('ALREADY_EXISTS');
    expect((await rejection(h.client.createMarker('x', ['grp-a', 'missing']))).code).toBe('NOT_FOUND');
    expect((await rejection(h.client.createMarker('x', []))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('admin API: expiry and busy volumes', () => {
  it('reports an expired marker as FAILED_PRECONDITION with tidemark-code EXPIRED', async () => {
    await h.client.createVolume('exp', { size: 4 * MiB });
    await h.client.write('exp', 0, pattern(64 * KiB, 1));
    await h.client.createMarker('old', ['exp']);
    for (let i = 1; i <= 4; i++) await h.client.write('exp', i * 128 * KiB, pattern(128 * KiB, i + 1));
    const info = await h.client.setRetention('exp', { maxBytes: 128 * KiB });
    expect(info.earliestRecoverableSequence).toBeGreaterThan(2);
    expect((await h.client.listMarkers('exp'))[0]).toMatchObject({ name: 'old', expired: true });
    // The engine's own base snapshot shows only when asked for.
    expect(await h.client.listSnapshots('exp')).toEqual([]);
    const internal = await h.client.listSnapshots('exp', { includeInternal: true });
    expect(internal.length).toBeGreaterThan(0);
    expect(internal.every((s) => s.internal)).toBe(true);
    expect((await rejection(h.client.deleteSnapshot('exp', internal[0]!.name))).code).toBe('INVALID_ARGUMENT');

    const raw = await rawServerStream(h.socket, 'Restore', { volume: 'exp', marker: 'old' });
    expect(raw.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(tidemarkCode(raw.error)).toBe('EXPIRED');
    expect(raw.error?.details).toMatch(/has expired/);
    const err = await rejection(h.client.restore({ volume: 'exp', source: { marker: 'old' } }));
    expect(err.code).toBe('EXPIRED');
  });

  it('refuses to delete or restore in place a volume in use, as BUSY, unless forced', async () => {
    await h.client.createVolume('held', { size: MiB });
    await h.client.createSnapshot('held', 's');
    h.engine.hold('held', 'nbd:test');
    expect((await h.client.getVolume('held')).holders).toEqual(['nbd:test']);

    const raw = await rawUnary(h.socket, 'DeleteVolume', { name: 'held' });
    expect(raw.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(tidemarkCode(raw.error)).toBe('BUSY');
    expect(raw.error?.details).toMatch(/in use by nbd:test/);
    expect((await rejection(h.client.restore({ volume: 'held', source: { snapshot: 's' } }))).code).toBe('BUSY');

    expect((await h.client.restore({ volume: 'held', source: { snapshot: 's' }, force: true })).method).toBe('snapshot-diff');
    h.engine.release('held', 'nbd:test');
    await h.client.deleteVolume('held');
  });

  it('deletes a volume in use when forced', async () => {
    await h.client.createVolume('held2', { size: MiB });
    h.engine.hold('held2', 'csi:attach');
    expect((await rejection(h.client.deleteVolume('held2'))).code).toBe('BUSY');
    await h.client.deleteVolume('held2', { force: true });
    expect((await rejection(h.client.getVolume('held2'))).code).toBe('NOT_FOUND');
  });
});

describe('admin API: input checks at the edge', () => {
  beforeAll(async () => {
    await h.client.createVolume('edge', { size: MiB });
  });

  const cases: [string, string, Record<string, unknown>, RegExp][] = [
    ['a missing name', 'GetVolume', {}, /name is required/],
    ['a missing volume', 'ListMarkers', { volume: '' }, /volume is required/],
    ['a size beyond 2^53', 'CreateVolume', { name: 'huge', size: '18446744073709551615' }, /out of bounds/],
    ['a zero size', 'CreateVolume', { name: 'zero', size: 0 }, /positive/],
    ['a marker on no volume', 'CreateMarker', { name: 'm', volumes: [] }, /at least one volume/],
    ['a marker on an empty volume name', 'CreateMarker', { name: 'm', volumes: [''] }, /volumes\[0\]/],
    ['a snapshot without a name', 'CreateSnapshot', { volume: 'edge' }, /name is required/],
    ['a diff without a base', 'Diff', { volume: 'edge' }, /base is required/],
    ['a retention size beyond 2^53', 'SetRetention', { name: 'edge', retention: { maxBytes: '9007199254740993' } }, /retention.max_bytes/],
  ];

  it.each(cases)('refuses %s as INVALID_ARGUMENT', async (_what, method, request, message) => {
    const { error } = await rawUnary(h.socket, method, request);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(tidemarkCode(error)).toBe('INVALID_ARGUMENT');
    expect(error?.details).toMatch(message);
  });

  const restoreCases: [string, Record<string, unknown>, RegExp][] = [
    ['no source', { volume: 'edge' }, /exactly one source/],
    ['an empty snapshot name', { volume: 'edge', snapshot: '' }, /snapshot is required/],
    ['a malformed time', { volume: 'edge', time: 'yesterday' }, /malformed time/],
    ['a time without a zone', { volume: 'edge', time: '2026-11-21T10:00:00' }, /malformed time/],
    ['a sequence beyond 2^53', { volume: 'edge', sequence: '9007199254740993' }, /out of bounds/],
    ['a range offset beyond 2^53', { volume: 'edge', marker: 'x', ranges: [{ offset: '18446744073709551615', length: 4096 }] }, /ranges\[0\].offset/],
  ];

  it.each(restoreCases)('refuses a restore with %s', async (_what, request, message) => {
    const { messages, error } = await rawServerStream(h.socket, 'Restore', request);
    expect(messages).toEqual([]);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toMatch(message);
  });

  it('refuses a write offset beyond 2^53', async () => {
    const { error } = await rawWrite(h.socket, [{ volume: 'edge', offset: '18446744073709551615' }, { data: Buffer.alloc(1) }]);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('admin API: logging', () => {
  it('logs each call with its ids and outcome, and never the data', async () => {
    await h.client.createVolume('logged', { size: MiB });
    const secret = Buffer.from('tidemark-secret-payload-0123456789');
    await h.client.write('logged', 4096, secret);
    await h.client.createSnapshot('logged', 'snap-x');
    await h.client.createMarker('mark-y', ['logged']);
    await rejection(h.client.getVolume('not-there'));

    const calls = h.logs.filter((e) => e.message === 'admin call' || e.message === 'admin call failed');
    expect(calls).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ rpc: 'CreateVolume', volume: 'logged', outcome: 'ok' }),
        expect.objectContaining({ rpc: 'WriteVolume', volume: 'logged', offset: 4096, bytesWritten: secret.length, outcome: 'ok' }),
        expect.objectContaining({ rpc: 'CreateSnapshot', volume: 'logged', snapshot: 'snap-x', outcome: 'ok' }),
        expect.objectContaining({ rpc: 'CreateMarker', marker: 'mark-y', volumes: ['logged'], outcome: 'ok' }),
        expect.objectContaining({ rpc: 'GetVolume', volume: 'not-there', outcome: 'error', code: 'NOT_FOUND', level: 'warn' }),
      ]),
    );
    const all = h.rawLogs.join('\n');
    expect(all).not.toContain(secret.toString());
    expect(all).not.toContain(secret.toString('base64'));
  });
});

describe('admin client without a daemon', () => {
  it('says the daemon cannot be reached, as UNAVAILABLE', async () => {
    const socket = path.join(h.dir, 'nobody.sock');
    const client = new AdminClient(socket);
    try {
      const err = await rejection(client.listVolumes());
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.message).toContain(`cannot reach the tidemark daemon at ${socket}: is \`tidemark serve\` running?`);
    } finally {
      client.close();
    }
  });
});
