import * as grpc from '@grpc/grpc-js';
import type { CsiContext } from './context.js';
import { statusName, toCsiStatus } from './errors.js';
import { redact } from './redact.js';

/** The ids a call touched, for its log line: names and handles, never data or secrets. */
export type CallIds = Record<string, string | number | boolean | string[] | undefined>;

export interface RpcOptions {
  /** Calls that change nothing log at debug level, so that polling does not flood the log. */
  readOnly?: boolean;
}

class StreamCancelled extends Error {}

function logOutcome(ctx: CsiContext, rpc: string, ids: CallIds, started: number, options: RpcOptions, err?: unknown): void {
  const durationMs = Date.now() - started;
  if (err === undefined) {
    ctx.logger.log(options.readOnly ? 'debug' : 'info', 'csi call', { rpc, ...ids, outcome: 'ok', durationMs });
    return;
  }
  const status = toCsiStatus(err, rpc);
  const internal = status.code === grpc.status.INTERNAL || status.code === grpc.status.UNKNOWN;
  ctx.logger.log(internal ? 'error' : 'warn', 'csi call failed', {
    rpc,
    ...ids,
    outcome: 'error',
    code: statusName(status.code),
    error: status.details,
    ...(internal && err instanceof Error ? { stack: err.stack } : {}),
    durationMs,
  });
}

export function unary<Req, Res>(
  ctx: CsiContext,
  rpc: string,
  handler: (request: Req, ids: CallIds) => Promise<Res> | Res,
  options: RpcOptions = {},
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = Date.now();
    const ids: CallIds = {};
    ctx.logger.debug('csi request', { rpc, request: redact(call.request) });
    void (async () => {
      try {
        const response = await handler(call.request, ids);
        logOutcome(ctx, rpc, ids, started, options);
        callback(null, response);
      } catch (err) {
        logOutcome(ctx, rpc, ids, started, options, err);
        const status = toCsiStatus(err, rpc);
        callback({ code: status.code, details: status.details });
      }
    })();
  };
}

/** Hands one message to the stream, waiting while the client is slower than the server. */
export type Send<Res> = (message: Res) => Promise<void>;

export function serverStream<Req, Res>(
  ctx: CsiContext,
  rpc: string,
  handler: (request: Req, ids: CallIds, send: Send<Res>) => Promise<void>,
  options: RpcOptions = {},
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const started = Date.now();
    const ids: CallIds = {};
    ctx.logger.debug('csi request', { rpc, request: redact(call.request) });
    const send: Send<Res> = async (message) => {
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
    void (async () => {
      try {
        await handler(call.request, ids, send);
        logOutcome(ctx, rpc, ids, started, options);
        call.end();
      } catch (err) {
        if (err instanceof StreamCancelled || call.cancelled) {
          ctx.logger.info('csi stream cancelled by the client', { rpc, ...ids, durationMs: Date.now() - started });
          return;
        }
        logOutcome(ctx, rpc, ids, started, options, err);
        const status = toCsiStatus(err, rpc);
        call.emit('error', { code: status.code, details: status.details });
      }
    })();
  };
}
