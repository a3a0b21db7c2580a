import { TidemarkError } from '../util/errors.js';
import { errnoName, loadLibc } from '../util/ffi.js';

/**
 * The few libc calls Node does not offer: netlink sockets (Node's `net` knows only unix and
 * IP sockets) and a socketpair whose one end goes to the kernel. They go through koffi
 * (util/ffi.ts): no native helper to build and keep in step, and the protocol logic stays in
 * TypeScript. Loaded only when the kernel NBD path is used.
 */
export interface Libc {
  /** A netlink socket of the given protocol, bound to a port id the kernel picks. */
  netlinkSocket(protocol: number): number;
  /** A connected pair of unix stream sockets, close-on-exec. */
  socketPair(): [number, number];
  send(fd: number, data: Buffer): void;
  /** One datagram, waited for on the thread pool so that the event loop keeps serving I/O. */
  receive(fd: number, capacity: number): Promise<Buffer>;
  close(fd: number): void;
}

const AF_UNIX = 1;
const AF_NETLINK = 16;
const SOCK_STREAM = 1;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;

let loaded: Libc | undefined;

/** libc through koffi; an error that says what is missing when koffi cannot load. */
export function libc(): Libc {
  if (loaded) return loaded;
  const ffi = loadLibc();
  if (ffi instanceof Error) throw new TidemarkError('FAILED_PRECONDITION', `the kernel NBD path needs the koffi package, which did not load: ${ffi.message}`);
  const { koffi, libc: lib } = ffi;
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const bind = lib.func('int bind(int fd, void *addr, uint32_t len)');
  const socketpair = lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *fds)');
  const send = lib.func('intptr_t send(int fd, void *buf, size_t len, int flags)');
  const recv = lib.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)');
  const close = lib.func('int close(int fd)');

  const fail = (call: string): never => {
    const errno = koffi.errno();
    throw new TidemarkError('INTERNAL', `${call} failed: ${errnoName(errno)}`);
  };

  loaded = {
    netlinkSocket(protocol) {
      const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
      if (fd < 0) fail('socket(AF_NETLINK)');
      // struct sockaddr_nl with port id 0: the kernel assigns one.
      const address = Buffer.alloc(12);
      address.writeUInt16LE(AF_NETLINK, 0);
      if (bind(fd, address, address.length) < 0) {
        const errno = koffi.errno();
        close(fd);
        throw new TidemarkError('INTERNAL', `bind(AF_NETLINK) failed: ${errnoName(errno)}`);
      }
      return fd;
    },
    socketPair() {
      const fds = new Int32Array(2);
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) fail('socketpair');
      return [fds[0]!, fds[1]!];
    },
    send(fd, data) {
      const sent = send(fd, data, data.length, 0);
      if (sent < 0) fail('send(netlink)');
      if (sent !== data.length) throw new TidemarkError('INTERNAL', `send(netlink) took ${sent} of ${data.length} bytes`);
    },
    receive(fd, capacity) {
      const buffer = Buffer.alloc(capacity);
      return new Promise((resolve, reject) => {
        recv.async(fd, buffer, capacity, 0, (err: unknown, received: number) => {
          if (err) reject(new TidemarkError('INTERNAL', `recv(netlink) failed: ${String(err)}`));
          else if (received < 0) reject(new TidemarkError('INTERNAL', 'recv(netlink) failed'));
          else resolve(buffer.subarray(0, received));
        });
      });
    },
    close(fd) {
      close(fd);
    },
  };
  return loaded;
}
