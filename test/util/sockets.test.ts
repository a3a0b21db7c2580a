import * as net from 'node:net';
import * as path from 'node:path';
import { reuseReadBuffer, socketDescriptor } from '../../src/util/sockets.js';
import { tempDirEach } from '../support/temp-dir.js';

describe('reuseReadBuffer', () => {
  let dir: string;
  tempDirEach('sockets', (made) => (dir = made));

  it('makes an accepted socket read every chunk into one buffer, and still write and close', async () => {
    const server = net.createServer({ pauseOnConnect: true });
    const file = path.join(dir, 'sock');
    await new Promise<void>((resolve) => server.listen(file, resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect(file);
    const original = await accepted;
    const buffer = Buffer.alloc(4096);
    const chunks: Buffer[] = [];
    let sameMemory = true;
    const socket = reuseReadBuffer(original, buffer, (chunk) => {
      sameMemory &&= chunk.buffer === buffer.buffer;
      chunks.push(Buffer.from(chunk));
    });
    try {
      expect(socket).toBeDefined();
      expect(original.destroyed).toBe(true);
      expect(socketDescriptor(socket!)).toEqual(expect.any(Number));
      const sent = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) & 0xff));
      client.write(sent);
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (chunks.reduce((n, c) => n + c.length, 0) >= sent.length) {
            clearInterval(check);
            resolve();
          }
        }, 5);
      });
      expect(Buffer.concat(chunks).equals(sent)).toBe(true);
      expect(sameMemory).toBe(true);
      const echoed = new Promise<Buffer>((resolve) => client.once('data', resolve));
      socket!.write('back');
      expect((await echoed).toString()).toBe('back');
      const closed = new Promise<void>((resolve) => socket!.once('close', () => resolve()));
      client.end();
      socket!.end();
      await closed;
    } finally {
      client.destroy();
      socket?.destroy();
      server.close();
    }
  });
});
