/**
 * The server against real NBD clients from Debian packages: qemu-io, qemu-img, nbdcopy and
 * nbdinfo, talking to an in-process engine over the unix socket.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { KiB, MiB, patternBytes, run, sha256, startHarness, type Harness } from './fixtures/harness.js';
import { needing, tools } from '../support/requirements.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h.stop();
});

interface MapEntry {
  offset: number;
  length: number;
  type: number;
  description: string;
}

async function nbdinfoMap(uri: string, context?: string): Promise<MapEntry[]> {
  const args = ['--json', context ? `--map=${context}` : '--map', uri];
  return JSON.parse((await run('nbdinfo', args)).stdout) as MapEntry[];
}

/** Merges adjacent entries of one type, and keeps those of the wanted type. */
function extentsOf(map: MapEntry[], type: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const e of map) {
    if (e.type !== type) continue;
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === e.offset) last[1] += e.length;
    else out.push([e.offset, e.length]);
  }
  return out;
}

describe('qemu-io', () => {
  needing(tools('qemu-io')).test('writes, reads and verifies patterns, unaligned and with zeroes and discards', async () => {
    await h.engine.createVolume('qio', { size: 32 * MiB });
    const { stdout } = await run('qemu-io', [
      '-f', 'raw',
      '-c', 'write -P 0xab 0 1M',
      '-c', 'read -P 0xab 0 1M',
      '-c', 'write -P 0x5c 1048577 4097',
      '-c', 'read -P 0x5c 1048577 4097',
      '-c', 'read -P 0 1048576 1',
      '-c', 'write -z 4096 8192',
      '-c', 'read -P 0 4096 8192',
      '-c', 'write -P 0x11 2M 3M',
      '-c', 'discard 2M 1M',
      '-c', 'write -z -u 3M 1M',
      '-c', 'read -P 0x11 4M 1M',
      '-c', 'write -f -P 0x77 31M 1M',
      '-c', 'flush',
      '-c', 'read -P 0x77 31M 1M',
      h.uri('qio'),
    ]);
    expect(stdout).not.toMatch(/Pattern verification failed|error|failed/i);
    const image = await h.engine.read('qio', 0, 32 * MiB);
    expect(image.subarray(0, 4096).every((b) => b === 0xab)).toBe(true);
    expect(image.subarray(4096, 12288).every((b) => b === 0)).toBe(true);
    expect(image.subarray(1048577, 1048577 + 4097).every((b) => b === 0x5c)).toBe(true);
    expect(image.subarray(3 * MiB, 4 * MiB).every((b) => b === 0)).toBe(true);
    expect(image.subarray(31 * MiB).every((b) => b === 0x77)).toBe(true);
  });

  needing(tools('qemu-io')).test('many requests in flight with aio', async () => {
    await h.engine.createVolume('aio', { size: 16 * MiB });
    const writes: string[] = [];
    const reads: string[] = [];
    for (let i = 0; i < 48; i++) {
      const pattern = `0x${(0x10 + i).toString(16)}`;
      // Interleaved sizes and offsets, all submitted before any completes.
      const offset = (i * 7 % 48) * 256 * KiB;
      writes.push('-c', `aio_write -P ${pattern} ${offset} ${i % 3 === 0 ? 256 * KiB : 64 * KiB}`);
      reads.push('-c', `aio_read -P ${pattern} ${offset} ${i % 3 === 0 ? 256 * KiB : 64 * KiB}`);
    }
    const { stdout } = await run('qemu-io', ['-f', 'raw', ...writes, '-c', 'aio_flush', ...reads, '-c', 'aio_flush', h.uri('aio')]);
    expect(stdout.match(/^wrote /gm)?.length).toBe(48);
    expect(stdout.match(/^read /gm)?.length).toBe(48);
    expect(stdout).not.toMatch(/verification failed|error/i);
  });
});

describe('qemu-img', () => {
  needing(tools('qemu-img')).test('convert a local image into an export and back, compare round trips', async () => {
    const size = 24 * MiB;
    await h.engine.createVolume('img', { size });
    const local = path.join(h.dir, 'local.img');
    const image = Buffer.alloc(size);
    // Data with holes between, so convert exercises both writes and zeroing.
    for (let at = 0; at < size; at += 3 * MiB) patternBytes(MiB + 12345, at).copy(image, at);
    await fs.writeFile(local, image);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', local, h.uri('img')]);
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', local, h.uri('img')]);
    expect(sha256(await h.engine.read('img', 0, size))).toBe(sha256(image));
    const back = path.join(h.dir, 'back.img');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', h.uri('img'), back]);
    expect(sha256(await fs.readFile(back))).toBe(sha256(image));
    // A changed byte is noticed.
    await h.engine.write('img', 5 * MiB, Buffer.from([1]));
    const differ = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', local, h.uri('img')], { allowFailure: true });
    expect(differ.code).toBe(1);
    await fs.rm(local);
    await fs.rm(back);
  });
});

