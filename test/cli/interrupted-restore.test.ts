/**
 * An in-place restore cut short, as the command line shows it: `volume info` and `status`
 * report it until it is run again or cleared with `volume clear-restore`. The store is
 * prepared with an engine in this process (a restore that fails after its first batch),
 * then served by a real daemon.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { DaemonProcess, json, pattern, tidemark, type RunResult } from './harness.js';

const MiB = 1024 * 1024;

let dir: string;
let store: string;
let daemon: DaemonProcess | undefined;
let markerSequence: number;

const tm = (args: string[]) => tidemark(['--store', store, ...args]);

function ok(result: RunResult): RunResult {
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr}`);
  return result;
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-cli-restore-'));
  store = path.join(dir, 'store');
  const engine = await Engine.open({ store, upkeepIntervalMs: 0 });
  await engine.createVolume('db', { size: 64 * MiB });
  await engine.write('db', 0, pattern(MiB, 1), { fua: true });
  markerSequence = (await engine.createMarker('m', ['db']))[0]!.sequence;
  // More than one 16 MiB batch of the restore, so that it can fail after the first.
  for (let at = 0; at < 40 * MiB; at += 4 * MiB) await engine.write('db', at, pattern(4 * MiB, 2));
  await engine
    .restore({ volume: 'db', source: { marker: 'm' } }, (progress) => {
      if (progress.bytesRestored > 0) throw new Error('cut short');
    })
    .catch(() => undefined);
  await engine.close();
  daemon = await DaemonProcess.start(store);
});

afterAll(async () => {
  await daemon?.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

it('volume info and status report the interrupted restore, and clear-restore forgets it', async () => {
  const info = ok(await tm(['volume', 'info', 'db'])).out;
  expect(info).toMatch(
    new RegExp(`^restore interrupted: +to marker "m" \\(sequence ${markerSequence}\\), started \\S+; the volume holds a mix of its old data and that point's: run the restore again, or \`tidemark volume clear-restore db\`$`, 'm'),
  );
  expect(json(ok(await tm(['volume', 'info', 'db', '--json'])))).toMatchObject({
    restoreInterrupted: { source: 'marker "m"', pointSequence: markerSequence, startedAt: expect.stringMatching(/Z$/) },
  });
  expect(ok(await tm(['status'])).out).toMatch(/^restore interrupted on db: +to marker "m"/m);
  expect(json(ok(await tm(['status', '--json'])))).toMatchObject({ interruptedRestores: ['db'] });

  expect(ok(await tm(['volume', 'clear-restore', 'db'])).out).toBe('volume "db": interrupted restore to marker "m" cleared; its data stays as the restore left it\n');
  expect(ok(await tm(['volume', 'info', 'db'])).out).not.toMatch(/restore interrupted/);
  expect(json(ok(await tm(['status', '--json'])))).toMatchObject({ interruptedRestores: [] });
  expect(ok(await tm(['volume', 'clear-restore', 'db'])).out).toBe('volume "db" has no interrupted restore\n');
  expect((await tm(['volume', 'clear-restore', 'nope'])).code).toBe(3);
});
