import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { NbdServer } from '../../src/nbd/index.js';
import { silentLogger } from '../../src/util/log.js';
import { kernelWithCachestat, needing } from '../support/requirements.js';
import { CMD, CMD_FLAG, ERR, OPT, REP, TFLAG, TestClient, infoRequest, metaRequest } from './fixtures/nbd-client.js';
import { KiB, MiB, patternBytes, sleep, startHarness, type Harness } from './fixtures/harness.js';

const SIZE = 8 * MiB;
let h: Harness;

beforeAll(async () => {
  h = await startHarness();
  await h.engine.createVolume('vol', { size: SIZE });
  await h.engine.createVolume('other', { size: 4 * MiB, blockSize: 512 });
});

afterAll(async () => {
  await h.stop();
});

describe('handshake', () => {
  test('greets with fixed newstyle and NO_ZEROES', async () => {
    const c = await TestClient.connect(h.socket);
    expect(await c.handshake()).toBe(3);
    c.close();
  });

  test('drops a client that sets unknown flags', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake(0x80);
    await c.closed;
  });

  test('drops an option without the IHAVEOPT magic', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    c.send(Buffer.alloc(16, 0x41));
    await c.closed;
  });

  test('a client that does not finish the handshake in time is dropped', async () => {
    const sock = path.join(h.dir, 'slow.sock');
    const server = new NbdServer(h.engine, silentLogger(), { handshakeTimeoutMs: 300 });
    await server.listenUnix(sock);
    const c = await TestClient.connect(sock);
    await c.handshake();
    // Trickling bytes does not extend the deadline.
    const trickle = setInterval(() => c.socket.write(Buffer.from([0x49])), 50);
    await c.closed;
    clearInterval(trickle);
    await server.close();
  });

  test('NBD_OPT_LIST names every volume, including one created after the server started', async () => {
    await h.engine.createVolume('late', { size: MiB });
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    const replies = await c.option(OPT.list);
    const names = replies.filter((r) => r.type === REP.server).map((r) => r.data.toString('utf8', 4, 4 + r.data.readUInt32BE(0)));
    expect(names.sort()).toEqual(['late', 'other', 'vol']);
    expect(replies[replies.length - 1]!.type).toBe(REP.ack);
    expect((await c.option(OPT.list, Buffer.from('x')))[0]!.type).toBe(REP.errInvalid);
    c.close();
    const { client, size } = await TestClient.open(h.socket, 'late');
    expect(size).toBe(MiB);
    client.close();
  });

  test('NBD_OPT_INFO describes an export: size, flags, block sizes, name and description', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    const replies = await c.option(OPT.info, infoRequest('other', [1, 2, 3]));
    expect(replies[replies.length - 1]!.type).toBe(REP.ack);
    const infos = new Map(replies.filter((r) => r.type === REP.info).map((r) => [r.data.readUInt16BE(0), r.data]));
    const exp = infos.get(0)!;
    expect(Number(exp.readBigUInt64BE(2))).toBe(4 * MiB);
    const flags = exp.readUInt16BE(10);
    for (const f of [TFLAG.hasFlags, TFLAG.flush, TFLAG.fua, TFLAG.trim, TFLAG.writeZeroes, TFLAG.fastZero, TFLAG.cache, TFLAG.multiConn]) {
      expect(flags & f).toBe(f);
    }
    expect(flags & TFLAG.readOnly).toBe(0);
    expect(flags & TFLAG.df).toBe(0); // only with structured replies
    const sizes = infos.get(3)!;
    expect([sizes.readUInt32BE(2), sizes.readUInt32BE(6), sizes.readUInt32BE(10)]).toEqual([1, 512, 32 * MiB]);
    expect(infos.get(1)!.toString('utf8', 2)).toBe('other');
    expect(infos.get(2)!.toString('utf8', 2)).toContain('other');
    // INFO does not enter transmission: more options follow.
    expect((await c.option(OPT.info, infoRequest('nope', [])))[0]!.type).toBe(REP.errUnknown);
    expect((await c.option(OPT.info, infoRequest('', [])))[0]!.type).toBe(REP.errUnknown);
    expect((await c.option(OPT.go, Buffer.from([0, 0, 0, 9, 1])))[0]!.type).toBe(REP.errInvalid);
    const bad = infoRequest('vol', [3]);
    expect((await c.option(OPT.info, bad.subarray(0, bad.length - 1)))[0]!.type).toBe(REP.errInvalid);
    const go = await c.option(OPT.go, infoRequest('vol', []));
    expect(go[go.length - 1]!.type).toBe(REP.ack);
    expect(h.engine.volumeInfo('vol').holders.length).toBeGreaterThan(0);
    c.close();
    await c.closed;
    await h.waitUnheld('vol');
  });

  test('unknown options get NBD_REP_ERR_UNSUP and the negotiation goes on', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    for (const option of [OPT.startTls, 4, 11, 99, 0xffffffff]) {
      const [reply] = await c.option(option, Buffer.from('junk'));
      expect(reply).toMatchObject({ option: option >>> 0, type: REP.errUnsup });
    }
    const big = Buffer.alloc(100 * KiB);
    expect((await c.option(OPT.info, big))[0]!.type).toBe(REP.errTooBig);
    expect((await c.option(1234, big))[0]!.type).toBe(REP.errUnsup);
    const go = await c.option(OPT.go, infoRequest('vol', []));
    expect(go[go.length - 1]!.type).toBe(REP.ack);
    c.close();
  });

  test('NBD_OPT_STRUCTURED_REPLY takes no data', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    expect((await c.option(OPT.structuredReply, Buffer.from('x')))[0]!.type).toBe(REP.errInvalid);
    expect((await c.option(OPT.structuredReply))[0]!.type).toBe(REP.ack);
    const replies = await c.option(OPT.info, infoRequest('vol', []));
    const exp = replies.find((r) => r.type === REP.info && r.data.readUInt16BE(0) === 0)!;
    expect(exp.data.readUInt16BE(10) & TFLAG.df).toBe(TFLAG.df);
    c.close();
  });

  test('NBD_OPT_EXPORT_NAME answers with size and flags, with or without the zero padding', async () => {
    for (const [clientFlags, length] of [
      [3, 10],
      [1, 134],
    ] as const) {
      const c = await TestClient.connect(h.socket);
      await c.handshake(clientFlags);
      c.sendOption(OPT.exportName, Buffer.from('vol'));
      const reply = await c.read(length);
      expect(Number(reply.readBigUInt64BE(0))).toBe(SIZE);
      expect(reply.readUInt16BE(8) & TFLAG.hasFlags).toBe(1);
      const r = await c.readAt(0, 4);
      expect(r.error).toBe(0);
      await sleep(10);
      expect(c.buffered).toBe(0);
      c.close();
    }
  });

  test('NBD_OPT_EXPORT_NAME of an unknown volume ends the session', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    c.sendOption(OPT.exportName, Buffer.from('missing'));
    await c.closed;
  });

  test('NBD_OPT_ABORT is acknowledged and the server closes', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    expect((await c.option(OPT.abort))[0]!.type).toBe(REP.ack);
    await c.closed;
  });

  test('metadata contexts: list and select need structured replies; queries follow the spec', async () => {
    await h.engine.createSnapshot('vol', 'snap-a');
    await h.engine.createSnapshot('vol', 'snap-b');
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    expect((await c.option(OPT.setMeta, metaRequest('vol', ['base:allocation'])))[0]!.type).toBe(REP.errInvalid);
    expect((await c.option(OPT.listMeta, metaRequest('vol', [])))[0]!.type).toBe(REP.errInvalid);
    await c.option(OPT.structuredReply);
    const names = async (option: number, queries: string[], volume = 'vol') => {
      const replies = await c.option(option, metaRequest(volume, queries));
      expect(replies[replies.length - 1]!.type).toBe(REP.ack);
      return replies.filter((r) => r.type === REP.metaContext).map((r) => r.data.toString('utf8', 4));
    };
    expect((await names(OPT.listMeta, [])).sort()).toEqual(['base:allocation', 'qemu:dirty-bitmap:snap-a', 'qemu:dirty-bitmap:snap-b']);
    expect(await names(OPT.listMeta, ['base:'])).toEqual(['base:allocation']);
    expect((await names(OPT.listMeta, ['qemu:dirty-bitmap:'])).sort()).toEqual(['qemu:dirty-bitmap:snap-a', 'qemu:dirty-bitmap:snap-b']);
    expect((await names(OPT.listMeta, ['qemu:'])).length).toBe(2);
    expect(await names(OPT.listMeta, ['qemu:dirty-bitmap:snap-b', 'x-other:thing', 'base:nothing'])).toEqual(['qemu:dirty-bitmap:snap-b']);
    expect(await names(OPT.listMeta, [], 'other')).toEqual(['base:allocation']);
    expect((await c.option(OPT.listMeta, metaRequest('vol', ['nocolon'])))[0]!.type).toBe(REP.errInvalid);
    expect((await c.option(OPT.listMeta, metaRequest('ghost', [])))[0]!.type).toBe(REP.errUnknown);
    const truncated = metaRequest('vol', ['base:allocation']);
    expect((await c.option(OPT.setMeta, truncated.subarray(0, truncated.length - 2)))[0]!.type).toBe(REP.errInvalid);
    // SET selects only exact names; wildcards select nothing.
    expect(await names(OPT.setMeta, ['base:', 'qemu:dirty-bitmap:', 'qemu:dirty-bitmap:none'])).toEqual([]);
    const set = await c.option(OPT.setMeta, metaRequest('vol', ['base:allocation', 'qemu:dirty-bitmap:snap-a']));
    const ids = set.filter((r) => r.type === REP.metaContext).map((r) => r.data.readUInt32BE(0));
    expect(new Set(ids).size).toBe(2);
    expect(ids.every((id) => id > 0)).toBe(true);
    c.close();
  });
});

