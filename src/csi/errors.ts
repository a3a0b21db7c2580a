import * as grpc from '@grpc/grpc-js';
import { TidemarkError, classifyError } from '../util/errors.js';
import { grpcStatusFor } from '../util/grpc.js';

/**
 * An error with the exact gRPC code the CSI spec prescribes for a call. Engine errors
 * (TidemarkError) are mapped generically by `toCsiStatus`; a handler throws CsiError when the
 * spec wants a code that differs from the generic mapping (ABORTED for a busy volume,
 * RESOURCE_EXHAUSTED for a topology this node cannot serve, and so on).
 */
export class CsiError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'CsiError';
  }
}

export const invalid = (message: string) => new CsiError(grpc.status.INVALID_ARGUMENT, message);
export const notFound = (message: string) => new CsiError(grpc.status.NOT_FOUND, message);
export const alreadyExists = (message: string) => new CsiError(grpc.status.ALREADY_EXISTS, message);
export const aborted = (message: string) => new CsiError(grpc.status.ABORTED, message);
export const outOfRange = (message: string) => new CsiError(grpc.status.OUT_OF_RANGE, message);
export const failedPrecondition = (message: string) => new CsiError(grpc.status.FAILED_PRECONDITION, message);
export const resourceExhausted = (message: string) => new CsiError(grpc.status.RESOURCE_EXHAUSTED, message);

export interface CsiStatus {
  code: grpc.status;
  details: string;
}

/** The status a failed call returns; `details` is the message users see, so it says what to fix. */
export function toCsiStatus(err: unknown, what: string): CsiStatus {
  if (err instanceof CsiError) return { code: err.code, details: err.message };
  const error = err instanceof TidemarkError ? err : classifyError(err, what);
  return { code: grpcStatusFor(error.code), details: error.message };
}

/** The engine's code of an error, or undefined for anything that is not a TidemarkError. */
export function engineCode(err: unknown): TidemarkError['code'] | undefined {
  return err instanceof TidemarkError ? err.code : undefined;
}

export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? String(code);
}
