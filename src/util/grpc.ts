/**
 * The gRPC plumbing that the admin API (src/api) and the CSI services (src/csi) share: how a
 * proto is loaded, how an engine error becomes a status, how a server takes its unix socket
 * and gives it back, and how a call is timed, logged and answered. It lives here, below both
 * layers, so that neither reaches into the other; what differs between them (log prefix,
 * wording of errors, the status a failure returns) is passed in.
 */
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { TidemarkError, classifyError, type ErrorCode } from './errors.js';
import { PRIVATE_FILE_MODE, makePrivateDir, withPrivateUmask } from './files.js';
import type { Logger } from './log.js';

// ---- protos ----------------------------------------------------------------------------------

/**
 * How both protos are loaded. 64-bit integers arrive as decimal strings (`longs: String`) so
 * that no size or sequence is silently rounded; each layer turns them into numbers only after
 * checking they are safe integers. Enums arrive as their names; `defaults` fills absent
 * scalars with their zero value; `oneofs` names the member of a oneof that is set (a virtual
 * field such as `accessType`), and the presence of proto3 `optional` fields. Messages that
 * are absent arrive as null.
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// ---- statuses --------------------------------------------------------------------------------

/**
 * The gRPC status for each engine code; both layers answer an engine error with it. EXPIRED
 * and BUSY have no gRPC equivalent of their own: both mean "not now, not like this" and need
 * the caller to change something first (pick a newer point; detach the volume or force),
 * which is FAILED_PRECONDITION rather than ABORTED's "retry the same call". The admin API's
 * `tidemark-code` trailer tells them apart; a CSI handler that wants another code for a case
 * (ABORTED for a busy volume, say) throws a CsiError with it instead.
 */
export function grpcStatusFor(code: ErrorCode): grpc.status {
  switch (code) {
    case 'INVALID_ARGUMENT':
      return grpc.status.INVALID_ARGUMENT;
    case 'NOT_FOUND':
      return grpc.status.NOT_FOUND;
    case 'ALREADY_EXISTS':
      return grpc.status.ALREADY_EXISTS;
    case 'OUT_OF_RANGE':
      return grpc.status.OUT_OF_RANGE;
    case 'FAILED_PRECONDITION':
    case 'EXPIRED':
    case 'BUSY':
      return grpc.status.FAILED_PRECONDITION;
    case 'RESOURCE_EXHAUSTED':
      return grpc.status.RESOURCE_EXHAUSTED;
    case 'UNAVAILABLE':
    case 'STORE_LOCKED':
      return grpc.status.UNAVAILABLE;
    default:
      return grpc.status.INTERNAL;
  }
}

// ---- sockets ---------------------------------------------------------------------------------

/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the final NUL). */
export const MAX_SOCKET_PATH = 107;

/** How a layer names its socket in errors, so that the user knows which setting to change. */
export interface SocketWording {
  /** The socket, as in "listening on admin socket /run/x.sock": `admin socket`, `CSI socket`. */
  what: string;
  /** The setting to choose another of: `--admin-socket`, `CSI endpoint`. */
  setting: string;
  /** Who holds a socket that answers, as in "another tidemark daemon answers on …". */
  holder: string;
}

/**
 * Listens on a unix socket that only the daemon's user may use: the socket's calls read,
 * rewrite, attach and delete whole volumes. It is bound under a private umask, because a
 * socket takes its mode from the umask at bind(2) and a chmod alone would leave a moment in
 * which anyone could connect; the chmod after it only states the mode. `socketPath` must be
 * absolute.
 */
export async function listenPrivately(server: grpc.Server, socketPath: string, wording: SocketWording): Promise<void> {
  await makePrivateDir(path.dirname(socketPath)).catch((err: unknown) => {
    throw classifyError(err, `creating the directory of ${wording.what} ${socketPath}`);
  });
  await clearStaleSocket(socketPath, wording);
  await withPrivateUmask(
    () =>
      new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
          if (err) reject(classifyError(err, `listening on ${wording.what} ${socketPath}`));
          else resolve();
        });
      }),
  );
  await fs.chmod(socketPath, PRIVATE_FILE_MODE);
}

/**
 * A socket file left by a daemon that died is removed; one that another process still
 * answers on is not touched, and neither is anything that is not a socket.
 */
async function clearStaleSocket(socketPath: string, wording: SocketWording): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw classifyError(err, `checking ${wording.what} ${socketPath}`);
  }
  if (!stat.isSocket()) {
    throw new TidemarkError('FAILED_PRECONDITION', `${socketPath} exists and is not a socket; move it away or choose another ${wording.setting}`);
  }
  if (await answers(socketPath)) {
    throw new TidemarkError('STORE_LOCKED', `${wording.holder} answers on ${socketPath}; stop it first or choose another ${wording.setting}`);
  }
  await fs.rm(socketPath, { force: true });
}