describe('transmission with simple replies', () => {
  let c: TestClient;

  beforeAll(async () => {
    ({ client: c } = await TestClient.open(h.socket, 'vol'));
  });

  afterAll(() => c.close());

  test('writes and reads back, also unaligned and with FUA', async () => {
    const data = patternBytes(300 * KiB, 1);
    expect((await c.write(12345, data)).error).toBe(0);
    const back = await c.readAt(12345, data.length);
    expect(back.error).toBe(0);
    expect(back.data!.equals(data)).toBe(true);
    expect((await c.write(SIZE - 7, Buffer.from('tidemrk'), CMD_FLAG.fua)).error).toBe(0);
    expect((await c.readAt(SIZE - 7, 7)).data!.toString()).toBe('tidemrk');
    expect((await c.readAt(0, 0)).error).toBe(0);
    expect((await c.write(0, Buffer.alloc(0))).error).toBe(0);
  });

  test('flush, trim, write zeroes, cache', async () => {
    await c.write(MiB, patternBytes(2 * MiB, 2));
    expect((await c.request(CMD.flush)).error).toBe(0);
    expect((await c.request(CMD.flush, { flags: CMD_FLAG.fua })).error).toBe(0);
    expect((await c.request(CMD.trim, { offset: MiB, length: 64 * KiB })).error).toBe(0);
    expect((await c.readAt(MiB, 64 * KiB)).data!.equals(Buffer.alloc(64 * KiB))).toBe(true);
    expect((await c.request(CMD.writeZeroes, { offset: MiB + 64 * KiB, length: 2 * MiB - 64 * KiB - 100 })).error).toBe(0);
    expect((await c.request(CMD.writeZeroes, { offset: 3 * MiB - 100, length: 100, flags: CMD_FLAG.noHole | CMD_FLAG.fua })).error).toBe(0);
    const zeroed = await c.readAt(MiB, 2 * MiB);
    expect(zeroed.data!.equals(Buffer.alloc(2 * MiB))).toBe(true);
    expect((await c.request(CMD.cache, { offset: 0, length: MiB })).error).toBe(0);
  });

  test('FAST_ZERO succeeds when it can punch and is refused with ENOTSUP when a hole is not allowed', async () => {
    await c.write(4 * MiB, patternBytes(64 * KiB, 3));
    expect((await c.request(CMD.writeZeroes, { offset: 4 * MiB, length: 64 * KiB, flags: CMD_FLAG.fastZero | CMD_FLAG.noHole })).error).toBe(ERR.ENOTSUP);
    expect((await c.readAt(4 * MiB, 64 * KiB)).data!.equals(patternBytes(64 * KiB, 3))).toBe(true);
    expect((await c.request(CMD.writeZeroes, { offset: 4 * MiB, length: 64 * KiB, flags: CMD_FLAG.fastZero })).error).toBe(0);
    expect((await c.readAt(4 * MiB, 64 * KiB)).data!.equals(Buffer.alloc(64 * KiB))).toBe(true);
  });

  test('bad requests get the protocol errors and the connection stays usable', async () => {
    expect((await c.readAt(SIZE - 10, 11)).error).toBe(ERR.EINVAL);
    expect((await c.readAt(2 ** 60, 1)).error).toBe(ERR.EINVAL);
    expect((await c.write(SIZE - 1, Buffer.from('ab'))).error).toBe(ERR.ENOSPC);
    expect((await c.request(CMD.writeZeroes, { offset: SIZE, length: 1 })).error).toBe(ERR.ENOSPC);
    expect((await c.request(CMD.trim, { offset: SIZE, length: 512 })).error).toBe(ERR.EINVAL);
    expect((await c.request(CMD.cache, { offset: 0, length: 33 * MiB })).error).toBe(ERR.EINVAL);
    expect((await c.readAt(0, 32 * MiB + 1)).error).toBe(ERR.EINVAL);
    expect((await c.request(CMD.writeZeroes, { offset: 0, length: 33 * MiB })).error).toBe(ERR.EINVAL);
    expect((await c.request(CMD.blockStatus, { offset: 0, length: 4096 })).error).toBe(ERR.EINVAL);
    expect((await c.request(42, { offset: 0, length: 4096 })).error).toBe(ERR.EINVAL);
    expect((await c.readAt(0, 512, 0x40)).error).toBe(ERR.EINVAL);
    expect((await c.readAt(0, 512, CMD_FLAG.df)).error).toBe(ERR.EINVAL); // DF needs structured replies
    expect((await c.write(0, Buffer.alloc(512), CMD_FLAG.noHole)).error).toBe(ERR.EINVAL);
    // An oversized write: its payload is read past, then refused.
    const huge = await c.write(0, Buffer.alloc(32 * MiB + 4096, 0xee));
    expect(huge.error).toBe(ERR.EINVAL);
    expect((await c.readAt(0, 4096)).data!.includes(0xee)).toBe(false);
    const data = patternBytes(4096, 9);
    expect((await c.write(0, data)).error).toBe(0);
    expect((await c.readAt(0, 4096)).data!.equals(data)).toBe(true);
  });

  test('many requests in flight; replies come back out of order, each matching its handle', async () => {
    const expected = new Map<number, Buffer>();
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 64; i++) {
      const data = patternBytes(16 * KiB, 100 + i);
      expected.set(i, data);
      writes.push(c.write(5 * MiB + i * 16 * KiB, data));
    }
    await Promise.all(writes);
    c.arrivals.length = 0;
    const requests: Promise<{ i: number; r: Awaited<ReturnType<TestClient['readAt']>> }>[] = [];
    // Sent in one write, so the server parses both before either is answered: the refusal,
    // which needs no I/O, goes out first although it was sent second.
    c.socket.cork();
    const big = c.readAt(0, 8 * MiB);
    const quick = c.readAt(SIZE, 1);
    c.socket.uncork();
    for (let i = 0; i < 64; i++) requests.push(c.readAt(5 * MiB + i * 16 * KiB, 16 * KiB).then((r) => ({ i, r })));
    const results = await Promise.all(requests);
    for (const { i, r } of results) expect(r.data!.equals(expected.get(i)!)).toBe(true);
    expect((await quick).error).toBe(ERR.EINVAL);
    const whole = await big;
    expect(whole.data!.length).toBe(8 * MiB);
    const order = c.arrivals.map(Number);
    expect(order.indexOf(Number((await quick).handle))).toBeLessThan(order.indexOf(Number(whole.handle)));
    expect([...order].sort((a, b) => a - b)).not.toEqual(order);
  });

  test('the in-use flag: a connected volume refuses an in-place restore with BUSY', async () => {
    const info = h.engine.volumeInfo('vol');
    expect(info.holders.some((holder) => holder.startsWith('nbd:'))).toBe(true);
    await expect(h.engine.restore({ volume: 'vol', source: { snapshot: 'snap-a' } })).rejects.toMatchObject({ code: 'BUSY' });
  });
});

