/**
 * Throws thousands of random and mutated frames at the server, in the handshake and in the
 * transmission phase, over hundreds of connections, from a fixed seed. Afterwards the server
 * must still serve a well-behaved client, hold no volume, have logged no error, and the
 * volume no fuzzing client could reach must be byte-for-byte intact.
 */
import * as net from 'node:net';
import { captureLogger } from '../engine/fixtures/capture-logger.js';
import { CMD, IHAVEOPT, OPT, REQUEST_MAGIC, TestClient, infoRequest, metaRequest } from './fixtures/nbd-client.js';
import { KiB, MiB, patternBytes, sha256, sleep, startHarness, type Harness } from './fixtures/harness.js';

const SEED = 0x5eed_2026;
const CONNECTIONS = 1000;
const PARALLEL = 24;
const FUZZ_SIZE = 16 * MiB;

class Rng {
  constructor(private state: number) {}
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  int(n: number): number {
    return this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function option(code: number, data: Buffer, declared = data.length): Buffer {
  const head = Buffer.alloc(16);
  head.writeBigUInt64BE(IHAVEOPT, 0);
  head.writeUInt32BE(code >>> 0, 8);
  head.writeUInt32BE(declared >>> 0, 12);
  return Buffer.concat([head, data]);
}

function request(type: number, flags: number, offset: bigint, length: number, handle: bigint): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags & 0xffff, 4);
  b.writeUInt16BE(type & 0xffff, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeUInt32BE(length >>> 0, 24);
  return b;
}

/** Flips bits, rewrites a field, cuts or extends a frame. */
function mutate(rng: Rng, frame: Buffer): Buffer {
  const out = Buffer.from(frame);
  switch (rng.int(5)) {
    case 0:
      for (let i = 0, n = 1 + rng.int(4); i < n && out.length > 0; i++) out[rng.int(out.length)]! ^= 1 << rng.int(8);
      return out;
    case 1:
      if (out.length >= 4) out.writeUInt32BE(rng.next(), rng.int(out.length - 3));
      return out;
    case 2:
      return out.subarray(0, rng.int(out.length + 1));
    case 3:
      return Buffer.concat([out, rng.bytes(rng.int(64))]);
    default:
      if (out.length > 0) out[rng.int(out.length)] = rng.pick([0, 0xff, 0x7f, 0x80]);
      return out;
  }
}

const NAMES = ['fuzz', '', 'nope', 'fuzz\u0000', '\u00e9t\u00e9', 'x'.repeat(5000)];
const QUERIES = ['base:allocation', 'base:', 'qemu:', 'qemu:dirty-bitmap:', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:none', 'nocolon', ':', 'x-a:b', ''];

function handshakeFrame(rng: Rng): Buffer {
  const name = rng.pick(NAMES);
  const valid = (() => {
    switch (rng.int(9)) {
      case 0:
        return option(OPT.list, Buffer.alloc(0));
      case 1:
        return option(OPT.info, infoRequest(name, Array.from({ length: rng.int(5) }, () => rng.int(6))));
      case 2:
        return option(OPT.structuredReply, rng.chance(0.8) ? Buffer.alloc(0) : rng.bytes(3));
      case 3:
        return option(rng.pick([OPT.listMeta, OPT.setMeta]), metaRequest(name, Array.from({ length: rng.int(4) }, () => rng.pick(QUERIES))));
      case 4:
        return option(rng.next(), rng.bytes(rng.int(40)));
      case 5:
        return option(rng.pick([OPT.startTls, 4, 11, 12]), rng.bytes(rng.int(8)));
      case 6:
        // Declares far more data than it sends.
        return option(rng.pick([OPT.info, OPT.go, 77]), rng.bytes(rng.int(16)), rng.pick([100_000, 0xffffffff, 70_000]));
      case 7:
        return option(OPT.go, infoRequest(rng.pick(['nope', '', 'x'.repeat(300)]), []));
      default:
        return rng.bytes(1 + rng.int(60));
    }
  })();
  return rng.chance(0.35) ? mutate(rng, valid) : valid;
}

function transmissionFrame(rng: Rng): Buffer {
  const type = rng.chance(0.85) ? rng.int(8) : rng.int(0x10000);
  const flags = rng.chance(0.7) ? rng.pick([0, 1, 2, 4, 8, 16, 3, 17, 18]) : rng.int(0x10000);
  const offset = rng.chance(0.8)
    ? BigInt(rng.int(FUZZ_SIZE))
    : rng.pick([BigInt(FUZZ_SIZE), BigInt(FUZZ_SIZE - 1), 2n ** 63n, 2n ** 64n - 1n, 2n ** 53n, BigInt(rng.next()) * 65536n]);
  const length = rng.chance(0.75)
    ? rng.int(64 * KiB)
    : rng.chance(0.8)
      ? rng.int(MiB)
      : rng.pick([0, 32 * MiB, 32 * MiB + 1, 0xffffffff, 0x80000000]);
  const handle = BigInt(rng.next()) * BigInt(rng.next());
  if (type === CMD.write) {
    // Payloads are sent in full when small; a large declared payload is cut short.
    const payload = length <= 256 * KiB ? rng.bytes(Math.min(length, 2048)) : rng.bytes(rng.int(1024));
    const data = length <= 2048 ? payload : Buffer.concat([payload, Buffer.alloc(Math.max(0, Math.min(length, 256 * KiB) - payload.length), rng.int(256))]);
    const frame = Buffer.concat([request(type, flags, offset, length, handle), data]);
    return rng.chance(0.1) ? mutate(rng, frame) : frame;
  }
  if (type === CMD.disc && rng.chance(0.7)) return rng.bytes(1 + rng.int(28)); // keep most connections going
  const frame = request(type, flags, offset, length, handle);
  return rng.chance(0.1) ? mutate(rng, frame) : rng.chance(0.01) ? rng.bytes(1 + rng.int(100)) : frame;
}

/** Opens a raw connection that reads and discards whatever the server sends. */
function rawConnection(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Ends our side and waits for the server to close, cutting the connection after a while. */
function finish(socket: net.Socket, hard: boolean): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    if (hard) socket.destroy();
    else socket.end();
    setTimeout(() => socket.destroy(), 5000).unref();
  });
}

