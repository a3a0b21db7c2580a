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
 * anything already classified passes through unchanged. A missing file (ENOENT) is INTERNAL,
 * not NOT_FOUND: the files met here are the store's own, and callers take NOT_FOUND to mean
 * that the object asked for does not exist (CSI, for one, then treats it as deleted). Where
 * a missing file is the user's (a path given on the command line), the caller says so itself.
 */
export function classifyError(err: unknown, what: string): TidemarkError {
  if (err instanceof TidemarkError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const text = err instanceof Error ? err.message : String(err);
  switch (errno) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new TidemarkError('RESOURCE_EXHAUSTED', `${what}: disk full (${text})`, { errno });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new TidemarkError('FAILED_PRECONDITION', `${what}: permission denied (${text})`, { errno });
    default:
      return new TidemarkError('INTERNAL', `${what}: ${text}`, { errno });
  }
}
