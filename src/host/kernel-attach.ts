import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { TidemarkError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { KernelNbd } from './kernel-nbd.js';
import { libc, type Libc } from './libc.js';
import { NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM } from './nbd-netlink.js';

/** A volume served on one end of a socketpair; the NBD server is one (`NbdServer.serveDirect`). */
export interface DirectSession {
  connection: number;
  closed: Promise<void>;
  resize(size: number): void;
}

export interface DirectServer {
  serveDirect(socket: net.Socket, volume: string, size: number, readOnly: boolean): DirectSession;
}

/** What the record of a kernel attachment holds besides the common fields. */
export interface KernelDevice {
  index: number;
  /** The identity given to the kernel (/sys/block/nbdN/backend), checked on every reconnect. */
  backend: string;
  deadConnTimeoutS: number;
}

export const BLOCK_SIZE = 4096;
const RECONNECT_ATTEMPTS = 20;

/**
 * The kernel nbd path: the daemon makes a socketpair, serves the volume on one end and hands
 * the other to the kernel over netlink, with a dead-connection timeout. When the daemon dies
 * the kernel keeps the device and holds its I/O for that long; the next daemon hands it a
 * new socket (RECONFIGURE) and the I/O goes on. The same call grows a connected device.
 */
export class KernelAttacher {
  private readonly sessions = new Map<string, DirectSession>();
  private kernelNbd: KernelNbd | undefined;
  private sys: Libc | undefined;

  constructor(
    private readonly server: DirectServer,
    private readonly logger: Logger,
    private readonly deadConnTimeoutS: number,
  ) {}

  private get kernel(): KernelNbd {
    this.kernelNbd ??= new KernelNbd(this.libc);
    return this.kernelNbd;
  }

  private get libc(): Libc {
    this.sys ??= libc();
    return this.sys;
  }

  /** Why the kernel path cannot be used here (no nbd netlink family, no koffi), or undefined. */
  async unavailable(): Promise<string | undefined> {
    try {
      await this.kernel.resolveFamily('nbd');
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  static backendOf(volume: string): string {
    return `tidemark:${volume}`;
  }

  async attach(volume: string, size: number, readOnly: boolean): Promise<{ device: string } & KernelDevice> {
    const backend = KernelAttacher.backendOf(volume);
    const flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | (readOnly ? NBD_FLAG_READ_ONLY : 0);
    const [index] = await this.withSocket(volume, size, readOnly, (fd) =>
      this.kernel.connect({ size, blockSize: BLOCK_SIZE, serverFlags: flags, deadConnTimeoutS: this.deadConnTimeoutS, sockets: [fd], backend }),
    );
    return { device: `/dev/nbd${index}`, index, backend, deadConnTimeoutS: this.deadConnTimeoutS };
  }

  /**
   * Gives a connected device whose daemon died a socket to this daemon. The kernel replaces a
   * socket only once it has seen it die; until then it answers success without taking the
   * new one, which shows as the new socket closing at once. So: retry until it stays.
   */
  async reconnect(volume: string, size: number, readOnly: boolean, device: KernelDevice): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const [, session] = await this.withSocket(volume, size, readOnly, (fd) => this.kernel.reconfigure({ index: device.index, sockets: [fd], backend: device.backend }));
      const taken = await Promise.race([session.closed.then(() => false), sleep(250).then(() => true)]);
      if (taken) return;
      if (attempt >= RECONNECT_ATTEMPTS) throw new TidemarkError('UNAVAILABLE', `the kernel did not take a new socket for /dev/nbd${device.index} after ${attempt} attempts`);
      await sleep(100 * attempt);
    }
  }

  /** The device's state in the kernel: undefined when it is configured and this daemon serves it. */
  async problem(volume: string, device: KernelDevice): Promise<string | undefined> {
    const status = await this.kernel.status(device.index);
    if (!status?.connected) return `/dev/nbd${device.index} is no longer connected in the kernel`;
    const backend = (await fs.readFile(`/sys/block/nbd${device.index}/backend`, 'utf8').catch(() => '')).trim();
    if (backend && backend !== device.backend) return `/dev/nbd${device.index} now serves ${backend}, not this volume`;
    if (!this.sessions.has(volume)) return `/dev/nbd${device.index} has no connection to this daemon`;
    return undefined;
  }

  /** The kernel's idea of the device's state, for reattaching at start. */
  async connected(device: KernelDevice): Promise<boolean> {
    return (await this.kernel.status(device.index))?.connected === true;
  }

  /** Tells the kernel and the server a new size, online. */
  async resize(volume: string, size: number, device: KernelDevice): Promise<void> {
    const session = this.sessions.get(volume);
    if (!session) throw new TidemarkError('UNAVAILABLE', `/dev/nbd${device.index} has no connection to this daemon`);
    // The server first, so that no request the kernel sends for the new area is refused.
    session.resize(size);
    await this.kernel.reconfigure({ index: device.index, size, blockSize: BLOCK_SIZE, backend: device.backend });
  }

  async detach(volume: string, device: KernelDevice): Promise<void> {
    const status = await this.kernel.status(device.index);
    if (status?.connected) await this.kernel.disconnect(device.index);
    const session = this.sessions.get(volume);
    // The volume stays held until the server's end closes; deleting it right after must work.
    if (session) await Promise.race([session.closed, sleep(10_000, undefined, { ref: false })]);
    this.sessions.delete(volume);
  }

  /**
   * Serves the volume on one end of a new socketpair and passes the other end's descriptor to
   * `use`; the daemon's copy of that descriptor is closed afterwards (the kernel keeps its own
   * reference). On failure the server's end is closed too.
   */
  private async withSocket<T>(volume: string, size: number, readOnly: boolean, use: (fd: number) => Promise<T>): Promise<[T, DirectSession]> {
    const [kernelEnd, serverEnd] = this.libc.socketPair();
    let session: DirectSession;
    let socket: net.Socket;
    try {
      socket = new net.Socket({ fd: serverEnd, readable: true, writable: true });
    } catch (err) {
      this.libc.close(serverEnd);
      this.libc.close(kernelEnd);
      throw err;
    }
    try {
      session = this.server.serveDirect(socket, volume, size, readOnly);
    } catch (err) {
      socket.destroy();
      this.libc.close(kernelEnd);
      throw err;
    }
    try {
      const result = await use(kernelEnd);
      this.sessions.set(volume, session);
      void session.closed.then(() => {
        if (this.sessions.get(volume) === session) this.sessions.delete(volume);
      });
      this.logger.info('kernel nbd socket handed over', { volume, connection: session.connection });
      return [result, session];
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      this.libc.close(kernelEnd);
    }
  }
}
