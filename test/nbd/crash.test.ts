/**
 * Crash consistency through the NBD path: a child process runs the engine and the server,
 * qemu-io writes to it with flushes and FUA, and the child is killed with SIGKILL while
 * writes are in flight. After a restart everything that was flushed, and every FUA write
 * that was acknowledged, is there; no block holds anything but its old or its new content.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../../src/engine/index.js';
import { nbdUnixUri } from '../../src/nbd/index.js';
import { silentLogger } from '../../src/util/log.js';
import { KiB } from './fixtures/harness.js';
import { needing, tool } from '../support/requirements.js';

const CHILD = fileURLToPath(new URL('./fixtures/serve-child.js', import.meta.url));
const BLOCK = 64 * KiB;
const PER_ROUND = 8;
const ROUNDS = 48;
const SIZE = ROUNDS * PER_ROUND * BLOCK;

const patternOf = (slot: number) => (slot % 251) + 1;
const fuaRound = (round: number) => round % 2 === 1;

/** Even rounds: async writes, then a flush. Odd rounds: FUA writes, no flush. A read marks the round's end. */
function script(): string[] {
  const args: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (let j = 0; j < PER_ROUND; j++) {
      const slot = round * PER_ROUND + j;
      args.push('-c', `aio_write ${fuaRound(round) ? '-f ' : ''}-P ${patternOf(slot)} ${slot * BLOCK} ${BLOCK}`);
    }
    args.push('-c', 'aio_flush');
    if (!fuaRound(round)) args.push('-c', 'flush');
    const first = round * PER_ROUND;
    args.push('-c', `read -P ${patternOf(first)} ${first * BLOCK} 512`);
  }
  return args;
}

function startChild(store: string, socket: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, store, socket, 'crash', String(SIZE)], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`server child exited early with ${code}`)));
  });
}

async function trial(killAfterRound: number): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-nbd-crash-'));
  const store = path.join(dir, 'store');
  const socket = path.join(dir, 'nbd.sock');
  try {
    const child = await startChild(store, socket);
    const childExit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // stdbuf makes qemu-io print each completion as it happens, not when its buffer fills.
    const writer = spawn('stdbuf', ['-oL', 'qemu-io', '-f', 'raw', ...script(), nbdUnixUri('crash', socket)], { stdio: ['ignore', 'pipe', 'pipe'] });
    writer.stderr!.on('data', () => undefined);
    const writerExit = new Promise<void>((resolve) => writer.once('exit', () => resolve()));
    const ackedFua = new Set<number>();
    let roundsDone = 0;
    let armed = false;
    let pending = '';
    await new Promise<void>((resolve) => {
      writer.stdout!.on('data', (chunk: Buffer) => {
        pending += chunk.toString();
        const lines = pending.split('\n');
        pending = lines.pop()!;
        for (const line of lines) {
          const wrote = /^wrote \d+\/\d+ bytes at offset (\d+)/.exec(line);
          if (wrote) {
            const slot = Number(wrote[1]) / BLOCK;
            if (fuaRound(Math.floor(slot / PER_ROUND))) ackedFua.add(slot);
            if (armed) {
              // A write of the next round is acknowledged and others are still in flight.
              armed = false;
              child.kill('SIGKILL');
              resolve();
            }
          } else if (/^read 512\/512 bytes/.test(line)) {
            roundsDone++;
            if (roundsDone === killAfterRound) armed = true;
          }
        }
      });
      writer.once('exit', () => resolve());
    });
    await childExit;
    writer.kill('SIGKILL');
    await writerExit;
    expect(roundsDone).toBeGreaterThanOrEqual(killAfterRound);

    const engine = await Engine.open({ store, logger: silentLogger(), upkeepIntervalMs: 0 });
    try {
      const image = await engine.read('crash', 0, SIZE);
      let survivedBeyond = 0;
      for (let slot = 0; slot < ROUNDS * PER_ROUND; slot++) {
        const block = image.subarray(slot * BLOCK, (slot + 1) * BLOCK);
        const round = Math.floor(slot / PER_ROUND);
        const pattern = patternOf(slot);
        const full = block.every((b) => b === pattern);
        const empty = block.every((b) => b === 0);
        if (round < roundsDone || ackedFua.has(slot)) {
          expect({ slot, durable: full }).toEqual({ slot, durable: true });
        } else {
          // Not promised durable: it may or may not be there, but never torn or foreign.
          expect({ slot, oldOrNew: full || empty }).toEqual({ slot, oldOrNew: true });
          if (full) survivedBeyond++;
        }
      }
      console.log(`crash after round ${killAfterRound}: ${roundsDone} rounds confirmed, ${ackedFua.size} FUA writes acknowledged, ${survivedBeyond} unconfirmed blocks survived`);
    } finally {
      await engine.close();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

needing([tool('qemu-io')]).test('SIGKILL mid-write: everything flushed and every acknowledged FUA write survives', async () => {
  for (const killAfterRound of [3, 8, 12, 21, 29, 40]) await trial(killAfterRound);
}, 120_000);

