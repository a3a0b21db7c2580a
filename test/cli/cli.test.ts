import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { DaemonProcess, json, pattern, tidemark, type RunResult } from './harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 16 * MiB;

let dir: string;
let store: string;
let daemon: DaemonProcess | undefined;

/** `tidemark --store STORE ARGS`. */
const tm = (args: string[], options: { input?: Buffer | string } = {}) => tidemark(['--store', store, ...args], options);

function ok(result: RunResult): RunResult {
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr}`);
  return result;
}

/** A failed command prints exactly one line, prefixed with the command name, on stderr. */
function failed(result: RunResult, code: number, message: RegExp): void {
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code, stderr: expect.stringMatching(message) });
  expect(result.stderr).toMatch(/^tidemark: /);
  expect(result.stderr.trimEnd().split('\n').filter((l) => !l.startsWith('(run with --help'))).toHaveLength(1);
}

/** Runs independent failing commands side by side and checks each; they share no state. */
async function allFail(cases: [string[], number, RegExp][]): Promise<void> {
  const results = await Promise.all(cases.map(([args]) => tm(args)));
  results.forEach((result, i) => failed(result, cases[i]![1], cases[i]![2]));
}

async function readVolume(volume: string, offset = 0, length?: number): Promise<Buffer> {
  const args = ['volume', 'read', volume, '--offset', String(offset)];
  if (length !== undefined) args.push('--length', String(length));
  return ok(await tm(args)).stdout;
}

async function writeFile(name: string, data: Buffer): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, data);
  return file;
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-cli-'));
  store = path.join(dir, 'store');
  // Small journal segments let a retention test free history with little data.
  daemon = await DaemonProcess.start(store, ['--segment-size', '64Ki']);
});

afterAll(async () => {
  await daemon?.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('tidemark: the whole story', () => {
  // What the volume should hold, kept in step with every write the test makes.
  const model = Buffer.alloc(SIZE);
  let atSnapshot: Buffer;
  let atMarker: Buffer;
  let markerTime: string;

  it('creates a volume and writes a file and stdin into it', async () => {
    const created = ok(await tm(['volume', 'create', 'app', '--size', '16Mi']));
    expect(created.out).toMatch(/^volume "app" created: 16\.0 MiB, block size 4096/);

    const first = pattern(2 * MiB + 333, 1);
    const written = ok(await tm(['volume', 'write', 'app', '--offset', '0', '--file', await writeFile('first.bin', first)]));
    expect(written.out).toMatch(/wrote 2\.00 MiB \(2097485 bytes\) to volume "app" at offset 0 .*flushed/);
    first.copy(model, 0);

    const piped = pattern(300 * KiB, 2);
    const viaStdin = json<{ bytesWritten: number; flushed: boolean }>(ok(await tm(['--json', 'volume', 'write', 'app', '--offset', '6Mi'], { input: piped })));
    expect(viaStdin).toMatchObject({ volume: 'app', offset: 6 * MiB, bytesWritten: piped.length, flushed: true });
    piped.copy(model, 6 * MiB);

    expect((await readVolume('app')).equals(model)).toBe(true);
    expect((await readVolume('app', 6 * MiB, 10)).equals(piped.subarray(0, 10))).toBe(true);
  });

  it('snapshots, marks, damages, and rewinds to the marker', async () => {
    const snap = json(ok(await tm(['snapshot', 'create', 'app', 'before', '--json'])));
    expect(snap).toMatchObject({ volume: 'app', name: 'before', internal: false });
    atSnapshot = Buffer.from(model);

    const second = pattern(MiB, 3);
    ok(await tm(['volume', 'write', 'app', '--offset', '4Mi', '--file', await writeFile('second.bin', second)]));
    second.copy(model, 4 * MiB);

    const [marker] = json<{ name: string; sequence: number; createdAt: string; expired: boolean }[]>(ok(await tm(['--json', 'marker', 'create', 'good', '--volume', 'app'])));
    expect(marker).toMatchObject({ name: 'good', expired: false });
    markerTime = marker!.createdAt;
    atMarker = Buffer.from(model);

    // The damage: a megabyte of 0xff over the first file.
    const damage = Buffer.alloc(MiB, 0xff);
    ok(await tm(['volume', 'write', 'app', '--offset', '512Ki'], { input: damage }));
    damage.copy(model, 512 * KiB);
    expect((await readVolume('app')).equals(atMarker)).toBe(false);

    const diff = json<{ extents: { offset: number; length: number }[]; changedBytes: number }>(ok(await tm(['--json', 'diff', 'app', '--base', 'before'])));
    expect(diff.extents).toEqual([
      { offset: 512 * KiB, length: MiB },
      { offset: 4 * MiB, length: MiB },
    ]);
    expect(diff.changedBytes).toBe(2 * MiB);
    const human = ok(await tm(['diff', 'app', '--base', 'before']));
    expect(human.out).toContain('OFFSET');
    expect(human.out).toContain('volume "app": 2 extents, 2.00 MiB (2097152 bytes) changed between snapshot "before" and the live volume');

    const restored = ok(await tm(['restore', 'app', '--marker', 'good']));
    expect(restored.out).toMatch(/^volume "app" restored to marker "good" \(sequence \d+\) by rewind/);
    expect(restored.stderr).toBe(''); // no progress when stderr is not a terminal
    expect((await readVolume('app')).equals(atMarker)).toBe(true);
    atMarker.copy(model);

    const markers = ok(await tm(['marker', 'list', 'app']));
    expect(markers.out).toMatch(/^NAME\s+SEQUENCE\s+CREATED\s+GROUP\s+STATUS\n/);
    expect(markers.out).toMatch(/\ngood\s+\d+\s+\S+Z\s+-\s+recoverable\n/);
  });

  it('restores a marker into a new volume, leaving the original alone', async () => {
    ok(await tm(['volume', 'write', 'app', '--offset', '0'], { input: Buffer.alloc(64 * KiB, 0x11) }));
    Buffer.alloc(64 * KiB, 0x11).copy(model, 0);
    const result = json(ok(await tm(['restore', 'app', '--marker', 'good', '--to', 'app-good', '--json'])));
    expect(result).toMatchObject({ volume: 'app-good', method: 'rebuild' });
    expect((await readVolume('app-good')).equals(atMarker)).toBe(true);
    expect((await readVolume('app')).equals(model)).toBe(true);
  });

  it('restores to a point in time', async () => {
    ok(await tm(['volume', 'write', 'app', '--offset', '8Mi'], { input: Buffer.alloc(128 * KiB, 0x22) }));
    const result = ok(await tm(['restore', 'app', '--time', markerTime]));
    expect(result.out).toContain(`volume "app" restored to time ${markerTime}`);
    expect((await readVolume('app')).equals(atMarker)).toBe(true);
    atMarker.copy(model);
  });

  it('restores only the named ranges from a snapshot', async () => {
    const first = Buffer.alloc(64 * KiB, 0xaa);
    const second = Buffer.alloc(64 * KiB, 0xbb);
    ok(await tm(['volume', 'write', 'app', '--offset', '0'], { input: first }));
    ok(await tm(['volume', 'write', 'app', '--offset', '10Mi'], { input: second }));
    first.copy(model, 0);
    second.copy(model, 10 * MiB);

    const result = json<{ method: string; bytesRestored: number }>(ok(await tm(['--json', 'restore', 'app', '--snapshot', 'before', '--range', '0:1Mi', '--range', '2Mi:64Ki'])));
    expect(result.method).toBe('snapshot-diff');
    // Inside the ranges, back to the snapshot; outside them (the second file at 4Mi, the
    // write at 10Mi) nothing moved.
    atSnapshot.copy(model, 0, 0, MiB);
    atSnapshot.copy(model, 2 * MiB, 2 * MiB, 2 * MiB + 64 * KiB);
    expect((await readVolume('app')).equals(model)).toBe(true);
    expect((await readVolume('app', 10 * MiB, 64 * KiB)).equals(second)).toBe(true);
  });

  it('diffs between two snapshots', async () => {
    ok(await tm(['snapshot', 'create', 'app', 'after']));
    const diff = json<{ target: string; extents: { offset: number; length: number }[] }>(ok(await tm(['--json', 'diff', 'app', '--base', 'before', '--target', 'after'])));
    expect(diff.target).toBe('after');
    expect(diff.extents.length).toBeGreaterThan(0);
    const none = ok(await tm(['diff', 'app', '--base', 'after']));
    expect(none.out).toBe('volume "app": no changes between snapshot "after" and the live volume\n');
    const list = ok(await tm(['snapshot', 'list', 'app']));
    expect(list.out).toMatch(/^NAME\s+SEQUENCE\s+CREATED\s+METHOD\nbefore\s+\d+ .*\nafter\s+\d+ /);
  });

  it('lists and shows volumes, as tables and as JSON', async () => {
    const table = ok(await tm(['volume', 'list'])).out.split('\n');
    expect(table[0]).toMatch(/^NAME\s+SIZE\s+SEQUENCE\s+SNAPSHOTS\s+MARKERS\s+JOURNAL\s+RETENTION\s+IN USE BY$/);
    // Right-aligned columns end where their header ends.
    const sizeEnd = table[0]!.indexOf('SIZE') + 'SIZE'.length;
    const appRow = table.find((l) => l.startsWith('app '))!;
    expect(appRow.slice(sizeEnd - '16.0 MiB'.length, sizeEnd)).toBe('16.0 MiB');

    const volumes = json<{ name: string; size: number; snapshotCount: number; markerCount: number }[]>(ok(await tm(['volume', 'list', '--json'])));
    expect(volumes.find((v) => v.name === 'app')).toMatchObject({ size: SIZE, snapshotCount: 2, markerCount: 1 });
    const info = ok(await tm(['volume', 'info', 'app']));
    expect(info.out).toMatch(/^name:\s+app\nsize:\s+16\.0 MiB \(16777216 bytes\)\n/);
    expect(json(ok(await tm(['volume', 'info', 'app', '--json'])))).toMatchObject({ name: 'app', blockSize: 4096, retention: {} });

    const read = json<{ data: string; length: number }>(ok(await tm(['--json', 'volume', 'read', 'app', '--offset', '6Mi', '--length', '16'])));
    expect(Buffer.from(read.data, 'base64').equals(model.subarray(6 * MiB, 6 * MiB + 16))).toBe(true);
  });

  it('changes retention, keeping the limits not named', async () => {
    ok(await tm(['volume', 'set-retention', 'app', '--retention-size', '1Gi']));
    const both = json<{ retention: object }>(ok(await tm(['--json', 'volume', 'set-retention', 'app', '--retention-age', '7d'])));
    expect(both.retention).toEqual({ maxBytes: 1024 * MiB, maxAgeSeconds: 7 * 86400 });
    const human = ok(await tm(['volume', 'set-retention', 'app', '--retention-size', 'none']));
    expect(human.out).toMatch(/^volume "app" retention: age 7d;/);
    failed(await tm(['volume', 'set-retention', 'app']), 2, /give --retention-size and\/or --retention-age/);
  });

  it('deletes volumes and snapshots', async () => {
    ok(await tm(['snapshot', 'delete', 'app', 'after']));
    expect(json<unknown[]>(ok(await tm(['--json', 'snapshot', 'list', 'app'])))).toHaveLength(1);
    expect(ok(await tm(['volume', 'delete', 'app-good'])).out).toBe('volume "app-good" deleted\n');
    failed(await tm(['volume', 'info', 'app-good']), 3, /volume "app-good" does not exist/);
  });
});

describe('tidemark: errors and exit codes', () => {
  beforeAll(async () => {
    ok(await tm(['volume', 'create', 'errs', '--size', '16Mi']));
    ok(await tm(['snapshot', 'create', 'errs', 's1']));
  });

  it('exits 3 for an unknown volume, snapshot or marker', async () => {
    await allFail([
      [['volume', 'info', 'nope'], 3, /^tidemark: volume "nope" does not exist\n$/],
      [['restore', 'errs', '--snapshot', 'nope'], 3, /snapshot "nope" of volume "errs" does not exist/],
      [['snapshot', 'delete', 'errs', 'nope'], 3, /snapshot "nope"/],
      [['diff', 'errs', '--base', 'nope'], 3, /snapshot "nope"/],
      [['restore', 'errs', '--marker', 'nope'], 3, /marker "nope" does not exist on volume "errs"/],
      [['marker', 'list', 'nope'], 3, /volume "nope"/],
      [['marker', 'create', 'm', '--volume', 'errs', '--volume', 'nope'], 3, /volume "nope"/],
      [['volume', 'write', 'errs', '--file', path.join(dir, 'no-such-file')], 3, /^tidemark: \S+no-such-file does not exist\n$/],
    ]);
  });

  it('exits 4 for names that exist', async () => {
    await allFail([
      [['volume', 'create', 'errs', '--size', '1Mi'], 4, /volume "errs" already exists/],
      [['snapshot', 'create', 'errs', 's1'], 4, /snapshot "s1" of volume "errs" already exists/],
    ]);
  });

  it('exits 2 for ranges outside the volume or not aligned', async () => {
    failed(await tm(['restore', 'errs', '--snapshot', 's1', '--range', '0:32Mi']), 2, /outside volume "errs"/);
    failed(await tm(['restore', 'errs', '--snapshot', 's1', '--range', '100:4096']), 2, /not aligned to the block size of 4096/);
    failed(await tm(['volume', 'read', 'errs', '--offset', '16Mi', '--length', '1']), 2, /outside volume "errs"/);
    failed(await tm(['volume', 'write', 'errs', '--offset', '16Mi', '--file', await writeFile('4k.bin', Buffer.alloc(4096))]), 2, /outside volume "errs"/);
  });

  it('exits 2 for malformed sizes, durations, ranges and times', async () => {
    await allFail([
      [['volume', 'create', 'x', '--size', '12Q'], 2, /malformed size "12Q"/],
      [['volume', 'create', 'x', '--size', '-5'], 2, /size "-5" is out of range: above 0/],
      [['volume', 'create', 'x', '--size', '1Mi', '--retention-age', '5y'], 2, /malformed retention age "5y"/],
      [['volume', 'create', 'x', '--size', '1Mi', '--retention-size', 'lots'], 2, /malformed retention size "lots"/],
      [['volume', 'read', 'errs', '--offset', '1.5'], 2, /malformed offset "1.5"/],
      [['restore', 'errs', '--snapshot', 's1', '--range', '0:abc'], 2, /malformed range length "abc"/],
      [['restore', 'errs', '--snapshot', 's1', '--range', '4096'], 2, /malformed range "4096": use OFFSET:LENGTH/],
      [['restore', 'errs', '--time', 'yesterday'], 2, /malformed time "yesterday"/],
      [['restore', 'errs', '--time', '2026-02-30T00:00:00Z'], 2, /not a real date/],
      [['restore', 'errs', '--time', '2026-11-21T10:00:00'], 2, /use RFC 3339 with a zone/],
    ]);
    // Bad input is refused before any daemon is asked: this fails the same way with none running.
    failed(await tidemark(['--store', path.join(dir, 'no-daemon'), 'volume', 'create', 'x', '--size', '12Q']), 2, /malformed size/);
  });

  it('exits 2 for zero and negative numbers, naming the range, instead of taking them as the default', async () => {
    await allFail([
      [['volume', 'create', 'z1', '--size', '1Mi', '--block-size', '0'], 2, /block size "0" is out of range: a power of two from 512 to 64Ki/],
      [['volume', 'create', 'z2', '--size', '1Mi', '--granularity', '0'], 2, /granularity "0" is out of range: a power of two from the block size \(4096\) to 64Mi/],
      [['volume', 'create', 'z3', '--size', '1Mi', '--block-size', '-4096'], 2, /block size "-4096" is out of range: a power of two from 512 to 64Ki/],
      [['volume', 'create', 'z4', '--size', '1Mi', '--block-size', '1Ki', '--granularity', '512'], 2, /granularity "512" is out of range: a power of two from the block size \(1024\)/],
      [['volume', 'create', 'z5', '--size', '0'], 2, /size "0" is out of range: above 0/],
      [['volume', 'create', 'z6', '--size', '1Mi', '--retention-size', '0'], 2, /retention size "0" is out of range: above 0/],
      [['volume', 'create', 'z7', '--size', '1Mi', '--retention-age', '0'], 2, /retention age "0" is out of range: at least one second/],
      [['volume', 'create', 'z8', '--size', '1Mi', '--retention-age', '-5m'], 2, /retention age "-5m" is out of range: at least one second/],
      [['volume', 'set-retention', 'errs', '--retention-size', '0'], 2, /retention size "0" is out of range/],
      [['volume', 'read', 'errs', '--length', '0'], 2, /length "0" is out of range: at least 1 byte/],
      [['volume', 'read', 'errs', '--offset', '-4096'], 2, /offset "-4096" is out of range: 0 or more/],
      [['restore', 'errs', '--sequence', '-1'], 2, /sequence "-1" is out of range/],
      [['serve', '--nbd-tcp', '-1'], 2, /port from 0 to 65535/],
      [['serve', '--segment-size', '0'], 2, /segment size "0" is out of range: at least 4Ki/],
    ]);
    expect(json<{ name: string }[]>(ok(await tm(['--json', 'volume', 'list']))).map((v) => v.name).filter((n) => n.startsWith('z'))).toEqual([]);
  });

  it('exits 2 for usage errors', async () => {
    await allFail([
      [['restore', 'errs'], 2, /name exactly one of --snapshot, --marker, --time or --sequence/],
      [['restore', 'errs', '--snapshot', 's1', '--marker', 'm'], 2, /exactly one/],
      [['volume', 'create', 'x'], 2, /required option '--size <size>' not specified/],
      [['volume', 'frobnicate'], 2, /unknown command 'frobnicate'/],
      [['volume', 'list', '--colour'], 2, /unknown option '--colour'/],
      [['marker', 'create', 'm'], 2, /required option '--volume <volume>'/],
      [['restore', 'errs', '--snapshot', 's1', '--range', '0:4Ki', '--to', 'other'], 2, /ranges apply to in-place restores/],
    ]);
  });

  it('prints errors as JSON on stdout too with --json', async () => {
    const result = await tm(['--json', 'volume', 'info', 'nope']);
    expect(result.code).toBe(3);
    expect(json(result)).toEqual({ error: { code: 'NOT_FOUND', message: 'volume "nope" does not exist' } });
    const usage = await tm(['volume', 'list', '--colour', '--json']);
    expect(usage.code).toBe(2);
    expect(json(usage)).toEqual({ error: { code: 'INVALID_ARGUMENT', message: "unknown option '--colour'" } });
  });

  it('exits 5 for an expired marker, and lists it as expired', async () => {
    ok(await tm(['volume', 'create', 'exp', '--size', '4Mi']));
    ok(await tm(['volume', 'write', 'exp'], { input: pattern(64 * KiB, 9) }));
    ok(await tm(['marker', 'create', 'old', '--volume', 'exp']));
    for (let i = 1; i <= 4; i++) ok(await tm(['volume', 'write', 'exp', '--offset', String(i * 128 * KiB)], { input: pattern(128 * KiB, 10 + i) }));
    ok(await tm(['volume', 'set-retention', 'exp', '--retention-size', '128Ki']));

    expect(ok(await tm(['marker', 'list', 'exp'])).out).toMatch(/\nold\s+\d+\s+\S+\s+-\s+expired\n/);
    failed(await tm(['restore', 'exp', '--marker', 'old']), 5, /marker "old" of volume "exp" has expired/);
    const asJson = await tm(['--json', 'restore', 'exp', '--marker', 'old', '--to', 'exp-copy']);
    expect(asJson.code).toBe(5);
    expect(json<{ error: { code: string } }>(asJson).error.code).toBe('EXPIRED');
    // The engine's base snapshot shows only with --all.
    expect(ok(await tm(['snapshot', 'list', 'exp'])).out).toBe('volume "exp" has no snapshots\n');
    expect(ok(await tm(['snapshot', 'list', 'exp', '--all'])).out).toMatch(/INTERNAL\n~base-\d+ .* yes\n/);
  });

  it('exits 6 when no daemon answers, saying so', async () => {
    const empty = path.join(dir, 'no-daemon');
    failed(
      await tidemark(['--store', empty, 'volume', 'list']),
      6,
      new RegExp(`^tidemark: cannot reach the tidemark daemon at ${empty}/admin\\.sock: is \`tidemark serve\` running\\?`),
    );
  });

  it('finds the daemon through TIDEMARK_STORE or --admin-socket', async () => {
    const viaEnv = await tidemark(['volume', 'info', 'errs', '--json'], { env: { TIDEMARK_STORE: store } });
    expect(json(ok(viaEnv))).toMatchObject({ name: 'errs' });
    const viaSocket = await tidemark(['--admin-socket', path.join(store, 'admin.sock'), 'status', '--json']);
    expect(json(ok(viaSocket))).toMatchObject({ store, adminSocket: path.join(store, 'admin.sock') });
  });

  it('exits 6 when a second daemon is started on a locked store', async () => {
    const second = await tidemark(['serve', '--store', store]);
    expect(second.code).toBe(6);
    expect(second.stderr).toMatch(/^tidemark: store .* is locked by another tidemark daemon \(pid \d+\); stop it first$/m);
    // The first one still answers.
    expect(ok(await tm(['status'])).out).toMatch(/^daemon:\s+tidemark /);
  });
});

describe('tidemark serve: shutdown', () => {
  it('stops cleanly on SIGTERM, removing its socket and releasing the store', async () => {
    const stopped = await daemon!.stop();
    daemon = undefined;
    expect(stopped).toEqual({ code: 0, signal: null });
    await expect(fs.lstat(path.join(store, 'admin.sock'))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(path.join(store, 'store.lock'))).rejects.toThrow(/ENOENT/);
    // The data survives a restart.
    daemon = await DaemonProcess.start(store);
    expect(ok(await tm(['volume', 'list', '--json'])).out).toContain('"name": "app"');
  });
});
