import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import type { NbdBackend } from './backend.js';
import { TidemarkError, classifyError, failedPrecondition } from '../util/errors.js';
import { PRIVATE_FILE_MODE, makePrivateDir, withPrivateUmask } from '../util/files.js';
import type { Logger } from '../util/log.js';
import { PayloadBudget } from './budget.js';
import { BufferPool, type BufferPools } from './buffer-pool.js';
import { NbdConnection, type ConnectionLimits } from './connection.js';

/** A volume served on a socket the daemon connected itself (the kernel's end of a socketpair). */
export interface DirectSession {
  /** The connection's id in logs and `clients()`. */
  connection: number;
  /** Settles once the socket closed and the volume is released. */
  closed: Promise<void>;
  /** Serves a new size, after the client was told of it. */
  resize(size: number): void;
}
import { MAX_REQUEST_BYTES } from './protocol.js';

export interface NbdServerOptions {
  /** Largest READ/WRITE/CACHE/WRITE_ZEROES request, advertised as the maximum block size (32 MiB). */
  maxRequestBytes?: number;
  /** Requests one connection may have running before the server stops reading from it (256). */
  maxInflightRequests?: number;
  /** Request payload bytes one connection may have in memory before reading pauses (128 MiB). */
  maxInflightBytes?: number;
  /** Reply bytes queued on one socket before reading from it pauses (64 MiB). */
  maxQueuedReplyBytes?: number;
  /**
   * Payload bytes all connections together may hold (write payloads, read replies not yet
   * sent) before every connection stops reading requests (256 MiB). Exceeded by at most one
   * request.
   */
  maxBufferedBytes?: number;
  /** A client whose replies wait this long with none of them leaving is disconnected (30 s). */
  replyTimeoutMs?: number;
  /** A client that has not finished the handshake by then is dropped (30 s). */
  handshakeTimeoutMs?: number;
  /** Connections served at once; more are refused (1024). */
  maxConnections?: number;
  /** How long `close` waits for running requests before cutting connections (10 s). */
  closeGraceMs?: number;
  /**
   * Client sockets read into one buffer the server reuses (true). False reads them as Node
   * does by default, a fresh buffer per read: what happens anyway where the socket cannot be
   * made again with `onread`.
   */
  reuseReadBuffer?: boolean;
}

/** What the server holds now, for status output and tests. */
export interface NbdLoad {
  /** Payload bytes charged to the server-wide budget. */
  bufferedBytes: number;
  budgetBytes: number;
  connections: number;
  /** Connections whose requests are not being read (their own limits, or the budget). */
  pausedConnections: number;
  /** Requests handed to the engine and not finished. */
  runningRequests: number;
  /** Read reply bytes sent from image files with sendfile since the server started. */
  sentFromFileBytes: number;
}

/** A connected client, for status output. */
export interface NbdClientInfo {
  connection: number;
  /** The volume it is attached to; absent while it is still negotiating. */
  volume?: string;
  holder: string;
}

/**
 * The NBD data path: serves every engine volume as an export of the same name, on a unix
 * socket and, when asked, on TCP. Exports are looked up when a client connects, so a volume
 * created later is exportable without a restart. A connected client holds its volume (the
 * engine's in-use flag) until it disconnects and its running requests have finished.
 */
export class NbdServer {
  private readonly listeners: { server: net.Server; unixPath?: string }[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly limits: ConnectionLimits;
  private readonly maxConnections: number;
  private readonly closeGraceMs: number;
  private readonly logger: Logger;
  /**
   * Shared by all connections: read reply buffers (when the backend can read into them),
   * write payload buffers, and the one buffer client sockets read into.
   */
  private readonly pools: BufferPools;
  private readonly budget: PayloadBudget;
  private nextId = 1;
  /** sentFromFile of the connections that have closed. */
  private closedSentFromFile = 0;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly engine: NbdBackend,
    logger: Logger,
    options: NbdServerOptions = {},
  ) {
    this.logger = logger.child({ layer: 'nbd' });
    const maxRequestBytes = options.maxRequestBytes ?? MAX_REQUEST_BYTES;
    if (!Number.isSafeInteger(maxRequestBytes) || maxRequestBytes < 65536 || maxRequestBytes > 0xffffffff) {
      throw new TidemarkError('INVALID_ARGUMENT', `maximum NBD request size ${maxRequestBytes} must be from 64 KiB to 4 GiB - 1`);
    }
    this.limits = {
      maxRequestBytes,
      maxInflightRequests: options.maxInflightRequests ?? 256,
      maxInflightBytes: options.maxInflightBytes ?? 128 * 1024 * 1024,
      maxQueuedReplyBytes: options.maxQueuedReplyBytes ?? 64 * 1024 * 1024,
      replyTimeoutMs: options.replyTimeoutMs ?? 30_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
      maxOptions: 4096,
    };
    const budget = options.maxBufferedBytes ?? 256 * 1024 * 1024;
    if (!Number.isSafeInteger(budget) || budget <= 0) throw new TidemarkError('INVALID_ARGUMENT', `NBD buffer budget ${budget} must be a positive number of bytes`);
    this.budget = new PayloadBudget(budget);
    this.pools = {
      replies: new BufferPool(64 * 1024 * 1024),
      payloads: new BufferPool(32 * 1024 * 1024),
      input: options.reuseReadBuffer === false ? undefined : Buffer.allocUnsafeSlow(256 * 1024),
    };
    this.maxConnections = options.maxConnections ?? 1024;
    this.closeGraceMs = options.closeGraceMs ?? 10_000;
  }

