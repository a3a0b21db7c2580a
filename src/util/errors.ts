/**
 * One error type for the whole daemon. Each layer above the engine maps `code` to its own
 * vocabulary (gRPC status, CLI exit code, custom-resource condition reason), so the code
 * names follow gRPC's canonical codes where one fits.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'OUT_OF_RANGE'
  | 'FAILED_PRECONDITION'
  | 'EXPIRED'
  | 'BUSY'
  | 'RESOURCE_EXHAUSTED'
  | 'STORE_LOCKED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export class TidemarkError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, string | number | boolean | undefined>;

  constructor(code: ErrorCode, message: string, details: Record<string, string | number | boolean | undefined> = {}) {
    super(message);
    this.name = 'TidemarkError';
    this.code = code;
    this.details = details;
  }
}

export const invalidArgument = (message: string, details = {}) => new TidemarkError('INVALID_ARGUMENT', message, details);
export const notFound = (message: string, details = {}) => new TidemarkError('NOT_FOUND', message, details);
export const alreadyExists = (message: string, details = {}) => new TidemarkError('ALREADY_EXISTS', message, details);
export const outOfRange = (message: string, details = {}) => new TidemarkError('OUT_OF_RANGE', message, details);
export const failedPrecondition = (message: string, details = {}) =>
  new TidemarkError('FAILED_PRECONDITION', message, details);
export const busy = (message: string, details = {}) => new TidemarkError('BUSY', message, details);

export function isTidemarkError(err: unknown): err is TidemarkError {
  return err instanceof TidemarkError;
}

/**
 * Turns an operating-system error into a TidemarkError with a message a user can act on;
 * anything already classified passes through unchanged.
 */
export function classifyError(err: unknown, what: string): TidemarkError {
  if (err instanceof TidemarkError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const text = err instanceof Error ? err.message : String(err);
  switch (errno) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new TidemarkError('RESOURCE_EXHAUSTED', `${what}: disk full (${text})`, { errno });
    case 'ENOENT':
      return new TidemarkError('NOT_FOUND', `${what}: ${text}`, { errno });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new TidemarkError('FAILED_PRECONDITION', `${what}: permission denied (${text})`, { errno });
    default:
      return new TidemarkError('INTERNAL', `${what}: ${text}`, { errno });
  }
}