describe('transmission with structured replies', () => {
  test('reads come as one data chunk; errors carry a message; block status reports contexts', async () => {
    await h.engine.createVolume('meta', { size: 4 * MiB });
    const first = await TestClient.open(h.socket, 'meta');
    await first.client.write(0, patternBytes(128 * KiB, 4));
    first.client.close();
    await h.engine.createSnapshot('meta', 'base');
    const { client, flags, contextIds } = await TestClient.open(h.socket, 'meta', { contexts: ['base:allocation', 'qemu:dirty-bitmap:base'] });
    expect(flags & TFLAG.df).toBe(TFLAG.df);
    await client.write(MiB, patternBytes(64 * KiB, 5));
    await client.write(3 * MiB + 100, Buffer.from('x'));

    const r = await client.readAt(0, 128 * KiB, CMD_FLAG.df);
    expect(r.structured).toBe(true);
    expect(r.chunks.length).toBe(1);
    expect(r.chunks[0]!.type).toBe(1);
    expect(r.data!.equals(patternBytes(128 * KiB, 4))).toBe(true);
    const empty = await client.readAt(0, 0);
    expect(empty.chunks.map((ch) => ch.type)).toEqual([0]);

    const bad = await client.readAt(4 * MiB, 512);
    expect(bad.error).toBe(ERR.EINVAL);
    expect(bad.message).toMatch(/outside/);

    const status = await client.request(CMD.blockStatus, { offset: 0, length: 4 * MiB });
    expect(status.error).toBe(0);
    const allocation = status.extents!.get(contextIds.get('base:allocation')!)!;
    expect(allocation).toEqual([
      [128 * KiB, 0],
      [MiB - 128 * KiB, 3],
      [64 * KiB, 0],
      [2 * MiB - 64 * KiB, 3],
      [64 * KiB, 0],
      [MiB - 64 * KiB, 3],
    ]);
    const dirty = status.extents!.get(contextIds.get('qemu:dirty-bitmap:base')!)!;
    expect(dirty).toEqual([
      [MiB, 0],
      [64 * KiB, 1],
      [2 * MiB - 64 * KiB, 0],
      [64 * KiB, 1],
      [MiB - 64 * KiB, 0],
    ]);
    const one = await client.request(CMD.blockStatus, { offset: 64 * KiB, length: 4 * MiB - 64 * KiB, flags: CMD_FLAG.reqOne });
    for (const descriptors of one.extents!.values()) expect(descriptors.length).toBe(1);
    expect(one.extents!.get(contextIds.get('base:allocation')!)).toEqual([[64 * KiB, 0]]);
    const outside = await client.request(CMD.blockStatus, { offset: 4 * MiB - 512, length: 1024 });
    expect(outside.error).toBe(ERR.EINVAL);
    client.close();
  });

  test('contexts selected for another export are dropped at NBD_OPT_GO', async () => {
    const c = await TestClient.connect(h.socket);
    await c.handshake();
    await c.option(OPT.structuredReply);
    c.structured = true;
    await c.option(OPT.setMeta, metaRequest('other', ['base:allocation']));
    await c.option(OPT.go, infoRequest('vol', []));
    expect((await c.request(CMD.blockStatus, { offset: 0, length: 4096 })).error).toBe(ERR.EINVAL);
    c.close();
  });
});

