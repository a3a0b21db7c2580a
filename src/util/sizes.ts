import { invalidArgument } from './errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  K: 1000,
  M: 1000 ** 2,
  G: 1000 ** 3,
  T: 1000 ** 4,
};

/** Parses "4096", "64Ki", "10Gi", "1.5Gi" (binary) or "1G" (decimal) into a whole number of bytes. */
export function parseSize(text: string, what = 'size'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|B)?\s*$/.exec(text);
  if (!match) throw invalidArgument(`malformed ${what} "${text}": use bytes or a number with Ki, Mi, Gi or Ti`);
  const value = Number(match[1]) * (UNITS[match[2] ?? ''] ?? NaN);
  if (!Number.isSafeInteger(value)) {
    throw invalidArgument(`malformed ${what} "${text}": not a whole number of bytes below 2^53`);
  }
  return value;
}

export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function isPowerOfTwo(n: number): boolean {
  // BigInt, because JavaScript's bitwise operators see only the low 32 bits of a number.
  return Number.isSafeInteger(n) && n > 0 && (BigInt(n) & (BigInt(n) - 1n)) === 0n;
}