let frames = 0;

async function fuzzHandshake(h: Harness, rng: Rng): Promise<void> {
  const socket = await rawConnection(h.socket);
  const flags = rng.chance(0.8) ? rng.pick([0, 1, 2, 3]) : rng.next();
  const first = rng.chance(0.9) ? u32(flags) : rng.bytes(rng.int(8));
  socket.write(first);
  frames++;
  for (let i = 0, n = 5 + rng.int(25); i < n && !socket.destroyed; i++) {
    socket.write(handshakeFrame(rng));
    frames++;
    if (rng.chance(0.2)) await sleep(0);
  }
  await finish(socket, rng.chance(0.3));
}

async function fuzzTransmission(h: Harness, rng: Rng): Promise<void> {
  const structured = rng.chance(0.5);
  const contexts = structured && rng.chance(0.6) ? ['base:allocation', 'qemu:dirty-bitmap:s1'] : undefined;
  const { client } = await TestClient.open(h.socket, 'fuzz', { structured, contexts });
  frames += 3;
  const socket = client.socket;
  socket.on('data', () => undefined);
  for (let i = 0, n = 10 + rng.int(30); i < n && !socket.destroyed; i++) {
    socket.write(transmissionFrame(rng));
    frames++;
    if (rng.chance(0.1)) await sleep(0);
  }
  await finish(socket, rng.chance(0.3));
}

test('the server survives thousands of random and mutated frames and keeps serving correctly', async () => {
  const { logger, entries } = captureLogger();
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  const h = await startHarness({ logger, serverOptions: { handshakeTimeoutMs: 5000 } });
  try {
    await h.engine.createVolume('fuzz', { size: FUZZ_SIZE });
    await h.engine.createVolume('keep', { size: 4 * MiB });
    const keep = patternBytes(4 * MiB, 42);
    await h.engine.write('keep', 0, keep);
    await h.engine.createSnapshot('fuzz', 's1');

    const rng = new Rng(SEED);
    const seeds = Array.from({ length: CONNECTIONS }, () => rng.next());
    let index = 0;
    const worker = async () => {
      while (index < seeds.length) {
        const connectionRng = new Rng(seeds[index++]!);
        if (connectionRng.chance(0.4)) await fuzzHandshake(h, connectionRng);
        else await fuzzTransmission(h, connectionRng);
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    expect(frames).toBeGreaterThan(5000);

    // Every connection ends and lets go of its volume.
    const deadline = Date.now() + 20_000;
    while (h.server.clients().length > 0 && Date.now() < deadline) await sleep(50);
    expect(h.server.clients()).toEqual([]);
    expect(h.engine.volumeInfo('fuzz').holders).toEqual([]);
    expect(h.engine.volumeInfo('keep').holders).toEqual([]);

    // A well-behaved client is served correctly.
    const { client } = await TestClient.open(h.socket, 'keep', { structured: true });
    const back = await client.readAt(0, 4 * MiB);
    expect(sha256(back.data!)).toBe(sha256(keep));
    client.close();
    const fuzz = await TestClient.open(h.socket, 'fuzz', { contexts: ['base:allocation'] });
    const data = patternBytes(MiB, 43);
    expect((await fuzz.client.write(3 * MiB, data)).error).toBe(0);
    expect((await fuzz.client.request(CMD.flush)).error).toBe(0);
    expect((await fuzz.client.readAt(3 * MiB, MiB)).data!.equals(data)).toBe(true);
    expect((await fuzz.client.request(CMD.blockStatus, { offset: 0, length: FUZZ_SIZE })).error).toBe(0);
    fuzz.client.close();
    expect(sha256(await h.engine.read('keep', 0, 4 * MiB))).toBe(sha256(keep));

    expect(entries.filter((e) => e.level === 'error')).toEqual([]);
    expect(entries.some((e) => e.message === 'nbd protocol violation; dropping connection')).toBe(true);
    expect(rejections).toEqual([]);
  } finally {
    process.off('unhandledRejection', onRejection);
    await h.stop();
  }
}, 240_000);