describe('sockets read the way Node reads them by default', () => {
  test('a server without the reused read buffer serves writes split across reads, and reads', async () => {
    const sock = path.join(h.dir, 'plain.sock');
    const server = new NbdServer(h.engine, silentLogger(), { reuseReadBuffer: false });
    await server.listenUnix(sock);
    await h.engine.createVolume('plain', { size: 4 * MiB });
    const { client } = await TestClient.open(sock, 'plain');
    try {
      const data = patternBytes(3 * MiB + 5, 41);
      // Each payload is larger than one socket read: it arrives in many chunks.
      const writes = [client.write(1, data.subarray(0, MiB)), client.write(MiB + 1, data.subarray(MiB))];
      expect((await Promise.all(writes)).map((r) => r.error)).toEqual([0, 0]);
      expect((await client.readAt(1, data.length)).data!.equals(data)).toBe(true);
    } finally {
      client.close();
      await client.closed;
      await server.close();
    }
  });
});

describe('many connections and volumes at once', () => {
  test('writes on every connection land; a flush answered on one covers writes answered on the others', async () => {
    const volumes = ['multi-a', 'multi-b', 'multi-c'];
    for (const v of volumes) await h.engine.createVolume(v, { size: 4 * MiB });
    const sessions = await Promise.all(volumes.flatMap((v) => Array.from({ length: 4 }, async (_, i) => ({ v, i, ...(await TestClient.open(h.socket, v)) }))));
    expect(h.server.clients().filter((c) => c.volume?.startsWith('multi-')).length).toBe(12);
    expect(h.engine.volumeInfo('multi-b').holders.length).toBe(4);
    // Each connection writes its own quarter in 16 requests at once.
    await Promise.all(
      sessions.map(({ v, i, client }) =>
        Promise.all(Array.from({ length: 16 }, (_, k) => client.write(i * MiB + k * 64 * KiB, patternBytes(64 * KiB, volumes.indexOf(v) * 1000 + i * 100 + k)))),
      ),
    );
    // Multi-conn: one flush per volume, on a connection that wrote nothing of the others' data.
    for (const v of volumes) expect((await sessions.find((s) => s.v === v && s.i === 0)!.client.request(CMD.flush)).error).toBe(0);
    // Every connection reads what the others wrote.
    for (const { v, i, client } of sessions) {
      const other = (i + 1) % 4;
      const back = await client.readAt(other * MiB, MiB);
      for (let k = 0; k < 16; k++) {
        const expected = patternBytes(64 * KiB, volumes.indexOf(v) * 1000 + other * 100 + k);
        expect(back.data!.subarray(k * 64 * KiB, (k + 1) * 64 * KiB).equals(expected)).toBe(true);
      }
    }
    for (const { client } of sessions) client.close();
    await Promise.all(sessions.map((s) => s.client.closed));
    for (const v of volumes) await h.waitUnheld(v);
  });
});

