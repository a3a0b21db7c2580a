import type { ErrorCode } from '../util/errors.js';

/**
 * Exit codes of the `tidemark` command, by error class, so scripts can react without parsing
 * messages. docs/cli.md lists the same table; keep them together.
 */
export const EXIT = {
  OK: 0,
  OTHER: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  ALREADY_EXISTS: 4,
  PRECONDITION: 5,
  UNAVAILABLE: 6,
  RESOURCE_EXHAUSTED: 7,
} as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'INVALID_ARGUMENT':
    case 'OUT_OF_RANGE':
      return EXIT.USAGE;
    case 'NOT_FOUND':
      return EXIT.NOT_FOUND;
    case 'ALREADY_EXISTS':
      return EXIT.ALREADY_EXISTS;
    case 'FAILED_PRECONDITION':
    case 'EXPIRED':
    case 'BUSY':
      return EXIT.PRECONDITION;
    case 'UNAVAILABLE':
    case 'STORE_LOCKED':
      return EXIT.UNAVAILABLE;
    case 'RESOURCE_EXHAUSTED':
      return EXIT.RESOURCE_EXHAUSTED;
    default:
      return EXIT.OTHER;
  }
}
