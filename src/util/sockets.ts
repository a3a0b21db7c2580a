import { closeSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import { loadLibc, type KoffiFunction } from './ffi.js';

/**
 * Socket calls Node's net module does not offer, through koffi (ffi.ts): the descriptor under
 * a socket, a duplicate of it, a larger send buffer, a write that takes what fits. Each
 * answers "cannot" (undefined, 0, nothing done) where koffi does not load, and callers then
 * use the socket the ordinary way.
 */

let calls: { dup: KoffiFunction; setsockopt: KoffiFunction } | null | undefined;

function load(): typeof calls {
  if (calls !== undefined) return calls;
  const ffi = loadLibc();
  if (ffi instanceof Error) return (calls = null);
  return (calls = {
    dup: ffi.libc.func('int dup(int fd)'),
    setsockopt: ffi.libc.func('int setsockopt(int fd, int level, int name, int32_t *value, uint32_t length)'),
  });
}

/**
 * The descriptor under a connected net.Socket, or undefined. Node keeps it on the socket's
 * internal handle (a TCP or Pipe wrap); nothing public exposes it, so it is checked here.
 */
export function socketDescriptor(socket: net.Socket): number | undefined {
  const handle: unknown = (socket as unknown as { _handle?: unknown })._handle;
  if (typeof handle !== 'object' || handle === null || !('fd' in handle)) return undefined;
  const fd = handle.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

/** Writes what a non-blocking socket takes of `bytes` now; returns how much that was. */
export function writeSome(socket: number, bytes: Uint8Array): number {
  try {
    return writeSync(socket, bytes);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
    throw err;
  }
}

/** setsockopt's level and names (asm-generic/socket.h). */
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;

/**
 * Asks for a kernel send buffer of `bytes` on a socket: SO_SNDBUFFORCE where the daemon may
 * (root, CAP_NET_ADMIN), else SO_SNDBUF, which the kernel caps at net.core.wmem_max. A
 * refusal leaves the default; only speed depends on it.
 */
export function growSendBuffer(socket: number, bytes: number): void {
  const libc = load();
  if (!libc) return;
  const value = new Int32Array([bytes]);
  if (libc.setsockopt(socket, SOL_SOCKET, SO_SNDBUFFORCE, value, 4) === 0) return;
  libc.setsockopt(socket, SOL_SOCKET, SO_SNDBUF, value, 4);
}

/**
 * Replaces a connected socket that has read nothing yet with one that reads into `buffer`,
 * passing each chunk to `received` (Node's `onread`): the bytes of a chunk are valid only
 * during the call. Returns undefined, leaving `socket` as it was, where that cannot be done.
 *
 * Why: a socket read through 'data' events gets a freshly allocated buffer per read, and V8
 * counts that memory against a limit that starts a full garbage collection: a 512 MiB
 * sequential write through the NBD server ran 32 of them, and V8's marking threads took a
 * quarter of the server's CPU. `onread` is a constructor option only, so the socket is made
 * again over a duplicate of its descriptor, and the original is closed.
 */
export function reuseReadBuffer(socket: net.Socket, buffer: Buffer, received: (chunk: Buffer) => void): net.Socket | undefined {
  const fd = socketDescriptor(socket);
  const libc = load();
  if (fd === undefined || !libc) return undefined;
  const copy = libc.dup(fd);
  if (copy < 0) return undefined;
  let replacement: net.Socket;
  try {
    replacement = new net.Socket({
      fd: copy,
      readable: true,
      writable: true,
      onread: {
        buffer,
        callback: (bytes: number, into: Uint8Array) => {
          received(Buffer.from(into.buffer, into.byteOffset, bytes));
          return true;
        },
      },
    });
  } catch {
    closeSync(copy);
    return undefined;
  }
  socket.destroy();
  return replacement;
}
