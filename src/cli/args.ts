import type { Extent } from '../engine/index.js';
import { invalidArgument } from '../util/errors.js';
import { isPowerOfTwo, parseSize } from '../util/sizes.js';

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Parses "90" (seconds), "30s", "10m", "2h", "7d", "1w" or combinations such as "1h30m" into seconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const trimmed = text.trim();
  if (NEGATIVE.test(trimmed)) throw outOfRange(what, text, 'at least one second, e.g. 30s, 10m, 2h, 7d');
  const malformed = () => invalidArgument(`malformed ${what} "${text}": use seconds or a number with s, m, h, d or w, e.g. 30s, 10m, 2h, 7d`);
  if (/^\d+$/.test(trimmed)) return positive(Number(trimmed), text, what);
  if (!/^(\d+[smhdw])+$/.test(trimmed)) throw malformed();
  let seconds = 0;
  for (const [, count, unit] of trimmed.matchAll(/(\d+)([smhdw])/g)) seconds += Number(count) * DURATION_UNITS[unit!]!;
  return positive(seconds, text, what);
}

function positive(seconds: number, text: string, what: string): number {
  if (!Number.isSafeInteger(seconds) || seconds <= 0) throw outOfRange(what, text, 'at least one second, e.g. 30s, 10m, 2h, 7d');
  return seconds;
}

/** A leading minus: a number the option can never take, whatever its unit. */
const NEGATIVE = /^\s*-\s*\d/;

function outOfRange(what: string, text: string, range: string) {
  return invalidArgument(`${what} "${text}" is out of range: ${range}`);
}

/** The values a numeric option accepts, and how docs/cli.md words them. */
export interface Accepted {
  accepts: (value: number) => boolean;
  range: string;
}

/**
 * A size option checked against its range here, because the admin API carries some of them
 * as proto3 scalars where 0 means "the default": a 0 typed by the user would otherwise be
 * taken silently as the default. Zero and negatives are refused like any other value out of
 * range, with the range in the message; text that is no size at all stays "malformed".
 */
export function parseSizeOption(text: string, what: string, accepted: Accepted): number {
  if (NEGATIVE.test(text)) throw outOfRange(what, text, accepted.range);
  const bytes = parseSize(text, what);
  if (!accepted.accepts(bytes)) throw outOfRange(what, text, accepted.range);
  return bytes;
}

export const VOLUME_SIZE: Accepted = { accepts: (n) => n > 0, range: 'above 0, a multiple of the block size, e.g. 10Gi' };
export const BLOCK_SIZE: Accepted = { accepts: (n) => isPowerOfTwo(n) && n >= 512 && n <= 64 * 1024, range: 'a power of two from 512 to 64Ki' };
export const RETENTION_SIZE: Accepted = { accepts: (n) => n > 0, range: 'above 0, e.g. 20Gi (or "none" for no limit)' };
export const OFFSET: Accepted = { accepts: (n) => n >= 0, range: '0 or more' };
export const LENGTH: Accepted = { accepts: (n) => n > 0, range: 'at least 1 byte' };
export const SEGMENT_SIZE: Accepted = { accepts: (n) => n >= 4096, range: 'at least 4Ki' };

/** Granularity's lower bound is the volume's block size: the one given, else the default 4Ki. */
export function granularityRange(blockSize = 4096): Accepted {
  return {
    accepts: (n) => isPowerOfTwo(n) && n >= blockSize && n <= 64 * 1024 * 1024,
    range: `a power of two from the block size (${blockSize}) to 64Mi`,
  };
}

/** A journal sequence number: 0 (before the first write) or more. */
export function parseSequence(text: string): number {
  if (NEGATIVE.test(text)) throw outOfRange('sequence', text, 'a journal sequence number, 0 or more');
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(Number(text))) throw invalidArgument(`malformed sequence "${text}": use a whole number, 0 or more`);
  return Number(text);
}

/** "7d", "2h", "1h30m": the shortest exact spelling of a number of seconds. */
export function formatDuration(seconds: number): string {
  if (seconds <= 0) return '0s';
  let rest = Math.round(seconds);
  let out = '';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}

/** An OFFSET:LENGTH byte range; both parts accept sizes such as 1Mi. */
export function parseRange(text: string): Extent {
  const parts = text.split(':');
  if (parts.length !== 2 || parts[0]!.trim() === '' || parts[1]!.trim() === '') {
    throw invalidArgument(`malformed range "${text}": use OFFSET:LENGTH, e.g. 0:1Mi`);
  }
  const offset = parseSize(parts[0]!, 'range offset');
  const length = parseSize(parts[1]!, 'range length');
  if (length === 0) throw invalidArgument(`range "${text}" is empty: its length must be above 0`);
  return { offset, length };
}

/** Collects a repeatable option's values in order. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