describe('nbdcopy', () => {
  needing(tools('nbdcopy')).test('copies a file into a volume, the volume out to a file, and volume to volume', async () => {
    const size = 32 * MiB;
    await h.engine.createVolume('copy-a', { size });
    await h.engine.createVolume('copy-b', { size });
    const source = path.join(h.dir, 'source.img');
    const data = Buffer.alloc(size);
    for (let at = 0; at < size; at += 4 * MiB) patternBytes(2 * MiB, at + 1).copy(data, at);
    await fs.writeFile(source, data);
    await run('nbdcopy', ['--flush', source, h.uri('copy-a')]);
    expect(sha256(await h.engine.read('copy-a', 0, size))).toBe(sha256(data));
    await run('nbdcopy', [h.uri('copy-a'), h.uri('copy-b')]);
    const out = path.join(h.dir, 'out.img');
    await run('nbdcopy', [h.uri('copy-b'), out]);
    expect(sha256(await fs.readFile(out))).toBe(sha256(data));
    await fs.rm(source);
    await fs.rm(out);
  });
});

describe('nbdinfo', () => {
  needing(tools('nbdinfo')).test('--list shows every export', async () => {
    await h.engine.createVolume('listed', { size: MiB });
    const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${h.socket}`]);
    const listed = JSON.parse(stdout) as { exports: Array<{ 'export-name': string; 'export-size': number }> };
    const names = listed.exports.map((e) => e['export-name']);
    for (const name of h.engine.listVolumes().map((v) => v.name)) expect(names).toContain(name);
    expect(listed.exports.find((e) => e['export-name'] === 'listed')!['export-size']).toBe(MiB);
  });

  needing(tools('nbdinfo', 'qemu-io', 'qemu-img')).test('--map shows base:allocation, and the dirty bitmap matches the writes since a snapshot', async () => {
    const size = 16 * MiB;
    await h.engine.createVolume('mapped', { size });
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 256k', '-c', 'write -P 2 8M 64k', h.uri('mapped')]);
    const allocation = await nbdinfoMap(h.uri('mapped'));
    expect(extentsOf(allocation, 0)).toEqual([
      [0, 256 * KiB],
      [8 * MiB, 64 * KiB],
    ]);
    expect(extentsOf(allocation, 3)).toEqual([
      [256 * KiB, 8 * MiB - 256 * KiB],
      [8 * MiB + 64 * KiB, 8 * MiB - 64 * KiB],
    ]);

    await h.engine.createSnapshot('mapped', 'before');
    // Writes after the snapshot, one unaligned across a 64 KiB tracking boundary.
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 3 4M 128k', '-c', 'write -P 4 12582900 200', '-c', 'write -z 15M 64k', h.uri('mapped')]);
    const dirty = await nbdinfoMap(h.uri('mapped'), 'qemu:dirty-bitmap:before');
    expect(extentsOf(dirty, 1)).toEqual([
      [4 * MiB, 128 * KiB],
      [12 * MiB - 64 * KiB, 128 * KiB],
      [15 * MiB, 64 * KiB],
    ]);
    expect(dirty.reduce((sum, e) => sum + e.length, 0)).toBe(size);
    // What the engine reports as the diff is what the NBD client saw.
    expect(h.engine.diff('mapped', 'before').map((e) => [e.offset, e.length])).toEqual(extentsOf(dirty, 1));

    // qemu's own way to read a dirty bitmap, as incremental backup tools do: dirty extents
    // come back marked as not data (qemu's x-dirty-bitmap inverts the meaning).
    const opts = `driver=nbd,server.type=unix,server.path=${h.socket},export=mapped,x-dirty-bitmap=qemu:dirty-bitmap:before`;
    const qemuMap = JSON.parse((await run('qemu-img', ['map', '--output=json', '--image-opts', opts])).stdout) as Array<{ start: number; length: number; data: boolean }>;
    const qemuDirty = qemuMap.filter((e) => !e.data).map((e) => [e.start, e.length]);
    expect(qemuDirty).toEqual(extentsOf(dirty, 1));
  });
});