/** Replies from the image file need cachestat: a property of the host's kernel, not of setup. */
const fromFile = needing([kernelWithCachestat()]);

fromFile.describe('read replies sent from the image file', () => {
  test.each([false, true])('come whole and right, larger than the socket takes at once, and under new writes (structured %s)', async (structured) => {
    const volume = `from-file-${structured}`;
    await h.engine.createVolume(volume, { size: 24 * MiB });
    const { client } = await TestClient.open(h.socket, volume, { structured });
    try {
      const data = patternBytes(20 * MiB, structured ? 7 : 8);
      for (let at = 0; at < data.length; at += 4 * MiB) expect((await client.write(at, data.subarray(at, at + 4 * MiB))).error).toBe(0);
      // A snapshot brings the image up to date, so that no pending change lies over it.
      await h.engine.createSnapshot(volume, 'applied');
      const before = h.server.load().sentFromFileBytes;
      // 16 MiB in one reply is more than the socket's buffer: part goes by sendfile, the
      // rest from a buffer; then many small replies at once, most finding the socket busy.
      const whole = await client.readAt(MiB, 16 * MiB);
      expect(whole.data!.equals(data.subarray(MiB, 17 * MiB))).toBe(true);
      const small = await Promise.all(Array.from({ length: 64 }, (_, i) => client.readAt(i * 300 * KiB + 17, 4 * KiB + i)));
      small.forEach((r, i) => expect(r.data!.equals(data.subarray(i * 300 * KiB + 17, i * 300 * KiB + 17 + 4 * KiB + i))).toBe(true));
      expect(h.server.load().sentFromFileBytes).toBeGreaterThan(before);
      // A change not yet in the image is laid over it: those reads take the other way.
      const newer = patternBytes(96 * KiB, 99);
      expect((await client.write(2 * MiB + 5, newer)).error).toBe(0);
      const mixed = await client.readAt(2 * MiB, 128 * KiB);
      expect(mixed.data!.subarray(5, 5 + newer.length).equals(newer)).toBe(true);
      expect(mixed.data!.subarray(0, 5).equals(data.subarray(2 * MiB, 2 * MiB + 5))).toBe(true);
      expect(mixed.data!.subarray(5 + newer.length).equals(data.subarray(2 * MiB + 5 + newer.length, 2 * MiB + 128 * KiB))).toBe(true);
    } finally {
      client.close();
      await client.closed;
      await h.waitUnheld(volume);
    }
  });
});

