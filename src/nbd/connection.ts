import type { Socket } from 'node:net';
import { readNow } from '../util/cached-read.js';
import { TidemarkError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { sendFileAvailable, sendFromFile } from '../util/send-file.js';
import { growSendBuffer, reuseReadBuffer, socketDescriptor, writeSome } from '../util/sockets.js';
import type { NbdBackend } from './backend.js';
import type { PayloadAccount } from './budget.js';
import type { BufferPools } from './buffer-pool.js';
import { ByteQueue } from './byte-queue.js';
import { isClientError, nbdErrno } from './errno.js';
import { greeting, isOptionMagic, parseRequestHeader, simpleReplyHeader, structuredError, structuredHeader, type RequestHeader } from './frames.js';
import { blockStatus, type SelectedContext } from './meta.js';
import { Negotiation, type NegotiationHost } from './negotiation.js';
import * as P from './protocol.js';

export interface ConnectionLimits {
  /** Largest READ, WRITE, CACHE or WRITE_ZEROES length accepted; advertised as the maximum block size. */
  maxRequestBytes: number;
  /** Requests executing at once on one connection before the server stops reading from it. */
  maxInflightRequests: number;
  /** Payload bytes (writes held, reads pending) at once before the server stops reading. */
  maxInflightBytes: number;
  /** Reply bytes queued on the socket before the server stops reading. */
  maxQueuedReplyBytes: number;
  /**
   * A client whose replies wait this long with none of them taken by the socket is not
   * reading them, and is disconnected: it would otherwise hold their memory forever.
   */
  replyTimeoutMs: number;
  /** A client must finish the handshake within this time. */
  handshakeTimeoutMs: number;
  /** Options one connection may send before it is treated as abusive and dropped. */
  maxOptions: number;
}

/**
 * The kernel send buffer asked for on each client socket (Linux doubles it: 4 MiB). Measured
 * with 512 MiB sequential reads (nbdcopy, 64 requests of 256 KiB in flight): with the default
 * buffer only about one reply in seven found the socket empty and went by sendfile; asking
 * for 416 KiB the run took 0.24-0.54 s, for 1 MiB 0.18-0.20 s, for 4 MiB 0.13-0.18 s. Pages
 * sent from the file are the page cache's own, so the buffer costs memory only for copied
 * replies.
 */
const REPLY_SOCKET_BUFFER_BYTES = 2 * 1024 * 1024;
/** Option data longer than this is read past unkept and refused with NBD_REP_ERR_TOO_BIG. */
const MAX_OPTION_BYTES = 64 * 1024;
const COMMAND_NAMES = ['read', 'write', 'disconnect', 'flush', 'trim', 'cache', 'write-zeroes', 'block-status'];
/** Engine failures are logged at most this often per connection; the rest are counted. */
const ERROR_LOG_INTERVAL_MS = 1000;

type Phase = 'greeting' | 'options' | 'transmission' | 'closing' | 'closed';

interface Attached {
  volume: string;
  size: number;
  contexts: SelectedContext[];
  /** Writes are refused (a read-only attachment the kernel was told of; the server enforces it too). */
  readOnly: boolean;
}

/**
 * A connection whose client never negotiates: the kernel's nbd driver handed a socket the
 * daemon made itself, with the export already chosen and its size told to the kernel.
 */
export interface DirectExport {
  volume: string;
  size: number;
  readOnly: boolean;
}

let zeroBuffer = Buffer.alloc(0);
/** Shared zeros for WRITE_ZEROES with NO_HOLE; the engine only ever reads it. */
function zeros(length: number): Buffer {
  if (zeroBuffer.length < length) zeroBuffer = Buffer.alloc(Math.max(length, 1024 * 1024));
  return zeroBuffer.subarray(0, length);
}

/**
 * One client connection: the fixed newstyle handshake (see Negotiation), then the
 * transmission phase against one volume. Requests run concurrently and are answered as
 * they finish; frames are parsed from a chunk queue without copying, and the replies of
 * one tick leave in one writev.
 */
export class NbdConnection implements NegotiationHost {
  readonly holder: string;
  private readonly queue = new ByteQueue();
  private readonly negotiation: Negotiation;
  private phase: Phase = 'greeting';
  private attached: Attached | undefined;
  private readonly socket: Socket;
  private structured = false;
  /**
   * The socket's descriptor, for replies sent with sendfile; undefined where Node does not
   * show it (then every reply goes through the socket object).
   */
  private readonly socketFd: number | undefined;
  private pendingOption: { option: number; length: number } | undefined;
  /** A write whose payload is arriving, straight into a pooled buffer. */
  private pendingWrite: { header: RequestHeader; data: Buffer; filled: number } | undefined;
  private skipRemaining = 0;
  private afterSkip: (() => void) | undefined;
  private optionCount = 0;
  private inflight = 0;
  private inflightBytes = 0;
  private idleWaiters: (() => void)[] = [];
  private stalled = false;
  private processing = false;
  private corked = false;
  private lastErrorLog = 0;
  private suppressedErrors = 0;
  private fileBytes = 0;
  /** Socket writes completed: how the reply watchdog sees a client reading. */
  private writesDone = 0;
  private replyWatch: { timer: NodeJS.Timeout; writesDone: number } | undefined;
  private readonly handshakeTimer: NodeJS.Timeout;
  private resolveClosed!: () => void;
  /** Settles once the socket is closed, every request has finished and the volume is released. */
  readonly closed: Promise<void>;

  constructor(
    readonly id: number,
    accepted: Socket,
    private readonly backend: NbdBackend,
    private readonly logger: Logger,
    private readonly limits: ConnectionLimits,
    private readonly pools: BufferPools,
    private readonly payload: PayloadAccount,
    direct?: DirectExport,
  ) {
    this.holder = `nbd:${id}`;
    const socket = pools.input ? reuseReadBuffer(accepted, pools.input, (chunk) => this.onData(chunk, true)) : undefined;
    this.socket = socket ?? accepted;
    if (!socket) {
      accepted.on('data', (chunk: Buffer) => this.onData(chunk));
      accepted.resume();
    }
    this.socketFd = sendFileAvailable() ? socketDescriptor(this.socket) : undefined;
    if (this.socketFd !== undefined) growSendBuffer(this.socketFd, REPLY_SOCKET_BUFFER_BYTES);
    this.negotiation = new Negotiation(backend, logger, limits.maxRequestBytes, this);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.socket.on('drain', () => this.unstall());
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.logger.debug('nbd connection error', { connection: id, volume: this.attached?.volume, error: err.code ?? err.message });
    });
    this.socket.on('close', () => this.onClose());
    // A deadline for the whole negotiation, so a client trickling bytes cannot stay forever.
    this.handshakeTimer = setTimeout(() => {
      if (this.phase === 'greeting' || this.phase === 'options') this.drop('handshake not finished in time');
    }, limits.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    if (!direct) {
      this.send(greeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES));
      return;
    }
    if (!this.attach(direct.volume, direct.size, 0)) {
      clearTimeout(this.handshakeTimer);
      this.socket.destroy();
      throw new TidemarkError('FAILED_PRECONDITION', `volume ${direct.volume} cannot be served: it does not exist or is being deleted`);
    }
    this.attached!.readOnly = direct.readOnly;
  }

  /** Grows (or shrinks) the export a direct client sees, after the kernel was told the new size. */
  resize(size: number): void {
    if (this.attached) this.attached.size = size;
  }

  /** The volume this connection is attached to, once in the transmission phase. */
  get volume(): string | undefined {
    return this.attached?.volume;
  }

  /** True while the server does not read this client's requests (its limits or the budget). */
  get paused(): boolean {
    return this.stalled;
  }

  /** Read reply bytes sent from the image file (sendfile) rather than from a buffer. */
  get sentFromFile(): number {
    return this.fileBytes;
  }

  /** Requests handed to the engine and not finished. */
  get running(): number {
    return this.inflight;
  }

  /**
   * Ends the connection for a server shutdown: a client still negotiating is dropped; an
   * attached one gets its running requests answered first, then the connection closes.
   */
  shutdown(graceMs: number): Promise<void> {
    if (this.phase === 'greeting' || this.phase === 'options') {
      this.socket.destroy();
    } else if (this.phase !== 'closed') {
      this.endSession();
      const timer = setTimeout(() => this.socket.destroy(), graceMs);
      timer.unref();
      void this.closed.then(() => clearTimeout(timer));
    }
    return this.closed;
  }

  // ---- NegotiationHost -------------------------------------------------------------------

  /** Queues a frame; everything sent in one tick leaves in one writev. */
  send(frame: Buffer): void {
    this.sendWith(frame);
  }

  attach(volume: string, size: number, flags: number): boolean {
    try {
      this.backend.hold(volume, this.holder, () => this.revoke());
    } catch {
      return false;
    }
    this.structured = this.negotiation.structured;
    this.attached = { volume, size, contexts: this.negotiation.contextsFor(volume), readOnly: false };
    this.phase = 'transmission';
    clearTimeout(this.handshakeTimer);
    this.logger.info('nbd client attached', {
      connection: this.id,
      volume,
      flags,
      structuredReplies: this.structured,
      metaContexts: this.attached.contexts.map((c) => c.name),
    });
    return true;
  }

  /** Stops taking requests, answers the running ones, then closes (NBD_CMD_DISC, NBD_OPT_ABORT, shutdown). */
  endSession(): void {
    if (this.phase === 'closing' || this.phase === 'closed') return;
    this.phase = 'closing';
    this.discardInput();
    if (this.stalled) {
      // Keep reading (and discarding) so a client blocked on sending sees the close.
      this.stalled = false;
      this.socket.resume();
    }
    void this.whenIdle().then(() => {
      if (this.corked) this.uncork();
      this.socket.end();
    });
  }

  drop(reason: string): void {
    this.logger.warn('nbd protocol violation; dropping connection', { connection: this.id, volume: this.attached?.volume, phase: this.phase, reason });
    this.phase = 'closing';
    this.discardInput();
    this.socket.destroy();
  }

  /**
   * The volume was deleted by force. The connection ends at once, unanswered: a request read
   * after this would go by name to whatever volume takes the name next.
   */
  private revoke(): void {
    if (this.phase === 'closed') return;
    this.logger.warn('nbd connection cut: its volume was deleted', { connection: this.id, volume: this.attached?.volume });
    this.phase = 'closing';
    this.discardInput();
    this.socket.destroy();
  }

  // ---- input -----------------------------------------------------------------------------

  /** `borrowed`: the chunk is the socket's read buffer, reused by the next read. */
  private onData(chunk: Buffer, borrowed = false): void {
    if (this.phase === 'closing' || this.phase === 'closed') return;
    this.queue.push(chunk, borrowed);
    this.process();
    this.queue.keep();
  }

  private process(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.step()) {
        // each step consumes one frame
      }
    } finally {
      this.processing = false;
    }
  }

  /** Consumes one frame, or part of one being read past; false when more input is needed. */
  private step(): boolean {
    if (this.skipRemaining > 0) {
      this.skipRemaining -= this.queue.skip(this.skipRemaining);
      if (this.skipRemaining > 0) return false;
      const then = this.afterSkip;
      this.afterSkip = undefined;
      then?.();
      return true;
    }
    switch (this.phase) {
      case 'greeting':
        return this.readClientFlags();
      case 'options':
        return this.readOption();
      case 'transmission':
        return this.readRequest();
      default:
        this.queue.clear();
        return false;
    }
  }

  private skip(length: number, then: () => void): void {
    this.skipRemaining = length;
    this.afterSkip = then;
  }

  private discardInput(): void {
    this.queue.clear();
    this.pendingOption = undefined;
    if (this.pendingWrite) {
      this.payload.give(this.pendingWrite.header.length);
      this.pools.payloads.release(this.pendingWrite.data);
    }
    this.pendingWrite = undefined;
    this.skipRemaining = 0;
    this.afterSkip = undefined;
  }

  private readClientFlags(): boolean {
    if (this.queue.length < 4) return false;
    const flags = this.queue.take(4).readUInt32BE(0);
    if ((flags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)) !== 0) {
      // The spec requires dropping a client that sets flags the server did not offer.
      this.drop(`unknown client flags 0x${flags.toString(16)}`);
      return false;
    }
    this.negotiation.clientFlags = flags;
    this.phase = 'options';
    return true;
  }

  private readOption(): boolean {
    if (!this.pendingOption) {
      if (this.queue.length < P.OPTION_HEADER_BYTES) return false;
      const head = this.queue.take(P.OPTION_HEADER_BYTES);
      if (!isOptionMagic(head)) {
        this.drop('option without the IHAVEOPT magic');
        return false;
      }
      const option = head.readUInt32BE(8);
      const length = head.readUInt32BE(12);
      if (++this.optionCount > this.limits.maxOptions) {
        this.drop(`more than ${this.limits.maxOptions} options`);
        return false;
      }
      if (length > MAX_OPTION_BYTES) {
        if (option === P.Option.ExportName) {
          this.drop(`export name of ${length} bytes`);
          return false;
        }
        const reply = Negotiation.isKnown(option) ? P.REP_ERR_TOO_BIG : P.REP_ERR_UNSUP;
        this.skip(length, () => this.negotiation.refuse(option, reply, `option data of ${length} bytes is more than this server accepts`));
        return true;
      }
      this.pendingOption = { option, length };
    }
    if (this.queue.length < this.pendingOption.length) return false;
    const { option, length } = this.pendingOption;
    this.pendingOption = undefined;
    this.negotiation.handle(option, this.queue.take(length));
    return this.phase === 'options' || this.phase === 'transmission';
  }

  private readRequest(): boolean {
    if (!this.pendingWrite) {
      if (this.overloaded()) {
        this.stall();
        return false;
      }
      if (this.queue.length < P.REQUEST_HEADER_BYTES) return false;
      const { magic, header } = parseRequestHeader(this.queue.take(P.REQUEST_HEADER_BYTES));
      if (magic !== P.REQUEST_MAGIC) {
        this.drop(`request with magic 0x${magic.toString(16)}`);
        return false;
      }
      if (header.type !== P.Command.Write) {
        this.dispatch(header, undefined);
        return this.phase === 'transmission';
      }
      if (header.length > this.limits.maxRequestBytes) {
        // Read past the payload so the stream stays in step, then refuse the write.
        this.skip(header.length, () => this.fail(header, P.NBD_EINVAL, `write of ${header.length} bytes exceeds the maximum of ${this.limits.maxRequestBytes}`));
        return true;
      }
      // Charged before its payload arrives: once admitted, a write can always be received in
      // full, whatever other connections take meanwhile, so none waits on another.
      this.payload.take(header.length);
      // The payload is copied into a pooled buffer as it arrives (once, however the socket
      // splits it), given back once the engine has journaled it: it keeps no reference.
      this.pendingWrite = { header, data: this.pools.payloads.acquire(header.length), filled: 0 };
    }
    const write = this.pendingWrite;
    write.filled += this.queue.takeInto(write.data, write.filled);
    if (write.filled < write.data.length) return false;
    this.pendingWrite = undefined;
    this.dispatch(write.header, write.data, write.data);
    // A running write has its own charge from track(); a refused one needs none.
    this.payload.give(write.header.length);
    return this.phase === 'transmission';
  }

  // ---- flow control ----------------------------------------------------------------------

  private overloaded(): boolean {
    return (
      this.inflight >= this.limits.maxInflightRequests ||
      this.inflightBytes >= this.limits.maxInflightBytes ||
      this.socket.writableLength >= this.limits.maxQueuedReplyBytes ||
      this.payload.exhausted
    );
  }

  private stall(): void {
    // Room in the budget comes back from other connections, which only the budget sees.
    if (this.payload.exhausted) this.payload.wait(this.resume);
    if (this.stalled) return;
    this.stalled = true;
    this.socket.pause();
  }

  private readonly resume = (): void => this.unstall();

  private unstall(): void {
    if (!this.stalled || this.phase !== 'transmission') return;
    if (this.overloaded()) {
      if (this.payload.exhausted) this.payload.wait(this.resume);
      return;
    }
    this.stalled = false;
    this.socket.resume();
    this.process();
  }

  // ---- output ----------------------------------------------------------------------------

  /**
   * Queues a frame and an optional payload. `done` runs once the payload is off our hands:
   * with true when the socket has handed it to the kernel (so its buffer may be reused), with
   * false when the connection ended first.
   */
  private sendWith(frame: Buffer, payload?: Buffer, done?: (sent: boolean) => void): void {
    const socket = this.socket;
    if (socket.destroyed || socket.writableEnded) {
      done?.(false);
      return;
    }
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(this.uncork);
    }
    socket.write(frame, this.wrote);
    if (payload !== undefined && payload.length > 0) {
      socket.write(
        payload,
        done
          ? (err) => {
              this.wrote();
              done(!err);
            }
          : this.wrote,
      );
    } else {
      done?.(true);
    }
  }

  private readonly wrote = (): void => {
    this.writesDone++;
  };

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
    if (this.socket.writableLength > 0) this.watchReplies();
  };

  /**
   * Runs the reply watchdog while replies are queued: when a whole timeout passes with
   * replies waiting and not one socket write completed, the client is not reading them, and
   * the memory they hold is only given back by disconnecting it.
   */
  private watchReplies(): void {
    if (this.replyWatch || this.phase === 'closed') return;
    const timer = setTimeout(() => this.checkReplies(), this.limits.replyTimeoutMs);
    timer.unref();
    this.replyWatch = { timer, writesDone: this.writesDone };
  }

  private checkReplies(): void {
    const watch = this.replyWatch;
    this.replyWatch = undefined;
    if (!watch || this.phase === 'closed' || this.socket.writableLength === 0) return;
    if (this.writesDone !== watch.writesDone) return this.watchReplies();
    this.logger.warn('nbd client does not read its replies; disconnecting', {
      connection: this.id,
      volume: this.attached?.volume,
      queuedBytes: this.socket.writableLength,
      timeoutMs: this.limits.replyTimeoutMs,
    });
    this.phase = 'closing';
    this.discardInput();
    this.socket.destroy();
  }

  private ok(h: RequestHeader): void {
    if (this.structured && h.type === P.Command.Read) {
      this.send(structuredHeader(P.REPLY_FLAG_DONE, P.REPLY_TYPE_NONE, h.handleHi, h.handleLo, 0));
    } else {
      this.send(simpleReplyHeader(0, h.handleHi, h.handleLo));
    }
  }

  private fail(h: RequestHeader, errno: number, message: string): void {
    if (this.structured) this.send(structuredError(errno, message, h.handleHi, h.handleLo));
    else this.send(simpleReplyHeader(errno, h.handleHi, h.handleLo));
  }

  // ---- transmission ----------------------------------------------------------------------

  /**
   * `pooled` is the payload's buffer when it came from the pool: the write gives it back. A
   * write refused here leaves it to the garbage collector, which is only a missed reuse.
   */
  private dispatch(h: RequestHeader, payload: Buffer | undefined, pooled?: Buffer): void {
    const { size, contexts, readOnly } = this.attached!;
    if (readOnly && (h.type === P.Command.Write || h.type === P.Command.Trim || h.type === P.Command.WriteZeroes)) {
      return this.fail(h, P.NBD_EPERM, 'the export is read-only');
    }
    const max = this.limits.maxRequestBytes;
    const end = h.offset + h.length;
    const fua = (h.flags & P.CMD_FLAG_FUA) !== 0;
    switch (h.type) {
      case P.Command.Read:
        if ((h.flags & ~(P.CMD_FLAG_FUA | (this.structured ? P.CMD_FLAG_DF : 0))) !== 0) return this.badFlags(h);
        if (h.length > max) return this.fail(h, P.NBD_EINVAL, `read of ${h.length} bytes exceeds the maximum of ${max}`);
        if (end > size) return this.fail(h, P.NBD_EINVAL, outside(h, size));
        if (h.length === 0) return this.ok(h);
        if (this.sendFromImage(h)) return;
        return this.track(h, h.length, this.read(h));
      case P.Command.Write:
        if ((h.flags & ~P.CMD_FLAG_FUA) !== 0) return this.badFlags(h);
        if (end > size) return this.fail(h, P.NBD_ENOSPC, outside(h, size));
        if (h.length === 0) return this.ok(h);
        return this.track(h, h.length, this.write(h, payload!, fua, pooled));
      case P.Command.Disconnect:
        return this.endSession();
      case P.Command.Flush:
        if ((h.flags & ~P.CMD_FLAG_FUA) !== 0) return this.badFlags(h);
        return this.track(h, 0, this.flush(h));
      case P.Command.Trim:
        if ((h.flags & ~P.CMD_FLAG_FUA) !== 0) return this.badFlags(h);
        if (end > size) return this.fail(h, P.NBD_EINVAL, outside(h, size));
        if (h.length === 0) return this.ok(h);
        return this.track(h, 0, this.zero(h, fua, true));
      case P.Command.Cache:
        if ((h.flags & ~P.CMD_FLAG_FUA) !== 0) return this.badFlags(h);
        if (h.length > max) return this.fail(h, P.NBD_EINVAL, `cache of ${h.length} bytes exceeds the maximum of ${max}`);
        if (end > size) return this.fail(h, P.NBD_EINVAL, outside(h, size));
        if (h.length === 0) return this.ok(h);
        return this.track(h, h.length, this.cache(h));
      case P.Command.WriteZeroes: {
        if ((h.flags & ~(P.CMD_FLAG_FUA | P.CMD_FLAG_NO_HOLE | P.CMD_FLAG_FAST_ZERO)) !== 0) return this.badFlags(h);
        const fast = (h.flags & P.CMD_FLAG_FAST_ZERO) !== 0;
        const noHole = (h.flags & P.CMD_FLAG_NO_HOLE) !== 0;
        // The spec lifts the maximum block size for fast zeroing, which carries no payload.
        if (!fast && h.length > max) return this.fail(h, P.NBD_EINVAL, `write-zeroes of ${h.length} bytes exceeds the maximum of ${max}`);
        if (end > size) return this.fail(h, P.NBD_ENOSPC, outside(h, size));
        // Zeros that must stay allocated are journaled as a full write: no faster than one.
        if (fast && noHole) return this.fail(h, P.NBD_ENOTSUP, 'zeroing without a hole is no faster than a write');
        if (h.length === 0) return this.ok(h);
        return this.track(h, noHole ? h.length : 0, noHole ? this.write(h, zeros(h.length), fua) : this.zero(h, fua, false));
      }
      case P.Command.BlockStatus:
        if ((h.flags & ~(P.CMD_FLAG_FUA | P.CMD_FLAG_REQ_ONE)) !== 0) return this.badFlags(h);
        if (contexts.length === 0) return this.fail(h, P.NBD_EINVAL, 'no metadata context was negotiated');
        if (h.length === 0) return this.fail(h, P.NBD_EINVAL, 'block status of zero bytes');
        if (end > size) return this.fail(h, P.NBD_EINVAL, outside(h, size));
        return this.blockStatus(h, contexts);
      default:
        return this.fail(h, P.NBD_EINVAL, `unknown command ${h.type}`);
    }
  }

  private badFlags(h: RequestHeader): void {
    this.fail(h, P.NBD_EINVAL, `flags 0x${h.flags.toString(16)} are not valid for ${COMMAND_NAMES[h.type] ?? 'this command'}`);
  }

  /** Counts a running request; `work` sends its reply, or an error reply is sent if it fails. */
  private track(h: RequestHeader, bytes: number, work: Promise<void>): void {
    this.inflight++;
    this.inflightBytes += bytes;
    this.payload.take(bytes);
    work.then(
      () => this.settle(bytes),
      (err: unknown) => {
        this.engineFailure(h, err);
        this.settle(bytes);
      },
    );
  }

  private settle(bytes: number): void {
    this.inflight--;
    this.inflightBytes -= bytes;
    this.payload.give(bytes);
    if (this.inflight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
    if (this.stalled) this.unstall();
  }

  private whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async read(h: RequestHeader): Promise<void> {
    const volume = this.attached!.volume;
    let data: Buffer;
    let pooled = false;
    if (this.backend.readInto) {
      const buffer = this.pools.replies.acquire(h.length);
      try {
        await this.backend.readInto(volume, h.offset, buffer);
      } catch (err) {
        this.pools.replies.release(buffer);
        throw err;
      }
      data = buffer;
      pooled = true;
    } else {
      data = await this.backend.read(volume, h.offset, h.length);
    }
    // The reply keeps its memory until the socket takes it, which outlasts the request (for
    // ever, with a client that does not read): it stays charged until then.
    this.payload.take(data.length);
    const done = (sent: boolean) => {
      this.payload.give(data.length);
      if (sent && pooled) this.pools.replies.release(data);
    };
    this.sendWith(this.readReplyHead(h), data, done);
  }

  /** The reply header of a successful read of `h`. */
  private readReplyHead(h: RequestHeader): Buffer {
    if (!this.structured) return simpleReplyHeader(0, h.handleHi, h.handleLo);
    const head = structuredHeader(P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA, h.handleHi, h.handleLo, 8 + h.length, 8);
    head.writeUInt32BE(Math.floor(h.offset / 0x1_0000_0000), P.STRUCTURED_HEADER_BYTES);
    head.writeUInt32BE(h.offset >>> 0, P.STRUCTURED_HEADER_BYTES + 4);
    return head;
  }

  /**
   * Answers a read from the image file with sendfile, when nothing is queued on the socket
   * and the backend says the file holds the bytes in the page cache; false when it cannot,
   * and the read takes the usual way. All of it runs before the next turn of the event loop,
   * so no write changes the bytes between the check and the send, and no other reply can
   * come between the header and its data. What the socket does not take at once is read
   * from the (cached) file and queued like any reply.
   */
  private sendFromImage(h: RequestHeader): boolean {
    const fd = this.socketFd;
    if (fd === undefined || !this.backend.cachedImageRange || this.socket.writableLength > 0 || this.socket.destroyed) return false;
    let image: number | undefined;
    try {
      image = this.backend.cachedImageRange(this.attached!.volume, h.offset, h.length);
    } catch {
      return false; // the usual path reports it
    }
    if (image === undefined) return false;
    const head = this.readReplyHead(h);
    let headSent = 0;
    let dataSent = 0;
    let rest: Buffer | undefined;
    try {
      headSent = writeSome(fd, head);
      if (headSent === head.length) dataSent = sendFromFile(fd, image, h.offset, h.length);
      if (dataSent < h.length) readNow(image, (rest = this.pools.replies.acquire(h.length - dataSent)), h.offset + dataSent);
    } catch (err) {
      if (rest) this.pools.replies.release(rest);
      if (headSent === 0) return false;
      // Part of a reply is on the wire: the stream cannot be put right.
      this.logger.warn('nbd read reply failed midway; disconnecting', { volume: this.attached!.volume, connection: this.id, error: (err as Error).message });
      this.socket.destroy();
      return true;
    }
    this.writesDone++;
    this.fileBytes += dataSent;
    if (!rest) return true;
    const queued = rest;
    this.payload.take(queued.length);
    this.sendWith(head.subarray(headSent), queued, (written) => {
      this.payload.give(queued.length);
      if (written) this.pools.replies.release(queued);
    });
    return true;
  }

  private async write(h: RequestHeader, data: Buffer, fua: boolean, pooled?: Buffer): Promise<void> {
    try {
      await this.backend.write(this.attached!.volume, h.offset, data, { fua });
    } finally {
      // The backend keeps no reference to the data once the write settles.
      if (pooled) this.pools.payloads.release(pooled);
    }
    this.ok(h);
  }

  private async zero(h: RequestHeader, fua: boolean, trim: boolean): Promise<void> {
    await this.backend.zero(this.attached!.volume, h.offset, h.length, { fua, trim });
    this.ok(h);
  }

  private async flush(h: RequestHeader): Promise<void> {
    await this.backend.flush(this.attached!.volume);
    this.ok(h);
  }

  /** Reading the range pulls it into the page cache, where the next reads find it. */
  private async cache(h: RequestHeader): Promise<void> {
    await this.backend.read(this.attached!.volume, h.offset, h.length);
    this.ok(h);
  }

  /** One chunk per selected context, the last marked done; computed at once, so sent together. */
  private blockStatus(h: RequestHeader, contexts: SelectedContext[]): void {
    const onlyOne = (h.flags & P.CMD_FLAG_REQ_ONE) !== 0;
    const chunks: Buffer[] = [];
    try {
      contexts.forEach((context, index) => {
        const descriptors = blockStatus(this.backend, this.attached!.volume, context, h.offset, h.length, onlyOne);
        const payload = 4 + descriptors.length * 8;
        const last = index === contexts.length - 1;
        const chunk = structuredHeader(last ? P.REPLY_FLAG_DONE : 0, P.REPLY_TYPE_BLOCK_STATUS, h.handleHi, h.handleLo, payload, payload);
        let at = P.STRUCTURED_HEADER_BYTES;
        chunk.writeUInt32BE(context.id, at);
        at += 4;
        for (const [length, flags] of descriptors) {
          chunk.writeUInt32BE(length, at);
          chunk.writeUInt32BE(flags, at + 4);
          at += 8;
        }
        chunks.push(chunk);
      });
    } catch (err) {
      return this.engineFailure(h, err);
    }
    for (const chunk of chunks) this.send(chunk);
  }

  private engineFailure(h: RequestHeader, err: unknown): void {
    const kind = h.type === P.Command.Write || h.type === P.Command.WriteZeroes ? 'write' : 'other';
    const errno = nbdErrno(err, kind);
    const message = err instanceof Error ? err.message : String(err);
    if (isClientError(errno)) {
      this.logger.debug('nbd request refused', { connection: this.id, volume: this.attached?.volume, command: COMMAND_NAMES[h.type], errno, error: message });
    } else if (Date.now() - this.lastErrorLog >= ERROR_LOG_INTERVAL_MS) {
      this.logger.warn('nbd request failed', {
        connection: this.id,
        volume: this.attached?.volume,
        command: COMMAND_NAMES[h.type],
        offset: h.offset,
        length: h.length,
        errno,
        error: message,
        suppressedSinceLast: this.suppressedErrors,
      });
      this.lastErrorLog = Date.now();
      this.suppressedErrors = 0;
    } else {
      this.suppressedErrors++;
    }
    this.fail(h, errno, message);
  }

  // ---- end -------------------------------------------------------------------------------

  private onClose(): void {
    this.phase = 'closed';
    clearTimeout(this.handshakeTimer);
    if (this.replyWatch) clearTimeout(this.replyWatch.timer);
    this.replyWatch = undefined;
    this.payload.cancel(this.resume);
    this.discardInput();
    // Requests already handed to the engine run to completion; the volume stays held until
    // they have, so an in-place restore cannot start beneath them.
    void this.whenIdle().then(() => {
      if (this.attached) {
        this.backend.release(this.attached.volume, this.holder);
        this.logger.info('nbd client detached', { connection: this.id, volume: this.attached.volume });
      }
      // Replies the socket dropped when it closed may not all have reported back.
      this.payload.close();
      this.resolveClosed();
    });
  }
}

function outside(h: RequestHeader, size: number): string {
  return `bytes ${h.offset}..${h.offset + h.length} lie outside the export of ${size} bytes`;
}
