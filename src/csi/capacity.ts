import { invalid, outOfRange } from './errors.js';
import type { CapacityRange } from './messages.js';

/** What a volume gets when CreateVolume names no capacity. */
export const DEFAULT_VOLUME_SIZE = 1024 ** 3;
/** The engine's default block size, used for every volume CSI creates. */
export const BLOCK_SIZE = 4096;

/** A capacity range in bytes; 0 means "not set", as in the spec. */
export interface Range {
  required: number;
  limit: number;
}

function bytes(text: string, field: string): number {
  if (!/^-?\d+$/.test(text)) throw invalid(`${field} "${text}" is not a whole number of bytes`);
  const value = Number(text);
  if (value < 0) throw invalid(`${field} must not be negative (got ${text})`);
  if (!Number.isSafeInteger(value)) throw outOfRange(`${field} ${text} is larger than tidemark supports (2^53 - 1 bytes)`);
  return value;
}

export function parseRange(range: CapacityRange | null): Range {
  if (!range) return { required: 0, limit: 0 };
  const required = bytes(range.requiredBytes || '0', 'capacity_range.required_bytes');
  const limit = bytes(range.limitBytes || '0', 'capacity_range.limit_bytes');
  if (limit > 0 && required > limit) throw invalid(`capacity_range.limit_bytes ${limit} is below required_bytes ${required}`);
  return { required, limit };
}

export const roundUp = (n: number, block: number) => Math.ceil(n / block) * block;

/** The size of a new empty volume: the smallest block multiple that satisfies the range. */
export function newVolumeSize(range: Range, block = BLOCK_SIZE): number {
  if (range.required === 0) {
    if (range.limit === 0) return DEFAULT_VOLUME_SIZE;
    const size = Math.min(DEFAULT_VOLUME_SIZE, Math.floor(range.limit / block) * block);
    if (size === 0) throw outOfRange(`capacity_range.limit_bytes ${range.limit} is smaller than one ${block}-byte block`);
    return size;
  }
  const size = roundUp(range.required, block);
  if (range.limit > 0 && size > range.limit) {
    throw outOfRange(`no multiple of the ${block}-byte block size lies between required_bytes ${range.required} and limit_bytes ${range.limit}`);
  }
  return size;
}

export function fits(size: number, range: Range): boolean {
  return size >= range.required && (range.limit === 0 || size <= range.limit);
}
