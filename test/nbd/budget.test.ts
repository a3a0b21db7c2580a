/**
 * Memory under clients that send requests and never read the replies: the server-wide
 * payload budget pauses every connection once it is spent (back-pressure), the reply
 * watchdog disconnects a client that reads nothing, and a server in its own process keeps its
 * resident memory bounded under many such clients.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PayloadBudget } from '../../src/nbd/budget.js';
import type { NbdLoad } from '../../src/nbd/index.js';
import { captureLogger } from '../engine/fixtures/capture-logger.js';
import { MiB, patternBytes, sleep, startHarness, type Harness } from './fixtures/harness.js';
import { CMD, REQUEST_MAGIC, TestClient } from './fixtures/nbd-client.js';

const CHILD = fileURLToPath(new URL('./fixtures/serve-child.js', import.meta.url));

/** Sends `count` READs of `length` bytes and stops reading: the attack. */
async function flood(socket: string, volume: string, count: number, length: number): Promise<TestClient> {
  const { client } = await TestClient.open(socket, volume);
  client.socket.pause();
  const heads = Array.from({ length: count }, (_, i) => {
    const head = Buffer.alloc(28);
    head.writeUInt32BE(REQUEST_MAGIC, 0);
    head.writeUInt16BE(CMD.read, 6);
    head.writeBigUInt64BE(BigInt(i + 1), 8);
    head.writeBigUInt64BE(0n, 16);
    head.writeUInt32BE(length, 24);
    return head;
  });
  client.send(Buffer.concat(heads));
  return client;
}

/** Polls until `ready` holds; the test's own timeout is the only limit. */
async function until<T>(probe: () => T | Promise<T>, ready: (value: T) => boolean): Promise<T> {
  for (;;) {
    const value = await probe();
    if (ready(value)) return value;
    await sleep(20);
  }
}

describe('PayloadBudget', () => {
  it('admits until spent, and wakes paused connections in order only while there is room', () => {
    const budget = new PayloadBudget(100);
    const a = budget.account();
    const b = budget.account();
    a.take(60);
    expect(budget.exhausted).toBe(false);
    b.take(60);
    expect([budget.exhausted, budget.bytes]).toEqual([true, 120]);
    const woken: string[] = [];
    // The first connection woken takes the room again; the second keeps waiting.
    a.wait(() => {
      woken.push('first');
      a.take(50);
    });
    b.wait(() => woken.push('second'));
    b.give(60);
    expect(woken).toEqual(['first']);
    expect(budget.exhausted).toBe(true);
    a.close();
    expect(woken).toEqual(['first', 'second']);
    expect([a.bytes, budget.bytes]).toEqual([0, 0]);
    // Gives after close were already returned by it.
    a.give(10);
    expect(budget.bytes).toBe(0);
  });
});

describe('NBD server memory under clients that do not read', () => {
  let h: Harness;

  afterEach(async () => {
    await h.stop();
  });

  it('pauses every connection once the budget is spent and resumes when it comes back', async () => {
    const budget = 4 * MiB;
    h = await startHarness({ serverOptions: { maxBufferedBytes: budget, maxRequestBytes: MiB, replyTimeoutMs: 600_000 } });
    await h.engine.createVolume('v', { size: 4 * MiB });
    await h.engine.write('v', 0, patternBytes(MiB, 3));
    const attackers = await Promise.all([1, 2, 3].map(() => flood(h.socket, 'v', 64, MiB)));
    const load = await until(
      () => h.server.load(),
      (l) => l.pausedConnections === 3 && l.runningRequests === 0,
    );
    // Three connections asked for 192 MiB; the server holds the budget and one request more.
    expect(load.bufferedBytes).toBeGreaterThanOrEqual(budget);
    expect(load.bufferedBytes).toBeLessThanOrEqual(budget + MiB);
    // A well-behaved client waits its turn, and gets its turn once the others are gone.
    const { client } = await TestClient.open(h.socket, 'v');
    const reply = client.readAt(0, MiB);
    for (const attacker of attackers) attacker.close();
    expect((await reply).data!.equals(patternBytes(MiB, 3))).toBe(true);
    client.close();
    await until(
      () => h.server.load(),
      (l) => l.connections === 0,
    );
    expect(h.server.load().bufferedBytes).toBe(0);
  });

  it('disconnects a client that reads none of its replies, and the memory comes back', async () => {
    const { logger, entries } = captureLogger();
    // Long enough that a client in this same, possibly CPU-starved, process that does read its
    // replies never looks idle to the watchdog; short enough to keep the test quick.
    h = await startHarness({ logger, serverOptions: { maxBufferedBytes: 64 * MiB, maxRequestBytes: MiB, replyTimeoutMs: 1000 } });
    await h.engine.createVolume('v', { size: 4 * MiB });
    const attacker = await flood(h.socket, 'v', 16, MiB);
    const load = await until<NbdLoad>(
      () => h.server.load(),
      (l) => l.connections === 0,
    );
    expect(load.bufferedBytes).toBe(0);
    await h.waitUnheld('v');
    expect(entries.filter((e) => e.message === 'nbd client does not read its replies; disconnecting')).toEqual([
      expect.objectContaining({ level: 'warn', volume: 'v', timeoutMs: 1000 }),
    ]);
    // A client that reads is served under the same watchdog.
    const { client } = await TestClient.open(h.socket, 'v');
    const replies = await Promise.all(Array.from({ length: 32 }, (_, i) => client.readAt((i % 4) * MiB, MiB)));
    expect(replies.every((r) => r.error === 0 && r.data!.length === MiB)).toBe(true);
    client.close();
    attacker.close();
  });
});

describe('NBD server resident memory under attack, in its own process', () => {
  let dir: string;
  let child: ChildProcess | undefined;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-nbd-memory-'));
  });

  afterEach(async () => {
    child?.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  });

  interface Report {
    load: NbdLoad;
    rss: number;
    peakRss: number;
  }

  function ask(server: ChildProcess): Promise<Report> {
    return new Promise((resolve) => {
      server.once('message', (m) => resolve(m as Report));
      server.send('report');
    });
  }

  it('stays within the budget with 8 clients each sending 64 READs of 32 MiB and reading nothing', async () => {
    const budget = 64 * MiB;
    const socket = path.join(dir, 'nbd.sock');
    // Without the budget each of these clients held about 160 MiB of the daemon: 1.3 GiB here.
    const options = JSON.stringify({ maxBufferedBytes: budget, replyTimeoutMs: 600_000 });
    const started = spawn(process.execPath, [CHILD, path.join(dir, 'store'), socket, 'v', String(64 * MiB), options], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    child = started;
    await new Promise<void>((resolve, reject) => {
      started.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      started.once('exit', (code) => reject(new Error(`server child exited early with ${code}`)));
    });
    const before = await ask(started);
    const attackers: TestClient[] = [];
    for (let i = 0; i < 8; i++) attackers.push(await flood(socket, 'v', 64, 32 * MiB));
    const after = await until(
      () => ask(started),
      (r) => r.load.connections === 8 && r.load.pausedConnections === 8 && r.load.runningRequests === 0,
    );
    expect(after.load.bufferedBytes).toBeLessThanOrEqual(budget + 32 * MiB);
    // The budget, one request past it, and room for the heap and the engine.
    const grewBy = after.peakRss - before.rss;
    expect(grewBy).toBeLessThan(budget + 32 * MiB + 96 * MiB);
    for (const attacker of attackers) attacker.close();
  });
});
