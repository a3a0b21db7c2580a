import { invalidArgument } from '../util/errors.js';

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$/;

/**
 * Volume, snapshot and marker names become file names and appear in handles, so they are
 * kept to a portable alphabet. A leading "~" is reserved for what the engine names itself.
 */
export function checkName(kind: 'volume' | 'snapshot' | 'marker', name: string): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw invalidArgument(
      `invalid ${kind} name "${name}": use 1 to 253 letters, digits, ".", "_" or "-", starting with a letter, digit or "_"`,
    );
  }
  return name;
}