/** Whether something accepts connections on the socket; one that hangs counts as answering. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection(socketPath);
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(2000, () => done(true));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Stops taking calls, lets running ones finish for `graceMs`, then cuts them; then removes
 * the socket, so that the next start finds nothing stale.
 */
export async function shutDown(server: grpc.Server, graceMs: number, socketPath: string | undefined): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  if (socketPath) await fs.rm(socketPath, { force: true }).catch(() => undefined);
}

// ---- calls -----------------------------------------------------------------------------------

/** The ids a call touched, for its log line: names and handles, never data or secrets. */
export type CallIds = Record<string, string | number | boolean | string[] | undefined>;

/** What a failed call logs and what it answers. */
export interface CallFailure {
  /** The code the log line shows: the engine's code (admin) or the status name (CSI). */
  code: string;
  /** The message users see, in the log line and in the status details. */
  message: string;
  /** A fault of ours rather than of the request: logged at error level, not warn. */
  internal: boolean;
  /** Logged with internal failures, where one is wanted, to find the fault. */
  stack?: string;
  /** The status the call returns. */
  status: Partial<grpc.StatusObject>;
}

/** One layer's way of logging and answering its calls. */
export interface CallStyle {
  logger: Logger;
  /** The log lines read "<kind> call" and "<kind> call failed". */
  kind: string;
  failure(err: unknown, rpc: string): CallFailure;
  /** Called as a call arrives, before its handler runs. */
  received?(rpc: string, request: unknown): void;
  /**
   * Called instead of logging a failure when a server stream fails because its client went
   * away. Without it, the failure is logged at warn level with `cancelled: true`.
   */
  streamCancelled?(rpc: string, ids: CallIds, durationMs: number): void;
}

/**
 * The one log line of a finished call. Calls that change nothing log at debug level, so that
 * polling does not flood the log. A call whose client went away is the client's business, so
 * even an internal failure of it is only a warning.
 */
export function logCall(style: CallStyle, rpc: string, ids: CallIds, started: number, readOnly: boolean, failure?: CallFailure): void {
  const durationMs = Date.now() - started;
  if (!failure) {
    style.logger.log(readOnly ? 'debug' : 'info', `${style.kind} call`, { rpc, ...ids, outcome: 'ok', durationMs });
    return;
  }
  const level = failure.internal && !ids.cancelled ? 'error' : 'warn';
  style.logger.log(level, `${style.kind} call failed`, {
    rpc,
    ...ids,
    outcome: 'error',
    code: failure.code,
    error: failure.message,
    ...(failure.stack !== undefined ? { stack: failure.stack } : {}),
    durationMs,
  });
}

/** A unary handler that is timed, logged and answered in the layer's style. */
export function unaryCall<Req, Res>(
  style: CallStyle,
  rpc: string,
  handler: (request: Req, ids: CallIds) => Promise<Res> | Res,
  readOnly: boolean,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = Date.now();
    const ids: CallIds = {};
    style.received?.(rpc, call.request);
    void (async () => {
      try {
        const response = await handler(call.request, ids);
        logCall(style, rpc, ids, started, readOnly);
        callback(null, response);
      } catch (err) {
        const failure = style.failure(err, rpc);
        logCall(style, rpc, ids, started, readOnly, failure);
        callback(failure.status);
      }
    })();
  };
}

/**
 * A server-streaming handler that is timed, logged and answered in the layer's style. The
 * handler writes to the call itself; the stream ends when it returns. A client that went
 * away is sent nothing more.
 */
export function serverStreamCall<Req, Res>(
  style: CallStyle,
  rpc: string,
  handler: (request: Req, ids: CallIds, call: grpc.ServerWritableStream<Req, Res>) => Promise<void>,
  readOnly: boolean,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const started = Date.now();
    const ids: CallIds = {};
    style.received?.(rpc, call.request);
    void (async () => {
      try {
        await handler(call.request, ids, call);
        logCall(style, rpc, ids, started, readOnly);
        call.end();
      } catch (err) {
        if (call.cancelled && style.streamCancelled) {
          style.streamCancelled(rpc, ids, Date.now() - started);
          return;
        }
        const failure = style.failure(err, rpc);
        logCall(style, rpc, { ...ids, cancelled: call.cancelled || undefined }, started, readOnly, failure);
        if (!call.cancelled) call.emit('error', failure.status);
      }
    })();
  };
}
