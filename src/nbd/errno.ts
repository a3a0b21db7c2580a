import { isTidemarkError } from '../util/errors.js';
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_ESHUTDOWN } from './protocol.js';

/** Whether a failed command wrote (or would have written) data; the spec picks errors by it. */
export type CommandKind = 'write' | 'other';

/**
 * The NBD error value for an engine failure. The spec asks for ENOSPC on writes past the
 * end and on a full disk, EINVAL on other out-of-range requests; a closing engine is a
 * server shutting down. Everything else is an I/O error to the client.
 */
export function nbdErrno(err: unknown, kind: CommandKind): number {
  if (!isTidemarkError(err)) return NBD_EIO;
  switch (err.code) {
    case 'RESOURCE_EXHAUSTED':
      return NBD_ENOSPC;
    case 'OUT_OF_RANGE':
      return kind === 'write' ? NBD_ENOSPC : NBD_EINVAL;
    case 'INVALID_ARGUMENT':
      return NBD_EINVAL;
    case 'UNAVAILABLE':
      return NBD_ESHUTDOWN;
    default:
      return NBD_EIO;
  }
}

/** Whether an error is the client's doing (logged quietly) rather than the server's. */
export function isClientError(errno: number): boolean {
  return errno === NBD_EINVAL;
}