describe('connection lifecycle', () => {
  test('NBD_CMD_DISC answers the running requests, then the server closes and releases the volume', async () => {
    await h.waitUnheld('other');
    const { client } = await TestClient.open(h.socket, 'other');
    expect(h.engine.volumeInfo('other').holders.length).toBe(1);
    const pending = [client.write(0, patternBytes(MiB, 6)), client.readAt(0, MiB), client.request(CMD.flush)];
    void client.request(CMD.disc);
    const results = await Promise.all(pending);
    expect(results.every((r) => r.error === 0)).toBe(true);
    await client.closed;
    await h.waitUnheld('other');
  });

  test('a client that vanishes mid-request loses nothing acknowledged, and the volume is released', async () => {
    const { client } = await TestClient.open(h.socket, 'other');
    const acked = patternBytes(256 * KiB, 7);
    expect((await client.write(MiB, acked)).error).toBe(0);
    void client.write(2 * MiB, patternBytes(MiB, 8)).catch(() => undefined);
    client.close();
    await h.waitUnheld('other');
    expect((await h.engine.read('other', MiB, acked.length)).equals(acked)).toBe(true);
  });

  test('connections over TCP; loopback by default', async () => {
    const server = new NbdServer(h.engine, silentLogger());
    const address = await server.listenTcp(0);
    expect(address.address).toBe('127.0.0.1');
    const { client, size } = await TestClient.open({ port: address.port, host: '127.0.0.1' }, 'other');
    expect(size).toBe(4 * MiB);
    expect((await client.readAt(MiB, 16)).data!.equals(patternBytes(256 * KiB, 7).subarray(0, 16))).toBe(true);
    await server.close();
    await client.closed;
  });

  test('listenUnix replaces a stale socket but not a live one or a regular file', async () => {
    const stale = path.join(h.dir, 'stale.sock');
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect((await fs.lstat(stale)).isSocket()).toBe(true);
    const server = new NbdServer(h.engine, silentLogger());
    await server.listenUnix(stale);
    const { client } = await TestClient.open(stale, 'other');
    const second = new NbdServer(h.engine, silentLogger());
    await expect(second.listenUnix(stale)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    const regular = path.join(h.dir, 'regular');
    await fs.writeFile(regular, 'keep me');
    await expect(second.listenUnix(regular)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(await fs.readFile(regular, 'utf8')).toBe('keep me');
    await server.close();
    await client.closed;
    await expect(fs.lstat(stale)).rejects.toMatchObject({ code: 'ENOENT' });
    await h.waitUnheld('other');
  });

  test('close() lets running requests finish, disconnects clients and refuses new ones', async () => {
    const sock = path.join(h.dir, 'closing.sock');
    const server = new NbdServer(h.engine, silentLogger());
    await server.listenUnix(sock);
    const { client } = await TestClient.open(sock, 'other');
    const negotiating = await TestClient.connect(sock);
    await negotiating.handshake();
    const write = client.write(0, patternBytes(MiB, 10));
    // The read was parsed after the write, so the write is running or done when close() starts.
    expect((await client.readAt(0, 512)).error).toBe(0);
    const closing = server.close();
    expect((await write).error).toBe(0);
    await closing;
    await client.closed;
    await negotiating.closed;
    expect(server.clients()).toEqual([]);
    await expect(TestClient.connect(sock)).rejects.toThrow();
    await h.waitUnheld('other');
  });
});
