import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { sendFromFile, wholeInCache } from '../../src/util/send-file.js';
import { socketDescriptor, writeSome } from '../../src/util/sockets.js';
import { kernelWithCachestat, needing } from '../support/requirements.js';
import { tempDirEach } from '../support/temp-dir.js';

const MiB = 1024 * 1024;
const withCachestat = needing([kernelWithCachestat()]);

function pattern(length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 13 + (i >> 9)) & 0xff;
  return bytes;
}

/** A connected pair of unix sockets: the server's end, and the client's. */
async function socketPair(dir: string): Promise<{ server: net.Server; near: net.Socket; far: net.Socket }> {
  const server = net.createServer();
  const file = path.join(dir, 'sock');
  await new Promise<void>((resolve) => server.listen(file, resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const far = net.connect(file);
  await new Promise<void>((resolve) => far.once('connect', resolve));
  return { server, near: await accepted, far };
}

withCachestat.describe('sending file bytes to a socket', () => {
  let dir: string;
  tempDirEach('send-file', (made) => (dir = made));

  it('tells whether the page cache holds every page of a range', async () => {
    const file = path.join(dir, 'data');
    await fs.writeFile(file, pattern(2 * MiB));
    const handle = await fs.open(file, 'r');
    try {
      await handle.datasync();
      expect(wholeInCache(handle.fd, 0, 2 * MiB)).toBe(true);
      // GNU dd's way to drop a file from the page cache: posix_fadvise(DONTNEED) on all of it.
      execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
      expect(wholeInCache(handle.fd, 0, 2 * MiB)).toBe(false);
      await handle.read(Buffer.alloc(4096), 0, 4096, 8192);
      expect(wholeInCache(handle.fd, 8192 + 100, 3000)).toBe(true);
      expect(wholeInCache(handle.fd, 8192, 4097)).toBe(false);
    } finally {
      await handle.close();
    }
  });

  it('sends a range of a file whole, and stops without blocking when the socket is full', async () => {
    const bytes = pattern(16 * MiB);
    const file = path.join(dir, 'data');
    await fs.writeFile(file, bytes);
    const handle = await fs.open(file, 'r');
    const { server, near, far } = await socketPair(dir);
    try {
      const fd = socketDescriptor(near);
      expect(fd).toEqual(expect.any(Number));
      // Nobody reads the far end yet: the kernel takes what its buffers hold and no more.
      const head = Buffer.from('head:');
      expect(writeSome(fd!, head)).toBe(head.length);
      const sent = sendFromFile(fd!, handle.fd, 100, bytes.length - 100);
      expect(sent).toBeGreaterThan(0);
      expect(sent).toBeLessThan(bytes.length - 100);
      expect(writeSome(fd!, Buffer.alloc(MiB))).toBeLessThan(MiB);
      const received: Buffer[] = [];
      let total = 0;
      const all = new Promise<void>((resolve) =>
        far.on('data', (chunk: Buffer) => {
          received.push(chunk);
          total += chunk.length;
          if (total >= head.length + sent) resolve();
        }),
      );
      await all;
      const got = Buffer.concat(received).subarray(0, head.length + sent);
      expect(got.subarray(0, head.length).equals(head)).toBe(true);
      expect(got.subarray(head.length).equals(bytes.subarray(100, 100 + sent))).toBe(true);
    } finally {
      near.destroy();
      far.destroy();
      server.close();
      await handle.close();
    }
  });
});
