/**
 * The NBD server's direct mode: a volume served on a socket the daemon connected itself,
 * with no handshake, as the kernel path hands the other end of a socketpair to the kernel.
 * The client here is the test's, speaking the transmission phase as the kernel does.
 */
import * as net from 'node:net';
import { libc } from '../../src/host/libc.js';
import { MiB, patternBytes, startHarness, type Harness } from './fixtures/harness.js';
import { CMD, ERR, TestClient } from './fixtures/nbd-client.js';

let h: Harness;

beforeEach(async () => {
  h = await startHarness();
  await h.engine.createVolume('v', { size: 8 * MiB });
});

afterEach(async () => {
  await h.stop();
});

/** A served socketpair: the server's end in direct mode, and a client on the other. */
function pair(volume: string, size: number, readOnly = false) {
  const [clientFd, serverFd] = libc().socketPair();
  const session = h.server.serveDirect(new net.Socket({ fd: serverFd, readable: true, writable: true }), volume, size, readOnly);
  const client = TestClient.over(new net.Socket({ fd: clientFd, readable: true, writable: true }));
  return { session, client };
}

describe('direct NBD sessions', () => {
  it('serves reads, writes and flushes with no handshake', async () => {
    const { client } = pair('v', 8 * MiB);
    const data = patternBytes(64 * 1024, 3);
    expect((await client.write(MiB, data)).error).toBe(0);
    expect((await client.request(CMD.flush)).error).toBe(0);
    const reply = await client.readAt(MiB, data.length);
    expect(reply.error).toBe(0);
    expect(reply.data).toEqual(data);
    expect(await h.engine.read('v', MiB, data.length)).toEqual(data);
    expect(h.server.clients().find((c) => c.volume === 'v')).toBeDefined();
    client.socket.destroy();
  });

  it('holds the volume until the client end closes, then settles `closed`', async () => {
    const { session, client } = pair('v', 8 * MiB);
    expect(h.engine.volumeInfo('v').holders).toHaveLength(1);
    client.socket.destroy();
    await session.closed;
    await h.waitUnheld('v');
  });

  it('refuses writes, trims and zeroes on a read-only session, and serves reads', async () => {
    await h.engine.write('v', 0, patternBytes(4096, 9));
    const { client } = pair('v', 8 * MiB, true);
    expect((await client.write(0, Buffer.alloc(4096))).error).toBe(ERR.EPERM);
    expect((await client.request(CMD.trim, { offset: 0, length: 4096 })).error).toBe(ERR.EPERM);
    expect((await client.request(CMD.writeZeroes, { offset: 0, length: 4096 })).error).toBe(ERR.EPERM);
    expect((await client.readAt(0, 4096)).data).toEqual(patternBytes(4096, 9));
    client.socket.destroy();
  });

  it('serves a new size after resize, and refuses past the old one before', async () => {
    const { session, client } = pair('v', 4 * MiB);
    expect((await client.write(6 * MiB, Buffer.alloc(4096, 1))).error).toBe(ERR.ENOSPC);
    session.resize(8 * MiB);
    expect((await client.write(6 * MiB, Buffer.alloc(4096, 1))).error).toBe(0);
    client.socket.destroy();
  });

  it('refuses a volume that does not exist, closing the socket', async () => {
    const [clientFd, serverFd] = libc().socketPair();
    const client = TestClient.over(new net.Socket({ fd: clientFd, readable: true, writable: true }));
    expect(() => h.server.serveDirect(new net.Socket({ fd: serverFd, readable: true, writable: true }), 'missing', MiB, false)).toThrow(
      expect.objectContaining({ code: 'FAILED_PRECONDITION' }),
    );
    await client.closed;
  });

  it('ends every direct session when the server closes, as a daemon shutdown does', async () => {
    const { session, client } = pair('v', 8 * MiB);
    await h.server.close();
    await session.closed;
    await client.closed;
  });
});
