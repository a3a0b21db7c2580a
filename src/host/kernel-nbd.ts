import { TidemarkError } from '../util/errors.js';
import { libc, type Libc } from './libc.js';
import { NBD_FAMILY_NAME, connectMessage, connectedIndex, deviceStatuses, disconnectMessage, reconfigureMessage, statusMessage, type ConnectRequest, type DeviceStatus, type ReconfigureRequest } from './nbd-netlink.js';
import { decodeMessages, familyIdOf, familyRequest, type NetlinkMessage } from './netlink.js';

const NETLINK_GENERIC = 16;
const ENOENT = 2;
const RECEIVE_BYTES = 64 * 1024;

/**
 * The kernel's nbd driver driven over generic netlink: what nbd-client does, minus the
 * handshake (tidemark's own server is on the other end of the socket) and plus what
 * nbd-client 3.24 cannot do: a dead-connection timeout, and handing a live device a new
 * socket (RECONFIGURE) after the daemon restarts, or a new size after the volume grows.
 * One request at a time per instance; each opens its own netlink socket.
 */
export class KernelNbd {
  private family: number | undefined;
  private sequence = 1;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly sys: Libc = libc()) {}

  /** The family id of `name`; FAILED_PRECONDITION when the kernel has no such family. */
  async resolveFamily(name: string): Promise<number> {
    const replies = await this.exchange(familyRequest(name, this.sequence++), (errno) =>
      errno === ENOENT ? new TidemarkError('FAILED_PRECONDITION', `the kernel has no generic netlink family "${name}"${name === NBD_FAMILY_NAME ? ': load the nbd module (modprobe nbd)' : ''}`) : undefined,
    );
    const id = replies.map(familyIdOf).find((v) => v !== undefined);
    if (id === undefined) throw new TidemarkError('INTERNAL', `the kernel answered the family lookup for "${name}" without an id`);
    return id;
  }

  /** Connects a device to the sockets; returns its index (/dev/nbdINDEX). */
  async connect(request: ConnectRequest): Promise<number> {
    const family = await this.nbdFamily();
    const replies = await this.exchange(connectMessage(family, this.sequence++, request), (errno) =>
      errno === 16 ? new TidemarkError('UNAVAILABLE', `/dev/nbd${request.index ?? ''} is already in use`) : undefined,
    );
    const index = replies.map(connectedIndex).find((v) => v !== undefined);
    if (index === undefined) throw new TidemarkError('INTERNAL', 'the kernel connected an nbd device without saying which');
    return index;
  }

  async reconfigure(request: ReconfigureRequest): Promise<void> {
    const family = await this.nbdFamily();
    await this.exchange(reconfigureMessage(family, this.sequence++, request));
  }

  async disconnect(index: number): Promise<void> {
    const family = await this.nbdFamily();
    await this.exchange(disconnectMessage(family, this.sequence++, index));
  }

  /** One device's state, or undefined when the kernel has no such device. */
  async status(index: number): Promise<DeviceStatus | undefined> {
    const family = await this.nbdFamily();
    const replies = await this.exchange(statusMessage(family, this.sequence++, index));
    return replies.flatMap(deviceStatuses).find((d) => d.index === index);
  }

  private async nbdFamily(): Promise<number> {
    this.family ??= await this.resolveFamily(NBD_FAMILY_NAME);
    return this.family;
  }

  /**
   * Sends one request on a fresh netlink socket and reads until its acknowledgement. A
   * negative acknowledgement becomes an error: `explain` may turn an errno into a clearer one.
   */
  private exchange(request: Buffer, explain?: (errno: number) => TidemarkError | undefined): Promise<NetlinkMessage[]> {
    const run = async () => {
      const sequence = request.readUInt32LE(8);
      const fd = this.sys.netlinkSocket(NETLINK_GENERIC);
      try {
        this.sys.send(fd, request);
        const replies: NetlinkMessage[] = [];
        for (;;) {
          for (const message of decodeMessages(await this.sys.receive(fd, RECEIVE_BYTES))) {
            if (message.sequence !== sequence) continue;
            if (message.kind === 'error') {
              if (message.errno === 0) return replies;
              throw explain?.(message.errno) ?? new TidemarkError('INTERNAL', `the kernel refused the nbd netlink request: ${errnoText(message.errno)}`);
            }
            if (message.kind === 'done') return replies;
            replies.push(message);
          }
        }
      } finally {
        this.sys.close(fd);
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

const ERRNO_TEXT: Record<number, string> = { 1: 'EPERM (needs CAP_SYS_ADMIN)', 2: 'ENOENT', 16: 'EBUSY', 22: 'EINVAL', 28: 'ENOSPC', 95: 'EOPNOTSUPP' };

function errnoText(errno: number): string {
  return ERRNO_TEXT[errno] ?? `errno ${errno}`;
}
