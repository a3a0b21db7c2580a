import * as grpc from '@grpc/grpc-js';
import { serverStreamCall, unaryCall, type CallIds, type CallStyle } from '../util/grpc.js';
import type { CsiContext } from './context.js';
import { statusName, toCsiStatus } from './errors.js';
import { redact } from './redact.js';

export type { CallIds };

export interface RpcOptions {
  /** Calls that change nothing log at debug level, so that polling does not flood the log. */
  readOnly?: boolean;
}

class StreamCancelled extends Error {}

/**
 * How CSI calls are logged and answered: the request is logged (redacted) at debug level as
 * it arrives; a failure is answered with the status the CSI spec prescribes, logged with that
 * status's name, and with its stack when it is ours (INTERNAL or UNKNOWN); a stream whose
 * client went away gets a line of its own rather than a failure.
 */
function csiStyle(ctx: CsiContext): CallStyle {
  return {
    logger: ctx.logger,
    kind: 'csi',
    received: (rpc, request) => ctx.logger.debug('csi request', { rpc, request: redact(request) }),
    failure: (err, rpc) => {
      const status = toCsiStatus(err, rpc);
      const internal = status.code === grpc.status.INTERNAL || status.code === grpc.status.UNKNOWN;
      return {
        code: statusName(status.code),
        message: status.details,
        internal,
        ...(internal && err instanceof Error && err.stack !== undefined ? { stack: err.stack } : {}),
        status: { code: status.code, details: status.details },
      };
    },
    streamCancelled: (rpc, ids, durationMs) => ctx.logger.info('csi stream cancelled by the client', { rpc, ...ids, durationMs }),
  };
}

export function unary<Req, Res>(
  ctx: CsiContext,
  rpc: string,
  handler: (request: Req, ids: CallIds) => Promise<Res> | Res,
  options: RpcOptions = {},
): grpc.handleUnaryCall<Req, Res> {
  return unaryCall(csiStyle(ctx), rpc, handler, options.readOnly ?? false);
}

/** Hands one message to the stream, waiting while the client is slower than the server. */
export type Send<Res> = (message: Res) => Promise<void>;

/** The Send of one call; it throws once the client has gone away, which ends the handler. */
function sender<Req, Res>(call: grpc.ServerWritableStream<Req, Res>): Send<Res> {
  return async (message) => {
    if (call.cancelled) throw new StreamCancelled();
    if (call.write(message)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        call.off('drain', done);
        call.off('cancelled', done);
        call.off('close', done);
        resolve();
      };
      call.on('drain', done);
      call.on('cancelled', done);
      call.on('close', done);
    });
    if (call.cancelled) throw new StreamCancelled();
  };
}

export function serverStream<Req, Res>(
  ctx: CsiContext,
  rpc: string,
  handler: (request: Req, ids: CallIds, send: Send<Res>) => Promise<void>,
  options: RpcOptions = {},
): grpc.handleServerStreamingCall<Req, Res> {
  return serverStreamCall<Req, Res>(csiStyle(ctx), rpc, (request, ids, call) => handler(request, ids, sender(call)), options.readOnly ?? false);
}
