import * as grpc from '@grpc/grpc-js';
import { TidemarkError, classifyError, type ErrorCode } from '../util/errors.js';
import { grpcStatusFor } from '../util/grpc.js';

/** Trailing metadata key with the engine's own error code. */
export const TIDEMARK_CODE_KEY = 'tidemark-code';

const ERROR_CODES: readonly ErrorCode[] = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'OUT_OF_RANGE',
  'FAILED_PRECONDITION',
  'EXPIRED',
  'BUSY',
  'RESOURCE_EXHAUSTED',
  'STORE_LOCKED',
  'UNAVAILABLE',
  'INTERNAL',
];

/** The engine code a gRPC status stands for when the server sent no `tidemark-code`. */
function codeForStatus(status: grpc.status): ErrorCode {
  switch (status) {
    case grpc.status.INVALID_ARGUMENT:
      return 'INVALID_ARGUMENT';
    case grpc.status.NOT_FOUND:
      return 'NOT_FOUND';
    case grpc.status.ALREADY_EXISTS:
      return 'ALREADY_EXISTS';
    case grpc.status.OUT_OF_RANGE:
      return 'OUT_OF_RANGE';
    case grpc.status.FAILED_PRECONDITION:
      return 'FAILED_PRECONDITION';
    case grpc.status.ABORTED:
      return 'BUSY';
    case grpc.status.RESOURCE_EXHAUSTED:
      return 'RESOURCE_EXHAUSTED';
    case grpc.status.UNAVAILABLE:
      return 'UNAVAILABLE';
    default:
      return 'INTERNAL';
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** What a server handler hands to grpc-js for a failed call. */
export function toServiceError(error: TidemarkError): Partial<grpc.StatusObject> & Error {
  const metadata = new grpc.Metadata();
  metadata.set(TIDEMARK_CODE_KEY, error.code);
  return Object.assign(new Error(error.message), { code: grpcStatusFor(error.code), details: error.message, metadata });
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number' && 'details' in err;
}

/**
 * Turns a failed call into the TidemarkError the server raised. A call that never reached a
 * daemon (no socket, nobody listening) becomes UNAVAILABLE with a message that says so.
 */
export function fromServiceError(err: unknown, socketPath: string): TidemarkError {
  if (err instanceof TidemarkError) return err;
  if (!isServiceError(err)) return classifyError(err, 'admin call');
  const sent = err.metadata?.get(TIDEMARK_CODE_KEY)[0];
  if (isErrorCode(sent)) return new TidemarkError(sent, err.details);
  if (err.code === grpc.status.UNAVAILABLE) {
    const cause = /connect (E[A-Z]+)/.exec(err.details)?.[1];
    return new TidemarkError('UNAVAILABLE', `cannot reach the tidemark daemon at ${socketPath}: is \`tidemark serve\` running?${cause ? ` (${cause})` : ''}`);
  }
  if (err.code === grpc.status.CANCELLED) return new TidemarkError('UNAVAILABLE', `the call to the tidemark daemon at ${socketPath} was cancelled: ${err.details}`);
  return new TidemarkError(codeForStatus(err.code), err.details);
}
