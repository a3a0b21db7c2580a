import { invalidArgument } from '../util/errors.js';

/**
 * Checks on what arrives over the wire. A decoded message is only as typed as the sender
 * made it, so every handler reads its fields through these functions, which refuse anything
 * that is missing, of the wrong type, or a number JavaScript cannot hold exactly.
 */
export type Fields = Record<string, unknown>;

export function fields(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument(`${what} must be a message`);
  return value as Fields;
}

function label(field: string, what?: string): string {
  return what ?? field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** A string field that must not be empty (names of volumes, snapshots, markers). */
export function requiredString(message: Fields, field: string, what?: string): string {
  const value = message[field];
  if (typeof value !== 'string') throw invalidArgument(`${label(field, what)} must be a string`);
  if (value === '') throw invalidArgument(`${label(field, what)} is required`);
  return value;
}

/** A string field where empty means "not given". */
export function optionalString(message: Fields, field: string, what?: string): string | undefined {
  const value = message[field];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw invalidArgument(`${label(field, what)} must be a string`);
  return value;
}

export function bool(message: Fields, field: string, what?: string): boolean {
  const value = message[field];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw invalidArgument(`${label(field, what)} must be true or false`);
  return value;
}

/** A uint64, decoded as a decimal string or a number, that fits a JavaScript safe integer. */
export function uint64(message: Fields, field: string, what?: string): number {
  const value = message[field];
  const name = label(field, what);
  if (value === undefined || value === null) return 0;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\d+$/.test(value)) n = Number(value);
  else throw invalidArgument(`${name} must be a whole number`);
  if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`${name} ${String(value)} is out of bounds: at most ${Number.MAX_SAFE_INTEGER} is supported`);
  return n;
}

/** A proto3 `optional` uint64: undefined unless the sender set it. */
export function optionalUint64(message: Fields, field: string, what?: string): number | undefined {
  const value = message[field];
  if (value === undefined || value === null) return undefined;
  return uint64(message, field, what);
}

export function list(message: Fields, field: string, what?: string): unknown[] {
  const value = message[field];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidArgument(`${label(field, what)} must be a list`);
  return value;
}

export function stringList(message: Fields, field: string, what?: string): string[] {
  return list(message, field, what).map((item, i) => {
    if (typeof item !== 'string' || item === '') throw invalidArgument(`${label(field, what)}[${i}] must be a non-empty string`);
    return item;
  });
}

export function bytes(message: Fields, field: string, what?: string): Buffer {
  const value = message[field];
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw invalidArgument(`${label(field, what)} must be bytes`);
}

/** An optional sub-message: undefined when absent. */
export function optionalMessage(message: Fields, field: string, what?: string): Fields | undefined {
  const value = message[field];
  if (value === undefined || value === null) return undefined;
  return fields(value, label(field, what));
}