  /**
   * Listens on a unix socket. A socket file left by a dead server is removed; one that a
   * live server still answers on, or a path that is not a socket, is an error.
   */
  async listenUnix(socketPath: string): Promise<void> {
    const resolved = path.resolve(socketPath);
    await makePrivateDir(path.dirname(resolved));
    await removeStaleSocket(resolved);
    const server = this.createServer();
    // Every client reads and writes any volume by name: no moment open to other users.
    await withPrivateUmask(() => listen(server, () => server.listen(resolved)));
    await fs.chmod(resolved, PRIVATE_FILE_MODE).catch(() => undefined);
    this.listeners.push({ server, unixPath: resolved });
    this.logger.info('nbd server listening', { socket: resolved });
  }

  /** Listens on TCP, on loopback unless a host is given; port 0 picks a free port. */
  async listenTcp(port: number, host = '127.0.0.1'): Promise<net.AddressInfo> {
    const server = this.createServer();
    await listen(server, () => server.listen({ port, host }));
    this.listeners.push({ server });
    const address = server.address() as net.AddressInfo;
    this.logger.info('nbd server listening', { host: address.address, port: address.port });
    return address;
  }

  /** True while at least one listener accepts and close has not begun. */
  get listening(): boolean {
    return !this.closing && this.listeners.length > 0;
  }

  load(): NbdLoad {
    let paused = 0;
    let running = 0;
    let sentFromFile = this.closedSentFromFile;
    for (const c of this.connections) {
      if (c.paused) paused++;
      running += c.running;
      sentFromFile += c.sentFromFile;
    }
    return {
      bufferedBytes: this.budget.bytes,
      budgetBytes: this.budget.limit,
      connections: this.connections.size,
      pausedConnections: paused,
      runningRequests: running,
      sentFromFileBytes: sentFromFile,
    };
  }

  /** Clients connected now. */
  clients(): NbdClientInfo[] {
    return [...this.connections].map((c) => ({ connection: c.id, volume: c.volume, holder: c.holder }));
  }

  /**
   * Stops accepting, lets attached clients' running requests finish (up to the grace
   * period), closes every connection and releases every volume.
   */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    const stopped = this.listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())));
    await Promise.all([...this.connections].map((c) => c.shutdown(this.closeGraceMs)));
    await Promise.all(stopped);
    for (const { unixPath } of this.listeners) {
      if (unixPath) await fs.rm(unixPath, { force: true }).catch(() => undefined);
    }
    this.listeners.length = 0;
    this.logger.info('nbd server closed');
  }

  /**
   * Serves a volume on an already connected socket, with no handshake: the caller gave the
   * kernel the export's size and flags itself. FAILED_PRECONDITION when the volume cannot be
   * held (gone, or being deleted); UNAVAILABLE while the server is closing.
   */
  serveDirect(socket: net.Socket, volume: string, size: number, readOnly: boolean): DirectSession {
    if (this.closing) {
      socket.destroy();
      throw new TidemarkError('UNAVAILABLE', 'the NBD server is shutting down');
    }
    const connection = new NbdConnection(this.nextId++, socket, this.engine, this.logger, this.limits, this.pools, this.budget.account(), { volume, size, readOnly });
    this.adopt(connection);
    return { connection: connection.id, closed: connection.closed, resize: (bytes) => connection.resize(bytes) };
  }

  private createServer(): net.Server {
    // Paused, so that nothing is read before the connection takes the socket over.
    const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    server.on('error', (err) => this.logger.error('nbd listener error', { error: err.message }));
    return server;
  }

  private accept(socket: net.Socket): void {
    if (this.closing || this.connections.size >= this.maxConnections) {
      this.logger.warn('nbd connection refused', { reason: this.closing ? 'server closing' : `more than ${this.maxConnections} connections` });
      socket.destroy();
      return;
    }
    if (socket.remoteAddress !== undefined) socket.setKeepAlive(true, 60_000);
    const connection = new NbdConnection(this.nextId++, socket, this.engine, this.logger, this.limits, this.pools, this.budget.account());
    this.adopt(connection);
    this.logger.debug('nbd connection opened', { connection: connection.id, remote: socket.remoteAddress ?? 'unix' });
  }

  private adopt(connection: NbdConnection): void {
    this.connections.add(connection);
    void connection.closed.then(() => {
      this.connections.delete(connection);
      this.closedSentFromFile += connection.sentFromFile;
    });
  }
}

function listen(server: net.Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(classifyError(err, 'starting the NBD listener'));
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve();
    });
    start();
  });
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(socketPath);
  } catch {
    return;
  }
  if (!stat.isSocket()) throw failedPrecondition(`${socketPath} exists and is not a socket; not replacing it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new TidemarkError('ALREADY_EXISTS', `another server is listening on ${socketPath}`);
  await fs.rm(socketPath, { force: true });
}
